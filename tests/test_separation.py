"""Stem separation: the Separator contract, exactness, edge cases, quality on generated tracks."""

import math

import librosa
import numpy as np
import pytest

import analysis.separation as separation
from analysis.separation import DSPSeparator, Separator, get_separator, sdr_db
from analysis.synth import render_track
from effects.params import STEMS

SR = 44100
DRUMS, BASS, VOCALS, OTHER = (STEMS.index(s) for s in ("drums", "bass", "vocals", "other"))

# SDR floors for the generated 8-bar tracks below. The separator measures 15.3 / 16.3 dB
# (drums), 4.1 / 4.1 dB (bass) and 4.2 / 4.0 dB (vocals) on them; "everything in other" scores
# 0 dB on each of these stems and an even split (the mix / 4 in every stem) 2.3 / 2.4 dB
# (drums), 0.0 / 0.2 dB (bass) and -6.3 / -5.1 dB (vocals).
MIN_SDR_DB = {"drums": 8.0, "bass": 2.0, "vocals": 2.0}
TRACKS = {"124 BPM, A minor": dict(seed=0), "90 BPM, B major": dict(seed=5, bpm=90.0, tonic=11,
                                                                      mode="major")}


def error_db(stems: np.ndarray, mix: np.ndarray) -> float:
    """How far the stems' sum is from the mix, in dB relative to the mix."""
    err = stems.astype(np.float64).sum(axis=0) - mix.astype(np.float64)
    return 10 * math.log10(np.sum(err**2) / np.sum(mix.astype(np.float64) ** 2) + 1e-300)


@pytest.fixture(scope="module")
def separator() -> DSPSeparator:
    return DSPSeparator()


@pytest.fixture(scope="module", params=list(TRACKS))
def separated(request, separator):
    track = render_track(bars=8, **TRACKS[request.param])
    return track, separator.separate(track.mix, SR)


def test_shapes_dtypes_and_exact_sum(separated):
    track, stems = separated
    assert stems.shape == (len(STEMS), 2, track.mix.shape[1])
    assert stems.dtype == np.float32
    assert np.all(np.isfinite(stems))
    assert error_db(stems, track.mix) < -100.0


def test_beats_the_trivial_separators(separated):
    track, stems = separated
    mix = track.mix
    for stem, floor in MIN_SDR_DB.items():
        i = STEMS.index(stem)
        truth = track.stems[i]
        everything_in_other = sdr_db(truth, np.zeros_like(mix))
        even_split = sdr_db(truth, mix / len(STEMS))
        ours = sdr_db(truth, stems[i])
        assert max(everything_in_other, even_split) < floor - 1.5, stem
        assert ours > floor, (stem, ours)


def test_stem_order_follows_effects_params(separator):
    """A drum loop alone lands in STEMS' drums slot, a bassline alone in its bass slot."""
    track = render_track(1, bars=4)
    for index in (DRUMS, BASS):
        stems = separator.separate(track.stems[index], SR)
        energy = np.sum(stems.astype(np.float64) ** 2, axis=(1, 2))
        assert np.argmax(energy) == index
        assert energy[index] > 0.5 * energy.sum()


@pytest.mark.parametrize("n", [1, 2, 1001, 2047, 2049, 3 * SR + 1023, 3 * SR + 1025])
def test_odd_and_short_lengths(separator, n):
    rng = np.random.default_rng(n)
    t = np.arange(n) / SR
    audio = (0.3 * np.sin(2 * np.pi * 110 * t) + 0.05 * rng.standard_normal((2, n)))
    audio = audio.astype(np.float32)
    stems = separator.separate(audio, SR)
    assert stems.shape == (4, 2, n) and stems.dtype == np.float32
    assert np.all(np.isfinite(stems))
    assert error_db(stems, audio) < -100.0


@pytest.mark.parametrize("rate", [22050, 48000])
def test_other_sample_rates(separator, rate):
    track = render_track(2, bars=4, sample_rate=rate)
    mix = track.mix[:, :-7]  # and an odd length
    stems = separator.separate(mix, rate)
    assert stems.shape == (4, 2, mix.shape[1])
    assert error_db(stems, mix) < -100.0
    assert sdr_db(track.stems[DRUMS][:, :-7], stems[DRUMS]) > MIN_SDR_DB["drums"]


def test_identical_channels_give_identical_stems(separator):
    track = render_track(0, bars=8)
    mono = np.repeat(track.mix[:1], 2, axis=0)
    stems = separator.separate(mono, SR)
    assert error_db(stems, mono) < -100.0
    np.testing.assert_allclose(stems[:, 0], stems[:, 1], atol=1e-6)
    truth = np.repeat(track.stems[:, :1], 2, axis=1)
    assert sdr_db(truth[DRUMS], stems[DRUMS]) > MIN_SDR_DB["drums"]
    assert sdr_db(truth[BASS], stems[BASS]) > MIN_SDR_DB["bass"]


