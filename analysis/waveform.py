"""A track's waveform for the web view: each stem's peak and RMS over short windows, one byte a
value, made once per track with its analysis (in the generation worker, kept in the analysis
cache), so the engine's process only reads it.

At 50 points a second a five-minute track is 15,000 points: 120 kB for four stems' peaks and
RMS, which the page pools into its overview and draws its zoomed view from (12 s across 1,400
pixels, its default, is about 2 pixels a point). Values are on a square-root scale of the
amplitude, so quiet passages keep some resolution in a byte (-40 dBFS is 25 of 255 rather
than 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POINTS_PER_SECOND = 50
CHUNK_POINTS = 500  # points made per numpy call: its GIL holds and temporaries stay short


@dataclass(frozen=True)
class Waveform:
    peak: np.ndarray  # uint8 [stems, points], round(255 * sqrt(amplitude))
    rms: np.ndarray  # the same
    points_per_second: float


def stem_envelopes(stems: np.ndarray, sample_rate: int, points_per_second: int = POINTS_PER_SECOND
                   ) -> Waveform:
    """Peak and RMS of each stem of ``stems`` [stems, channels, samples] over windows of
    ``sample_rate // points_per_second`` samples, both channels together: uint8 [stems, points]
    each, ``round(255 * sqrt(amplitude))`` with amplitudes above 1 counted as 1; and the points
    a second that this makes exactly."""
    hop = sample_rate // points_per_second
    n_stems, channels, samples = stems.shape
    points = -(-samples // hop)
    peak = np.zeros((n_stems, points), np.float32)
    rms = np.zeros((n_stems, points), np.float32)
    for first in range(0, points, CHUNK_POINTS):
        last = min(first + CHUNK_POINTS, points)
        chunk = stems[:, :, first * hop:last * hop]
        if chunk.shape[-1] < (last - first) * hop:  # the last window runs past the end
            chunk = np.pad(chunk, ((0, 0), (0, 0), (0, (last - first) * hop - chunk.shape[-1])))
        windows = chunk.reshape(n_stems, channels, last - first, hop)
        peak[:, first:last] = np.abs(windows).max(axis=(1, 3))
        rms[:, first:last] = np.sqrt(np.square(windows).mean(axis=(1, 3)))
    return Waveform(_bytes(peak), _bytes(rms), sample_rate / hop)


def _bytes(amplitude: np.ndarray) -> np.ndarray:
    return np.round(255.0 * np.sqrt(np.clip(amplitude, 0.0, 1.0))).astype(np.uint8)
