"""The send reverb: a 16-line feedback delay network (FDN) shared by both mixers.

Per sample n, with v_i the signal written into delay line i (length d_i):

    s_i[n] = (1 - damping) * v_i[n - d_i] + damping * v_i[n - d_i - 1]   two-tap loop lowpass
    wet[n] = OUTPUT @ s[n]                                                 stereo out
    v[n]   = FEEDBACK @ (g[n] * s[n]) + INPUT @ (send[n] * dry[n])

FEEDBACK is an orthonormal Hadamard matrix, so the loop loses energy only through the per-line
gains g_i = 10^(-3 d_i / (fs * RT60)): every line decays by 60 dB in RT60 seconds whatever its
length. Since every delay is at least ``min_delay`` samples, a whole chunk of that many samples
depends only on earlier chunks and can be computed at once: that is how the torch mixer stays
differentiable without a per-sample loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import MixerConfig

N_LINES = 16
# Keeps the reverb return near the dry level for a mid-length decay when the send is fully open.
OUTPUT_LEVEL = 0.35


@dataclass(frozen=True)
class FdnDesign:
    delays: np.ndarray  # [L] int64, distinct, each >= min_delay
    feedback: np.ndarray  # [L, L] orthonormal
    input: np.ndarray  # [L, 2] stereo in -> lines
    output: np.ndarray  # [2, L] lines -> stereo out
    damping: float

    @property
    def min_delay(self) -> int:
        return int(self.delays.min())


def fdn_design(config: MixerConfig) -> FdnDesign:
    """Delay lengths, mixing matrices and damping for the config's sample rate."""
    fs = config.sample_rate
    times = np.geomspace(config.reverb_min_delay_ms, config.reverb_max_delay_ms, N_LINES) / 1e3
    delays = np.round(times * fs).astype(np.int64)
    # Odd, distinct lengths keep the lines' echoes from lining up.
    delays |= 1
    for i in range(1, N_LINES):
        delays[i] = max(delays[i], delays[i - 1] + 2)
    hadamard = np.array([[1.0]])
    while hadamard.shape[0] < N_LINES:
        hadamard = np.block([[hadamard, hadamard], [hadamard, -hadamard]])
    feedback = hadamard / math.sqrt(N_LINES)
    # Left feeds the even lines, right the odd ones; the outputs tap all lines with two different
    # sign patterns (rows of the Hadamard matrix), which decorrelates left from right.
    inputs = np.zeros((N_LINES, 2))
    inputs[0::2, 0] = 1.0
    inputs[1::2, 1] = 1.0
    inputs *= math.sqrt(2.0 / N_LINES)
    output = hadamard[[1, 2]] * (OUTPUT_LEVEL / math.sqrt(N_LINES))
    return FdnDesign(delays, feedback, inputs, output, config.reverb_damping)


def loop_gains(rt60_s: Any, delays: Any, sample_rate: int) -> Any:
    """Per-line loop gain for a decay time: rt60_s [...] and delays [L] -> [..., L]."""
    return 10.0 ** ((-3.0 / sample_rate) * delays / rt60_s[..., None])
