"""The live engine under load: callback time, xruns, trigger latency, offline render speed.

    .venv/bin/python bench/engine.py [--minutes 10] [--compare-seconds 60]
    .venv/bin/python bench/engine.py --load 3

On a JACK server with the dummy driver (real-time pacing, no sound card), two generated tracks
play through a real PortAudio stream while the generation worker samples a transition every 10 s
and the engine performs a transition every 20 s (the decks swap and the stopped one is cued
again, so the music never stops):

1. worker in a thread against a worker in a process, at 256 frames, with the worker generating
   back to back (the worst case for the GIL): callback time and xruns, ``--compare-seconds`` each;
2. the shipped kind (process) at 128 and 256 frames for ``--minutes`` (the soak runs at 256);
3. trigger-to-audible latency with quantize off: from the trigger command to the end of the
   callback that started the transition, plus PortAudio's output latency, median of 10;
4. offline render speed (seconds of mix per second of wall time);
5. ``--load``: ``main.py --deck-a A --deck-b B --key-lock`` live, as a user starts it, with two
   real tracks of the corpus (bench/real_corpus.py, 3-5 minutes) and an empty analysis cache:
   xruns while deck A plays and deck B is analysed, read, planned and stretched
   (``xruns_during_load``), and in as long a stretch after it (``xruns_after_load``); each
   run's line says when the xruns came (seconds after deck A started) and in which phase;
   ``held_up_during_load`` and ``held_up_after_load`` count the callbacks that the engine's
   own threads held up (over half a block waiting for the GIL), the engine's share of them.
   ``--hugepages-ab`` runs each as a pair, with numpy's transparent huge pages and without.

Callback time is a share of the block's duration (median, p99, max). The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.synth import render_track  # noqa: E402
from analysis.track import analyze_stems  # noqa: E402
from engine import core as c  # noqa: E402
from engine.backends import AudioOutput, Cue, render_offline  # noqa: E402
from engine.deck import Track, track_from_analysis  # noqa: E402
from engine.jackserver import dummy_jack  # noqa: E402
from engine.transition import Scheduled  # noqa: E402
from tests.flood_client import STATUS_HELD  # noqa: E402
from engine.worker import GenerateRequest, GenerationWorker, policy_transitions  # noqa: E402

SR = 44100
ROOT = Path(__file__).resolve().parents[1]


def tracks() -> tuple[Track, Track]:
    specs = ({"seed": 21, "bpm": 124.0, "tonic": 9, "mode": "minor"},
             {"seed": 22, "bpm": 127.0, "tonic": 0, "mode": "major"})
    return tuple(track_from_analysis(analyze_stems(render_track(bars=32, **s).stems, SR, str(i)))
                 for i, s in enumerate(specs))


def request(a: Track, b: Track, serial: int, bars: int = 4) -> GenerateRequest:
    return GenerateRequest.between(serial, a.analysis.features, 0.0, b.analysis.features, 0.0,
                                   bars, key_a=a.analysis.key_index, key_b=b.analysis.key_index,
                                   n_samples=3, steps=25, seed=serial)


def live_run(device: int, decks: tuple[Track, Track], worker: GenerationWorker, block: int,
             seconds: float, generate_every: float | None) -> dict:
    """Play for ``seconds``; a transition every 20 s; generation every ``generate_every`` s
    (None: back to back)."""
    core = c.EngineCore(SR)
    out = AudioOutput(core, SR, block, device=device, history=int(seconds * SR / block) + 16)
    a, b = decks
    for cmd in (c.Load(0, a), c.Load(1, b), c.Transport(0, playing=True)):
        core.send(cmd)
    out.start()
    t0 = time.monotonic()
    next_gen, next_transition, waiting, generated = t0, t0 + 5.0, 0, 0
    transitions = []
    while time.monotonic() - t0 < seconds:
        now = time.monotonic()
        results = worker.poll()
        generated += sum(1 for r in results if r.serial > 0)
        waiting -= sum(1 for r in results if r.serial > 0)
        if waiting <= 0 and (generate_every is None or now >= next_gen):
            worker.submit(lambda s: request(a, b, s))
            waiting, next_gen = 1, now + (generate_every or 0.0)
        s = core.status
        if s.phase == "idle" and now >= next_transition:
            outgoing = s.on_air
            incoming = 1 - outgoing
            core.send(c.Transport(incoming, playing=False, seek_beat=0.0))
            core.send(c.Transport(outgoing, playing=True))
            transition = policy_transitions(request(decks[outgoing], decks[incoming], 0))[0]
            core.send(c.Schedule(Scheduled(transition, outgoing, None, 0.0)))
            transitions.append(now)
            next_transition = now + 20.0
        if s.phase == "idle" and not s.playing[s.on_air]:  # a deck ran out: start it over
            core.send(c.Transport(s.on_air, playing=True, seek_beat=0.0))
        time.sleep(0.02)
    out.stop()
    median, p99, worst = out.load_percentiles()
    return {"block": block, "seconds": round(time.monotonic() - t0, 1), "xruns": out.xruns,
            "callback_median": round(median, 4), "callback_p99": round(p99, 4),
            "callback_max": round(worst, 4), "transitions": len(transitions),
            "generations": generated, "errors": core.status.errors + out.errors}


def trigger_latency(device: int, decks: tuple[Track, Track], block: int = 256,
                    repeats: int = 10) -> tuple[float, float]:
    """Median and max (ms) from trigger to audible, quantize off."""
    core = c.EngineCore(SR)
    out = AudioOutput(core, SR, block, device=device)
    a, b = decks
    for cmd in (c.Load(0, a), c.Load(1, b), c.Transport(0, playing=True)):
        core.send(cmd)
    out.start()
    time.sleep(0.5)
    transition = policy_transitions(request(a, b, 0, bars=1))[0]
    latencies = []
    for _ in range(repeats):
        core.send(c.Transport(1, playing=False, seek_beat=0.0))
        core.send(c.Transport(0, playing=True, seek_beat=0.0))
        time.sleep(0.3)
        sent = time.perf_counter()
        core.send(c.Schedule(Scheduled(transition, 0, None, 0.0)))
        while core.status.phase == "idle":
            time.sleep(0.0002)
        latencies.append(time.perf_counter() - sent + out.output_latency)
        core.send(c.Abort())
        while core.status.phase != "idle":
            time.sleep(0.01)
    out.stop()
    return float(np.median(latencies) * 1e3), float(np.max(latencies) * 1e3)


def render_speed(decks: tuple[Track, Track]) -> float:
    core = c.EngineCore(SR)
    a, b = decks
    transition = policy_transitions(request(a, b, 0, bars=8))[0]
    n = a.samples
    script = [Cue(0, lambda: [core.send(x) for x in (c.Load(0, a), c.Load(1, b),
                                                      c.Transport(0, playing=True))]),
              Cue(SR * 10, lambda: core.send(c.Schedule(Scheduled(transition, 0, None, 0.0))))]
    t0 = time.perf_counter()
    render_offline(core, n, 1024, script=script)
    return n / SR / (time.perf_counter() - t0)


LOAD_PAIR = ("starfighter-data/through_space.ogg", "asc-music/machine_wars.mp3")  # 115, 120 BPM
LOADED = re.compile(r"^deck ([AB]): .* BPM")
XRUNS = re.compile(r"xruns (\d+)")


def load_run(device: int, a: Path, b: Path, after: float = 30.0,
             env_extra: dict[str, str] | None = None) -> dict:
    """``main.py`` live with an empty analysis cache: xruns from deck A's first sound until deck B
    is loaded, planned and stretched (the status line's "stretching" gone), then ``after``
    seconds more."""
    with tempfile.TemporaryDirectory() as cache:
        # A wide terminal: the status line is whole (the deck's "stretching" not cut).
        env = {**os.environ, "XDG_CACHE_HOME": cache, "PYTHONUNBUFFERED": "1", "COLUMNS": "400",
               **(env_extra or {})}
        command = [sys.executable, "main.py", "--deck-a", str(a), "--deck-b", str(b),
                   "--device", str(device), "--key-lock", "--seconds", "600"]
        marks: dict[str, tuple[float, int, int]] = {}  # time, xruns and held up by then
        xruns, held, t0, when = 0, 0, time.monotonic(), []
        with subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) as live:
            for line in live.stdout:  # text mode: the status line's returns end lines too
                now = time.monotonic() - t0
                if (found := XRUNS.search(line)) and int(found.group(1)) > xruns:
                    if "A" in marks:
                        when.append(f"{now - marks['A'][0]:.1f} s {load_phase(marks, line)}"
                                    + (f" x{int(found.group(1)) - xruns}"
                                       if int(found.group(1)) - xruns > 1 else ""))
                    xruns = int(found.group(1))
                if found := STATUS_HELD.search(line):
                    held = int(found.group(1))
                if found := LOADED.match(line.strip()):
                    marks.setdefault(found.group(1), (now, xruns, held))
                ready = "B" in marks and "candidates" in line and "stretching" not in line \
                    and "loading" not in line
                if ready and "ready" not in marks:
                    marks["ready"] = (now, xruns, held)
                if "ready" in marks and now > marks["ready"][0] + after:
                    live.send_signal(signal.SIGINT)
                    break
            live.communicate(timeout=30)
    (t_a, x_a, h_a), (t_ready, x_ready, h_ready) = marks["A"], marks["ready"]
    return {"load_seconds": round(t_ready - t_a, 1), "xruns_during_load": x_ready - x_a,
            "xruns_after_load": xruns - x_ready, "held_up_during_load": h_ready - h_a,
            "held_up_after_load": held - h_ready, "after_seconds": after, "xruns_at": when}


def load_phase(marks: dict[str, tuple[float, int, int]], status: str) -> str:
    """What deck B's load was doing at a status line."""
    if "ready" in marks:
        return "(after)"
    if "B" not in marks:
        return "(B analysed, read)"
    return "(B stretched)" if "stretching" in status else "(B planned)"


def load_runs(runs: int, hugepages_ab: bool = False) -> None:
    """``runs`` loading runs; with ``hugepages_ab``, each as a pair, interleaved: numpy asking
    for transparent huge pages (its default) and not (what ``main.py`` sets)."""
    from real_corpus import fetch

    tracks = {track.id: track for track in fetch()}
    a, b = (tracks[name].path() for name in LOAD_PAIR)
    variants = {"huge_pages": {"NUMPY_MADVISE_HUGEPAGE": "1"},
                "no_huge_pages": {"NUMPY_MADVISE_HUGEPAGE": "0"}} if hugepages_ab else {"": {}}
    results: dict[str, list[dict]] = {name: [] for name in variants}
    with dummy_jack(SR, 256, client=False) as device:
        for _ in range(runs):
            for name, env in variants.items():
                results[name].append(load_run(device, a, b, env_extra=env))
                print(f"{name or 'main.py'}: {a.name} playing while {b.name} loads: "
                      f"{results[name][-1]}", flush=True)
    print(json.dumps({name or "main.py": {key: [r[key] for r in rows] for key in rows[0]
                                          if key != "xruns_at"}
                      for name, rows in results.items()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="the soak at 256 frames")
    parser.add_argument("--compare-seconds", type=float, default=60.0,
                        help="each run of the thread/process comparison and of 128 frames")
    parser.add_argument("--load", type=int, metavar="RUNS", default=0,
                        help="only the loading runs (5. above), this many")
    parser.add_argument("--hugepages-ab", action="store_true",
                        help="the loading runs in pairs: with numpy's transparent huge pages "
                             "and without")
    args = parser.parse_args()
    if args.load:
        load_runs(args.load, args.hugepages_ab)
        return
    decks = tracks()
    results: dict[str, float] = {"render_x_realtime": round(render_speed(decks), 1)}
    print(f"offline render: {results['render_x_realtime']}x real time", flush=True)
    with dummy_jack(SR, 256) as device:
        for kind in ("thread", "process"):
            worker = GenerationWorker(kind)
            worker.start()
            r = live_run(device, decks, worker, 256, args.compare_seconds, None)
            worker.stop()
            print(f"worker in a {kind:7}, generating back to back, 256 frames: {r}", flush=True)
            results[f"{kind}_xruns"] = r["xruns"]
            results[f"{kind}_callback_p99"] = r["callback_p99"]
        worker = GenerationWorker("process")
        worker.start()
        r128 = live_run(device, decks, worker, 128, args.compare_seconds, 10.0)
        print(f"process worker, a generation every 10 s, 128 frames: {r128}", flush=True)
        soak = live_run(device, decks, worker, 256, args.minutes * 60, 10.0)
        print(f"process worker, a generation every 10 s, 256 frames: {soak}", flush=True)
        worker.stop()
        latency, latency_max = trigger_latency(device, decks)
        print(f"trigger to audible (quantize off): median {latency:.1f} ms, max "
              f"{latency_max:.1f} ms", flush=True)
    results.update({
        "xruns": soak["xruns"], "run_seconds": soak["seconds"],
        "callback_median_fraction_256": soak["callback_median"],
        "callback_p99_fraction_256": soak["callback_p99"],
        "callback_max_fraction_256": soak["callback_max"],
        "callback_p99_fraction_128": r128["callback_p99"], "xruns_128": r128["xruns"],
        "trigger_latency_ms": round(latency, 2), "transitions": soak["transitions"],
        "generations": soak["generations"]})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
