"""Controller latency: a MIDI or OSC message to the engine's command, median and p99; and the
audio under a flood of both.

    .venv/bin/python bench/controllers.py [--messages 2000] [--flood 5]

MIDI goes from a virtual controller port through a JACK server (dummy driver, 64-frame period:
JACK hands MIDI over once a period) and python-rtmidi to the asyncio loop; OSC from a python-osc
client over UDP on 127.0.0.1. The clock stops when the
engine's command API receives the parameter change (what the audio callback applies at its next
control block, 2.9 ms at most later). Messages are sent one every 2 ms.

Flood: while two generated tracks play through a PortAudio stream on a JACK server (dummy driver,
256 frames), a client process (tests/flood_client.py) sends 10,000 OSC and 2,000 MIDI messages
a second for 1.5 s (three in five OSC malformed, two in five MIDI unmapped or undecodable);
xruns in the flood against a quiet stretch of the same length after it, ``--flood`` times. The
last line is JSON.
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
from engine.backends import AudioOutput  # noqa: E402
from engine.config import EngineConfig  # noqa: E402
from engine.engine import Engine  # noqa: E402
from engine.jackserver import dummy_jack  # noqa: E402
from pythonosc.udp_client import SimpleUDPClient  # noqa: E402
from bench.engine import SR, tracks  # noqa: E402
from tests.flood_client import MIDI_PORT, flood  # noqa: E402

FLOOD_SECONDS, FLOOD_RATES = 1.5, (10_000, 2_000)  # OSC and MIDI messages a second
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
    input is open and idle: what the poller thread costs."""
    engine = TimedEngine()
    backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK")
    controller = MidiController(engine, load_mapping(PRESETS / "generic.yaml", PARAM_NAMES))
    port = backend.open_output("bench controller", virtual=True)
    midi = MidiInput(controller, "bench controller", backend)
    midi.scan(asyncio.get_running_loop())
    await asyncio.sleep(0.2)
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.sleep(IDLE_SECONDS)
    idle = (time.process_time() - cpu) / (time.perf_counter() - wall)
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


async def flood_runs(device: int, repeats: int) -> list[tuple[dict, dict, dict]]:
    engine = Engine(EngineConfig(candidates=1, checkpoint="none"))
    for deck, track in enumerate(tracks()):
        engine.put_track(deck, track)
    controller = MidiController(engine, load_mapping(PRESETS / "generic.yaml", PARAM_NAMES))
    midi = MidiInput(controller, MIDI_PORT, mido.Backend("mido.backends.rtmidi/UNIX_JACK"))
    out = AudioOutput(engine.core, SR, 256, device=device)
    server = OSCServer(engine, port=0)
    await server.start()
    engine.play("a")
    out.start()
    try:
        return [await flood(engine, out, server, midi, FLOOD_SECONDS, FLOOD_RATES, seed)
                for seed in range(repeats)]
    finally:
        out.stop()
        midi.close()
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--flood", type=int, default=5, help="flood runs (0: none)")
    args = parser.parse_args()
    with dummy_jack(period=64):  # JACK delivers MIDI once a period: 1.45 ms here
        midi, idle = asyncio.run(midi_latency(args.messages))
    osc = asyncio.run(osc_latency(args.messages))
    results = {}
    if args.flood:
        with dummy_jack(SR, 256) as device:
            runs = asyncio.run(flood_runs(device, args.flood))
        for flooded, quiet, _ in runs:
            print(f"flood {FLOOD_SECONDS:g} s: {flooded['xruns']} xruns; quiet "
                  f"{quiet['seconds']:.1f} s after it: {quiet['xruns']} xruns")
        results["flood_xruns"] = [flooded["xruns"] for flooded, _, _ in runs]
        results["quiet_xruns"] = [quiet["xruns"] for _, quiet, _ in runs]
    print(f"midi input open and idle: the process uses {idle:.1%} of a core")
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
