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
from .waveform import Waveform, stem_envelopes

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
    # For the web view; None for an analysis cached before it was made (the engine makes it).
    waveform: Waveform | None = None

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
    cache = cache if cache is not None else AnalysisCache(version=ANALYSIS_VERSION)
    digest_input, digest = _digests(path, sample_rate, separator, bpm_range)
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


def _digests(path: Path, sample_rate: int, separator: str | Separator,
             bpm_range: tuple[float, float]) -> tuple[str, str]:
    """The track's hash ("" for no file) and its cache key with the analysis's settings."""
    separator_name = separator if isinstance(separator, str) else separator.name
    settings = json.dumps({"rate": sample_rate, "separator": separator_name,
                           "bpm_range": list(bpm_range)})
    digest_input = track_hash(path)
    return digest_input, hashlib.sha256((digest_input + settings).encode()).hexdigest()


@dataclass(frozen=True)
class TrackSummary:
    """What a set's planning needs of a track, without its audio: small, picklable."""

    source: str
    bpm: float
    key_index: int
    loudness_lufs: float
    duration: float  # seconds
    sections: tuple[tuple[str, float, float], ...]
    confidence: float  # the beat grid's

    @property
    def title(self) -> str:
        return Path(self.source).name

    @property
    def camelot(self) -> str:
        return camelot(self.key_index)

    @property
    def drop_share(self) -> float:
        """The share of the track in its drops (all its stems at full level): how much of it
        is at full energy."""
        drops = sum(end - start for label, start, end in self.sections if label == "drop")
        return drops / self.duration if self.duration > 0 else 0.0


def summarize(result: TrackAnalysis) -> TrackSummary:
    return TrackSummary(result.source, result.bpm, result.key_index, result.loudness_lufs,
                        result.duration, result.sections, result.grid.confidence)


def cached_summary(path: Path | str, sample_rate: int = 44100,
                   separator: str | Separator = "dsp", cache: AnalysisCache | None = None,
                   bpm_range: tuple[float, float] = DEFAULT_BPM_RANGE) -> TrackSummary | None:
    """The summary of a track analysed before (its cache entry, without decoding the stems), or
    None when it has none."""
    path = Path(path)
    cache = cache if cache is not None else AnalysisCache(version=ANALYSIS_VERSION)
    digest_input, digest = _digests(path, sample_rate, separator, bpm_range)
    arrays = cache.load(digest) if digest_input else None
    if arrays is None or not cache.audio_entry(digest).is_file():
        return None
    try:
        bpm, _, duration, confidence, _ = arrays["grid"]
        sections = _sections(arrays)
        return TrackSummary(str(path), float(bpm), int(arrays["key_index"]),
                            float(arrays["loudness_lufs"]), float(duration), sections,
                            float(confidence))
    except (KeyError, ValueError):
        return None


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
                         integrated_loudness(mix, sample_rate), stem_envelopes(stems, sample_rate))


def _to_arrays(result: TrackAnalysis) -> dict[str, np.ndarray]:
    arrays = {f"features.{f.name}": np.asarray(getattr(result.features, f.name))
              for f in fields(TrackFeatures)}
    labels, starts, ends = zip(*result.sections)
    return {**arrays,
            "grid": np.array([result.grid.bpm, result.grid.first_downbeat, result.grid.duration,
                              result.grid.confidence, result.grid.unfolded_bpm or 0.0]),
            "key_index": np.array(result.key_index),
            "loudness_lufs": np.array(result.loudness_lufs),
            "section_labels": np.array(labels), "section_bounds": np.array([starts, ends]).T,
            **({} if result.waveform is None else {
                "wave_peak": result.waveform.peak, "wave_rms": result.waveform.rms,
                "wave_rate": np.array(result.waveform.points_per_second)})}


def _sections(arrays: dict[str, np.ndarray]) -> tuple[tuple[str, float, float], ...]:
    """The sections of a cache entry (KeyError: an entry from an older layout)."""
    return tuple((str(label), float(a), float(b)) for label, (a, b)
                 in zip(arrays["section_labels"], arrays["section_bounds"]))


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
        sections = _sections(arrays)
        key_index = int(arrays["key_index"])
        loudness = float(arrays["loudness_lufs"])
    except (KeyError, ValueError):
        return None  # an entry from an older layout: recompute
    waveform = Waveform(arrays["wave_peak"], arrays["wave_rms"], float(arrays["wave_rate"])) \
        if "wave_peak" in arrays else None
    stems = audio.reshape(len(STEMS), 2, -1)
    grid = BeatGrid(float(bpm), float(first), float(duration), float(confidence),
                    float(unfolded) or None)
    return TrackAnalysis(source, sample_rate, stems, grid, key_index, sections, features,
                         loudness, waveform)
