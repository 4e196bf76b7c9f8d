"""The evaluation: a tiny real run (analysis, rendering, critic), its table, JSON, plot and README;
vinyl-style deck B; bad input."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from analysis.beats import BeatGrid
from analysis.synth import render_track
from analysis.track import TrackAnalysis
from effects.params import STEMS
from model import TransitionDiffusion
from model.checkpoint import save_model
from model.config import Config, ModelConfig
from evaluation.critic import Critique
from evaluation.evaluate import (METHODS, MARKERS, EvaluationError, excerpt, heard_key, main,
                            mean_pairwise_distance, write_readme)

# A tiny model: the run checks the pipeline, not what a trained model does.
TINY = Config(model=ModelConfig(audio_embed_dim=16, condition_dim=16, hidden_dim=16, n_layers=1,
                                n_heads=2, mel_layers=1, metadata_dim=8))
BEFORE, AFTER = "# A readme\n\nsome text\n", "\n## Next section\nmore text\n"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    return save_model(TransitionDiffusion(TINY), tmp_path_factory.mktemp("ckpt") / "tiny.st")


def stem_folder(root, name: str, **synth) -> str:
    """A generated track as a folder of stems: the analysis skips separation."""
    track = render_track(**synth)
    folder = root / name
    folder.mkdir()
    for stem, audio in zip(STEMS, track.stems):
        sf.write(folder / f"{stem}.flac", audio.T, track.sample_rate, subtype="PCM_16")
    return str(folder)


@pytest.fixture(scope="module")
def run(tmp_path_factory, checkpoint):
    """One tiny evaluation of two given tracks (keys a Camelot wheel apart, so that the policy
    keeps to 16 bars or less and 20-bar tracks hold every transition)."""
    root = tmp_path_factory.mktemp("eval")
    tracks = [stem_folder(root, "a", seed=41, bpm=140.0, tonic=9, mode="minor", bars=20),
              stem_folder(root, "b", seed=42, bpm=140.0, tonic=1, mode="major", bars=20)]
    readme = root / "README.md"
    readme.write_text(f"{BEFORE}{MARKERS[0]}\nold table\n{MARKERS[1]}{AFTER}")
    plot = root / "transition.png"
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        code = main([*tracks, "--checkpoint", str(checkpoint), "--pairs", "1", "--samples", "2",
                     "--steps", "2", "--guidance-scales", "0", "2", "--sample-rate", "16000",
                     "--plot", str(plot), "--write-readme", str(readme)])
    return code, out.getvalue(), readme, plot


def test_the_table_has_every_method_and_metric(run):
    code, stdout, readme, _ = run
    assert code == 0
    lines = stdout.splitlines()
    table = [line for line in lines[:lines.index("| model, guidance scale | 0 | 2 |")]
             if line.startswith("| ")]
    assert table[0] == "| metric | " + " | ".join(METHODS) + " |"
    rows = {line.split(" | ")[0].strip("|* ") for line in table}
    scalars = {f.name for f in dataclasses.fields(Critique)
               if not f.type.startswith(("tuple", "dict"))}
    assert scalars <= rows
    assert {"score_loudness", "score_bass", "score_end"} <= rows
    assert all(len(line.split(" | ")) == len(METHODS) + 1 for line in table)
    assert "1 held-out pairs" in stdout and "2 samples per pair" in stdout
    assert "\n".join(table) in readme.read_text()


def test_the_last_line_is_json_and_the_policy_beats_random(run):
    report = json.loads(run[1].strip().splitlines()[-1])
    for key in ("score_model", "score_policy", "score_crossfade", "score_random",
                "score_guidance_0", "score_guidance_2", "sample_diversity"):
        assert key in report
    assert all(0.0 <= report[f"score_{m}"] <= 1.0 for m in METHODS)
    assert report["pairs"] == 1 and report["model_transitions"] == 2
    assert report["sample_diversity"] > 0.0  # two seeds, two transitions
    # Rendered and judged for real: the rules beat noise.
    assert report["score_policy"] > report["score_random"]


def test_the_readme_keeps_what_lies_outside_the_markers(run):
    text = run[2].read_text()
    assert text.startswith(BEFORE + MARKERS[0]) and text.endswith(MARKERS[1] + AFTER)
    assert "old table" not in text


def test_the_plot_is_a_png_of_the_curves(run):
    import matplotlib.image

    image = matplotlib.image.imread(run[3])
    assert image.ndim == 3 and image.shape[0] > image.shape[1] > 500  # one tall column of panels
    assert image[..., :3].std() > 0.05  # drawn on, not blank


def test_write_readme_without_markers_names_the_file(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    with pytest.raises(EvaluationError, match="README.md: no <!-- evaluation:start -->"):
        write_readme(readme, "table")
    assert readme.read_text() == "no markers here\n"


def test_bad_input_is_one_clear_error(tmp_path, checkpoint, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    cases = [(["--data", str(tmp_path / "missing")], "missing: not a readable transition"),
             ([str(broken), str(broken)], "broken.wav"),
             ([str(tmp_path / "nowhere.wav"), str(broken)], "nowhere.wav"),
             (["--plot", str(tmp_path / "no" / "p.png")], "no folder"),
             (["--conditioning"], "--conditioning reads the test split of --data"),
             (["--pairs", "-1"], "--pairs: Input should be greater than or equal to 0")]
    for args, message in cases:
        assert main([*args, "--checkpoint", str(checkpoint)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert main(["--checkpoint", str(tmp_path / "none.safetensors")]) == 1
    assert "none.safetensors" in capsys.readouterr().err


def test_deck_b_plays_vinyl_style_at_deck_a_tempo():
    sr = 16000
    t = np.arange(4 * sr) / sr
    stems = np.zeros((4, 2, t.size), dtype=np.float32)
    stems[1] = np.sin(2 * np.pi * 220.0 * t)
    # Only the stems and their rate are read: no sections or features needed.
    track = TrackAnalysis("tone", sr, stems, BeatGrid(120.0, 0.0, 4.0), 9, (), None,
                          float("-inf"))
    rate = 2 ** (2 / 12)  # two semitones faster
    out = excerpt(track, 1.0, 2.0, rate, 8000)
    assert out.shape == (4, 2, 16000)
    spectrum = np.abs(np.fft.rfft(out[1, 0, 2000:-2000]))
    peak_hz = np.argmax(spectrum) * 8000 / (out.shape[-1] - 4000)
    assert abs(peak_hz - 220.0 * rate) < 2.0
    assert np.abs(out[0]).max() == 0.0
    # Past the track's end: silence, not an error.
    tail = excerpt(track, 3.5, 1.0, 1.0, sr)
    assert np.abs(tail[1, :, :sr // 2 - 100]).max() > 0.5 and np.abs(tail[1, :, -100:]).max() == 0
    assert heard_key(9 + 12, rate) == 11 + 12  # A minor, two semitones up: B minor
    assert heard_key(11, 2 ** (1 / 12)) == 0  # B major up a semitone: C major
    assert heard_key(0, 2 ** (-1 / 12)) == 11


def test_mean_pairwise_distance():
    curves = np.zeros((3, 4, 52))
    curves[1] += 0.3
    curves[2] += 0.6
    assert mean_pairwise_distance(curves) == pytest.approx((0.3 + 0.6 + 0.3) / 3)
    assert mean_pairwise_distance(curves[:1]) == 0.0


def test_a_second_table_goes_between_its_own_markers(tmp_path):
    from evaluation.evaluate import markers

    readme = tmp_path / "README.md"
    real, generated = markers("real"), markers()
    readme.write_text(f"{real[0]}\nold\n{real[1]}\n{generated[0]}\nkept\n{generated[1]}\n")
    write_readme(readme, "new", "real")
    assert readme.read_text() == f"{real[0]}\nnew\n{real[1]}\n{generated[0]}\nkept\n{generated[1]}\n"
    with pytest.raises(EvaluationError, match="evaluation-other:start"):
        write_readme(readme, "x", "other")
