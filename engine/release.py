"""Giving a deck's stems back to the system away from the audio callback.

A track's stems are hundreds of megabytes. Whichever thread drops their last reference frees
them, and numpy frees with the GIL held: 25 ms for 400 MB here one day (four callback periods
at 256 frames, an xrun each time a set let a played track go in the callback), 2.5-6 ms
another, with huge pages (README, DJ set). So the core hands every
track it lets go to ``EngineCore.released`` instead, and the engine's release thread frees them
here, page range by page range, each ``madvise`` a foreign call that runs without the GIL.
"""

from __future__ import annotations

import ctypes
import mmap
import sys
from collections import deque

import numpy as np

from .deck import Track

CHUNK = 8 << 20  # bytes per madvise call: the process's memory map is locked for one at a time
# Linux: private anonymous pages are dropped at once and read back as zeros (other systems'
# MADV_DONTNEED only hints, so the array is left to free() there).
MADV_DONTNEED = 4
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
if _libc is not None:
    _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def _owner(array: np.ndarray) -> np.ndarray | None:
    """The array that owns the memory under ``array``, when ``array`` spans all of it (a
    track's stems read from the analysis cache are a reshaped view of the decoded array)."""
    owner = array
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    if owner.base is not None or not owner.flags.owndata:
        return None  # memory numpy does not own: a memory map, another object's buffer
    if owner.ctypes.data != array.ctypes.data or owner.nbytes != array.nbytes:
        return None
    return owner


def free_pages(array: np.ndarray) -> bool:
    """Give the whole pages under ``array`` back to the system; they read as zeros after. Only
    for an array that spans all of its memory (it owns it, or views all of an array that does)
    and that nothing will read again. False where it cannot (another system, memory that is not
    numpy's, or a part of a larger array)."""
    owner = _owner(array)
    if _libc is None or owner is None:
        return False
    page = mmap.PAGESIZE
    start = -(-owner.ctypes.data // page) * page
    end = (owner.ctypes.data + owner.nbytes) // page * page
    for at in range(start, end, CHUNK):
        if _libc.madvise(at, min(CHUNK, end - at), MADV_DONTNEED) != 0:
            return False  # what is left goes with free(), as without this
    return True


def release(tracks: deque[Track]) -> int:
    """Let go of the tracks in ``tracks`` (the core's ``released``), freeing the pages of stems
    that nothing else holds; returns how many stem arrays were freed that way."""
    freed = 0
    while tracks:
        freed += _release(tracks.popleft())
    return freed


def _release(track: Track) -> int:
    # References counted beside getrefcount's own argument. The track: this frame's. Its
    # analysis: the track's attribute and the name here (a key-lock copy shares its original's
    # analysis, whose stems are the original's). Stems: their holders' attributes and the name
    # here; the array that owns a view's memory: see _base_alone. One more anywhere (a deck's
    # other copy, a view, the engine's list) and those stems are left alone.
    if sys.getrefcount(track) > 2:
        return 0
    analysis, stems = track.analysis, track.stems
    analysis_alone = sys.getrefcount(analysis) <= 3
    original = analysis.stems
    if original is stems:  # the track's own analysis: the one array, held by both
        del original
        return int(analysis_alone and sys.getrefcount(stems) <= 4 and _base_alone(stems)
                   and free_pages(stems))
    freed = int(sys.getrefcount(stems) <= 3 and _base_alone(stems) and free_pages(stems))
    # A copy let go after its original: the original's stems go with it.
    if analysis_alone and sys.getrefcount(original) <= 3 and _base_alone(original):
        freed += free_pages(original)
    return freed


def _base_alone(array: np.ndarray) -> bool:
    """Whether the array that owns a view's memory is held by the view alone (its ``base``
    and the name here); True for an array that owns its memory."""
    base = array.base
    return not isinstance(base, np.ndarray) or sys.getrefcount(base) <= 3
