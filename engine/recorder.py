"""Recording what was played: the callback copies each block into a preallocated ring buffer,
a writer thread drains it into the file.

The ring is single-producer single-consumer: the callback alone moves ``_written`` and the
writer alone moves ``_read`` (Python int assignments are atomic), so neither ever waits. A block
that does not fit is dropped and counted: the recording's length then falls short by exactly
``dropped_frames``, and the loop reports it. A failed write (a full disk) stops writing, keeps
the frames already written in a valid file, and is reported the same way.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import soundfile as sf


class RecorderError(OSError):
    """A recording that cannot be opened; the message names the file."""


class Recorder:
    def __init__(self, path: Path | str, sample_rate: int, seconds: float = 30.0,
                 subtype: str = "PCM_24") -> None:
        self.path = Path(path)
        self.sample_rate = sample_rate
        self._ring = np.zeros((int(seconds * sample_rate), 2), dtype=np.float32)
        self._written = 0  # frames pushed, ever (callback side)
        self._read = 0  # frames written to the file (writer side)
        self._overflow = 0  # frames that found the ring full
        self._lost = 0  # frames that could not be written to the file
        self.error = ""
        self._stop = threading.Event()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Opened here so that a path that cannot be written fails before the music starts.
        try:
            self._file = sf.SoundFile(self.path, "w", samplerate=sample_rate, channels=2,
                                      subtype=subtype)
        except (OSError, RuntimeError, TypeError) as err:
            raise RecorderError(f"{self.path}: cannot record there ({err})") from None
        self._thread = threading.Thread(target=self._drain_loop, name="recorder", daemon=True)
        self._thread.start()

    def push(self, block: np.ndarray) -> None:
        """Append a played block [2, n] (callback side: copies, never blocks)."""
        n = block.shape[1]
        size = self._ring.shape[0]
        if self._written + n - self._read > size:
            self._overflow += n
            return
        start = self._written % size
        first = min(n, size - start)
        self._ring[start:start + first] = block[:, :first].T
        self._ring[:n - first] = block[:, first:].T
        self._written += n

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def summary(self) -> str:
        """What the file holds of what was played (after ``close``)."""
        played = self._written + self._overflow
        return (f"recorded {played - self.dropped_frames} of {played} frames played to "
                f"{self.path}"
                + (f"; {self.dropped_frames} dropped" if self.dropped_frames else "")
                + (f"; {self.error}" if self.error else ""))

    @property
    def dropped_frames(self) -> int:
        """Frames played but not in the file: a full ring, or a failed write."""
        return self._overflow + self._lost

    def _drain(self) -> None:
        size = self._ring.shape[0]
        while self._read < self._written:
            start = self._read % size
            end = min(self._written, self._read - start + size)  # up to the ring's end
            chunk = self._ring[start:start + end - self._read]
            if not self.error:
                try:
                    self._file.write(chunk)
                except (OSError, sf.SoundFileRuntimeError) as err:
                    self.error = f"{self.path}: recording stopped ({err})"
            if self.error:
                self._lost += chunk.shape[0]
            self._read = end

    def _drain_loop(self) -> None:
        while not self._stop.wait(0.02):
            self._drain()

    def close(self) -> None:
        """Write what is left and close the file with a valid header."""
        self._stop.set()
        self._thread.join()
        self._drain()
        try:
            self._file.close()
        except (OSError, sf.SoundFileRuntimeError) as err:
            self.error = self.error or f"{self.path}: could not close ({err})"
        if self.error:
            # A failed write may have written part of its chunk: count from the file itself.
            try:
                kept = sf.info(self.path).frames
            except (OSError, RuntimeError):
                kept = 0
            self._lost = self._written - kept
