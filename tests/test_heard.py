"""The audio-domain loss (model.heard): its loudness follows the rendered mix's, and descending it
fills a loudness hole that the critic hears in the rendering."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.cache import AnalysisCache
from effects import DifferentiableMixer, MixerConfig
from effects.params import CROSSFADER, GAINS, REVERB_WET
from evaluation.critic import loudness_deviation, short_term_loudness
from evaluation.evaluate import dataset_pairs, linear_crossfade, tracks_dataset
from model.config import HeardConfig
from model.heard import HeardMix, audio_loss
from tests.conftest import stem_decks

RATE = 16000


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("heard")
    tracks = stem_decks(root, bars=24)
    cache = AnalysisCache(root / "cache")
    data = tracks_dataset(tracks, root / "data", cache=cache, log=lambda _: None)
    return next(dataset_pairs(data, np.array([0]), RATE, cache))


def render(pair, curves: np.ndarray) -> np.ndarray:
    mixer = DifferentiableMixer(MixerConfig(sample_rate=RATE))
    with torch.no_grad():
        return mixer(torch.as_tensor(pair.stems_a)[None], torch.as_tensor(pair.stems_b)[None],
                     torch.as_tensor(curves, dtype=torch.float32)[None],
                     sample_rate=RATE)[0].numpy()


def heard(pair, curves) -> HeardMix:
    f = pair.features
    return HeardMix.of(torch.as_tensor(curves, dtype=torch.float32)[None], f.band_db, f.trim_db,
                       f.track_a.bpm)


def holed(n_frames: int) -> np.ndarray:
    """A crossfade with every fader pulled down to 0.55 (-16 dB) around its middle."""
    curves = linear_crossfade(n_frames)
    dip = 1.0 - 0.45 * np.sin(np.linspace(0.0, np.pi, n_frames)) ** 2
    curves[:, GAINS] = dip[:, None]
    return curves


@pytest.mark.parametrize("shape", ["policy", "holed"])
def test_the_heard_loudness_follows_the_rendered_mix(pair, shape):
    curves = pair.policy if shape == "policy" else holed(pair.policy.shape[0])
    times, rendered = short_term_loudness(render(pair, curves), RATE)
    mix = heard(pair, curves)
    config = HeardConfig()
    loudness, valid = mix.short_term_loudness(config)
    centres = np.arange(int(valid.sum())) * float(mix.frame_s[0]) + config.short_term_s / 2
    inside = (times >= centres[0]) & (times <= centres[-1])
    ours = np.interp(times[inside], centres, loudness[0][valid[0]].numpy())
    difference = rendered[inside] - ours
    # Up to one constant (the mel filters' scale), within a fraction of a LU.
    assert np.abs(difference - np.median(difference)).mean() < 0.75
    assert np.corrcoef(rendered[inside], ours)[0, 1] > 0.9
    deviation, _ = mix.loudness_deviation(config)
    critic_max, _ = loudness_deviation(render(pair, curves), RATE)
    assert abs(float(deviation.max()) - critic_max) < 1.5 + 0.25 * critic_max


def test_descending_the_loss_fills_a_hole_the_critic_hears(pair):
    start = holed(pair.policy.shape[0])
    start[:, REVERB_WET] = 0.0
    before, _ = loudness_deviation(render(pair, start), RATE)
    f = pair.features
    curves = torch.tensor(start, requires_grad=True)
    optimizer = torch.optim.Adam([curves], lr=0.02)
    losses = []
    for _ in range(60):
        loss = audio_loss(curves[None].clamp(0.0, 1.0), f.band_db, f.trim_db, f.track_a.bpm)
        optimizer.zero_grad()
        loss.sum().backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    after, _ = loudness_deviation(render(pair, curves.detach().clamp(0.0, 1.0).numpy()), RATE)
    assert losses[-1] < 0.5 * losses[0]
    assert before > 6.0 and after < 0.5 * before, (before, after)
    # It filled the hole rather than stopping the transition: the crossfader still travels.
    crossfader = curves.detach()[:, CROSSFADER].clamp(0.0, 1.0)
    assert float(crossfader[0]) < 0.2 and float(crossfader[-1]) > 0.8


def test_a_crossfade_has_no_hole_and_pulled_faders_do(pair):
    """The hole term hears the mix fall under the path between the decks' own levels: an
    equal-power crossfade by less than its free half LU, the holed one by about the faders' pull
    (-16 dB on every stem at the middle)."""
    config = HeardConfig()
    n_frames = pair.policy.shape[0]
    crossfade = heard(pair, linear_crossfade(n_frames))
    under, _ = crossfade.hole(config)
    assert float(under.max()) < 0.5
    assert float(crossfade.terms(config)["hole"]) == 0.0
    holed_mix = heard(pair, holed(n_frames))
    under, _ = holed_mix.hole(config)
    assert 6.0 < float(under.max()) < 17.0
    assert float(holed_mix.terms(config)["hole"]) > 0.01
    # The default loss (the shipped weights') weighs it in.
    f = pair.features
    curves = torch.as_tensor(holed(n_frames), dtype=torch.float32)[None]
    assert float(audio_loss(curves, f.band_db, f.trim_db, f.track_a.bpm, HeardConfig())) > float(
        audio_loss(curves, f.band_db, f.trim_db, f.track_a.bpm, HeardConfig(hole_weight=0.0)))
