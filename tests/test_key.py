"""Key estimation: the 24-key indexing, the Camelot wheel, harmonic compatibility, accuracy."""

import numpy as np
import pytest
import soxr

from analysis.key import (KEY_NAMES, PITCH_CLASSES, camelot, compatible, estimate_key, key_index,
                          key_one_hot, relative_key)
from analysis.synth import render_track

# The published wheel, written out by hand rather than derived, so the formula is checked.
CAMELOT = {
    "B major": "1B", "G# minor": "1A", "F# major": "2B", "D# minor": "2A",
    "C# major": "3B", "A# minor": "3A", "G# major": "4B", "F minor": "4A",
    "D# major": "5B", "C minor": "5A", "A# major": "6B", "G minor": "6A",
    "F major": "7B", "D minor": "7A", "C major": "8B", "A minor": "8A",
    "G major": "9B", "E minor": "9A", "D major": "10B", "B minor": "10A",
    "A major": "11B", "F# minor": "11A", "E major": "12B", "C# minor": "12A",
}


def by_code(code: str) -> int:
    return next(i for i in range(24) if camelot(i) == code)


def test_key_names_are_12_major_then_12_minor() -> None:
    assert len(KEY_NAMES) == 24
    assert KEY_NAMES[0] == "C major" and KEY_NAMES[11] == "B major"
    assert KEY_NAMES[12] == "C minor" and KEY_NAMES[21] == "A minor"


@pytest.mark.parametrize("name, code", CAMELOT.items())
def test_camelot_matches_the_wheel(name: str, code: str) -> None:
    assert camelot(KEY_NAMES.index(name)) == code


def test_camelot_codes_are_unique() -> None:
    assert len({camelot(i) for i in range(24)}) == 24


@pytest.mark.parametrize("a, b, expected", [
    ("8A", "8A", True), ("8A", "8B", True), ("8A", "9A", True), ("8A", "7A", True),
    ("12A", "1A", True), ("1B", "12B", True), ("8A", "10A", False), ("8A", "9B", False),
    ("8B", "7A", False), ("3A", "9A", False), ("5B", "5A", True),
])
def test_compatible(a: str, b: str, expected: bool) -> None:
    assert compatible(by_code(a), by_code(b)) is expected
    assert compatible(by_code(b), by_code(a)) is expected


def test_every_key_has_four_compatible_keys() -> None:
    for a in range(24):
        assert sum(compatible(a, b) for b in range(24)) == 4  # itself, both neighbours, relative
        assert compatible(a, relative_key(a))


def test_relative_key() -> None:
    assert relative_key(KEY_NAMES.index("C major")) == KEY_NAMES.index("A minor")
    assert relative_key(KEY_NAMES.index("F# minor")) == KEY_NAMES.index("A major")
    assert all(relative_key(relative_key(i)) == i for i in range(24))


def test_key_index_and_one_hot_round_trip() -> None:
    for mode in ("major", "minor"):
        for tonic in range(12):
            index = key_index(tonic, mode)
            assert KEY_NAMES[index] == f"{PITCH_CLASSES[tonic]} {mode}"
            one_hot = key_one_hot(index)
            assert one_hot.dtype == np.float32 and one_hot.shape == (24,)
            assert one_hot.sum() == 1.0 and int(np.argmax(one_hot)) == index


@pytest.mark.parametrize("tonic, mode", [(0, "Major"), (0, "dorian"), (0, ""), (12, "major"),
                                         (-1, "minor")])
def test_key_index_rejects_bad_input(tonic: int, mode: str) -> None:
    with pytest.raises(ValueError):
        key_index(tonic, mode)


@pytest.mark.parametrize("function", [camelot, key_one_hot, relative_key])
def test_bad_index_is_rejected(function) -> None:
    with pytest.raises(ValueError):
        function(24)


@pytest.fixture(scope="module")
def all_keys() -> list:
    """One generated track in each of the 24 keys, tempo varying with the key."""
    return [render_track(seed=k, bpm=90 + 3 * k, tonic=k % 12, mode=("major", "minor")[k // 12],
                         bars=8) for k in range(24)]


def test_accuracy_over_all_24_keys(all_keys: list) -> None:
    wrong = []
    for track in all_keys:
        index, scores = estimate_key(track.mix, track.sample_rate)
        assert scores.shape == (24,) and np.all(np.abs(scores) <= 1.0 + 1e-9)
        if index != key_index(track.tonic, track.mode):
            wrong.append(f"{track.key_name} -> {KEY_NAMES[index]}")
    assert len(wrong) <= 2, wrong


def test_best_key_is_top_correlated_or_its_relative(all_keys: list) -> None:
    for track in all_keys[::5]:
        index, scores = estimate_key(track.mix, track.sample_rate)
        top = int(np.argmax(scores))
        assert index in (top, relative_key(top))


def test_mono_and_other_rates_agree(all_keys: list) -> None:
    track = all_keys[21]  # A minor
    expected = key_index(9, "minor")
    assert estimate_key(track.mix, 44100)[0] == expected
    assert estimate_key(track.mix.mean(axis=0), 44100)[0] == expected
    at_48k = soxr.resample(track.mix.T, 44100, 48000).T.astype(np.float32)
    assert estimate_key(at_48k, 48000)[0] == expected


def test_drums_only_intro_does_not_decide_the_key(all_keys: list) -> None:
    track = all_keys[16]  # E minor
    intro = track.stems[0][:, : int(4 * 4 * 60 / track.bpm * track.sample_rate)]
    index, _ = estimate_key(np.concatenate([intro, track.mix], axis=1), track.sample_rate)
    assert index == key_index(4, "minor")


def test_silence_and_bad_shapes() -> None:
    index, scores = estimate_key(np.zeros((2, 44100), dtype=np.float32), 44100)
    assert index == 0 and not scores.any()
    assert estimate_key(np.zeros(10, dtype=np.float32), 44100)[1].shape == (24,)
    with pytest.raises(ValueError):
        estimate_key(np.zeros((1, 2, 100), dtype=np.float32), 44100)
    with pytest.raises(ValueError):
        estimate_key(np.zeros(100, dtype=np.float32), 0)
