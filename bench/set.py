"""A DJ set of real tracks, as a user renders it, and the planning of a long playlist.

    .venv/bin/python bench/set.py --tracks 4       # the README's set: 4 real tracks
    .venv/bin/python bench/set.py --tracks 20      # the memory target: a 20-track set
    .venv/bin/python bench/set.py --tracks 3 --live  # xruns of a set played live
    .venv/bin/python bench/set.py --tracks 4 --live --floor  # and the machine's own, as long

1. ``main.py --playlist SET.m3u --order smart --render set.wav`` in a child process, on the
   first N tracks of at least ``--min-minutes`` of the real corpus (bench/real_corpus.py; the analysis cache makes repeated
   runs quick): the tracklist, transitions finished, dropouts (half-second windows of silence
   between the first track's start and the end), render speed and the child's peak RSS
   (getrusage of the finished child: its largest resident set).
   With ``--live`` instead: ``main.py --playlist SET.m3u --auto --key-lock`` played live through
   a PortAudio stream on a JACK server with the dummy driver at 256 frames, with an empty
   analysis cache (a first play: every track is analysed while the set plays), to the set's
   end: xruns over the whole set, and when each came with what the engine had said last (a
   track loaded on a deck, a transition started or finished); the same for the callbacks that
   the engine's own threads held up (they waited over half a block for the GIL), which tells
   the engine's xruns from the machine's. Both are also counted during the set's loads: from
   deck A's first track on the deck, and from each transition's end (the deck it left is
   emptied and takes the next track), until the next track is on its deck, the next
   transition's candidates are sampled and no key-lock copy is being made.
   ``--floor`` then runs the engine's stream as long on a fresh server of the same settings
   with nothing playing: the xruns this machine makes on its own, for comparison in one run.
2. ``smart_order`` on 200 analysed tracks: the corpus's summaries, and copies of them with their
   tempo and key moved, timed (median of 3 runs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.track import cached_summary  # noqa: E402
from engine.ordering import set_cost, smart_order  # noqa: E402


def render_set(paths: list[Path], out: Path) -> dict:
    m3u = out.with_suffix(".m3u")
    m3u.write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "main.py", "--playlist", str(m3u), "--order", "smart",
                          "--render", str(out), "--no-log"], cwd=ROOT, capture_output=True,
                         text=True)
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if run.returncode != 0:
        raise SystemExit(f"main.py failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    said = [line for line in run.stdout.splitlines() if line.startswith("set: ")]
    mix, sr = sf.read(out, dtype="float32")
    window = sr // 2
    peaks = np.abs(mix[: len(mix) // window * window]).max(axis=1).reshape(-1, window).max(1)
    finished = sum("transition finished" in line for line in run.stdout.splitlines())
    quiet = np.flatnonzero(peaks < 1e-3) * 0.5
    return {"tracks": len(paths), "minutes": round(len(mix) / sr / 60, 1),
            "transitions_finished": finished,
            "dropouts_half_seconds": len(quiet),
            "dropouts_at_seconds": [float(t) for t in quiet[:20]],
            "wall_seconds": round(wall, 1), "peak_rss_mb": round(peak_mb),
            "summary": said[-1] if said else "",
            "tracklist": out.with_suffix(".txt").read_text(encoding="utf-8").splitlines()}


READY = re.compile(r"next: \d+ bars, [1-9]\d* candidates")


def live_set(paths: list[Path], tmp: Path) -> dict:
    from engine.jackserver import dummy_jack
    from tests.flood_client import STATUS_HELD, STATUS_XRUNS

    m3u = tmp / "set.m3u"
    m3u.write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")
    said = ""
    # For xruns and callbacks held up: the count so far and when each rise came.
    counts = {STATUS_XRUNS: [0, []], STATUS_HELD: [0, []]}
    loads: list[list[float]] = []  # [start, end] in seconds of the bench's clock
    finished = 0
    during = {STATUS_XRUNS: 0, STATUS_HELD: 0}
    # The server is named in our environment; main.py is its only client.
    with dummy_jack(44100, 256, client=False) as device:
        # A wide terminal: the status line is whole (the deck's "stretching" not cut).
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache"), "PYTHONUNBUFFERED": "1",
               "COLUMNS": "400"}
        t0 = time.monotonic()
        with subprocess.Popen([sys.executable, "main.py", "--playlist", str(m3u), "--auto",
                               "--key-lock", "--device", str(device), "--no-log"], cwd=ROOT,
                              env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) as live:
            lines = []
            for line in live.stdout:  # text mode: the status line's returns end lines too
                lines.append(line)
                now = time.monotonic() - t0
                loading = bool(loads) and len(loads[-1]) == 1
                if STATUS_XRUNS.search(line) is None:
                    said = line.strip() or said
                    ended = "transition finished" in line
                    finished += ended
                    # After the last transition no track is left to load.
                    if not loading and finished < len(paths) - 1 and (ended or (
                            not loads and line.startswith("deck A: "))):
                        loads.append([now])
                    continue
                for pattern, (before, at) in counts.items():
                    if (found := pattern.search(line)) and int(found.group(1)) > before:
                        at.append(f"{now:.0f} s x{int(found.group(1)) - before}"
                                  f"{' loading' if loading else ''} after: {said[:70]}")
                        counts[pattern][0] = int(found.group(1))
                        during[pattern] += (int(found.group(1)) - before) * loading
                if loading and READY.search(line) and "stretching" not in line:
                    loads[-1].append(now)
    text = "".join(lines)
    played = re.search(r"played ([\d.]+) s: (\d+) xruns.*held up by the GIL (\d+) times, "
                       r"longest wait ([\d.]+) ms", text)
    if live.returncode != 0 or played is None:
        raise SystemExit(f"main.py failed ({live.returncode}):\n{''.join(lines[-40:])}")
    return {"tracks": len(paths), "played_seconds": float(played.group(1)),
            "xruns": int(played.group(2)), "transitions_finished": text.count(
                "transition finished"), "xruns_at": counts[STATUS_XRUNS][1],
            "held_up": int(played.group(3)), "longest_gil_wait_ms": float(played.group(4)),
            "held_up_at": counts[STATUS_HELD][1], "loads": len(loads),
            "loads_at": [[round(t) for t in w] for w in loads],
            "xruns_during_loads": during[STATUS_XRUNS],
            "held_up_during_loads": during[STATUS_HELD]}


def floor_run(seconds: float) -> dict:
    """The machine's own xruns: the engine's stream on a JACK dummy server of the same settings,
    nothing on its decks (the callback still renders every block), for ``seconds``."""
    from engine.backends import AudioOutput
    from engine.core import EngineCore
    from engine.jackserver import dummy_jack

    with dummy_jack(44100, 256) as device, \
            AudioOutput(EngineCore(44100), 44100, 256, device=device) as out:
        out.start()
        time.sleep(seconds)
    return {"floor_seconds": round(out.frames_played / 44100, 1), "floor_xruns": out.xruns,
            "floor_held_up": out.held_up}


def order_timing(paths: list[Path], n: int = 200) -> dict:
    summaries = [s for s in (cached_summary(p) for p in paths) if s is not None]
    rng = np.random.default_rng(0)
    tracks = [replace(summaries[i % len(summaries)],
                      source=f"copy{i}", bpm=summaries[i % len(summaries)].bpm
                      * float(rng.uniform(0.95, 1.05)), key_index=int(rng.integers(24)))
              if i >= len(summaries) else summaries[i] for i in range(n)]
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        order = smart_order(tracks)
        times.append(time.perf_counter() - t0)
    return {"order_tracks": n, "order_seconds_median": round(float(np.median(times)), 3),
            "cost_given": round(set_cost(tracks, list(range(n))), 1),
            "cost_smart": round(set_cost(tracks, order), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=4)
    parser.add_argument("--live", action="store_true",
                        help="play the set live on a JACK dummy server and count xruns")
    parser.add_argument("--min-minutes", type=float, default=2.5,
                        help="the set's tracks: the corpus's first this long (short game loops "
                             "are not what a DJ plays)")
    parser.add_argument("--floor", action="store_true",
                        help="with --live: then as long with nothing playing (the machine's own "
                             "xruns)")
    args = parser.parse_args()
    from real_corpus import fetch

    paths = [t.path() for t in fetch()]
    long = [p for p in paths if sf.info(p).duration >= 60 * args.min_minutes]
    with tempfile.TemporaryDirectory() as tmp:
        if args.live:
            result = live_set(long[:args.tracks], Path(tmp))
            if args.floor:
                result.update(floor_run(result["played_seconds"]))
            print(json.dumps(result))
            return
        result = render_set(long[:args.tracks], Path(tmp) / "set.wav")
    for line in result.pop("tracklist"):
        print(line)
    result.update(order_timing(paths))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
