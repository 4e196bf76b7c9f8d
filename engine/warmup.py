"""The warm-up that ``setup.sh`` runs (``main.py --warm-up``), so that the demo's first run does
not compile: numba compiles every kernel once into its on-disk cache, and the demo's inputs are
made and analysed into the analysis cache.

numba keys a cache entry on the argument types, so the kernels are warmed through the code that
uses them, on the same kinds of arrays: librosa's in the analysis of the demo's stem folders and
of a short generated file (the stem separator's), the project's in an ``EngineCore`` (the mixer's
filter design and per-sample kernels, the limiter, the decks' reader). numba writes the entries
beside the sources (``__pycache__``) where it can, else under ``~/.cache/numba``, or in
``$NUMBA_CACHE_DIR`` when that is set.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import soundfile as sf

from analysis.cache import AnalysisCache
from analysis.synth import demo_tracks, render_track
from analysis.track import ANALYSIS_VERSION, analyze

from . import progress
from .config import EngineConfig
from .core import EngineCore

SHORT_FILE_BARS = 8


def warm_up() -> int:
    """Fill numba's cache and the demo's analysis; the exit code of the command."""
    config = EngineConfig()
    rate = config.sample_rate
    progress.say("warm-up: the demo's two tracks, made and analysed as its first run would "
                 "(compiles librosa's kernels)")
    for path in demo_tracks(rate):
        analyze(path, rate, config.separator)
    progress.say(f"warm-up: a {SHORT_FILE_BARS}-bar generated file through the stem separator")
    with tempfile.TemporaryDirectory(prefix="automix-warm-up-") as tmp:
        file = Path(tmp) / "short.wav"
        sf.write(file, render_track(seed=0, bars=SHORT_FILE_BARS, sample_rate=rate).mix.T, rate)
        # Its own cache: the short file is no track of the user's.
        analyze(file, rate, config.separator, cache=AnalysisCache(tmp, ANALYSIS_VERSION))
    progress.say("warm-up: the mixer's, the limiter's and the decks' kernels")
    EngineCore(rate, levels=config.levels)
    progress.say("warm-up: done")
    return 0
