"""Time-stretching for key lock: Signalsmith Stretch (the python-stretch binding, MIT) on a deck's
stems, away from the audio callback.

The binding stretches a whole buffer per call (latency compensated, so onsets stay where the
ratio puts them, and no seams) and holds the GIL while it works: seconds per minute of four
stereo stems, when the callback needs the GIL every few milliseconds. So live, a ``StretchJob``
runs this module as a program in a child process (a multiprocessing child would first import the
parent's main module: seconds of torch and the rest for every stretch), and the stems go there
and back through memory-mapped files (numpy copies them without holding the GIL). Figures
against audiotsm and librosa, and the GIL measurement: bench/keylock.py.
"""

from __future__ import annotations

import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from typing import Callable, Iterator

import numpy as np
import python_stretch as ps

from .priority import run_in_background

MIN_FACTOR, MAX_FACTOR = 0.25, 4.0
_PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where engine/ is


def check_factor(factor: float) -> float:
    factor = float(factor)
    if not MIN_FACTOR <= factor <= MAX_FACTOR:  # NaN fails too
        raise ValueError(f"stretch factor {factor}: choose {MIN_FACTOR} to {MAX_FACTOR}")
    return factor


def stretched(stems: np.ndarray, factor: float, sample_rate: int) -> Iterator[np.ndarray]:
    """Each stem of ``stems`` (float32 [S, channels, N]) played ``factor`` times faster at the
    same pitch, one at a time: [channels, about N / factor]. Deterministic (a fixed seed)."""
    factor = check_factor(factor)
    for stem in stems:
        stretch = ps.Signalsmith.Stretch(0)
        stretch.preset(stems.shape[1], float(sample_rate))
        stretch.timeFactor = factor
        # A writable copy: the binding refuses read-only arrays (a memory map opened for reading).
        yield np.ascontiguousarray(stretch.process(np.array(stem, dtype=np.float32)),
                                   dtype=np.float32)


def stretch_stems(stems: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """All of ``stretched`` as one array [S, channels, about N / factor]."""
    out = None
    for s, stem in enumerate(stretched(stems, factor, sample_rate)):
        if out is None:
            out = np.empty((stems.shape[0], *stem.shape), dtype=np.float32)
        out[s] = stem
    return out


def _scratch_dir(nbytes: int) -> str | None:
    """Memory-backed /dev/shm when it has room for both copies (containers often give it 64 MB),
    else the temp folder (None). From /dev/shm the copy is played where it lies (``_mapped``)."""
    try:
        return "/dev/shm" if shutil.disk_usage("/dev/shm").free > 3 * nbytes else None
    except OSError:
        return None


class StretchJob:
    """``stretch_stems`` in a child process, waited on by a thread. ``done(job, result)`` gets
    the stretched stems or the error, on that thread; never after ``cancel()``."""

    def __init__(self, stems: np.ndarray, factor: float, sample_rate: int,
                 done: Callable[[StretchJob, np.ndarray | BaseException], None]) -> None:
        self.factor = check_factor(factor)
        self._lock = threading.Lock()  # between cancel() and the thread starting the process
        self._cancelled = False
        self._process: subprocess.Popen | None = None
        # Held until copied for the child, then let go: a deck may let its track go while the
        # child stretches (an eject, a set's transition's end), and the stems must then go with
        # the release thread (engine/release.py), not with this thread when it ends.
        self._stems: np.ndarray | None = stems
        self._thread = threading.Thread(target=self._run, args=(sample_rate, done),
                                        daemon=True, name="key-lock")
        self._thread.start()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._process is not None:
                self._process.terminate()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self, sample_rate: int, done) -> None:
        try:
            result: np.ndarray | BaseException | None = self._stretch(sample_rate)
        except Exception as err:  # noqa: BLE001 - handed to done()
            result = err
        if not self._cancelled and result is not None:
            done(self, result)

    def _stretch(self, sample_rate: int) -> np.ndarray | None:
        stems, self._stems = self._stems, None
        shape = stems.shape
        scratch = _scratch_dir(stems.nbytes)
        in_memory = scratch is not None
        with tempfile.TemporaryDirectory(prefix="automix-keylock-", dir=scratch) as tmp:
            src, dst = os.path.join(tmp, "in.f32"), os.path.join(tmp, "out.f32")
            np.memmap(src, np.float32, "w+", shape=shape)[:] = stems
            del stems
            with self._lock:
                if self._cancelled:
                    return None
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "engine.stretch", src, dst, *map(str, shape),
                     repr(self.factor), str(sample_rate)], cwd=_PROJECT,
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, err = self._process.communicate()
            if self._cancelled:
                return None
            if self._process.returncode != 0:
                lines = err.decode(errors="replace").strip().splitlines()
                why = lines[-1] if lines else f"exit code {self._process.returncode}"
                raise RuntimeError(f"time-stretch to {self.factor:.4f}x failed: {why}")
            per_sample = shape[0] * shape[1] * 4
            stretched = (*shape[:2], os.path.getsize(dst) // per_sample)
            if in_memory:
                return _mapped(dst, stretched)
            out = np.empty(stretched, dtype=np.float32)
            out[:] = np.memmap(dst, np.float32, "r", shape=stretched)
            return out


def _mapped(path: str, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 stems in ``path`` (memory-backed) as an array over the file's own pages: no
    copy, and no fresh memory for the process to fault in and clear (where fresh memory is
    costly, a virtual machine's, that made the callback late while a copy came back). The pages
    stay when the file is deleted, until the array goes. Shared and writable, because the deck's
    reader is compiled for writable arrays; nothing writes to it. Read once here (a strided
    read, without the GIL) so that the callback does not fault the pages in."""
    with open(path, "r+b") as file:
        pages = mmap.mmap(file.fileno(), 0)
    stems = np.frombuffer(pages, np.float32).reshape(shape)
    stems.reshape(-1)[::mmap.PAGESIZE // 4].max()
    return stems


def main(argv: list[str]) -> int:
    """The child: ``python -m engine.stretch SRC DST STEMS CHANNELS SAMPLES FACTOR RATE``
    stretches the raw float32 stems in SRC into DST."""
    run_in_background()
    src, dst, n_stems, channels, samples, factor, rate = argv
    stems = np.memmap(src, np.float32, "r", shape=(int(n_stems), int(channels), int(samples)))
    with open(dst, "wb") as out:  # stem by stem: [S, channels, N] in order, one stem in memory
        for stem in stretched(stems, float(factor), int(rate)):
            stem.tofile(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
