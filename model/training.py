"""Training: DDPM on a transition dataset, with EMA weights, checkpoints and exact resumption.

    python -m model.training --data DIR --output DIR --steps N [--config small] [--resume FILE]
    python -m model.training --output DIR --steps N     # no data: builds one from generated tracks
    python -m model.training --init CHECKPOINT --data DIR --output DIR --steps N  # fine-tuning,
        # e.g. on the engine's performer log (engine.performer_log), in the checkpoint's config
    python -m model.training ... --audio-weight 0.2   # beside the diffusion loss, one on the
        # sound of the predicted curves through the mixer (model.heard)

The output folder receives ``resume.pt`` (everything needed to continue: model, EMA, optimizer,
scheduler, step, random states; read with ``torch.load(weights_only=True)``), ``best.safetensors``
(the EMA weights with the lowest validation loss so far, or the lowest training loss when the
dataset has no test split: its notes and the log name the loss, ``val_loss`` or ``train_loss``),
``last.safetensors`` and ``log.jsonl`` (the losses: with a test split, the diffusion and audio
losses apart, ``val_diffusion`` and ``val_audio``, and ``val_loss``, their sum at the run's
audio weight, which picks the best). ``--export FILE`` writes the best weights in
fp16 with the command, data and losses recorded in the file's metadata and in a JSON file beside
it.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import load_model, load_weights, read_checkpoint, save_model
from .config import Config, HeardConfig, TrainConfig, get_config
from .data import Batch, DatasetError, TransitionDataset, build_dataset, generate_tracks
from .device import autocast_dtype, pick_device
from .heard import audio_loss
from .model import TransitionDiffusion

VALIDATION_SEED = 1234
# Validation batches are drawn once, from this many examples at most, and scored with fixed
# noise, so that successive checkpoints are compared on the same draws.
VALIDATION_EXAMPLES = 256
CALIBRATION_STEPS = 20  # steps timed to fit a run into --minutes (after as many to warm up)
# The loss the best checkpoint was picked by, as log records and exported records name it.
BEST_KEYS = ("best_val_loss", "best_train_loss")


def generated_dataset(root: Path, tracks: int = 24, seed: int = 0) -> Path:
    """A dataset built from ``tracks`` generated tracks under ``root`` (reused when present)."""
    data = root / "data"
    if not (data / "manifest.json").is_file():
        paths = generate_tracks(root / "generated_tracks", tracks, seed=seed)
        build_dataset(paths, data, seed=seed)
    return data


class EMA:
    """Exponential moving average of a model's floating-point weights (what gets shipped)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        # Warm-up (as in timm/diffusers): early on the average must not remember random weights.
        decay = min(self.decay, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].lerp_(v.detach(), 1 - decay)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.shadow)


def lr_lambda(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


@torch.no_grad()
def validation_loss(model: TransitionDiffusion, batches: list, device: torch.device,
                    train: TrainConfig | None = None) -> dict[str, float]:
    """Mean losses over fixed batches with fixed noise and no condition dropout: "diffusion",
    "audio" where every track's loudness is known (model.heard, computed at any weight, so that
    runs with and without it compare), and "total", the diffusion loss plus the audio loss at
    ``train``'s weight, which picks the best checkpoint."""
    train = train or TrainConfig()
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    count = 0
    heard = all(b.band_db is not None for b in batches)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(VALIDATION_SEED)
        for b in batches:
            audio = audio_penalty(b, device, train.heard) if heard else None
            terms = model.losses(b.curves.to(device), b.track_a.to(device),
                                 b.track_b.to(device), condition_dropout=0.0, audio=audio)
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value) * b.curves.shape[0]
            count += b.curves.shape[0]
    model.train(was_training)
    losses = {name: total / max(count, 1) for name, total in sums.items()}
    losses["total"] = losses.get("diffusion", 0.0) + train.audio_weight * losses.get("audio", 0.0)
    return losses


