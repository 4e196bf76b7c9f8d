"""Controller latency: a MIDI or OSC message to the engine's command, median and p99; and the
audio under a flood of both.

    .venv/bin/python bench/controllers.py [--messages 2000] [--flood 5]

MIDI goes from a virtual controller port through a JACK server (dummy driver, 64-frame period:
JACK hands MIDI over once a period) and python-rtmidi to the asyncio loop; OSC from a python-osc
client over UDP on 127.0.0.1. The clock stops when the
engine's command API receives the parameter change (what the audio callback applies at its next
control block, 2.9 ms at most later). Messages are sent one every 2 ms.

Flood: ``main.py`` as a user runs it (the demo's tracks, the rule-based policy, a PortAudio
stream on a JACK server with the dummy driver at 256 frames) for 12 s, with a controller's
client (tests/flood_client.py) holding a JACK MIDI port and an OSC socket: xruns from a second
after deck A starts playing (starting, which opens and connects ports, is left out) without
``--midi``/``--osc``, with them and the controller idle, and with them while the client floods
for 5 s with MIDI (2,000 a second: two in five unmapped or undecodable), OSC (10,000 a second:
three in five malformed) or both. ``--flood`` rounds; medians. The last line is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import mido
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controllers.mapping import load_mapping  # noqa: E402
from controllers.midi import MidiController, MidiInput  # noqa: E402
from controllers.osc import OSCServer  # noqa: E402
from effects.params import PARAM_NAMES  # noqa: E402
from engine.engine import Engine  # noqa: E402
from engine.jackserver import dummy_jack  # noqa: E402
from pythonosc.udp_client import SimpleUDPClient  # noqa: E402
from bench.engine import SR  # noqa: E402
from bench.web import tree_cpu_seconds  # noqa: E402
from tests.flood_client import live_session  # noqa: E402

SESSION_SECONDS, FLOOD_SECONDS = 12.0, 5.0
IDLE_SECONDS = 3.0

PRESETS = Path(__file__).resolve().parents[1] / "presets"


class TimedEngine(Engine):
    """The real engine, noting when each parameter change arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []

    def set_param(self, param, value) -> None:
        self.arrivals.append(time.perf_counter())
        super().set_param(param, value)

    def param_value(self, param) -> float:
        return 0.0  # every message is picked up: the bench measures transport, not takeover


async def midi_latency(n: int) -> tuple[np.ndarray, float]:
    """Latencies (ms) of ``n`` messages, and the process's CPU (share of a core) while the
    input is open and idle: what reading the ports costs, in the engine's process and in the
    ports' own (Linux: read from /proc)."""
    engine = TimedEngine()
    backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK")
    controller = MidiController(engine, load_mapping(PRESETS / "generic.yaml", PARAM_NAMES))
    port = backend.open_output("bench controller", virtual=True)
    midi = MidiInput(controller, "bench controller", backend)
    await midi.scan()
    await asyncio.sleep(0.2)
    cpu, wall = time.process_time() + tree_cpu_seconds(midi.pid), time.perf_counter()
    await asyncio.sleep(IDLE_SECONDS)
    idle = (time.process_time() + tree_cpu_seconds(midi.pid) - cpu) / (time.perf_counter() - wall)
    sent = []
    for i in range(n):
        sent.append(time.perf_counter())
        port.send(mido.Message("control_change", channel=0, control=50, value=i % 128))
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.2)
    midi.close()
    port.close()
    return (np.array(engine.arrivals[:n]) - np.array(sent[:len(engine.arrivals)])) * 1e3, idle


async def osc_latency(n: int) -> np.ndarray:
    engine = TimedEngine()
    server = OSCServer(engine, port=0)
    await server.start()
    client = SimpleUDPClient("127.0.0.1", server.port)
    sent = []
    for i in range(n):
        sent.append(time.perf_counter())
        client.send_message("/param/reverb_wet", (i % 100) / 100)
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.2)
    server.close()
    return (np.array(engine.arrivals[:n]) - np.array(sent[:len(engine.arrivals)])) * 1e3


FLOODS = {"no --midi/--osc": None, "--midi --osc, idle": (0, 0), "MIDI flood": (0, 2000),
          "OSC flood": (10_000, 0), "MIDI and OSC flood": (10_000, 2_000)}


def flood_rounds(device: int, rounds: int) -> dict[str, list[int]]:
    """xruns of main.py live for SESSION_SECONDS in each case of FLOODS, ``rounds`` times,
    from a second after deck A starts playing (tests/flood_client.live_session)."""
    xruns: dict[str, list[int]] = {case: [] for case in FLOODS}
    for seed in range(rounds):
        for case, rates in FLOODS.items():
            result = live_session(device, SESSION_SECONDS, rates is not None,
                                  FLOOD_SECONDS if rates else 0.0, rates or (0, 0), seed)
            xruns[case].append(result["steady_xruns"])
            print(f"round {seed + 1}, {case}: {result}", flush=True)
    return xruns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--flood", type=int, default=3, help="flood rounds (0: none)")
    args = parser.parse_args()
    with dummy_jack(period=64):  # JACK delivers MIDI once a period: 1.45 ms here
        midi, idle = asyncio.run(midi_latency(args.messages))
    osc = asyncio.run(osc_latency(args.messages))
    results = {}
    if args.flood:
        with dummy_jack(SR, 256, client=False) as device:
            xruns = flood_rounds(device, args.flood)
        for case, counts in xruns.items():
            print(f"main.py {SESSION_SECONDS:g} s, {case}: median {np.median(counts):g} xruns "
                  f"while deck A plays {counts}")
        results["xruns"] = xruns
    print(f"midi input open and idle: the engine's and the ports' processes use {idle:.1%} "
          "of a core")
    results["midi_idle_cpu"] = round(idle, 4)
    for name, ms in (("midi", midi), ("osc", osc)):
        print(f"{name}: {ms.size} of {args.messages} messages, median {np.median(ms):.3f} ms, "
              f"p99 {np.percentile(ms, 99):.3f} ms, max {ms.max():.3f} ms")
        results[f"{name}_median_ms"] = round(float(np.median(ms)), 3)
        results[f"{name}_p99_ms"] = round(float(np.percentile(ms, 99)), 3)
        results[f"{name}_received"] = int(ms.size)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