def test_silence_in_silence_out(separator):
    stems = separator.separate(np.zeros((2, 5 * SR), dtype=np.float32), SR)
    assert stems.shape == (4, 2, 5 * SR)
    assert np.all(stems == 0.0)
    # The smallest normal floats too: every ratio in the masks must stay defined.
    tiny = np.full((2, SR), np.finfo(np.float32).tiny, dtype=np.float32)
    stems = separator.separate(tiny, SR)
    assert np.all(np.isfinite(stems))
    np.testing.assert_allclose(stems.sum(axis=0), tiny, rtol=1e-5)


def test_empty_input(separator):
    assert separator.separate(np.zeros((2, 0), dtype=np.float32), SR).shape == (4, 2, 0)


def test_long_tracks_go_in_blocks(separator, monkeypatch):
    """Cross-faded blocks (here 5 s, against the 15 s track) keep the sum exact and the quality."""
    track = render_track(0, bars=8)
    whole = separator.separate(track.mix, SR)
    monkeypatch.setattr(separation, "BLOCK_SECONDS", 5.0)
    monkeypatch.setattr(separation, "BLOCK_OVERLAP_SECONDS", 1.0)
    blocks = separator.separate(track.mix, SR)
    assert error_db(blocks, track.mix) < -100.0
    for i in (DRUMS, BASS):
        assert sdr_db(track.stems[i], blocks[i]) > sdr_db(track.stems[i], whole[i]) - 1.5


@pytest.mark.parametrize("n, block, overlap", [(100, 30, 10), (61, 30, 10), (1000, 100, 7)])
def test_block_fades_sum_to_one(n, block, overlap):
    total = np.zeros(n)
    blocks = separation._blocks(n, block, overlap)
    for start, stop, fade_in, fade_out in blocks:
        assert stop - start <= block
        weight = np.ones(stop - start)
        weight[:fade_in.size] = fade_in
        weight[weight.size - fade_out.size:] *= fade_out
        total[start:stop] += weight
    assert blocks[0][0] == 0 and blocks[-1][1] == n
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_fast_hpss_is_librosas(separator):
    rng = np.random.default_rng(3)
    for shape in [(1025, 300), (40, 5), (7, 1)]:
        mag = rng.random(shape).astype(np.float32)
        mag[:, 0] = 0.0
        ours = separation._hpss_masks(mag)
        theirs = librosa.decompose.hpss(mag, kernel_size=separation.HPSS_KERNEL, mask=True)
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("audio, rate", [
    (np.zeros(SR, dtype=np.float32), SR),  # mono, 1-D
    (np.zeros((SR, 2), dtype=np.float32), SR),  # channels last
    (np.zeros((3, SR), dtype=np.float32), SR),  # three channels
    (np.zeros((2, SR), dtype=np.int16), SR),  # integer samples
    (np.full((2, SR), np.nan, dtype=np.float32), SR),
    (np.zeros((2, SR), dtype=np.float32), 0),
    (np.zeros((2, SR), dtype=np.float32), 44100.5),
])
def test_bad_input_is_refused(separator, audio, rate):
    with pytest.raises(ValueError):
        separator.separate(audio, rate)


def test_sdr_db():
    s = np.sin(np.linspace(0, 100, 1000))[None].repeat(2, axis=0)
    assert sdr_db(s, s) == math.inf
    assert sdr_db(s, np.zeros_like(s)) == pytest.approx(0.0)
    assert sdr_db(s, 0.5 * s) == pytest.approx(10 * math.log10(4))
    assert sdr_db(np.zeros_like(s), s) == -math.inf
    with pytest.raises(ValueError):
        sdr_db(s, s[:1])


def test_get_separator():
    dsp = get_separator()
    assert isinstance(dsp, DSPSeparator) and isinstance(dsp, Separator)
    assert get_separator("dsp").name == "dsp"
    with pytest.raises(RuntimeError, match="no such file.*not downloaded at run time"):
        get_separator("demucs", weights="/nonexistent/demucs")
    with pytest.raises(ValueError, match="dsp.*demucs"):
        get_separator("spleeter")


def test_any_object_with_name_and_separate_is_a_separator():
    class Passthrough:
        name = "passthrough"

        def separate(self, audio, sample_rate):
            return np.stack([np.zeros_like(audio)] * 3 + [audio])

    assert isinstance(Passthrough(), Separator)
    assert not isinstance(object(), Separator)
