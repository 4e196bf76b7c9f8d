"""Sampling speed of the transition model (untrained weights: speed does not depend on them).

    .venv/bin/python bench/sampling.py [--repeats 3] [--devices cpu cuda]

For the base and small configs, with 1 and 2 torch threads on this CPU (and on CUDA when there
is one): the conditioning encoder for a pair (32 bars of each track), one guided denoiser step,
whole DDIM generations with classifier-free guidance in 50, 25 and 10 steps, and training
throughput (AdamW steps of batch 32 at 16 bars). Medians over the repeats. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import TrackFeatures, create_model, get_config  # noqa: E402

FRAMES = 32 * 16  # 32 bars of features at four frames per beat
TRAIN_FRAMES = 16 * 16  # training throughput at 16 bars, the median transition length
TRAIN_BATCH = 32


def features(device: str, batch: int = 1, frames: int = FRAMES) -> TrackFeatures:
    return TrackFeatures(
        stem_mels=torch.rand(batch, 4, 128, frames), structure=F.one_hot(
            torch.randint(0, 6, (batch, frames)), 6).float(),
        beats=torch.zeros(batch, frames), downbeats=torch.zeros(batch, frames),
        bpm=torch.full((batch, 1), 126.0),
        key=F.one_hot(torch.full((batch,), 3), 24).float(),
        energy=torch.rand(batch, frames)).to(device)


def training_throughput(model: torch.nn.Module, device: str, repeats: int) -> float:
    """Examples per second of AdamW training steps (forward, backward, update)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    a, b = (features(device, TRAIN_BATCH, TRAIN_FRAMES) for _ in range(2))
    curves = torch.rand(TRAIN_BATCH, 128, 52, device=device)

    def step() -> None:
        optimizer.zero_grad()
        model.loss(curves, a, b).backward()
        optimizer.step()

    seconds = median_time(step, repeats, device)
    model.eval()
    return TRAIN_BATCH / seconds


def median_time(fn, repeats: int, device: str) -> float:
    times = []
    for _ in range(repeats + 1):  # the first run warms up and is not counted
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", nargs="+", choices=("cpu", "cuda"), default=["cpu", "cuda"],
                        help="where to time (cuda only where there is one)")
    args = parser.parse_args()
    runs = [("cpu", threads) for threads in (1, 2) if "cpu" in args.devices]
    if torch.cuda.is_available() and "cuda" in args.devices:
        runs.append(("cuda", torch.get_num_threads()))
    results: dict[str, float] = {}
    for name in ("base", "small"):
        model = create_model(get_config(name)).eval()
        results[f"{name}_params"] = sum(p.numel() for p in model.parameters())
        for device, threads in runs:
            torch.set_num_threads(threads)
            model.to(device)
            a, b = features(device), features(device)
            with torch.no_grad():
                cond = model.condition(a, b)
                x = torch.randn(2, 128, 52, device=device)
                t = torch.full((2,), 500, device=device)
                both = torch.cat([cond, model.null_condition.expand_as(cond)])
                encoder = median_time(lambda: model.condition(a, b), args.repeats, device)
                step = median_time(lambda: model.denoiser(x, t, both), args.repeats, device)
                full = {steps: median_time(lambda s=steps: model.generate(a, b, steps=s, seed=0),
                                           args.repeats, device) for steps in (50, 25, 10)}
            tag = f"{device}{threads}" if device == "cpu" else device
            print(f"{name:5} {tag:5} encoder {encoder * 1e3:7.1f} ms  guided step "
                  f"{step * 1e3:6.1f} ms  CFG 50/25/10 steps {full[50]:.2f} / {full[25]:.2f} / "
                  f"{full[10]:.2f} s", flush=True)
            train_rate = training_throughput(model, device, args.repeats)
            print(f"{name:5} {tag:5} training {train_rate:6.1f} examples/s (batch {TRAIN_BATCH},"
                  f" 16 bars)", flush=True)
            results[f"{name}_train_examples_per_s_{tag}"] = round(train_rate, 1)
            for steps, seconds in full.items():
                results[f"{name}_cfg{steps}_s_{tag}"] = round(seconds, 4)
            results[f"{name}_encoder_ms_{tag}"] = round(encoder * 1e3, 2)
            results[f"{name}_step_ms_{tag}"] = round(step * 1e3, 2)
        model.to("cpu")
    for name in ("base", "small"):
        if "cpu" in args.devices:
            results[f"{name}_cfg50_s"] = min(results[f"{name}_cfg50_s_cpu{n}"] for n in (1, 2))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
