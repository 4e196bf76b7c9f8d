"""The analysis cache: keyed by content and version, atomic, safe to read."""

import numpy as np
import pytest

from analysis.cache import AnalysisCache, content_hash


def result() -> dict:
    return {"bpm": np.float64(124.0), "beats": np.arange(10) * 0.48, "key": np.array("A minor")}


def test_same_content_hits_and_changed_content_misses(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "copy of a.wav"
    a.write_bytes(b"same bytes")
    b.write_bytes(b"same bytes")
    assert content_hash(a) == content_hash(b)
    cache = AnalysisCache(tmp_path / "cache")
    cache.save(content_hash(a), result())
    hit = cache.load(content_hash(b))
    assert hit is not None and float(hit["bpm"]) == 124.0 and str(hit["key"]) == "A minor"
    np.testing.assert_array_equal(hit["beats"], result()["beats"])
    b.write_bytes(b"same bytes, edited")
    assert cache.load(content_hash(b)) is None


def test_a_new_analysis_version_recomputes(tmp_path):
    AnalysisCache(tmp_path, version=1).save("ab" * 32, result())
    assert AnalysisCache(tmp_path, version=2).load("ab" * 32) is None
    assert AnalysisCache(tmp_path, version=1).load("ab" * 32) is not None


def test_writes_leave_no_temporary_files_and_replace_whole_entries(tmp_path):
    cache = AnalysisCache(tmp_path)
    cache.save("cd" * 32, result())
    cache.save("cd" * 32, {**result(), "bpm": np.float64(128.0)})
    assert [p.suffix for p in tmp_path.iterdir()] == [".npz"]
    assert float(cache.load("cd" * 32)["bpm"]) == 128.0


def test_a_failed_write_leaves_the_old_entry_and_no_debris(tmp_path):
    cache = AnalysisCache(tmp_path)
    cache.save("ef" * 32, result())
    with pytest.raises(ValueError):
        cache.save("ef" * 32, {"bpm": np.float64(1.0), "bad": object()})
    assert [p.suffix for p in tmp_path.iterdir()] == [".npz"]
    assert float(cache.load("ef" * 32)["bpm"]) == 124.0


def test_a_corrupt_or_pickled_entry_is_a_miss_and_is_removed(tmp_path):
    cache = AnalysisCache(tmp_path)
    cache.entry("01" * 32).write_bytes(b"PK\x03\x04 not really a zip")
    assert cache.load("01" * 32) is None
    assert not cache.entry("01" * 32).exists()
    # An object array would need pickle to load: refused, never executed.
    np.savez(cache.entry("02" * 32), evil=np.array([object()], dtype=object))
    assert cache.load("02" * 32) is None


def test_audio_is_stored_beside_the_result_within_16_bit_precision(tmp_path):
    cache = AnalysisCache(tmp_path)
    audio = (np.random.default_rng(0).standard_normal((8, 4410)) * 0.7).astype(np.float32)
    cache.save_audio("aa" * 32, audio, 44100)  # peaks above 1.0 are scaled, not clipped
    back = cache.load_audio("aa" * 32)
    assert back.shape == audio.shape and back.dtype == np.float32
    assert np.max(np.abs(back - audio)) < np.max(np.abs(audio)) * 2.0**-14
    cache.audio_entry("bb" * 32).write_bytes(b"fLaC but broken")
    assert cache.load_audio("bb" * 32) is None and not cache.audio_entry("bb" * 32).exists()
    # Cut short (a disk filled while it was written): a miss, not a shorter track.
    cache.save_audio("cc" * 32, audio, 44100)
    whole = cache.audio_entry("cc" * 32).read_bytes()
    cache.audio_entry("cc" * 32).write_bytes(whole[:len(whole) // 2])
    assert cache.load_audio("cc" * 32) is None and not cache.audio_entry("cc" * 32).exists()
