"""Critic-selected targets (evaluation.select): each judged example keeps its best-scoring
candidate, the new dataset holds the old one plus the judged examples at their share, and the
candidates are the ones the docstring names."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch

from analysis.cache import AnalysisCache
from evaluation.evaluate import EvaluationConfig, dataset_pairs, sample_model
from evaluation.select import BLENDS, SELECTED_STYLE, main, policy_styles
from model import TransitionDiffusion, load_model
from model.checkpoint import save_model
from model.data import TransitionDataset, build_dataset, read_examples
from model.policy import STYLES

from test_evaluate import TINY, stem_folder

RATE = 16000


@pytest.fixture(scope="module")
def selected(tmp_path_factory):
    root = tmp_path_factory.mktemp("select")
    torch.manual_seed(0)
    checkpoint = save_model(TransitionDiffusion(TINY), root / "tiny.st")
    tracks = [stem_folder(root, "a", seed=41, bpm=140.0, tonic=9, mode="minor", bars=20),
              stem_folder(root, "b", seed=42, bpm=140.0, tonic=1, mode="major", bars=20)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        data = build_dataset(tracks, root / "data", partners=1, transitions_per_pair=2,
                             holdout=0.0, cache=AnalysisCache(root / "cache" / "automix-live"
                                                              / "analysis"), log=lambda m: None)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["--data", str(data), "--out", str(root / "selected"), "--checkpoint",
                         str(checkpoint), "--pairs", "1", "--samples", "1", "--steps", "2",
                         "--sample-rate", str(RATE), "--share", "0.5"])
        yield code, out.getvalue(), data, root / "selected", checkpoint


def test_the_new_dataset_holds_the_old_one_and_the_winner_at_its_share(selected):
    code, out, data, result, _ = selected
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["pairs"] == 1
    old, new = read_examples(data), read_examples(result)
    n = len(old["bars"])
    manifest = json.loads((result / "manifest.json").read_text())
    (row,) = manifest["selection"]["rows"]
    repeat = manifest["selection"]["repeat"]
    assert repeat == n  # half of the training examples: as many copies as there were examples
    assert len(new["bars"]) == manifest["n_examples"] == 2 * n
    for name in ("a_track", "b_track", "a_frame", "b_frame", "bars"):
        assert (new[name][:n] == old[name]).all()
        assert (new[name][n:] == old[name][row["row"]]).all()
    assert (new["style"][n:] == SELECTED_STYLE).all()
    np.testing.assert_array_equal(new["curves"][:n], old["curves"])
    # One target, the policy's blends, one model sample: the best is kept, the target
    # unless another beats it by the margin.
    scores = row["scores"]
    assert len(scores) == 1 + len(BLENDS) + 1
    best = int(np.argmax(scores))
    expected = best if scores[best] >= scores[0] + 0.02 else 0
    assert row["chosen"] == expected
    assert (new["curves"][n:] == new["curves"][n]).all()  # the copies are one example
    assert TransitionDataset(result, "train").split == "train"  # it reads as a dataset


def test_the_kept_curves_are_the_chosen_candidate(selected):
    """Rebuild the candidates (they are deterministic in the seed) and find the chosen one."""
    _, _, data, result, checkpoint = selected
    manifest = json.loads((result / "manifest.json").read_text())
    (row,) = manifest["selection"]["rows"]
    train_set = TransitionDataset(data, "train")
    k = row["row"]  # every track is a train track here: the same row in the train split
    (pair,) = list(dataset_pairs(train_set, np.array([k]), RATE))
    config = EvaluationConfig(samples=1, steps=2, sample_rate=RATE)
    candidates = [pair.policy, *policy_styles(train_set, k, 0, BLENDS),
                  *sample_model(load_model(checkpoint), pair, config, 2.0, 1, 0)]
    kept = read_examples(result)["curves"][-1].astype(np.float32)
    np.testing.assert_allclose(kept, candidates[row["chosen"]], atol=1e-3)  # stored in fp16
    # The styles are the policy's blends (no cut), for this example's length and B's phrase.
    assert len({c.tobytes() for c in candidates[1:1 + len(BLENDS)]}) == len(BLENDS)
    assert "cut" not in BLENDS and set(BLENDS) < set(STYLES)


def test_a_bad_share_is_refused(tmp_path, capsys):
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--share", "1"]) == 2
    assert "--share" in capsys.readouterr().err
