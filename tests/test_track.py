"""The whole analysis of a file: results, cache behaviour and failures."""

import math

import numpy as np
import pytest
import soundfile as sf

from analysis.audio import AudioLoadError
from analysis.cache import AnalysisCache
from analysis.features import FRAMES_PER_BEAT, STRUCTURE_LABELS
from analysis.key import key_index
from analysis.synth import render_track
from analysis.track import AnalysisError, analyze

SR = 44100


@pytest.fixture(scope="module")
def track():
    return render_track(seed=7, bpm=126.0, tonic=5, mode="minor", bars=32)


@pytest.fixture()
def track_file(tmp_path, track):
    path = tmp_path / "track.flac"
    sf.write(path, track.mix.T, SR, subtype="PCM_24")
    return path


def test_a_file_is_analysed_into_stems_grid_key_structure_and_features(tmp_path, track,
                                                                         track_file):
    result = analyze(track_file, SR, cache=AnalysisCache(tmp_path / "cache"))
    assert result.bpm == pytest.approx(126.0, rel=0.01)
    assert result.key_index == key_index(5, "minor") and result.camelot == "4A"
    assert [label for label, _, _ in result.sections] == ["intro", "drop", "outro"]
    bar = 4 * 60 / 126.0
    assert result.sections[1][1] == pytest.approx(8 * bar, abs=bar)
    # The stems sum back to the decoded file.
    mix = sf.read(track_file, dtype="float32")[0].T
    assert np.max(np.abs(result.stems.sum(axis=0) - mix)) < 1e-4
    f = result.features
    n = f.n_frames
    assert f.stem_mels.shape == (4, 128, n) and f.structure.shape == (n, 6)
    assert f.beats.shape == f.downbeats.shape == f.energy.shape == (n,)
    assert n == pytest.approx(result.duration / (60 / 126.0) * FRAMES_PER_BEAT, abs=20)
    assert f.downbeats.sum() == pytest.approx(f.beats.sum() / 4, abs=1)
    assert np.all(f.structure.sum(axis=1) == 1)
    drop = STRUCTURE_LABELS.index("drop")
    assert f.structure[n // 2, drop] == 1  # the middle of the track is the drop
    assert f.key.argmax() == result.key_index and f.bpm[0] == pytest.approx(result.bpm)


def test_a_second_load_reads_the_cache_and_a_changed_file_does_not(tmp_path, track_file):
    cache = AnalysisCache(tmp_path / "cache")
    first = analyze(track_file, SR, cache=cache)
    entries = sorted(p.suffix for p in cache.root.iterdir())
    assert entries == [".flac", ".npz"]
    # Mark the cached entry, so that a second analysis can only report the mark if it read it.
    (npz,) = cache.root.glob("*.npz")
    digest_prefix = npz.stem.split("-v")[0]
    arrays = dict(np.load(npz))
    arrays["key_index"] = np.array(23)
    np.savez(npz, **arrays)
    second = analyze(track_file, SR, cache=cache)
    assert second.key_index == 23 and first.key_index != 23
    assert second.loudness_lufs == first.loudness_lufs
    assert -30.0 < first.loudness_lufs < -10.0
    np.testing.assert_allclose(second.stems, first.stems, atol=2e-4)
    np.testing.assert_array_equal(second.features.stem_mels, first.features.stem_mels)
    assert second.grid == first.grid and second.sections == first.sections
    # The web view's waveform is made with the analysis and read back with it.
    assert first.waveform.peak.shape == (4, math.ceil(first.duration * 50))
    np.testing.assert_array_equal(second.waveform.peak, first.waveform.peak)
    np.testing.assert_array_equal(second.waveform.rms, first.waveform.rms)
    assert second.waveform.points_per_second == first.waveform.points_per_second == 50
    # A changed file, or a new analysis version, is analysed again.
    audio, _ = sf.read(track_file)
    sf.write(track_file, audio * 0.5, SR, subtype="PCM_24")
    assert analyze(track_file, SR, cache=cache).key_index != 23
    assert analyze(track_file, SR, cache=AnalysisCache(cache.root, version=99)).key_index != 23
    assert digest_prefix


def test_failures_name_the_file_and_cache_nothing(tmp_path):
    cache = AnalysisCache(tmp_path / "cache")
    pad = tmp_path / "pad.wav"
    t = np.arange(12 * SR) / SR
    sf.write(pad, 0.3 * np.sin(2 * np.pi * 220 * t), SR)  # a held note: no beat to grid
    with pytest.raises(AnalysisError, match=r"pad\.wav: beat grid: no steady beat"):
        analyze(pad, SR, cache=cache)
    with pytest.raises(AudioLoadError, match="missing.wav: no such file"):
        analyze(tmp_path / "missing.wav", SR, cache=cache)
    assert not cache.root.exists() or not any(cache.root.iterdir())


def test_a_folder_of_stems_is_used_as_it_is(tmp_path, track):
    folder = tmp_path / "stems"
    folder.mkdir()
    for name, stem in zip(("drums", "bass", "vocals", "other"), track.stems):
        sf.write(folder / f"{name}.wav", stem.T, SR, subtype="FLOAT")
    result = analyze(folder, SR, cache=AnalysisCache(tmp_path / "cache"))
    np.testing.assert_allclose(result.stems, track.stems, atol=1e-6)
    assert result.bpm == pytest.approx(126.0, rel=0.01)


def test_a_stretched_copy_shows_the_analysis_waveform_on_its_own_time(tmp_path, track_file):
    """A key-lock copy plays ``stretch`` times faster: its waveform is the analysis's with that
    many more points a second, not made again; an analysis cached without one gets one made
    from the copy's stems."""
    from dataclasses import replace

    from analysis.waveform import stem_envelopes
    from engine.deck import track_from_analysis

    original = track_from_analysis(analyze(track_file, SR, cache=AnalysisCache(tmp_path)))
    copy = replace(original, stretch=1.25)
    wave = copy.waveform(SR)
    assert wave.points_per_second == pytest.approx(62.5)
    assert wave.peak is original.analysis.waveform.peak
    bare = replace(original, analysis=replace(original.analysis, waveform=None))
    made = bare.waveform(SR)
    np.testing.assert_array_equal(made.peak, stem_envelopes(original.stems, SR).peak)
    np.testing.assert_array_equal(made.peak, original.waveform(SR).peak)
