"""The real-music corpus's manifest and references, and the --real scoring, without the corpus."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

# Appended, not prepended: bench/analysis.py would shadow the analysis package.
sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))

import real_corpus  # noqa: E402
from real_analysis import score_track  # noqa: E402

from analysis.beats import BeatGrid  # noqa: E402
from analysis.key import PITCH_CLASSES, key_index  # noqa: E402


def test_manifest_lists_enough_pinned_licensed_tracks():
    packages = real_corpus.load_manifest()
    tracks = real_corpus.corpus_tracks()
    assert len(tracks) >= 40 and len({t.id for t in tracks}) == len(tracks)
    assert sum(p["size"] for p in packages) < 500e6
    for p in packages:
        assert p["version"] and len(p["sha256"]) == 64 and p["licence"] and p["tracks"]
        assert p["copyright"] == f"usr/share/doc/{p['package']}/copyright"
        assert all(not m.startswith("/") and Path(m).suffix in (".ogg", ".mp3", ".flac")
                   for m in p["tracks"])


def test_no_reserved_package_in_corpus_or_references():
    text = real_corpus.MANIFEST.read_text() + real_corpus.REFERENCES.read_text()
    assert not any(real_corpus.is_forbidden(p["package"]) for p in real_corpus.load_manifest())
    for name in (*real_corpus.FORBIDDEN_PACKAGES, *real_corpus.FORBIDDEN_PREFIXES):
        assert name not in text


def test_a_reserved_package_is_refused(tmp_path):
    # A made-up name under a reserved prefix: the exclusion is tested without naming its music.
    manifest = tmp_path / "corpus.json"
    package = f"{real_corpus.FORBIDDEN_PREFIXES[0]}made-up"
    manifest.write_text(json.dumps({"packages": [{"package": package, "tracks": []}]}))
    with pytest.raises(ValueError, match="reserved"):
        real_corpus.load_manifest(manifest)


def test_references_cover_the_corpus_with_a_valid_schema():
    references = json.loads(real_corpus.REFERENCES.read_text())["tracks"]
    assert set(references) == {t.id for t in real_corpus.corpus_tracks()}
    for ref in references.values():
        assert ref["bpm"] is None or 60 <= ref["bpm"] <= 200
        if ref["beats"] is not None:
            beats = np.array(ref["beats"])
            assert ref["bpm"] is not None and np.all(np.diff(beats) > 0)
            assert beats[-1] < ref["beats_until"]
        if ref["key"] is not None:
            key_index(PITCH_CLASSES.index(ref["key"]["tonic"]), ref["key"]["mode"])


def _result(bpm: float, key: int, first: float = 0.0) -> SimpleNamespace:
    return SimpleNamespace(bpm=bpm, key_index=key, grid=BeatGrid(bpm, first, 60.0))


def test_scoring_of_one_track():
    beats = list(np.arange(0.0, 30.0, 0.5))
    ref = {"bpm": 120.0, "beats": beats, "beats_until": 30.0,
           "key": {"tonic": "A", "mode": "minor"}}
    a_minor, c_major = key_index(9, "minor"), key_index(0, "major")
    exact = score_track(ref, _result(120.0, a_minor))
    assert exact["bpm_ok"] and exact["octave_ok"] and exact["key_ok"]
    assert exact["beat_f"] == pytest.approx(1.0)
    assert score_track(ref, _result(122.0, a_minor))["bpm_ok"]  # 1.7 % off
    assert not score_track(ref, _result(123.0, a_minor))["bpm_ok"]  # 2.5 % off
    double = score_track(ref, _result(240.0, c_major, first=0.25))
    assert not double["bpm_ok"] and double["octave_ok"] and double["key_or_relative"]
    assert not double["key_ok"]
    refused = score_track(ref, None)
    assert refused["bpm_ok"] is False and refused["beat_f"] == 0.0 and refused["key_ok"] is False
    unknown = score_track({**ref, "bpm": None, "beats": None, "key": None}, None)
    assert all(v is None for v in unknown.values())
