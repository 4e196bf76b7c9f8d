"""Does a trained model read its conditioning? Bass swaps against deck B's phrases, held out.

    python -m model.evaluate --data DIR [--checkpoint FILE] [--samples 4] [--steps 50]

On the test split of a dataset (tracks the model never saw), for each example: sample transitions
for the pair and find where deck B's bass comes in (the bass swap). The policy puts it on a
downbeat of one of deck B's phrase starts, which move with where B was cued, so only a model that
reads B's structure can hit them. The same model given the features of a different deck B (same
length) is the control. Also: how much the curves change with the pair versus with the seed.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from analysis.beats import BEATS_PER_BAR
from effects.params import PARAM_INDEX

from .checkpoint import load_model
from .data import DatasetError, TransitionDataset
from .model import TransitionDiffusion
from .policy import PHRASE_BARS

B_BASS = PARAM_INDEX["b_bass_gain"]


def swap_beat(curves: np.ndarray, bars: int) -> float | None:
    """The beat of the bass swap in curves [frames, 52]: where deck B's bass gain crosses one
    half, plus the half beat by which the policy's one-beat ramp leads its downbeat."""
    gain = curves[:, B_BASS]
    above = np.flatnonzero(gain >= 0.5)
    if above.size == 0 or above[0] == 0:
        return None
    f = above[0]
    frac = (0.5 - gain[f - 1]) / max(gain[f] - gain[f - 1], 1e-6)
    return (f - 1 + frac) * BEATS_PER_BAR * bars / curves.shape[0] + 0.5


def swap_hits(curves: np.ndarray, bars: int, offset: int) -> tuple[bool, bool]:
    """Whether the swap is on a downbeat, and on one of deck B's phrase starts."""
    beat = swap_beat(curves, bars)
    if beat is None:
        return False, False
    tolerance = 0.5 + BEATS_PER_BAR * bars / curves.shape[0] / 2  # half a beat and half a frame
    bar = round(beat / BEATS_PER_BAR)
    on_downbeat = abs(beat - bar * BEATS_PER_BAR) <= tolerance
    return on_downbeat, on_downbeat and (bar - offset) % PHRASE_BARS == 0


def conditioning_report(model: TransitionDiffusion, data: TransitionDataset, samples: int = 4,
                        steps: int = 50, seed: int = 0) -> dict[str, float]:
    """Swap placement of model samples, the policy's targets, and the shuffled-B control."""
    rng = np.random.default_rng(seed)
    hits = {name: [] for name in ("model", "policy", "control")}
    pair_gap, seed_gap = [], []
    for batch in data.batches(16):
        bars = int(data.examples["bars"][batch.rows[0]])
        offsets = data.examples["b_phrase_offset"][batch.rows]
        shuffled = data.batch(rng.permutation(batch.rows))
        runs = {"model": model.generate(batch.track_a, batch.track_b, steps=steps, seed=seed,
                                        n_samples=samples),
                "control": model.generate(batch.track_a, shuffled.track_b, steps=steps,
                                          seed=seed, n_samples=samples)}
        for name, out in runs.items():
            out = out.numpy().reshape(len(batch.rows), samples, *out.shape[1:])
            for curves_of_pair, offset in zip(out, offsets):
                hits[name] += [swap_hits(c, bars, int(offset)) for c in curves_of_pair]
        hits["policy"] += [swap_hits(c, bars, int(o)) for c, o in
                           zip(batch.curves.numpy(), offsets)]
        out = runs["model"].numpy().reshape(len(batch.rows), samples, -1)
        if len(batch.rows) > 1:  # same seed, different pairs vs same pair, different seeds
            pair_gap.append(np.abs(out[1:, 0] - out[:-1, 0]).mean())
        if samples > 1:
            seed_gap.append(np.abs(out[:, 1:] - out[:, :-1]).mean())
    report = {}
    for name, values in hits.items():
        arr = np.array(values, dtype=bool).reshape(-1, 2)
        report[f"{name}_swap_on_downbeat"] = round(float(arr[:, 0].mean()), 3)
        report[f"{name}_swap_on_b_phrase"] = round(float(arr[:, 1].mean()), 3)
    report["curve_change_between_pairs"] = round(float(np.mean(pair_gap)), 4)
    report["curve_change_between_seeds"] = round(float(np.mean(seed_gap)), 4) if seed_gap else 0.0
    report["examples"] = len(data)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset (its test split)")
    parser.add_argument("--checkpoint", type=Path, help="default: the shipped model")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        model = load_model(args.checkpoint)
        data = TransitionDataset(args.data, "test")
    except (DatasetError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    torch.set_grad_enabled(False)
    report = conditioning_report(model, data, args.samples, args.steps, args.seed)
    for name in ("policy", "model", "control"):
        print(f"{name:8} swap on a downbeat {report[f'{name}_swap_on_downbeat']:.0%}, "
              f"on a phrase start of deck B {report[f'{name}_swap_on_b_phrase']:.0%}")
    print(f"mean |change| of the curves: between pairs {report['curve_change_between_pairs']}, "
          f"between seeds {report['curve_change_between_seeds']}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
