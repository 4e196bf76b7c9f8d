"""Critic speed and what it says about the policy's styles, a linear crossfade and random curves.

    .venv/bin/python bench/critic.py [--bars 16] [--repeats 5]

Two generated tracks at 124 BPM (A minor into C major), deck A's last ``bars`` bars over deck B's
first. Each transition is rendered once with ``DifferentiableMixer(per_stem=True)``; the critic is
then timed on it ``repeats`` times (median). Prints each transition's score and main metrics,
then the critic's time per second of audio. The last line is JSON with stable names.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.key import key_index  # noqa: E402
from analysis.synth import render_track  # noqa: E402
from effects import DifferentiableMixer, MixerConfig  # noqa: E402
from evaluation.critic import critique  # noqa: E402
from evaluation.evaluate import linear_crossfade, random_curves  # noqa: E402
from model.policy import STYLES, plan_transition  # noqa: E402

SR = 44100
BPM = 124.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    key_a, key_b = key_index(9, "minor"), key_index(0, "major")
    track_a = render_track(1, bpm=BPM, tonic=9, mode="minor", bars=2 * args.bars)
    track_b = render_track(2, bpm=BPM, tonic=0, mode="major", bars=2 * args.bars)
    start = args.bars * 4 * 60.0 / BPM
    n = int(round(start * SR))
    stems_a, stems_b = track_a.stems[..., n:2 * n], track_b.stems[..., :n]
    beats_a, beats_b = track_a.beat_times - start, track_b.beat_times
    rng = np.random.default_rng(0)
    transitions = {style: plan_transition(key_a, key_b, rng, bars=args.bars, style=style).curves
                   for style in STYLES}
    transitions["crossfade"] = linear_crossfade(128)
    transitions["random"] = random_curves(rng, 128)
    mixer = DifferentiableMixer(MixerConfig(sample_rate=SR))
    report, times = {}, []
    for name, curves in transitions.items():
        with torch.no_grad():
            shares = mixer(torch.from_numpy(stems_a)[None], torch.from_numpy(stems_b)[None],
                           torch.from_numpy(curves)[None], per_stem=True)[0].numpy()
        mix = shares.sum(axis=0)
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            result = critique(mix, shares, SR, beats_a, beats_b, key_a, key_b, curves)
            times.append(time.perf_counter() - t0)
        print(f"{name:10} score {result.score:.3f}  loudness max {result.loudness_max_dev_lu:.1f} "
              f"LU  bass clash {result.bass_clash_beats}  vocal clash "
              f"{result.vocal_clash_beats}  clicks {result.clicks}  jumps "
              f"{result.spectral_jumps}  end clean {result.end_clean}")
        report[f"score_{name}"] = round(result.score, 4)
    per_second = float(np.median(times)) / (n / SR)
    print(f"critic: {np.median(times) * 1000:.0f} ms for {n / SR:.1f} s of audio "
          f"({per_second * 1000:.1f} ms per second), median of {len(times)}")
    report["critic_ms_per_audio_s"] = round(per_second * 1000, 2)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
