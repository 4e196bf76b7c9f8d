"""Curves fitted from mixes with known curves: how close fitting.fit gets, and how fast.

    .venv/bin/python bench/fit.py [--styles blend,filter,echo_out,cut] [--stems-only]

For each policy style, a known mix (fitting.fit_check.render_known_mix: two generated tracks, deck
B at 127 BPM played at deck A's 124, a few bars either side of the transition, rendered by
DifferentiableMixer at 44.1 kHz) is fitted from the mix and the two tracks, twice: given the
tracks' true stems (as from folders of stems: the fitter's own accuracy), and given each track
as one file, separated by the built-in DSP separator (what separation costs). The fitted curves
are compared with the true ones where each parameter can be heard (fitting.fit_check). Errors are
pooled over the transitions (RMS of every compared value); the fit time is the median per
transition at torch's thread count. The last line is JSON: fit_gain_rms (stem gains and
crossfader), fit_crossfader_rms, fit_eq_db, fit_filter_octaves, fit_seconds, align_error_ms (the
worst deck offset error), for true stems, and the same with a dsp_ prefix.
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

from fitting.fit import FitConfig, fit_mix  # noqa: E402
from fitting.fit_check import analysed, recovery_errors, render_known_mix  # noqa: E402

# Transition lengths: the policy's shorter choice for each style.
BARS = {"blend": 16, "filter": 8, "echo_out": 8, "cut": 4}


def run(styles: list[str], config: FitConfig, seed: int, separator: str | None) -> dict:
    """Fit one known mix per style; pooled errors, median fit time, worst alignment error."""
    print(f"fit: {config.steps} steps at {config.sample_rate} Hz, "
          f"{'DSP-separated stems' if separator else 'true stems'}, "
          f"{torch.get_num_threads()} torch threads")
    print(f"{'style':9} {'bars':>4} {'gain rms':>8} {'xfade rms':>9} {'EQ dB':>6} "
          f"{'filter oct':>10} {'band err dB':>11} {'align ms':>8} {'fit s':>6}")
    pooled: dict[str, list[tuple[float, int]]] = {}
    seconds, align_ms = [], []
    for i, style in enumerate(styles):
        known = render_known_mix(seed + 10 * i, style, BARS[style])
        tracks = [analysed(t, separator) for t in (known.track_a, known.track_b)]
        t0 = time.perf_counter()
        fitted = fit_mix(known.mix, known.sample_rate, *tracks, config=config)
        seconds.append(time.perf_counter() - t0)
        at_a, at_b = fitted.alignments
        # Deck A starts at 0; deck B's cue (its first sample) at the transition's start.
        error = max(abs(at_a.offset), abs(at_b.offset - known.start)) * 1e3
        align_ms.append(error)
        errors = recovery_errors(known, fitted.fit.curves, fitted.placement.start,
                                 fitted.placement.end, config)
        for key, name in (("gain_rms", "gain"), ("crossfader_rms", "crossfader"),
                          ("eq_db", "eq"), ("filter_octaves", "filter")):
            count = errors["compared"]["gain"] + errors["compared"]["crossfader"] if (
                key == "gain_rms") else errors["compared"][name]
            pooled.setdefault(key, []).append((errors[key], count))
        print(f"{style:9} {known.bars:>4} {errors['gain_rms']:>8.3f} "
              f"{errors['crossfader_rms']:>9.3f} {errors['eq_db']:>6.2f} "
              f"{errors['filter_octaves']:>10.3f} {fitted.fit.loss_db:>11.2f} {error:>8.2f} "
              f"{seconds[-1]:>6.1f}")

    def pool(key: str) -> float:
        values = np.array(pooled[key])
        weights = values[:, 1] / max(values[:, 1].sum(), 1)
        return round(float(np.sqrt((values[:, 0] ** 2 * weights).sum())), 4)

    return {"fit_gain_rms": pool("gain_rms"), "fit_crossfader_rms": pool("crossfader_rms"),
            "fit_eq_db": pool("eq_db"), "fit_filter_octaves": pool("filter_octaves"),
            "fit_seconds": round(float(np.median(seconds)), 1),
            "align_error_ms": round(float(max(align_ms)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", default="blend,filter,echo_out,cut")
    parser.add_argument("--steps", type=int, default=FitConfig().steps)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stems-only", action="store_true",
                        help="skip the fit from DSP-separated stems")
    args = parser.parse_args()
    config = FitConfig(steps=args.steps)
    styles = args.styles.split(",")
    result = run(styles, config, args.seed, separator=None)
    if not args.stems_only:
        dsp = run(styles, config, args.seed, separator="dsp")
        result.update({f"dsp_{key}": value for key, value in dsp.items()})
    print("targets: gain and crossfader 0.05 RMS, EQ 1.5 dB, filters 0.333 octave")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
