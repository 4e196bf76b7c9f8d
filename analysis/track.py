"""Everything the engine and the model need to know about a track, from one file, cached.

``analyze(path)`` decodes the file (or a folder of pre-separated stems), separates the stems,
fits the beat grid, estimates the key, segments the arrangement and computes the conditioning
features on the shared time base. The result is cached by content hash; a second call for the
same file reads the cache instead.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from effects.params import STEMS

from .audio import load_audio, load_stem_folder
from .beats import BEATS_PER_BAR, DEFAULT_BPM_RANGE, BeatGrid, estimate_beat_grid
from .cache import AnalysisCache, content_hash
from .features import TrackFeatures, frame_rms, segment, track_features
from .key import KEY_NAMES, camelot, estimate_key
from .loudness import integrated_loudness
from .separation import Separator, get_separator

# Bump when any analysis step changes its results: old cache entries are then recomputed.
ANALYSIS_VERSION = 3
# Vocals count as present in a bar within this many dB of the track's loudest vocal bar: above the
# DSP separator's leakage of the other stems into the vocal stem.
VOCALS_WITHIN_DB = 15.0


class AnalysisError(ValueError):
    """A track that loaded but could not be analysed; the message names the file and the step."""


@dataclass(frozen=True)
class TrackAnalysis:
    source: str
    sample_rate: int
    stems: np.ndarray  # float32 [4, 2, samples] in STEMS order; they sum to the track
    grid: BeatGrid
    key_index: int  # into analysis.key.KEY_NAMES: 12 major then 12 minor
    sections: tuple[tuple[str, float, float], ...]  # (label, start s, end s)
    features: TrackFeatures
    loudness_lufs: float  # integrated (BS.1770) of the stems' sum; -inf for silence

    @property
    def bpm(self) -> float:
        return self.grid.bpm

    @property
    def key_name(self) -> str:
        return KEY_NAMES[self.key_index]

    @property
    def camelot(self) -> str:
        return camelot(self.key_index)

    @property
    def duration(self) -> float:
        return self.stems.shape[-1] / self.sample_rate


def vocal_bars(result: TrackAnalysis) -> np.ndarray:
    """Whether each bar from the first downbeat carries vocals (bool [bars])."""
    grid = result.grid
    bar = BEATS_PER_BAR * grid.beat_period
    edges = np.arange(grid.first_downbeat, grid.duration + 1e-9, bar)
    if edges.size < 2:
        return np.zeros(0, dtype=bool)
    level = 20 * np.log10(frame_rms(result.stems[2], result.sample_rate, edges) + 1e-9)
    return level > level.max() - VOCALS_WITHIN_DB


def track_hash(path: Path | str) -> str:
    """What identifies a track's music: the hash of its file's bytes, or of its stem files'
    (a folder); "" for a path that is neither."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.stem.lower() in STEMS)
        return "".join(content_hash(p) for p in files) + "stems"
    return content_hash(path) if path.is_file() else ""


def analyze(path: Path | str, sample_rate: int = 44100, separator: str | Separator = "dsp",
            cache: AnalysisCache | None = None,
            bpm_range: tuple[float, float] = DEFAULT_BPM_RANGE) -> TrackAnalysis:
    """Analyse an audio file or a folder of drums/bass/vocals/other stems.

    ``separator`` is a name for ``get_separator`` ("dsp", "demucs") or a separator object.
    Raises ``analysis.audio.AudioLoadError`` for files that cannot be read and ``AnalysisError``
    for music the analysis cannot make sense of; in both cases nothing is cached.
    """
    path = Path(path)
    separator_name = separator if isinstance(separator, str) else separator.name
    cache = cache if cache is not None else AnalysisCache(version=ANALYSIS_VERSION)
    settings = json.dumps({"rate": sample_rate, "separator": separator_name,
                           "bpm_range": list(bpm_range)})
    digest_input = track_hash(path)
    digest = hashlib.sha256((digest_input + settings).encode()).hexdigest()
    if digest_input:
        cached = _from_cache(cache, digest, str(path), sample_rate)
        if cached is not None:
            return cached

    if path.is_dir():
        stems = load_stem_folder(path, sample_rate)
    else:
        if isinstance(separator, str):
            separator = get_separator(separator)
        stems = separator.separate(load_audio(path, sample_rate), sample_rate)
    result = analyze_stems(stems, sample_rate, source=str(path), bpm_range=bpm_range)
    cache.save_audio(digest, result.stems.reshape(-1, result.stems.shape[-1]), sample_rate)
    cache.save(digest, _to_arrays(result))
    return result


def analyze_stems(stems: np.ndarray, sample_rate: int, source: str = "<stems>",
                  bpm_range: tuple[float, float] = DEFAULT_BPM_RANGE) -> TrackAnalysis:
    """The analysis of a track already split into stems [4, 2, samples] (nothing cached)."""
    mix = stems.sum(axis=0)
    try:
        grid = estimate_beat_grid(mix, sample_rate, bpm_range)
    except ValueError as err:
        raise AnalysisError(f"{source}: beat grid: {err}") from None
    # The key from the whole mix: the chroma keeps tonal peaks only, so drums hardly count, and
    # the DSP separator's stems without drums lost harmony (real corpus: key or relative 0.82
    # from them, 0.89 from the mix).
    key_index, _ = estimate_key(mix, sample_rate)
    sections = tuple(segment(stems, sample_rate, grid))
    features = track_features(stems, sample_rate, grid, key_index, list(sections))
    return TrackAnalysis(source, sample_rate, stems, grid, key_index, sections, features,
                         integrated_loudness(mix, sample_rate))


def _to_arrays(result: TrackAnalysis) -> dict[str, np.ndarray]:
    arrays = {f"features.{f.name}": np.asarray(getattr(result.features, f.name))
              for f in fields(TrackFeatures)}
    labels, starts, ends = zip(*result.sections)
    return {**arrays,
            "grid": np.array([result.grid.bpm, result.grid.first_downbeat, result.grid.duration,
                              result.grid.confidence, result.grid.unfolded_bpm or 0.0]),
            "key_index": np.array(result.key_index),
            "loudness_lufs": np.array(result.loudness_lufs),
            "section_labels": np.array(labels), "section_bounds": np.array([starts, ends]).T}


def _from_cache(cache: AnalysisCache, digest: str, source: str,
                sample_rate: int) -> TrackAnalysis | None:
    arrays = cache.load(digest)
    audio = cache.load_audio(digest) if arrays is not None else None
    if arrays is None or audio is None:
        return None
    try:
        values = {f.name: arrays[f"features.{f.name}"] for f in fields(TrackFeatures)}
        values["start_beat"] = int(values["start_beat"])
        features = TrackFeatures(**values)
        bpm, first, duration, confidence, unfolded = arrays["grid"]
        sections = tuple((str(label), float(a), float(b)) for label, (a, b)
                         in zip(arrays["section_labels"], arrays["section_bounds"]))
        key_index = int(arrays["key_index"])
        loudness = float(arrays["loudness_lufs"])
    except (KeyError, ValueError):
        return None  # an entry from an older layout: recompute
    stems = audio.reshape(len(STEMS), 2, -1)
    grid = BeatGrid(float(bpm), float(first), float(duration), float(confidence),
                    float(unfolded) or None)
    return TrackAnalysis(source, sample_rate, stems, grid, key_index, sections, features,
                         loudness)
