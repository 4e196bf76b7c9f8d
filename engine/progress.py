"""Progress lines for the parts of a start that take seconds (importing the libraries, analysing,
sampling, rendering), so that a first run is never silent.

Standard library only: ``main.py`` imports this before torch, librosa and numba, and the clock
starts then.
"""

from __future__ import annotations

import time

_START = time.perf_counter()


def elapsed() -> float:
    """Seconds since the program started (since this module was first imported)."""
    return time.perf_counter() - _START


def say(text: str) -> None:
    """``[  3.2 s] text`` on stdout, flushed: a pipe or a file would hold it back otherwise."""
    print(f"[{elapsed():5.1f} s] {text}", flush=True)
