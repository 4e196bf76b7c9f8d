"""Key lock's time-stretch: the candidates' speed and quality, and what stretching does to the GIL.

    .venv/bin/python bench/keylock.py [--seconds 20] [--track-seconds 60]

Candidates with MIT/ISC licences (pytsmod is GPL, pyrubberband drives the GPL rubberband program,
pedalboard is GPL): Signalsmith Stretch through python-stretch (default and cheaper presets),
audiotsm's WSOLA and phase vocoder (the dev extra), librosa's phase vocoder.

1. Speed: the four stereo stems of a generated track at 44.1 kHz stretched by 1.05, in seconds
   of stems per second of wall time (median of 3; ``--seconds`` of stems).
2. Quality, stretching by 1.05: a 440 Hz sine's pitch error (cents) and the energy away from it
   (more than 10 Hz off, dB under the total: phasiness, modulation); clicks every 0.5 s, the
   largest distance (ms) of an onset from where the ratio puts it; the length error (samples).
3. The GIL: a thread that sleeps 1 ms in a loop records its longest wait while the shipped
   stretcher works on ``--track-seconds`` of stems in a thread of this process, and while a
   ``StretchJob`` (a child process) does the same; the audio callback would wait as long.
   Its longest wait over 5 s with nothing running is the baseline (the OS's scheduling). The
   job's wall time is the time from a tempo change to key lock.

The last line is JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import librosa
import numpy as np
import python_stretch as ps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.synth import render_track  # noqa: E402
from engine.stretch import StretchJob, stretch_stems  # noqa: E402

SR = 44100
FACTOR = 1.05
TONE = 440.0

Stretcher = Callable[[np.ndarray, float], np.ndarray]  # stems [4, 2, N] -> [4, 2, ~N / factor]


def signalsmith_cheaper(stems: np.ndarray, factor: float) -> np.ndarray:
    out = []
    for stem in stems:
        stretch = ps.Signalsmith.Stretch(0)
        stretch.preset(stem.shape[0], float(SR), True)
        stretch.timeFactor = factor
        out.append(stretch.process(np.array(stem, dtype=np.float32)))
    return np.stack(out)


def audiotsm_method(name: str) -> Stretcher:
    def run(stems: np.ndarray, factor: float) -> np.ndarray:
        import audiotsm
        from audiotsm.io.array import ArrayReader, ArrayWriter

        flat = stems.reshape(-1, stems.shape[-1])
        writer = ArrayWriter(flat.shape[0])
        getattr(audiotsm, name)(flat.shape[0], speed=factor).run(ArrayReader(flat), writer)
        return writer.data.reshape(*stems.shape[:2], -1).astype(np.float32)
    return run


def librosa_vocoder(stems: np.ndarray, factor: float) -> np.ndarray:
    return librosa.effects.time_stretch(stems, rate=factor).astype(np.float32)


def candidates() -> dict[str, Stretcher]:
    found = {"signalsmith": lambda s, f: stretch_stems(s, f, SR),
             "signalsmith_cheaper": signalsmith_cheaper}
    if importlib.util.find_spec("audiotsm") is not None:
        found["audiotsm_wsola"] = audiotsm_method("wsola")
        found["audiotsm_phasevocoder"] = audiotsm_method("phasevocoder")
    else:
        print("audiotsm not installed (pip install -e '.[dev]'): left out")
    found["librosa_phasevocoder"] = librosa_vocoder
    return found


def speed(stretch: Stretcher, stems: np.ndarray, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        stretch(stems, FACTOR)
        times.append(time.perf_counter() - t0)
    return stems.shape[-1] / SR / float(np.median(times))


def quality(stretch: Stretcher) -> dict[str, float]:
    n = 6 * SR
    t = np.arange(n) / SR
    stems = np.zeros((4, 2, n), dtype=np.float32)
    stems[3] = 0.5 * np.sin(2 * np.pi * TONE * t)
    clicks = (np.arange(1, 12) * 0.5 * SR).astype(int)
    for k in clicks:
        stems[0, :, k:k + 32] = np.hanning(32)
    out = stretch(stems, FACTOR)
    # The tone, away from the ends.
    x = out[3, 0, SR:-SR].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size), 8 * x.size)) ** 2 + 1e-30
    k = int(np.argmax(spectrum))
    a, b, g = np.log(spectrum[k - 1:k + 2])
    freq = (k + 0.5 * (a - g) / (a - 2 * b + g)) * SR / (8 * x.size)
    freqs = np.fft.rfftfreq(8 * x.size, 1 / SR)
    away = spectrum[np.abs(freqs - TONE) > 10].sum() / spectrum.sum()
    # Onsets: the envelope's peak near where each click belongs.
    errors = []
    for k in clicks:
        expected = (k + 16) / FACTOR
        lo = int(expected) - SR // 20
        found = lo + int(np.argmax(np.abs(out[0, 0, lo:lo + SR // 10])))
        errors.append(abs(found - expected))
    return {"pitch_error_cents": round(float(1200 * np.log2(freq / TONE)), 3),
            "off_tone_db": round(float(10 * np.log10(away)), 1),
            "onset_error_ms": round(float(1000 * max(errors) / SR), 2),
            "length_error_samples": int(out.shape[-1] - round(n / FACTOR))}


class Ticker:
    """A thread sleeping 1 ms in a loop; ``longest`` is its longest wait for the GIL and the
    clock (a callback would wait as long)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def gil(stems: np.ndarray) -> dict[str, float]:
    with Ticker() as idle:  # the baseline: the OS's scheduling on a busy machine
        time.sleep(5.0)
    with Ticker() as in_thread:
        t0 = time.perf_counter()
        worker = threading.Thread(target=stretch_stems, args=(stems, FACTOR, SR))
        worker.start()
        worker.join()
        thread_seconds = time.perf_counter() - t0
    finished = threading.Event()
    with Ticker() as in_process:
        t0 = time.perf_counter()
        StretchJob(stems, FACTOR, SR, lambda job, result: finished.set())
        finished.wait()
        job_seconds = time.perf_counter() - t0
    return {"wait_ms_idle": round(1000 * idle.longest, 1),
            "gil_wait_ms_thread": round(1000 * in_thread.longest, 1),
            "gil_wait_ms_process": round(1000 * in_process.longest, 1),
            "thread_seconds": round(thread_seconds, 2),
            "job_seconds": round(job_seconds, 2)}


def track_stems(seconds: float) -> np.ndarray:
    bars = int(np.ceil(seconds / (4 * 60 / 124.0)))
    stems = render_track(seed=7, bpm=124.0, bars=bars).stems[..., :int(seconds * SR)]
    return np.ascontiguousarray(stems, dtype=np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0, help="stems per speed run")
    p.add_argument("--track-seconds", type=float, default=60.0, help="track for the GIL run")
    args = p.parse_args()
    stems = track_stems(args.seconds)
    results: dict[str, dict[str, float]] = {}
    for name, stretch in candidates().items():
        stretch(stems[..., :SR], FACTOR)  # warm up (imports, caches)
        results[name] = {"x_realtime": round(speed(stretch, stems), 1), **quality(stretch)}
        print(f"{name:<22} {results[name]}", flush=True)
    results["keylock"] = gil(track_stems(args.track_seconds))
    print(f"{'keylock':<22} {results['keylock']}")
    results["track_seconds"] = args.track_seconds
    print(json.dumps(results))


if __name__ == "__main__":
    main()