def audio_penalty(batch: Batch, device: torch.device, heard: HeardConfig
                  ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model.heard.audio_loss`` of a batch's pairs, as ``TransitionDiffusion.losses`` takes it."""
    if batch.band_db is None:
        raise DatasetError("the audio loss needs each track's loudness and band levels, which "
                           "this dataset lacks (built before they were recorded): rebuild it "
                           "with python -m model.data")
    band_db, trim_db = batch.band_db.to(device), batch.trim_db.to(device)
    bpm = batch.track_a.bpm.to(device)
    return lambda curves: audio_loss(curves, band_db, trim_db, bpm, heard)


def _validation_batches(data: Path, batch_size: int) -> list:
    try:
        test = TransitionDataset(data, "test")
    except DatasetError:
        return []
    if len(test) == 0:
        return []
    rng = np.random.default_rng(VALIDATION_SEED)
    keep = np.sort(rng.permutation(len(test))[:VALIDATION_EXAMPLES])
    test.examples = {k: v[keep] for k, v in test.examples.items()}
    return test.batches(batch_size)


def train(data_path: Path | str | None = None, output_dir: Path | str = "runs/transition",
          config: Config | None = None, steps: int | None = None,
          resume: Path | str | None = None, device: str | None = None,
          progress: bool = True, init: Path | str | None = None,
          minutes: float | None = None) -> Path:
    """Train a model; returns the path of the best (EMA) checkpoint.

    Without ``data_path`` a dataset is built from generated tracks inside ``output_dir``.
    ``resume`` continues a run from its ``resume.pt`` exactly where it stopped (same batches,
    noise, learning rate and EMA as if it had never stopped); ``steps`` is the run's total.
    ``init`` starts a new run from a checkpoint's weights (fine-tuning); parameters the
    checkpoint lacks keep their initialisation and are listed in the log.
    ``minutes``: a wall-clock budget (a lent GPU's lease, a session). After ``CALIBRATION_STEPS``
    the run's total becomes the steps that fit in it at the measured rate (never more than
    ``steps``), so the learning rate still decays to its end; the log records the new total.
    """
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    state = None
    if resume is not None:
        state = _read_resume(Path(resume))
        config = Config.model_validate_json(state["config"])
    config = config or get_config()
    if steps is not None:
        config = config.model_copy(update={"train": config.train.model_copy(
            update={"steps": steps})})
    tc: TrainConfig = config.train
    if minutes is not None and tc.steps <= 2 * CALIBRATION_STEPS:
        minutes = None  # too short a run to time
    data = Path(data_path) if data_path is not None else generated_dataset(output, seed=tc.seed)
    dataset = TransitionDataset(data, "train")
    validation = _validation_batches(data, tc.batch_size)
    dev = pick_device(device)
    amp = autocast_dtype(dev)

    torch.manual_seed(tc.seed)
    model = TransitionDiffusion(config)
    fresh = load_weights(model, init, strict=False) if init is not None and state is None else None
    model = model.to(dev).train()
    ema = EMA(model, tc.ema_decay)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.learning_rate,
                                  weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(tc.warmup_steps, tc.steps))
    rng = np.random.default_rng(tc.seed)
    step, best = 0, math.inf
    if state is not None:
        model.load_state_dict(state["model"])
        ema.shadow = {k: v.to(dev) for k, v in state["ema"].items()}
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, best = int(state["step"]), float(state["best"])
        rng.bit_generator.state = json.loads(state["numpy_rng"])
        torch.set_rng_state(state["torch_rng"])
        if dev.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"])

    log = (output / "log.jsonl").open("a")
    log.write(json.dumps({"device": device_name(dev)}) + "\n")  # where each stage ran
    if fresh is not None:
        log.write(json.dumps({"init": str(init), "new_parameters": fresh}) + "\n")
    bar = tqdm(total=tc.steps, initial=step, disable=not progress, desc="training",
               dynamic_ncols=True)
    smooth = None
    started = time.perf_counter()
    clock = 0.0  # when the timed steps began: the first ones compile and warm caches
    for step in range(step, tc.steps):
        if minutes is not None and state is None and step == CALIBRATION_STEPS:
            clock = time.perf_counter()
        elif minutes is not None and state is None and step == 2 * CALIBRATION_STEPS:
            rate = CALIBRATION_STEPS / (time.perf_counter() - clock)
            left = minutes * 60.0 - (time.perf_counter() - started)
            total = max(step + 1, min(tc.steps, step + int(rate * left)))
            config = config.model_copy(update={"train": tc.model_copy(update={"steps": total})})
            tc = config.train
            scheduler.lr_lambdas = [lr_lambda(tc.warmup_steps, total)]
            bar.total = total
            log.write(json.dumps({"minutes": minutes, "steps_per_s": round(rate, 3),
                                  "steps": total}) + "\n")
        if step >= tc.steps:
            break
        batch = dataset.sample(rng, tc.batch_size)
        audio = audio_penalty(batch, dev, tc.heard) if tc.audio_weight > 0 else None
        with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
            terms = model.losses(batch.curves.to(dev), batch.track_a.to(dev),
                                 batch.track_b.to(dev), audio=audio)
        loss = terms["diffusion"] + tc.audio_weight * terms.get("audio", 0.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        ema.update(model, step)
        value = float(loss.detach())
        smooth = value if smooth is None else 0.98 * smooth + 0.02 * value
        bar.update(1)
        bar.set_postfix(loss=f"{smooth:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}",
                        **({"audio": f"{float(terms['audio'].detach()):.4f}"} if audio else {}))
        done = step + 1
        if done % tc.checkpoint_every == 0 or done == tc.steps:
            best = _checkpoint(output, model, ema, optimizer, scheduler, rng, done, best,
                               validation, dev, config, smooth, log, started)
    bar.close()
    log.close()
    return output / "best.safetensors"


def _checkpoint(output: Path, model: TransitionDiffusion, ema: EMA, optimizer, scheduler,
                rng: np.random.Generator, step: int, best: float, validation: list,
                device: torch.device, config: Config, train_loss: float, log,
                started: float) -> float:
    """Validate the EMA weights, keep the best, and write everything a resume needs."""
    live = {k: v.clone() for k, v in model.state_dict().items()}
    ema.copy_to(model)
    # Without a test split the best weights can only be picked by the (smoothed) training loss,
    # and the notes and the log say so rather than call it a validation loss.
    name = "val_loss" if validation else "train_loss"
    parts = validation_loss(model, validation, device, config.train) if validation else {}
    loss = parts["total"] if validation else train_loss
    save_model(model, output / "last.safetensors")
    if loss < best:
        best = loss
        save_model(model, output / "best.safetensors",
                   notes={"step": str(step), "selected_by": name, name: f"{loss:.5f}"})
    model.load_state_dict(live)
    resume = {"model": model.state_dict(), "ema": ema.shadow, "optimizer": optimizer.state_dict(),
              "scheduler": scheduler.state_dict(), "step": step, "best": best,
              "numpy_rng": json.dumps(rng.bit_generator.state),
              "torch_rng": torch.get_rng_state(), "config": config.model_dump_json()}
    if device.type == "cuda":
        resume["cuda_rng"] = torch.cuda.get_rng_state()
    tmp = output / "resume.pt.tmp"
    torch.save(resume, tmp)
    tmp.replace(output / "resume.pt")
    losses = {"train_loss": round(train_loss, 5), name: round(loss, 5),
              f"best_{name}": round(best, 5),
              **{f"val_{k}": round(v, 5) for k, v in parts.items() if k != "total"}}
    log.write(json.dumps({"step": step, **losses, "lr": scheduler.get_last_lr()[0],
                          "seconds": round(time.perf_counter() - started, 1)}) + "\n")
    log.flush()
    return best


def _read_resume(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such resume file")
    try:
        # weights_only: a resume file is tensors and plain values; it never runs code.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise ValueError(f"{path}: not a training resume file ({err})") from None
    missing = {"model", "ema", "optimizer", "scheduler", "step", "config"} - set(state)
    if missing:
        raise ValueError(f"{path}: resume file without {sorted(missing)}")
    return state


def _best_key(record: dict) -> str:
    """Which best loss a log record holds (runs with a test split, and all earlier runs, logged
    ``best_val_loss``)."""
    return next(k for k in BEST_KEYS if k in record)


def device_name(device: torch.device) -> str:
    """The device a run trained on, as its log records it ("cuda: NVIDIA H200", "cpu")."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return device.type


def export(run_dir: Path, target: Path, data: Path | None = None) -> Path:
    """The run's best weights in fp16 at ``target``, with how they were made beside them
    (the commands, the dataset's size and how it was built, the losses)."""
    model = load_model(run_dir / "best.safetensors")
    lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    records = [r for r in lines if "step" in r]
    commands = (run_dir / "commands.txt").read_text().strip()
    selected = _best_key(records[-1])
    best = min((r for r in records if selected in r), key=lambda r: r[selected])
    notes = {"command": commands, "steps": str(records[-1]["step"]),
             "final_train_loss": str(records[-1]["train_loss"]),
             selected: str(best[selected])}
    devices = sorted({r["device"] for r in lines if "device" in r})
    if devices:
        notes["device"] = ", ".join(devices)
    init = [Path(r["init"]) for r in lines if "init" in r]
    if init:  # a fine-tuned model: how its starting weights were made too
        made = init[0].with_suffix(".json")
        prior = json.loads(made.read_text()) if made.is_file() else {}
        notes["init"] = json.dumps({"path": str(init[0]), **{
            k: prior[k] for k in ("command", "steps", *BEST_KEYS, "device", "init")
            if k in prior}})
    data = data if data is not None else run_dir / "data"
    manifest = json.loads((data / "manifest.json").read_text())
    dataset = {"path": str(data), "command": manifest.get("command", ""),
               "tracks": len(manifest["tracks"]),
               "test_tracks": sum(t["split"] == "test" for t in manifest["tracks"]),
               "transitions": manifest["n_examples"], "targets": manifest["targets"],
               "settings": manifest["settings"]}
    notes["data"] = json.dumps(dataset)
    save_model(model, target, half=True, notes=notes)
    target.with_suffix(".json").write_text(json.dumps(
        {**notes, "data": dataset, **({"init": json.loads(notes["init"])} if init else {}),
         "config": json.loads(model.config.model_dump_json()),
         "log": records}, indent=1))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the transition model.")
    parser.add_argument("--data", type=Path, help="dataset folder (python -m model.data); "
                        "without it one is built from generated tracks")
    parser.add_argument("--output", type=Path, default=Path("runs/transition"))
    parser.add_argument("--config", help="named model config: base or small (default: base, "
                        "or with --init the checkpoint's own)")
    parser.add_argument("--steps", type=int, help="total training steps of the run")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--warmup", type=int, help="learning-rate warm-up steps")
    parser.add_argument("--checkpoint-every", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--audio-weight", type=float, help="weight of the audio-domain loss "
                        "(model.heard: loudness line, holes, clashes, unfinished hand-over); "
                        "0: off")
    parser.add_argument("--heard", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting of the audio-domain loss (model.config.HeardConfig), "
                        "e.g. loudness_free_lu=0.5; repeatable")
    parser.add_argument("--resume", type=Path, help="resume.pt of a run to continue")
    parser.add_argument("--init", type=Path, help="start from this checkpoint's weights "
                        "(fine-tuning; a model that gained parameters keeps them as initialised)")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--export", type=Path, help="write the best weights here, fp16")
    parser.add_argument("--minutes", type=float, help="wall-clock budget: the run's steps "
                        "become what fits in it (at most --steps)")
    args = parser.parse_args(argv)
    try:
        # Fine-tuning keeps the checkpoint's architecture unless another is named.
        config = read_checkpoint(args.init)[0] if args.init and not args.config \
            else get_config(args.config or "base")
        updates = {k: v for k, v in (("batch_size", args.batch_size), ("learning_rate", args.lr),
                                     ("warmup_steps", args.warmup),
                                     ("checkpoint_every", args.checkpoint_every),
                                     ("seed", args.seed), ("audio_weight", args.audio_weight))
                   if v is not None}
        if args.heard:
            settings = dict(item.split("=", 1) for item in args.heard if "=" in item)
            if len(settings) != len(args.heard):
                raise ValueError(f"--heard takes NAME=VALUE, got {args.heard}")
            updates["heard"] = HeardConfig.model_validate(
                {**config.train.heard.model_dump(), **settings})
        config = config.model_copy(update={"train": config.train.model_copy(update=updates)})
        args.output.mkdir(parents=True, exist_ok=True)
        with (args.output / "commands.txt").open("a") as f:  # every stage of the run
            f.write("python -m model.training " + shlex.join(argv or sys.argv[1:]) + "\n")
        train(args.data, args.output, config, steps=args.steps, resume=args.resume,
              device=args.device, init=args.init, minutes=args.minutes)
        if args.export:
            export(args.output, args.export, args.data)
    except (DatasetError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
