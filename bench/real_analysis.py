"""``bench/analysis.py --real``: the analysis against outside references on real recordings.

Each corpus track (bench/real_corpus.py, fetched on first use) is analysed from its file with an
empty cache and compared with bench/real_references.json, where two outside estimators agreed.
Accuracies count only the tracks that have that reference; a refused track counts as wrong.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import mir_eval
import numpy as np

from analysis.cache import AnalysisCache
from analysis.key import PITCH_CLASSES, key_index, relative_key
from analysis.track import AnalysisError, analyze
from real_corpus import REFERENCES, fetch

TEMPO_TOLERANCE = 0.02
BEAT_WINDOW = 0.07


def _bpm_within(found: float, reference: float, factors: tuple[float, ...]) -> bool:
    return any(abs(found - f * reference) <= TEMPO_TOLERANCE * f * reference for f in factors)


def score_track(reference: dict, result) -> dict:
    """Per-track scores against ``reference`` (None where it has no reference for that aspect);
    ``result`` is a TrackAnalysis, or None for a refused track."""
    bpm, beats, key = reference["bpm"], reference["beats"], reference["key"]
    scores: dict = {"bpm_ok": None, "octave_ok": None, "beat_f": None, "key_ok": None,
                    "key_or_relative": None}
    if bpm is not None:
        scores["bpm_ok"] = result is not None and _bpm_within(result.bpm, bpm, (1.0,))
        scores["octave_ok"] = result is not None and _bpm_within(result.bpm, bpm, (0.5, 1.0, 2.0))
    if beats is not None and result is None:
        scores["beat_f"] = 0.0
    elif beats is not None:
        found = result.grid.beat_times()
        found = found[found < reference["beats_until"]]
        scores["beat_f"] = float(mir_eval.beat.f_measure(np.array(beats), found, BEAT_WINDOW))
    if key is not None:
        truth = key_index(PITCH_CLASSES.index(key["tonic"]), key["mode"])
        found_key = result.key_index if result is not None else -1
        scores["key_ok"] = found_key == truth
        scores["key_or_relative"] = found_key in (truth, relative_key(truth))
    return scores


def _mean(rows: list[dict], name: str) -> float | None:
    values = [r[name] for r in rows if r[name] is not None]
    return float(np.mean(values)) if values else None


def run(sample_rate: int, limit: int | None) -> dict:
    """Analyse the corpus, print one line per track, return the summary."""
    references = json.loads(REFERENCES.read_text())["tracks"]
    tracks = [t for t in fetch() if t.id in references][:limit]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = AnalysisCache(Path(tmp) / "cache")
        for track in tracks:
            ref = references[track.id]
            t0 = time.perf_counter()
            try:
                result, refusal = analyze(track.path(), sample_rate, cache=cache), None
            except AnalysisError as err:
                result, refusal = None, str(err).rsplit(": ", 1)[-1]
            seconds = time.perf_counter() - t0
            rows.append({**score_track(ref, result), "seconds": seconds,
                         "minutes": ref["duration"] / 60, "refused": result is None})
            r = rows[-1]
            ref_bpm = f"{ref['bpm']:6.1f}" if ref["bpm"] is not None else "     ?"
            ref_key = f"{ref['key']['tonic']} {ref['key']['mode']}" if ref["key"] else "?"
            found = (f"{result.bpm:6.1f} BPM  beat F "
                     f"{'  -  ' if r['beat_f'] is None else format(r['beat_f'], '.3f')}  "
                     f"{ref_key:>9} -> {result.key_name:>9}" if result is not None
                     else f"REFUSED ({refusal})")
            print(f"{track.id:50.50s} {ref_bpm} -> {found}  {seconds:.1f} s", flush=True)
    counts = {name: sum(r[name] is not None for r in rows)
              for name in ("bpm_ok", "beat_f", "key_ok")}
    print(f"{len(rows)} tracks, {sum(r['minutes'] for r in rows):.1f} min of audio; with an agreed "
          f"tempo {counts['bpm_ok']}, beats {counts['beat_f']}, key {counts['key_ok']}")
    return {
        "real_tracks": len(rows),
        "real_refused": sum(r["refused"] for r in rows),
        "real_bpm_accuracy": _mean(rows, "bpm_ok"),
        "real_bpm_octave_accuracy": _mean(rows, "octave_ok"),
        "real_beat_f": _mean(rows, "beat_f"),
        "real_key_accuracy": _mean(rows, "key_ok"),
        "real_key_or_relative": _mean(rows, "key_or_relative"),
        "seconds_per_audio_minute": (sum(r["seconds"] for r in rows)
                                     / max(sum(r["minutes"] for r in rows), 1e-9)),
    }


def report(summary: dict) -> None:
    """The summary lines; the last line is the JSON."""
    for name, value in summary.items():
        print(f"  {name}: {value if value is None or isinstance(value, int) else round(value, 3)}")
    print(json.dumps({k: v if v is None or isinstance(v, int) else round(v, 4)
                      for k, v in summary.items()}))
