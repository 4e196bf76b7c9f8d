"""How close is the audio-domain loss's loudness (model.heard, from the stems' mel spectra) to the
critic's (BS.1770 on the differentiable mixer's rendering), and what does the loss cost?

    .venv/bin/python bench/heard.py --data /work/data/real59 [--pairs 24] [--seed 1]

For held-out pairs of a dataset (evaluation.evaluate's pairs, each deck at the engine's level),
three sets of curves each (the policy's, a linear crossfade, a random mix with the reverb shut)
are rendered and measured both ways. Printed: per method, the median over pairs of the mean
|difference| between the two short-term loudness curves once the constant offset between them
(their median difference) is removed, their correlation, and both measures of the largest
deviation from the line between the decks' levels (critic.loudness_deviation); then the rank
correlation of that deviation across every pair and method, and the loss's time for a batch
(forward and backward).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.stats
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.cache import AnalysisCache  # noqa: E402
from evaluation.critic import CriticConfig, short_term_loudness  # noqa: E402
from evaluation.evaluate import (dataset_pairs, linear_crossfade, pick_rows,  # noqa: E402
                                 random_curves)
from effects import DifferentiableMixer, MixerConfig  # noqa: E402
from model.config import HeardConfig  # noqa: E402
from model.data import TransitionDataset  # noqa: E402
from model.heard import HeardMix, audio_loss  # noqa: E402


def compare(critic_times: np.ndarray, critic: np.ndarray, heard: np.ndarray,
            frame_s: float, short_term_s: float) -> tuple[float, float]:
    """Mean |difference| after the offset is removed, and the correlation, of the critic's
    short-term loudness and the heard one read at the critic's window centres."""
    centres = (np.arange(heard.size) * frame_s) + short_term_s / 2
    inside = (critic_times >= centres[0]) & (critic_times <= centres[-1])
    on_critic = np.interp(critic_times[inside], centres, heard)
    difference = critic[inside] - on_critic
    residual = difference - np.median(difference)
    return float(np.abs(residual).mean()), float(np.corrcoef(critic[inside], on_critic)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample-rate", type=int, default=22050)
    args = parser.parse_args()

    data = TransitionDataset(args.data, "test")
    mixer = DifferentiableMixer(MixerConfig(sample_rate=args.sample_rate))
    critic_config, heard_config = CriticConfig(), HeardConfig()
    rng = np.random.default_rng(args.seed)
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    for pair in dataset_pairs(data, pick_rows(data, args.pairs, args.seed), args.sample_rate,
                              AnalysisCache()):
        n_frames = pair.policy.shape[0]
        for method, curves in (("policy", pair.policy), ("crossfade", linear_crossfade(n_frames)),
                               ("random", random_curves(rng, n_frames))):
            with torch.no_grad():
                mix = mixer(torch.as_tensor(pair.stems_a)[None],
                            torch.as_tensor(pair.stems_b)[None], torch.as_tensor(curves)[None],
                            sample_rate=args.sample_rate)[0].numpy()
            times, loudness = short_term_loudness(mix, args.sample_rate, critic_config)
            line = np.interp(times, times[[0, -1]], loudness[[0, -1]])
            f = pair.features
            heard = HeardMix.of(torch.as_tensor(curves)[None], f.band_db, f.trim_db,
                                f.track_a.bpm)
            st, valid = heard.short_term_loudness(heard_config)
            deviation, _ = heard.loudness_deviation(heard_config)
            error, correlation = compare(times, loudness, st[0][valid[0]].numpy(),
                                         float(heard.frame_s[0]), heard_config.short_term_s)
            rows.setdefault(method, []).append(
                (error, correlation, float(np.abs(loudness - line).max()),
                 float(deviation.max())))
        print(f"{pair.name}: " + ", ".join(f"{m} {r[-1][2]:.1f}/{r[-1][3]:.1f} LU"
                                             for m, r in rows.items()), flush=True)

    print(f"\n{len(rows['policy'])} held-out pairs of {args.data}; short-term loudness, "
          "critic (rendered) against heard (mel spectra); medians over pairs")
    print("| curves | mean abs difference (LU, offset removed) | correlation "
          "| largest deviation: critic | heard |")
    print("| --- | --- | --- | --- | --- |")
    for method, values in rows.items():
        v = np.median(np.array(values), axis=0)
        print(f"| {method} | {v[0]:.2f} | {v[1]:.3f} | {v[2]:.2f} | {v[3]:.2f} |")
    every = np.array([r for values in rows.values() for r in values])
    rho = scipy.stats.spearmanr(every[:, 2], every[:, 3]).statistic
    print(f"largest deviation, every pair and method: Spearman {rho:.3f}")

    batch = data.sample(np.random.default_rng(0), 16)
    curves = batch.curves.clone().requires_grad_(True)
    times = []
    for _ in range(6):
        start = time.perf_counter()
        audio_loss(curves, batch.band_db, batch.trim_db, batch.track_a.bpm,
                   heard_config).mean().backward()
        times.append(time.perf_counter() - start)
    frames = batch.band_db.shape[-1]
    print(f"loss, forward and backward, batch of 16 ({frames} frames): "
          f"median {1000 * np.median(times[1:]):.0f} ms ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
