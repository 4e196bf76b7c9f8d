"""A track's integrated loudness (ITU-R BS.1770-4 / EBU R128, gated), what the engine's gain
trim brings to a common level."""

from __future__ import annotations

import numpy as np
import pyloudnorm


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS of audio [channels, samples]; ``-inf`` for silence and for
    audio shorter than one 400 ms gating block (nothing to measure)."""
    meter = pyloudnorm.Meter(sample_rate)
    if audio.shape[-1] < meter.block_size * sample_rate:
        return float("-inf")
    with np.errstate(divide="ignore"):  # silence: log10(0), reported as -inf
        return float(meter.integrated_loudness(np.asarray(audio, dtype=np.float64).T))
