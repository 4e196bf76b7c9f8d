"""Audio back ends running the same per-block code: a PortAudio stream (sounddevice) and an
offline renderer on a virtual clock."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from .core import CONTROL_BLOCK, EngineCore
from .recorder import Recorder

MAX_BLOCK = 8192
LOAD_HISTORY = 4096  # callback loads kept for the status's percentiles
# How long a thread may hold the GIL while the callback waits for it, while a stream plays.
# Python's default, 5 ms, is most of a 256-frame period (5.8 ms): beside a thread running Python
# (the engine's loop, a track's read-back, the web view's messages) a callback writing zeros on
# the JACK dummy server missed 117-336 periods in 20 s at 5 ms, 0-3 at 2 and 1 ms, 0-1 at 0.5
# ms; the engine's playing a deck, 163-173 in 3 s at 5 ms, 0 at 0.5 (README, DJ set).
SWITCH_INTERVAL_S = 0.0005
# A callback that waited longer than this share of its block for the interpreter (the GIL) was
# held up by a thread of the engine's. The machine's late wake-ups come before PortAudio calls
# the callback, outside this wait (a stall of the whole virtual machine inside it counts too).
HELD_UP = 0.5


class AudioDeviceError(RuntimeError):
    """An output device that cannot be found or opened; the message names it."""


class BlockAdapter:
    """Serves any host block size from the core's fixed control blocks."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core
        self._spare = np.zeros((2, CONTROL_BLOCK), dtype=np.float32)
        self._left = 0  # frames of _spare not yet played

    def render(self, out: np.ndarray) -> None:
        n = out.shape[1]
        k = min(self._left, n)
        out[:, :k] = self._spare[:, CONTROL_BLOCK - self._left:CONTROL_BLOCK - self._left + k]
        self._left -= k
        whole = (n - k) // CONTROL_BLOCK * CONTROL_BLOCK
        if whole:
            self.core.process(out[:, k:k + whole])
        rest = n - k - whole
        if rest:
            self.core.process(self._spare)
            out[:, n - rest:] = self._spare[:, :rest]
            self._left = CONTROL_BLOCK - rest


def output_devices() -> list[dict]:
    import sounddevice as sd

    return [d for d in sd.query_devices() if d["max_output_channels"] >= 2]


