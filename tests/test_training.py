"""The dataset builder and the training loop: format, splits, resumption, export, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from analysis.cache import AnalysisCache
from model import TransitionDiffusion, load_model
from model.checkpoint import DEFAULT_CHECKPOINT, save_model
from model.config import Config, ModelConfig, TrainConfig
from model.data import (FRAMES_PER_BAR, DatasetError, TransitionDataset, build_dataset,
                        generate_tracks)
from model.policy import PHRASE_BARS
from model.training import main as train_main
from model.training import export, train

TINY = Config(model=ModelConfig(audio_embed_dim=16, condition_dim=16, hidden_dim=16, n_layers=1,
                                n_heads=2, mel_layers=1, metadata_dim=8),
              train=TrainConfig(batch_size=4, steps=4, warmup_steps=2, checkpoint_every=2))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple:
    root = tmp_path_factory.mktemp("data")
    tracks = generate_tracks(root / "tracks", 5, seed=3, lengths=(32,))
    corrupt = root / "tracks" / "broken.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    messages: list[str] = []
    out = build_dataset([*tracks, corrupt], root / "ds", partners=4, transitions_per_pair=3,
                        holdout=0.4, cache=AnalysisCache(root / "cache"), log=messages.append)
    return out, messages


def test_the_builder_writes_examples_the_dataset_reads(dataset):
    root, messages = dataset
    assert any("broken.wav" in m and m.startswith("skipping") for m in messages)
    manifest = json.loads((root / "manifest.json").read_text())
    assert len(manifest["tracks"]) == 5
    assert {t["split"] for t in manifest["tracks"]} == {"train", "test"}
    train_set, test_set = TransitionDataset(root, "train"), TransitionDataset(root, "test")
    assert len(train_set) + len(test_set) == manifest["n_examples"] > 0
    split = {i: t["split"] for i, t in enumerate(manifest["tracks"])}
    for ds in (train_set, test_set):
        pairs = zip(ds.examples["a_track"], ds.examples["b_track"])
        assert all(split[a] == split[b] == ds.split and a != b for a, b in pairs)
    batch = train_set.sample(np.random.default_rng(0), 3)
    frames = int(train_set.examples["bars"][batch.rows[0]]) * FRAMES_PER_BAR
    assert batch.curves.shape == (3, 128, 52)
    assert 0.0 <= float(batch.curves.min()) and float(batch.curves.max()) <= 1.0
    assert batch.track_a.stem_mels.shape == (3, 4, 128, frames)
    assert batch.track_b.structure.shape == (3, frames, 6)
    # Every excerpt starts on a downbeat of its track.
    assert bool((batch.track_a.downbeats[:, 0] == 1).all())
    assert bool((batch.track_b.downbeats[:, 0] == 1).all())


def test_the_bass_swap_follows_deck_b_phrases(dataset):
    root, _ = dataset
    e = TransitionDataset(root, "train").examples
    blends = e["style"] != 3  # the cut swaps anywhere in its second half
    on_phrase = (e["swap_bar"] - e["b_phrase_offset"]) % PHRASE_BARS == 0
    long_enough = e["bars"] >= 16
    assert on_phrase[blends & long_enough].all()
    assert len(set(e["b_phrase_offset"].tolist())) > 1  # B is cued at varying bars


def test_a_missing_or_foreign_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match=str(tmp_path)):
        TransitionDataset(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(DatasetError, match="format 99"):
        TransitionDataset(tmp_path)


def test_resuming_continues_the_same_run_exactly(dataset, tmp_path):
    root, _ = dataset
    straight = tmp_path / "straight"
    train(root, straight, TINY, progress=False, device="cpu")
    split = tmp_path / "split"
    train(root, split, TINY, steps=2, progress=False, device="cpu")
    train(root, split, steps=4, resume=split / "resume.pt", progress=False, device="cpu")
    a = torch.load(straight / "resume.pt", weights_only=True)
    b = torch.load(split / "resume.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for part in ("model", "ema"):
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), (part, name)
    log_a = [json.loads(x) for x in (straight / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (split / "log.jsonl").read_text().splitlines()]
    assert [r["val_loss"] for r in log_a if "step" in r] == [
        r["val_loss"] for r in log_b if "step" in r]
    assert {"device": "cpu"} in log_a  # every stage says where it ran
    # The shipped form: fp16 weights with how they were made, loadable by load_model.
    (straight / "commands.txt").write_text("python -m model.training x\n")
    target = export(straight, tmp_path / "ship" / "t.safetensors", root)
    model = load_model(target)
    record = json.loads(target.with_suffix(".json").read_text())
    assert record["command"] == "python -m model.training x" and record["steps"] == "4"
    assert record["device"] == "cpu"
    assert record["data"]["tracks"] == 5 and record["data"]["transitions"] > 0
    assert model.config.model == TINY.model


def test_the_cli_names_bad_inputs(tmp_path, capsys):
    assert train_main(["--data", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o"),
                       "--steps", "1"]) == 1
    assert "nowhere" in capsys.readouterr().err
    bad = tmp_path / "resume.pt"
    bad.write_bytes(b"not a checkpoint")
    assert train_main(["--resume", str(bad), "--output", str(tmp_path / "o")]) == 1
    assert "resume.pt" in capsys.readouterr().err


def test_fine_tuning_starts_from_a_checkpoint_that_lacks_new_inputs(dataset, tmp_path):
    """A model that gained an input (the phrase position) fine-tunes from weights trained
    without it; the log and the exported file say where the weights came from."""
    from safetensors.torch import load_file, save_file

    root, _ = dataset
    torch.manual_seed(1)
    old = TransitionDiffusion(TINY)
    for p in old.parameters():
        torch.nn.init.normal_(p, std=0.02)
    full = save_model(old, tmp_path / "full.safetensors")
    weights = {k: v for k, v in load_file(full).items() if ".metadata.phrase." not in k}
    before = tmp_path / "before.safetensors"
    save_file(weights, before, metadata={"config": TINY.model_dump_json()})
    with pytest.raises(ValueError, match="before.safetensors: weights do not fit"):
        load_model(before)
    run = tmp_path / "run"
    train(root, run, TINY, steps=2, init=before, progress=False, device="cpu")
    first = next(r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())
                 if "init" in r)
    assert sorted(first["new_parameters"]) == ["encoder.metadata.phrase.bias",
                                               "encoder.metadata.phrase.weight"]
    (run / "commands.txt").write_text("python -m model.training --init x\n")
    record = json.loads(export(run, tmp_path / "t.safetensors", root).with_suffix(
        ".json").read_text())
    assert record["init"]["path"] == str(before) and record["steps"] == "2"


def test_without_a_test_split_the_best_is_picked_by_the_training_loss(dataset, tmp_path):
    """No test split: nothing calls the training loss a validation loss (the log, the best
    checkpoint's notes, the export), and an earlier record's ``best_val_loss`` still reads."""
    import shutil

    from safetensors import safe_open

    root, _ = dataset
    only_train = tmp_path / "ds"
    shutil.copytree(root, only_train)
    manifest = json.loads((only_train / "manifest.json").read_text())
    for track in manifest["tracks"]:
        track["split"] = "train"
    (only_train / "manifest.json").write_text(json.dumps(manifest))
    run = tmp_path / "run"
    best = train(only_train, run, TINY, steps=2, progress=False, device="cpu")
    (record,) = [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())
                 if "step" in r]
    assert record["step"] == 2
    assert set(record) >= {"train_loss", "best_train_loss"}
    assert not {"val_loss", "best_val_loss"} & set(record)
    with safe_open(str(best), framework="pt") as f:
        notes = f.metadata()
    assert notes["selected_by"] == "train_loss" and float(notes["train_loss"]) > 0
    assert "val_loss" not in notes

    # Fine-tuned from the shipped model, whose record (and its own init's) says best_val_loss.
    (run / "log.jsonl").write_text(json.dumps({"init": str(DEFAULT_CHECKPOINT)}) + "\n"
                                   + json.dumps(record) + "\n")
    (run / "commands.txt").write_text("python -m model.training x\n")
    exported = json.loads(export(run, tmp_path / "t.safetensors", only_train).with_suffix(
        ".json").read_text())
    assert exported["best_train_loss"] == str(record["best_train_loss"])
    assert "best_val_loss" not in exported
    shipped = json.loads(DEFAULT_CHECKPOINT.with_suffix(".json").read_text())
    assert exported["init"]["best_val_loss"] == shipped["best_val_loss"]


def test_the_builder_takes_files_and_folders_and_stores_mels_compactly(dataset, tmp_path):
    from model.data import expand_inputs

    root, _ = dataset
    folder = root.parent / "tracks"
    files = sorted(folder.glob("*.flac"))
    assert expand_inputs([folder]) == sorted([*files, folder / "broken.wav"])
    assert expand_inputs([files[1], files[0]]) == [files[1], files[0]]  # as given
    with pytest.raises(DatasetError, match="nowhere.flac: no such file"):
        expand_inputs([tmp_path / "nowhere.flac"])
    with np.load(root / "tracks" / "000.npz") as z:
        assert z["stem_mels"].dtype == np.float16
    batch = TransitionDataset(root, "train").sample(np.random.default_rng(0), 2)
    assert batch.track_a.stem_mels.dtype == torch.float32


@pytest.mark.parametrize("minutes, expected", [(1e-4, 41), (60.0, 50)])
def test_a_time_budget_sets_the_runs_length(dataset, tmp_path, minutes, expected):
    """With --minutes the run's total is what fits at the rate timed after the warm-up steps
    (at least one step more than were timed, never more than --steps), and the learning rate,
    the log and a resume all know it."""
    root, _ = dataset
    config = TINY.model_copy(update={"train": TINY.train.model_copy(
        update={"checkpoint_every": 1000, "warmup_steps": 5})})
    run = tmp_path / "run"
    train(root, run, config, steps=50, progress=False, device="cpu", minutes=minutes)
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    budget = next(r for r in records if "minutes" in r)
    assert budget["minutes"] == minutes and budget["steps"] == expected
    assert budget["steps_per_s"] > 0
    assert records[-1]["step"] == expected
    state = torch.load(run / "resume.pt", weights_only=True)
    assert Config.model_validate_json(state["config"]).train.steps == expected
    if expected < 50:  # the schedule decayed to its floor at the shortened end
        assert records[-1]["lr"] == pytest.approx(0.1 * config.train.learning_rate, rel=1e-3)


def test_the_audio_loss_trains_beside_the_diffusion_loss(dataset, tmp_path):
    """With ``audio_weight`` the run logs both validation terms and picks its best by their
    weighted sum; without it the audio term is still measured, so that runs compare. A dataset
    built before band levels were recorded is a clear error, not a silent run without them."""
    import shutil

    root, _ = dataset
    heard = TINY.model_copy(update={"train": TINY.train.model_copy(update={"audio_weight": 0.5})})
    records = {}
    for name, config in (("with", heard), ("without", TINY)):
        train(root, tmp_path / name, config, progress=False, device="cpu")
        records[name] = [r for r in map(json.loads, (tmp_path / name / "log.jsonl").read_text(
        ).splitlines()) if "step" in r]
    for r in records["with"]:
        assert r["val_audio"] >= 0.0
        assert r["val_loss"] == pytest.approx(r["val_diffusion"] + 0.5 * r["val_audio"], abs=2e-5)
    assert all(r["val_loss"] == r["val_diffusion"] and "val_audio" in r
               for r in records["without"])
    # The audio term changed what the run learned.
    assert records["with"][-1]["val_diffusion"] != records["without"][-1]["val_diffusion"]

    old = tmp_path / "old"
    shutil.copytree(root, old)
    for track in (old / "tracks").glob("*.npz"):
        with np.load(track) as z:
            kept = {k: z[k] for k in z.files if k != "stem_band_db"}
        np.savez_compressed(track, **kept)
    with pytest.raises(DatasetError, match="band levels.*rebuild"):
        train(old, tmp_path / "old_run", heard, progress=False, device="cpu")
