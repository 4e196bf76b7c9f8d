"""A controller gone wild, in a process of its own as real ones are: floods the engine with OSC
over UDP and MIDI through a JACK virtual port, good and malformed; ``flood()``, which runs it
against a playing engine in this process, and ``live_session()``, against ``main.py --midi
--osc`` as a user runs it (tests/test_flood.py, bench/controllers.py --flood).

    python tests/flood_client.py OSC_PORT MIDI_PORT_NAME SECONDS SEED OSC_RATE MIDI_RATE

It opens its MIDI port and prints ``ready``; on a line ``go`` on stdin it floods for SECONDS,
OSC_RATE OSC and MIDI_RATE MIDI messages a second, and prints ``done``; on ``last`` it sends one
last good OSC value and one last MIDI value and prints what it sent as JSON. The client uses
python-osc, python-rtmidi and numpy only: nothing of the engine.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import rtmidi
from pythonosc.osc_message_builder import OscMessageBuilder

BURSTS_PER_SECOND = 100
OSC_PARAM = "b_vocals_gain"  # the good OSC messages set it
MIDI_PARAM, MIDI_CC = "a_bass_gain", 6  # the good MIDI messages: CC 6 in presets/generic.yaml
LAST_OSC, LAST_MIDI = 0.125, 77  # the values that come last


def osc(address: str, *args) -> bytes:
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


BAD_OSC = [osc("/param/a_drums_gain", float("inf")), osc("/mixer/crossfader", "loud"),
           osc("/no/such/address", 1.0), osc("/mixer/crossfader", 0.1, 0.2), b"\x00garbage",
           b"/\xff\xfe\x00,f\x00\x00\x00\x00\x00\x00"]  # an address that is not UTF-8
# MIDI: the CC moving (three in five), unmapped messages, and events that do not decode.
UNMAPPED_MIDI = [[0xBF, 100, 1], [0x9F, 1, 100]]
BAD_MIDI = [[0xB0, MIDI_CC, 200], [0x45]]


def send_flood(sock: socket.socket, port: int, wire: rtmidi.MidiOut, seconds: float,
          rates: tuple[int, int], rng: np.random.Generator, sent: dict) -> None:
    bursts = int(seconds * BURSTS_PER_SECOND)
    osc_per_burst, midi_per_burst = (rate // BURSTS_PER_SECOND for rate in rates)
    # Everything is made before the clock starts: the client is cheap while it floods.
    good = [osc(f"/param/{OSC_PARAM}", float(v)) for v in rng.random(256)]
    is_good = rng.random(bursts * osc_per_burst) < 0.4
    datagrams = [good[rng.integers(256)] if g else BAD_OSC[rng.integers(len(BAD_OSC))]
                 for g in is_good]
    kinds = rng.choice(3, p=[0.6, 0.2, 0.2], size=bursts * midi_per_burst)
    events = [[0xB0, MIDI_CC, int(rng.integers(128))] if k == 0 else
              (UNMAPPED_MIDI if k == 1 else BAD_MIDI)[rng.integers(2)] for k in kinds]
    sent["osc_good"] += int(is_good.sum())
    sent["osc_bad"] += int((~is_good).sum())
    sent["midi"] += 1 + int(np.sum(kinds < 2))
    sent["midi_bad"] += int(np.sum(kinds == 2))
    start = time.monotonic()
    wire.send_message([0xB0, MIDI_CC, 127])  # the fader picks the gain up where it is (1.0)
    for k in range(bursts):
        for datagram in datagrams[k * osc_per_burst:(k + 1) * osc_per_burst]:
            sock.sendto(datagram, ("127.0.0.1", port))
        for event in events[k * midi_per_burst:(k + 1) * midi_per_burst]:
            wire.send_message(event)
        time.sleep(max(0.0, start + (k + 1) / BURSTS_PER_SECOND - time.monotonic()))


def main() -> None:
    port, midi_name, seconds, seed, osc_rate, midi_rate = (
        int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
        int(sys.argv[6]))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    wire = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK)
    wire.open_virtual_port(midi_name)
    sent = {"osc_good": 0, "osc_bad": 0, "midi": 0, "midi_bad": 0}
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "go":
            send_flood(sock, port, wire, seconds, (osc_rate, midi_rate),
                       np.random.default_rng(seed), sent)
            print("done", flush=True)
        elif line.strip() == "last":
            sock.sendto(osc(f"/param/{OSC_PARAM}", LAST_OSC), ("127.0.0.1", port))
            wire.send_message([0xB0, MIDI_CC, LAST_MIDI])
            sent["osc_good"] += 1
            sent["midi"] += 1
            time.sleep(0.2)  # JACK hands the event over at its next period
            print(json.dumps(sent), flush=True)
            break
    wire.close_port()


MIDI_PORT = "flooding controller"


async def flood(engine: Any, out: Any, server: Any, midi: Any, seconds: float,
                rates: tuple[int, int], seed: int = 6) -> tuple[dict, dict, dict]:
    """Run a client against ``engine``, playing through ``out`` (an AudioOutput) with ``server``
    (an OSCServer, started) and ``midi`` (a MidiInput for ports named MIDI_PORT): what the
    stream did in the flood and in a quiet stretch of the same length after it, and what was
    sent. Returns once every message sent has been judged (or after 5 s). Each client's port
    has a name of its own (the seed in it), so that the input sees a new port each time."""

    async def stretch(until) -> dict:
        s0, xruns0, frames0 = engine.core.status, out.xruns, out.frames_played
        t0 = time.monotonic()
        await until
        s1 = engine.core.status
        return {"seconds": time.monotonic() - t0, "xruns": out.xruns - xruns0,
                "frames": out.frames_played - frames0, "rendered": s1.clock - s0.clock,
                "deck_a": s1.positions[0] - s0.positions[0]}

    stats, controller = server.stats, midi.controller
    osc_before = stats.handled + stats.rejected
    midi_before = controller.handled + controller.ignored
    client = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__)), str(server.port), f"{MIDI_PORT} {seed}",
        str(seconds), str(seed), *map(str, rates), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE)
    try:
        assert (await client.stdout.readline()).strip() == b"ready"
        await midi.scan()
        assert midi.inputs, midi.error or f"no MIDI port {MIDI_PORT}"
        await asyncio.sleep(0.3)
        client.stdin.write(b"go\n")
        flooded = await stretch(client.stdout.readline())
        quiet = await stretch(asyncio.sleep(flooded["seconds"]))
        client.stdin.write(b"last\n")
        sent = json.loads(await client.stdout.readline())
    finally:
        if client.returncode is None:
            client.kill()
        await client.wait()
    deadline = time.monotonic() + 5.0
    while (stats.handled + stats.rejected - osc_before < sent["osc_good"] + sent["osc_bad"]
           or controller.handled + controller.ignored - midi_before < sent["midi"]) \
            and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return flooded, quiet, sent


ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"played ([\d.]+) s: (\d+) xruns, callback load (\d+)% median, (\d+)% p99")
STATUS_XRUNS = re.compile(r"\| xruns (\d+)")
# Callbacks held up waiting for the GIL (AudioOutput.held_up), shown once there are any.
STATUS_HELD = re.compile(r"\| GIL waits (\d+)")


def live_session(device: int, seconds: float, controls: bool, flood_seconds: float = 0.0,
                 rates: tuple[int, int] = (0, 0), seed: int = 6) -> dict:
    """``main.py`` live (the demo, the rule-based policy) on ``device`` for ``seconds``, with a
    client's ports present: with ``controls`` it listens to them (``--midi``, ``--osc``), and
    the client floods for ``flood_seconds`` from a second after deck A starts playing, listened
    to or not (so that the client's own work is in both sides of a comparison). Returns
    what main.py said at the end (seconds played, xruns, callback load median and p99 in %) and
    ``steady_xruns``, those from a second after deck A started: starting (loading the decks,
    opening ports and connecting them) is not what a controller costs while the music plays."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        osc_port = probe.getsockname()[1]
    port = f"{MIDI_PORT} {seed}"
    client = subprocess.Popen(
        [sys.executable, __file__, str(osc_port), port, str(flood_seconds), str(seed),
         *map(str, rates)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    command = [sys.executable, "main.py", "--checkpoint", "none", "--device", str(device),
               "--seconds", str(seconds)]
    if controls:
        command += ["--midi", port, "--osc", str(osc_port)]
    env = {**os.environ, "MIDO_BACKEND": "mido.backends.rtmidi/UNIX_JACK",
           "PYTHONUNBUFFERED": "1"}
    try:
        assert client.stdout.readline().strip() == "ready"
        # Text mode reads the status line's carriage returns as line ends.
        with subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) as live:
            output, playing, steady_from = [], None, None
            for line in live.stdout:
                output.append(line)
                if playing is None and line.startswith("A: play"):
                    playing = time.monotonic()
                if steady_from is None and playing and time.monotonic() > playing + 1.0 \
                        and (found := STATUS_XRUNS.search(line)):
                    steady_from = int(found.group(1))
                    if flood_seconds:
                        client.stdin.write("go\n")
                        client.stdin.flush()
        assert live.returncode == 0, "".join(output[-20:])
    finally:
        client.kill()
        client.wait()
    found = [m for line in output if (m := SUMMARY.search(line))]
    assert found, "".join(output[-20:])
    assert steady_from is not None, "".join(output[-20:])
    played, xruns, median, p99 = found[-1].groups()
    return {"played": float(played), "xruns": int(xruns), "steady_xruns": int(xruns) - steady_from,
            "load_median": int(median), "load_p99": int(p99)}


if __name__ == "__main__":
    main()
