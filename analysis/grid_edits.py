"""Beat grids fixed by hand, kept per track and put over the analysed grid on the next load.

A DJ corrects a grid once (moved by a fraction of a beat, a downbeat set, the tempo halved or
tapped) and expects it back next time. The fixes live in one small JSON file in the analysis
cache directory, ``{content hash: {"bpm": .., "first_downbeat": ..}}``, keyed like the cache by
the track's bytes (``track_hash``), not its name or the analysis settings: a fix survives a new
analysis version, another separator or sample rate. The analysis cache itself is left as
analysed. Writes replace the file atomically; an unreadable file counts as empty.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

from .beats import BEATS_PER_BAR, BeatGrid
from .cache import default_cache_dir
from .features import segment, track_features
from .track import TrackAnalysis

FILE_NAME = "grid-edits.json"
# Tempi a grid may be set to: slower than 40 or faster than 300 BPM is a mis-tap or a halving
# too many, not music a DJ beat-matches.
BPM_RANGE = (40.0, 300.0)
_lock = threading.Lock()  # one read-modify-write of the file at a time in this process


def edits_file(root: Path | str | None = None) -> Path:
    return Path(root) / FILE_NAME if root is not None else default_cache_dir() / FILE_NAME


def check_bpm(bpm: float) -> float:
    """``bpm`` if it is a tempo a grid may have, else ValueError saying why."""
    lo, hi = BPM_RANGE
    if not math.isfinite(bpm) or not lo <= bpm <= hi:
        raise ValueError(f"{bpm:.2f} BPM is outside {lo:g}-{hi:g} BPM")
    return bpm


def shifted(grid: BeatGrid, beats: float) -> BeatGrid:
    """The grid moved later by ``beats`` (earlier when negative), tempo unchanged. The anchor is
    not folded back into the first bar, so every beat keeps its number."""
    return replace(grid, first_downbeat=grid.first_downbeat + beats * grid.beat_period)


def scaled(grid: BeatGrid, factor: float) -> BeatGrid:
    """The tempo times ``factor`` (0.5: half, 2: double) about the same anchor."""
    return replace(grid, bpm=check_bpm(grid.bpm * factor))


def anchored(grid: BeatGrid, seconds: float, bpm: float, beat_in_bar: int = 0) -> BeatGrid:
    """A grid at ``bpm`` with beat ``beat_in_bar`` (0: the downbeat) of a bar at ``seconds``;
    the anchor is its first downbeat in the track, as the analysis puts it."""
    period = 60.0 / check_bpm(bpm)
    bar = BEATS_PER_BAR * period
    return replace(grid, bpm=bpm, first_downbeat=(seconds - beat_in_bar * period) % bar)


def _read(path: Path) -> dict[str, dict[str, float]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_grid(key: str, grid: BeatGrid, root: Path | str | None = None) -> BeatGrid | None:
    """The fixed version of ``grid`` (the analysed one, for the fields a fix does not hold) for
    the track ``key``, or None when there is none or it is not a valid grid."""
    entry = _read(edits_file(root)).get(key)
    try:
        bpm, first = float(entry["bpm"]), float(entry["first_downbeat"])
        check_bpm(bpm)
    except (TypeError, KeyError, ValueError):
        return None
    if not math.isfinite(first):
        return None
    return replace(grid, bpm=bpm, first_downbeat=first)


def save_grid(key: str, grid: BeatGrid, root: Path | str | None = None) -> Path:
    """Keep ``grid`` as the fix for the track ``key``; returns the file's path."""
    path = edits_file(root)
    with _lock:
        edits = _read(path)
        edits[key] = {"bpm": grid.bpm, "first_downbeat": grid.first_downbeat}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(edits, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def with_grid(analysis: TrackAnalysis, grid: BeatGrid) -> TrackAnalysis:
    """``analysis`` on another grid: the sections and the model's features are in beat time, so
    they are made again on it (the stems, key and anything else stay)."""
    sections = tuple(segment(analysis.stems, analysis.sample_rate, grid))
    features = track_features(analysis.stems, analysis.sample_rate, grid, analysis.key_index,
                              list(sections))
    return replace(analysis, grid=grid, sections=sections, features=features)


def apply_saved(analysis: TrackAnalysis, key: str,
                root: Path | str | None = None) -> tuple[TrackAnalysis, bool]:
    """``analysis`` with the grid kept for the track ``key`` if there is one; and whether there
    was."""
    grid = load_grid(key, analysis.grid, root) if key else None
    if grid is None or grid == analysis.grid:
        return analysis, grid is not None
    return with_grid(analysis, grid), True
