"""Giving a deck's stems back to the system away from the audio callback.

A track's stems are hundreds of megabytes. Whichever thread drops their last reference frees
them, and numpy frees with the GIL held: 25 ms for 400 MB here, four callback periods at 256
frames, an xrun each time a set let a played track go in the callback. So the core hands every
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
    that nothing else holds; returns how many stems were freed that way."""
    freed = 0
    while tracks:
        freed += _release(tracks.popleft())
    return freed


def _release(track: Track) -> bool:
    # The references counted, beside getrefcount's own argument: this frame's, for the track;
    # the track's attribute and its analysis's (the same array, unless a copy was made), for
    # the stems; the stems' ``base``, for the array that owns their memory. The analysis, which
    # a key-lock copy shares, must be this track's alone. One more anywhere (a deck's other
    # copy, a view, the engine's list) and the stems are left alone.
    stems, analysis = track.stems, track.analysis
    in_analysis = analysis.stems is stems
    if sys.getrefcount(track) > 2 or (in_analysis and sys.getrefcount(analysis) > 3):
        return False
    # Here: the track's, the analysis's, the local name's and the argument.
    if sys.getrefcount(stems) > 3 + in_analysis:
        return False
    owner = stems.base
    # The owner's: the stems' base, the local name's and the argument.
    if isinstance(owner, np.ndarray) and sys.getrefcount(owner) > 3:
        return False
    return free_pages(stems)
