"""Analysis accuracy and speed on generated tracks with exact ground truth.

    .venv/bin/python bench/analysis.py [--tracks 24] [--bars 40]
    .venv/bin/python bench/analysis.py --real [--limit N]   # the real-music corpus instead


Each track (90-175 BPM, every key once over 24 tracks, intro/drop/break/drop/outro) is written
to a WAV file and analysed from that file with the built-in separator and an empty cache, as a
user's file would be. Prints per-track rows and the summary; the last line is JSON.
With --real, real recordings against outside references instead (see bench/real_analysis.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import mir_eval
import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.cache import AnalysisCache  # noqa: E402
from analysis.key import KEY_NAMES, key_index  # noqa: E402
from analysis.separation import sdr_db  # noqa: E402
from analysis.synth import render_track  # noqa: E402
from analysis.track import analyze  # noqa: E402
from effects.params import STEMS  # noqa: E402
from real_analysis import report, run  # noqa: E402  (beside this file)

SR = 44100


def boundary_hits(truth: list[float], found: list[float], tolerance: float) -> float:
    """Share of true section boundaries with a found one within ``tolerance`` seconds."""
    if not truth:
        return 1.0
    return float(np.mean([np.min(np.abs(np.array(found) - t)) <= tolerance if found else False
                          for t in truth]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=24)
    parser.add_argument("--bars", type=int, default=40)
    parser.add_argument("--real", action="store_true",
                        help="the real-music corpus (fetched on first use) with outside references")
    parser.add_argument("--limit", type=int, default=None, help="--real: only the first N tracks")
    args = parser.parse_args()
    if args.real:
        report(run(SR, args.limit))
        return

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = AnalysisCache(Path(tmp) / "cache")
        for k in range(args.tracks):
            bpm = 90.0 + k * 85.0 / max(args.tracks - 1, 1)
            tonic, mode = k % 12, ("major", "minor")[(k // 12) % 2]
            track = render_track(seed=100 + k, bpm=bpm, tonic=tonic, mode=mode, bars=args.bars,
                                 sample_rate=SR)
            path = Path(tmp) / f"track{k}.wav"
            sf.write(path, track.mix.T, SR, subtype="FLOAT")
            t0 = time.perf_counter()
            result = analyze(path, SR, cache=cache)
            seconds = time.perf_counter() - t0
            bar = 4 * 60.0 / bpm
            truth = [first * bar for _, first, _ in track.sections[1:]]
            found = [start for _, start, _ in result.sections[1:]]
            rows.append({
                "bpm": bpm, "found_bpm": result.bpm,
                "bpm_ok": abs(result.bpm - bpm) / bpm <= 0.01,
                "beat_f": mir_eval.beat.f_measure(track.beat_times, result.grid.beat_times()),
                "downbeat_f": mir_eval.beat.f_measure(track.beat_times[::4],
                                                      result.grid.downbeat_times()),
                "key_ok": result.key_index == key_index(tonic, mode),
                "key": track.key_name, "found_key": result.key_name,
                "structure_hits": boundary_hits(truth, found, bar),
                "sdr": [sdr_db(track.stems[i], result.stems[i]) for i in range(len(STEMS))],
                "minutes": track.mix.shape[1] / SR / 60, "seconds": seconds,
            })
            r = rows[-1]
            print(f"{bpm:6.1f} BPM -> {r['found_bpm']:6.1f}  beat F {r['beat_f']:.3f}  "
                  f"downbeat F {r['downbeat_f']:.3f}  {r['key']:>9} -> {r['found_key']:>9}  "
                  f"structure {r['structure_hits']:.2f}  {r['seconds']:.1f} s", flush=True)

    sdr = np.array([r["sdr"] for r in rows])
    summary = {
        "bpm_accuracy": float(np.mean([r["bpm_ok"] for r in rows])),
        "beat_f": float(np.mean([r["beat_f"] for r in rows])),
        "downbeat_f": float(np.mean([r["downbeat_f"] for r in rows])),
        "key_accuracy": float(np.mean([r["key_ok"] for r in rows])),
        "structure_boundary_hit_rate": float(np.mean([r["structure_hits"] for r in rows])),
        **{f"sdr_{stem}_db": float(np.median(sdr[:, i])) for i, stem in enumerate(STEMS)},
        "seconds_per_audio_minute": float(sum(r["seconds"] for r in rows)
                                          / sum(r["minutes"] for r in rows)),
        "tracks": len(rows),
    }
    print(f"{len(rows)} tracks, {sum(r['minutes'] for r in rows):.1f} min of audio; keys "
          f"covered: {len({r['key'] for r in rows})}/{len(KEY_NAMES)}")
    for name, value in summary.items():
        print(f"  {name}: {value:.3f}")
    print(json.dumps({k: round(v, 4) for k, v in summary.items()}))


if __name__ == "__main__":
    main()