class AudioOutput:
    """The live back end: the core inside a PortAudio output callback.

    The callback does numpy on preallocated buffers only: the core's blocks, a copy into
    PortAudio's buffer and into the recorder's ring, and its own timing into a preallocated
    history. xruns are PortAudio's output-underflow flags.

    Each callback also measures how long it waited for the GIL: from PortAudio's call (its
    ``currentTime``) to the first line of Python, both on the stream's clock. An xrun with no
    long wait before it did not come from the GIL (its thread was woken late); one after a
    ``held_up`` callback did, most often because a thread of ours kept the GIL (a stall of the
    whole machine inside the wait is counted too).
    """

    def __init__(self, core: EngineCore, sample_rate: int, block_size: int,
                 device: str | int | None = None, latency: float | str = "low",
                 recorder: Recorder | None = None, history: int = LOAD_HISTORY,
                 switch_interval: float = SWITCH_INTERVAL_S) -> None:
        import sounddevice as sd

        self.adapter = BlockAdapter(core)
        self.recorder = recorder
        self.sample_rate = sample_rate
        self.block_size = block_size
        self.xruns = 0
        self.errors = 0
        self.frames_played = 0
        self.loads = np.zeros(history)  # callback time / block duration, the latest calls
        self.held_up = 0  # callbacks that waited over HELD_UP of their block for the GIL
        self.longest_wait = 0.0  # seconds, the longest such wait of the session
        self._calls = 0
        self._mix = np.zeros((2, MAX_BLOCK), dtype=np.float32)
        self.finished = False
        self.switch_interval = switch_interval
        self._interval_before: float | None = None
        try:
            self.stream = sd.OutputStream(
                samplerate=sample_rate, blocksize=block_size, device=device, channels=2,
                dtype="float32", latency=latency, callback=self._callback,
                finished_callback=self._on_finished)
        except (sd.PortAudioError, ValueError) as err:
            raise AudioDeviceError(f"audio output {device if device is not None else 'default'}:"
                                   f" cannot open ({err}); list devices with --list-devices, or "
                                   f"write a file with --render") from None

    def _callback(self, outdata: np.ndarray, frames: int, time_info, status) -> None:
        t0 = time.perf_counter()
        try:
            waited = self.stream.time - time_info.currentTime
            if waited > HELD_UP * frames / self.sample_rate:
                self.held_up += 1
            self.longest_wait = max(self.longest_wait, waited)
            if status.output_underflow:
                self.xruns += 1
            mix = self._mix[:, :frames]
            self.adapter.render(mix)
            outdata[:] = mix.T
            if self.recorder is not None:
                self.recorder.push(mix)
            self.frames_played += frames
        except Exception:  # noqa: BLE001 - the callback never raises
            outdata.fill(0.0)
            self.errors += 1
        elapsed = time.perf_counter() - t0
        self.loads[self._calls % self.loads.size] = elapsed * self.sample_rate / frames
        self._calls += 1

    def _on_finished(self) -> None:
        self.finished = True

    def load_percentiles(self) -> tuple[float, float, float]:
        """Median, p99 and max of the callback's time as a share of the block's duration."""
        n = min(self._calls, self.loads.size)
        if n == 0:
            return 0.0, 0.0, 0.0
        values = self.loads[:n]
        # One partition for both (the web view asks 20 times a second, holding the GIL the
        # callback needs): 132 us against 233 us for np.median and np.percentile apart.
        median, p99 = np.percentile(values, (50, 99))
        return float(median), float(p99), float(values.max())

    def summary(self) -> str:
        """What the stream did, for the end of a session (bench/controllers.py reads it)."""
        median, p99, _ = self.load_percentiles()
        return (f"played {self.frames_played / self.sample_rate:.1f} s: {self.xruns} xruns, "
                f"callback load {median:.0%} median, {p99:.0%} p99; held up by the GIL "
                f"{self.held_up} times, longest wait {self.longest_wait * 1000:.1f} ms")

    @property
    def output_latency(self) -> float:
        return float(self.stream.latency)

    def start(self) -> None:
        """Play; the process's GIL switch interval is ``switch_interval`` until ``stop``."""
        if self._interval_before is None:
            self._interval_before = sys.getswitchinterval()
        sys.setswitchinterval(self.switch_interval)
        self.stream.start()

    def stop(self) -> None:
        self.stream.stop()
        self.stream.close()
        if self._interval_before is not None:
            sys.setswitchinterval(self._interval_before)
            self._interval_before = None

    def __enter__(self) -> AudioOutput:
        """The open stream; ``start`` plays it, leaving stops and closes it."""
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Cue:
    """An action at a time in the offline render (the script's unit)."""

    at_sample: int
    action: Callable[[], None]


def unwritable(path: Path, sample_rate: int) -> str | None:
    """Why an audio file cannot be written at ``path`` (None: it can), found before the work
    that would fill it: a folder that does not exist, a format soundfile does not write."""
    if not path.parent.is_dir():
        return f"no folder {path.parent}"
    existed = path.exists()
    try:
        sf.SoundFile(path, "w", samplerate=sample_rate, channels=2, subtype="PCM_24").close()
    except (sf.LibsndfileError, TypeError, ValueError, OSError) as err:
        return f"cannot write this file ({err})"
    finally:
        if not existed:
            path.unlink(missing_ok=True)
    return None


def render_offline(core: EngineCore, n_samples: int, block_size: int, path: Path | None = None,
                   script: list[Cue] | None = None,
                   until: Callable[[], bool] | None = None) -> np.ndarray:
    """Render ``n_samples`` (or until ``until()`` is true after a block) on a virtual clock.

    Script actions run at their sample rounded up to the control grid, whatever ``block_size``,
    so a render does not depend on the block size. Returns the mix [2, n] and writes ``path``.
    """
    adapter = BlockAdapter(core)
    pending = sorted(script or [], key=lambda c: c.at_sample)
    chunks = []
    clock = 0
    while clock < n_samples:
        while pending and -(-pending[0].at_sample // CONTROL_BLOCK) * CONTROL_BLOCK <= clock:
            pending.pop(0).action()
        n = min(block_size, n_samples - clock)
        if pending:
            due = -(-pending[0].at_sample // CONTROL_BLOCK) * CONTROL_BLOCK
            n = min(n, due - clock)
        out = np.zeros((2, n), dtype=np.float32)
        adapter.render(out)
        chunks.append(out)
        clock += n
        if until is not None and until():
            break
    mix = np.concatenate(chunks, axis=1) if chunks else np.zeros((2, 0), np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, mix.T, core.sample_rate, subtype="PCM_24")
    return mix
