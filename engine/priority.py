"""Background processes yield the CPU to the engine's.

The audio callback runs on a real-time thread, but it needs the GIL, and the thread of the
engine's process that holds it (the loop, a track's read-back) is an ordinary thread. When the
generation worker (analysis, sampling) and key lock's stretcher keep every core busy, the
scheduler can take that thread off its core while it holds the GIL, and the callback waits until
it runs again. Beside two busy processes, a thread running Python for 3 ms every 20 ms held the
callback up over half its block 13-91 times in 20 s with the processes at the engine's priority,
1-3 times with them 10 or 19 nice levels below (README, DJ set). So the worker's process and the
stretcher's child lower their own priority first thing.
"""

from __future__ import annotations

import os

BACKGROUND_NICE = 10  # nice levels below the engine's process (Linux and macOS; 19 at most)


def run_in_background() -> None:
    """Lower this process's CPU priority by ``BACKGROUND_NICE``: called first in a child
    process, before it starts threads (on Linux a thread's priority is its own, and the threads
    it starts inherit it). Nothing where the system has no nice levels (Windows)."""
    if hasattr(os, "nice"):
        os.nice(BACKGROUND_NICE)
