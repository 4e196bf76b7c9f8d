"""Track analysis: audio I/O, stems, beat grid, key, structure, energy and mels, cached."""

from .audio import AudioLoadError, load_audio, load_stem_folder
from .beats import BeatGrid, estimate_beat_grid
from .cache import AnalysisCache
from .features import FRAMES_PER_BEAT, STRUCTURE_LABELS, TrackFeatures
from .key import KEY_NAMES, camelot, compatible, estimate_key
from .track import ANALYSIS_VERSION, AnalysisError, TrackAnalysis, analyze, analyze_stems

__all__ = ["ANALYSIS_VERSION", "AnalysisCache", "AnalysisError", "AudioLoadError", "BeatGrid",
           "FRAMES_PER_BEAT", "KEY_NAMES", "STRUCTURE_LABELS", "TrackAnalysis", "TrackFeatures",
           "analyze", "analyze_stems", "camelot", "compatible", "estimate_beat_grid",
           "estimate_key", "load_audio", "load_stem_folder"]
