"""Mixer speed: the streaming mixer per audio block, the output limiter per block, the
differentiable mixer's throughput.

    .venv/bin/python bench/mixer.py [--seconds 20] [--diff-seconds 10]

Streaming: two decks of four stereo stems, every EQ and filter engaged, the reverb open, and a
new parameter frame every block (a random walk, as in a transition), so every block redesigns
all 40 biquads. Pinned to one core. Prints median and p99 time per block and their real-time
factor (time / block duration). Limiter (engine.limiter, after the mixer in the engine):
256-frame blocks of noise at +6 dBFS (limiting all the time, its dearest case) and at -20 dBFS
(transparent), the median over repeats of each repeat's median. Differentiable: seconds of
audio mixed per second of wall time, forward only and forward + backward, at torch's default
thread count.
The last line is JSON with stable names.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from effects import DifferentiableMixer, MixerConfig, StreamingMixer  # noqa: E402
from effects import params as P  # noqa: E402
from engine.limiter import Limiter  # noqa: E402

BLOCKS = (128, 256, 512, 1024)


def busy_frame(rng: np.random.Generator) -> np.ndarray:
    frame = rng.uniform(0.2, 0.8, P.N_PARAMS).astype(np.float32)
    frame[P.REVERB_WET] = 0.6
    frame[P.CROSSFADER] = 0.5
    return frame


def bench_streaming(block: int, seconds: float, sample_rate: int) -> dict[str, float]:
    rng = np.random.default_rng(block)
    mixer = StreamingMixer(MixerConfig(sample_rate=sample_rate), max_block=block)
    stems = (rng.standard_normal((2, 4, 2, sample_rate)) * 0.1).astype(np.float32)
    out = np.empty((2, block), dtype=np.float32)
    frame = busy_frame(rng)
    n_blocks = int(seconds * sample_rate / block)
    times = np.empty(n_blocks)
    offsets = rng.integers(0, sample_rate - block, n_blocks)
    steps = rng.normal(0.0, 0.01, (n_blocks, P.N_PARAMS)).astype(np.float32)
    for k in range(-200, n_blocks):  # the first 200 blocks warm caches and are not counted
        frame = np.clip(frame + steps[k], 0.05, 0.95)
        frame[P.REVERB_WET] = 0.6
        o = offsets[k]
        t0 = time.perf_counter()
        mixer.process(stems[0, ..., o:o + block], stems[1, ..., o:o + block], frame, out)
        if k >= 0:
            times[k] = time.perf_counter() - t0
    period = block / sample_rate
    return {"median_us": float(np.median(times) * 1e6),
            "p99_us": float(np.percentile(times, 99) * 1e6),
            "rtf_median": float(np.median(times) / period),
            "rtf_p99": float(np.percentile(times, 99) / period)}


def bench_limiter(block: int, level: float, sample_rate: int, repeats: int = 7,
                  blocks: int = 400) -> float:
    """Median over ``repeats`` of the median time (s) the limiter takes for a block of noise at
    ``level`` (RMS), continuing from block to block as in the engine."""
    rng = np.random.default_rng(0)
    limiter = Limiter(sample_rate)
    audio = (rng.standard_normal((blocks, 2, block)) * level).astype(np.float32)
    out = np.empty((2, block), dtype=np.float32)
    for k in range(50):  # warm caches and the gain state
        limiter.process(audio[k], out)
    medians = []
    for _ in range(repeats):
        times = np.empty(blocks)
        for k in range(blocks):
            t0 = time.perf_counter()
            limiter.process(audio[k], out)
            times[k] = time.perf_counter() - t0
        medians.append(np.median(times))
    return float(np.median(medians))


def bench_differentiable(seconds: float, sample_rate: int, backward: bool) -> float:
    torch.manual_seed(0)
    mixer = DifferentiableMixer(MixerConfig(sample_rate=sample_rate))
    n = int(seconds * sample_rate)
    a, b = torch.randn(1, 4, 2, n) * 0.1, torch.randn(1, 4, 2, n) * 0.1
    curves = torch.rand(1, 128, P.N_PARAMS) * 0.6 + 0.2
    runs = []
    for _ in range(3):
        p = curves.clone().requires_grad_(backward)
        t0 = time.perf_counter()
        with torch.set_grad_enabled(backward):
            out = mixer(a, b, p)
            if backward:
                out.square().mean().backward()
        runs.append(time.perf_counter() - t0)
    return seconds / float(np.median(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per block size")
    parser.add_argument("--diff-seconds", type=float, default=10.0,
                        help="signal length for the differentiable mixer")
    parser.add_argument("--sample-rate", type=int, default=44100)
    args = parser.parse_args()

    results: dict[str, float] = {}
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(affinity)})
    print(f"streaming mixer, 2 decks x 4 stereo stems, all effects, moving parameters, "
          f"{args.sample_rate} Hz, one core")
    print(f"{'block':>6} {'median us':>10} {'p99 us':>9} {'rtf median':>11} {'rtf p99':>8}")
    for block in BLOCKS:
        r = bench_streaming(block, args.seconds, args.sample_rate)
        print(f"{block:>6} {r['median_us']:>10.1f} {r['p99_us']:>9.1f} {r['rtf_median']:>11.4f} "
              f"{r['rtf_p99']:>8.4f}")
        results[f"streaming_rtf_{block}_median"] = round(r["rtf_median"], 5)
        results[f"streaming_rtf_{block}_p99"] = round(r["rtf_p99"], 5)
    block = 256
    period = block / args.sample_rate
    for name, level in (("hot", 2.0), ("quiet", 0.1)):
        seconds = bench_limiter(block, level, args.sample_rate)
        print(f"limiter, {block} frames, {name} ({20 * np.log10(level):+.0f} dBFS RMS): "
              f"{seconds * 1e6:.1f} us median, {seconds / period:.2%} of the block")
        results[f"limiter_{block}_{name}_us"] = round(seconds * 1e6, 2)
        results[f"limiter_rtf_{block}_{name}"] = round(seconds / period, 5)
    os.sched_setaffinity(0, affinity)

    forward = bench_differentiable(args.diff_seconds, args.sample_rate, backward=False)
    train = bench_differentiable(args.diff_seconds, args.sample_rate, backward=True)
    print(f"differentiable mixer, {args.diff_seconds:g} s signal, 128 curve frames, "
          f"{torch.get_num_threads()} torch threads, CPU: {forward:.2f} audio s/s forward, "
          f"{train:.2f} audio s/s forward+backward")
    results["differentiable_audio_s_per_s"] = round(forward, 3)
    results["differentiable_train_audio_s_per_s"] = round(train, 3)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
