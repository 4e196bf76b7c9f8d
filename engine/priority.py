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
    """Lower this process's CPU priority by ``BACKGROUND_NICE``, for every thread it has and
    will start. On Linux a thread's nice level is its own (a new thread takes its creator's), and
    a child has threads before its first line runs: numpy's BLAS pool starts at import, and it
    does the analysis's matrix work. Nothing where the system has no nice levels (Windows)."""
    if not hasattr(os, "nice"):
        return
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:  # not Linux: the nice level is the process's
        os.nice(BACKGROUND_NICE)
        return
    for tid in threads:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(
                19, os.getpriority(os.PRIO_PROCESS, tid) + BACKGROUND_NICE))
        except ProcessLookupError:  # a thread that ended meanwhile
            pass
