"""A track's integrated loudness (ITU-R BS.1770-4 / EBU R128, gated), what the engine's gain
trim brings to a common level."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import scipy.signal

# BS.1770's K-weighting: a +4 dB shelf above 1.5 kHz (the head) and a high-pass at 38 Hz (RLB),
# as pyloudnorm's Meter builds it: (type, gain dB, Q, frequency Hz).
K_WEIGHTING = (("high_shelf", 4.0, 1 / np.sqrt(2), 1500.0), ("high_pass", 0.0, 0.5, 38.0))


def k_weighting_filters(sample_rate: int) -> list[pyloudnorm.IIRfilter]:
    """The K-weighting's two biquads at ``sample_rate``, in the order they are applied."""
    return [pyloudnorm.IIRfilter(gain_db, q, freq_hz, sample_rate, kind)
            for kind, gain_db, q, freq_hz in K_WEIGHTING]


def k_weighting_power(freqs: np.ndarray, sample_rate: int) -> np.ndarray:
    """The K-weighting's power gain |H(f)|^2 at ``freqs`` (Hz)."""
    power = np.ones(len(freqs))
    for f in k_weighting_filters(sample_rate):
        _, h = scipy.signal.freqz(f.b, f.a, worN=np.asarray(freqs, dtype=np.float64),
                                  fs=sample_rate)
        power *= np.abs(h) ** 2
    return power


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS of audio [channels, samples]; ``-inf`` for silence and for
    audio shorter than one 400 ms gating block (nothing to measure)."""
    meter = pyloudnorm.Meter(sample_rate)
    if audio.shape[-1] < meter.block_size * sample_rate:
        return float("-inf")
    with np.errstate(divide="ignore"):  # silence: log10(0), reported as -inf
        return float(meter.integrated_loudness(np.asarray(audio, dtype=np.float64).T))
