"""The fitter: curves recovered from a mix the project renders itself from known curves.

Everything runs at low rates to stay fast: the known mix is rendered at 16 kHz and fitted at
11.025 kHz, a 4-bar transition with a bar either side, from the true stems (as from folders of
stems), in few steps. bench/fit.py measures the full-size fit against the issue's targets.
"""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from effects import DifferentiableMixer, MixerConfig
from fitting.align import AlignmentError, align
from model.data import TransitionDataset
from fitting.fit import FitConfig, SpectralMixer, add_to_dataset, fit_mix, main
from fitting.fit_check import analysed, recovery_errors, render_known_mix
from analysis.synth import render_track
from model.policy import STYLES, plan_transition

RATE = 16000
CONFIG = FitConfig(sample_rate=11025, n_fft=1024, hop=512, steps=300)
# Looser than the 0.05 (bench/fit.py): a short fit, few steps, low rate.
GAIN_RMS = 0.1
# The spectral model against the mixer (RMS dB over bands and frames): filters that cut deep
# leak from neighbouring bins, and the reverb is a power model of the network.
# Measured at 11.025 kHz: 0.22, 0.87, 2.18, 0.51.
MODEL_DB = {"blend": 0.5, "filter": 1.5, "echo_out": 3.0, "cut": 1.0}


@pytest.fixture(scope="module")
def known():
    return render_known_mix(seed=3, style="blend", bars=4, lead_bars=1, tail_bars=1,
                            sample_rate=RATE)


@pytest.fixture(scope="module")
def fitted(known):
    tracks = [analysed(t, separator=None) for t in (known.track_a, known.track_b)]
    return fit_mix(known.mix, RATE, *tracks, config=CONFIG)


@pytest.mark.parametrize("style", STYLES)
def test_spectral_mixer_matches_the_differentiable_mixer(style):
    """The fit's model of the mixer: band powers close to the real mixer's output."""
    sr = CONFIG.sample_rate
    stems_a, stems_b = (render_track(seed, 124.0, tonic, bars=4, sample_rate=sr).stems
                        for seed, tonic in ((1, 9), (2, 0)))
    curves = plan_transition(0, 0, np.random.default_rng(0), style=style, bars=4).curves
    with torch.no_grad():  # filter frames of 186 ms, as at 44.1 kHz
        mix = DifferentiableMixer(MixerConfig(sample_rate=sr, filter_fft_size=2048))(
            torch.from_numpy(stems_a)[None], torch.from_numpy(stems_b)[None],
            torch.from_numpy(curves)[None])[0].numpy()
    mixer = SpectralMixer(CONFIG)
    spectra = mixer.spectra(mix, stems_a, stems_b, 0, mix.shape[-1])
    with torch.no_grad():
        model = mixer.power(torch.from_numpy(curves), spectra, torch.tensor(1.0))
    floor = float(spectra.mix.max()) * 1e-8
    error = 10 * torch.log10((model + floor) / (spectra.mix + floor))
    assert float(error.pow(2).mean().sqrt()) < MODEL_DB[style]


def test_alignment_finds_both_decks(known, fitted):
    at_a, at_b = fitted.alignments
    assert abs(at_a.offset) < 1e-3 and abs(at_a.rate - 1.0) < 1e-4
    assert abs(at_b.offset - known.start) < 1e-3 and abs(at_b.rate - known.rate_b) < 1e-4


def test_transition_is_placed_on_deck_a_bars_within_the_true_one(known, fitted):
    """It spans what is heard: from deck A's downbeat before deck B comes in to the one after
    deck A goes, which lies inside the policy's curves (whose ends may be silent moves)."""
    place, bar = fitted.placement, (known.end - known.start) / known.bars
    beat = bar / 4
    assert known.start - beat / 2 <= place.start < place.end <= known.end + beat / 2
    # On deck A's bars (deck A starts at 0), to the precision of its analysed beat grid.
    assert abs(place.start - bar * round(place.start / bar)) < 0.03
    assert abs((place.end - place.start) / bar - place.bars) < 0.01


def test_gains_and_crossfader_are_recovered(known, fitted):
    errors = recovery_errors(known, fitted.fit.curves, fitted.placement.start,
                             fitted.placement.end, CONFIG)
    assert errors["compared"]["gain"] > 0
    assert errors["gain_rms"] < GAIN_RMS, errors
    assert errors["crossfader_rms"] < GAIN_RMS, errors


def test_fitted_examples_go_into_a_dataset(fitted, tmp_path):
    sources = ("a.flac", "b.flac")
    for _ in range(2):
        add_to_dataset(tmp_path, fitted, sources, "mix.wav")
    data = TransitionDataset(tmp_path, "train")
    assert len(data) == 2 and data.track_count == 2  # the tracks are stored once
    batch = data.batch(np.arange(2))
    assert batch.curves.shape == (2, CONFIG.n_frames, 52)
    assert np.allclose(batch.curves[0].numpy(), fitted.fit.curves, atol=1e-3)
    assert batch.track_a.energy.shape[-1] == fitted.placement.bars * 16


def test_a_track_not_in_the_mix_is_named():
    rng = np.random.default_rng(1)
    mix = (rng.standard_normal((2, 12 * RATE)) * 0.1).astype(np.float32)
    track = (rng.standard_normal((2, 10 * RATE)) * 0.1).astype(np.float32)
    with pytest.raises(AlignmentError, match="deck B"):
        align(mix, track, RATE, name="deck B")


def test_the_cli_names_a_missing_mix(tmp_path, capsys):
    code = main(["--mix", str(tmp_path / "nope.wav"), "--deck-a", str(tmp_path / "a.wav"),
                 "--deck-b", str(tmp_path / "b.wav"), "--out", str(tmp_path / "data")])
    assert code == 1 and "nope.wav: no such file" in capsys.readouterr().err


def test_the_cli_fits_a_mix_from_files_into_a_dataset(tmp_path, capsys):
    """The command a user runs: a mix file and two folders of stem files, read, analysed,
    aligned, fitted and appended to a dataset that training reads."""
    rate = 44100
    known = render_known_mix(seed=5, style="blend", bars=4, lead_bars=1, tail_bars=1,
                             sample_rate=rate)
    sf.write(tmp_path / "mix.wav", known.mix.T, rate, subtype="FLOAT")
    for deck, track in (("a", known.track_a), ("b", known.track_b)):
        (tmp_path / deck).mkdir()
        for name, stem in zip(("drums", "bass", "vocals", "other"), track.stems):
            sf.write(tmp_path / deck / f"{name}.wav", stem.T, rate, subtype="FLOAT")
    code = main(["--mix", str(tmp_path / "mix.wav"), "--deck-a", str(tmp_path / "a"),
                 "--deck-b", str(tmp_path / "b"), "--out", str(tmp_path / "data"),
                 "--steps", "40"])
    assert code == 0, capsys.readouterr().err
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["n_examples"] == 1 and len(manifest["tracks"]) == 2
    fitted = manifest["fitted"][0]
    assert abs(fitted["offsets_s"][1] - known.start) < 1e-3
    assert abs(fitted["rates"][1] - known.rate_b) < 1e-4
    assert len(TransitionDataset(tmp_path / "data", "train")) == 1
