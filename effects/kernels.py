"""Compiled per-sample kernels of the streaming mixer (numba, compiled ahead with fixed signatures).

One call covers all stems of both decks, because per-call overhead, not arithmetic, dominates at
audio block sizes (a scipy ``sosfilt`` per stem costs ~50 us of overhead each). Everything that
changes inside a block (gains, biquad coefficients, reverb loop gains) is interpolated linearly
from the previous block's value to this block's, which removes zipper noise; when nothing changes
the interpolation is exact, so the output does not depend on the block size.
"""

from __future__ import annotations

import numba
import numpy as np

# Filter and reverb states below this are flushed to zero: decaying IIR states otherwise end up
# as subnormal floats, which are ~100x slower on x86.
_FLUSH = 1e-30

# A reverb tail below this (-180 dBFS) counts as finished.
_QUIET = 1e-9

_MIX_SIG = (
    "void(float32[:, :, :], float32[:, :, :], float64[::1], float64[::1], "
    "float64[:, :, ::1], float64[:, :, ::1], float64[:, :, :, ::1], float64[:, ::1])"
)


@numba.njit(_MIX_SIG, cache=True, nogil=True, error_model="numpy")
def mix_stems(stems_a, stems_b, amp0, amp1, coef0, coef1, state, dry):
    """Gain and filter every stem, then sum them into ``dry`` [2, N] (overwritten).

    stems_a, stems_b [4, 2, N] (any strides: a block is a slice of a whole track); amp0, amp1
    [8] stem amplitudes (fader x crossfader) at the start and end of the block; coef0, coef1
    [8, K, 5] biquad cascades (b0, b1, b2, a1, a2); state [8, 2, K, 2] transposed-direct-form-II
    states, updated in place.
    """
    n_samples = dry.shape[1]
    n_channels = dry.shape[0]
    n_biquads = coef0.shape[1]
    dry[:, :] = 0.0
    cur = np.empty((n_biquads, 5))
    for s in range(amp0.shape[0]):
        stems = stems_a if s < 4 else stems_b
        stem = s % 4
        if amp0[s] == 0.0 and amp1[s] == 0.0 and not np.any(state[s]):
            continue  # a silent stem with settled filters adds exactly nothing
        for n in range(n_samples):
            t = (n + 1.0) / n_samples
            amp = amp0[s] + t * (amp1[s] - amp0[s])
            for k in range(n_biquads):
                for j in range(5):
                    cur[k, j] = coef0[s, k, j] + t * (coef1[s, k, j] - coef0[s, k, j])
            for c in range(n_channels):
                x = stems[stem, c, n] * amp
                for k in range(n_biquads):
                    y = cur[k, 0] * x + state[s, c, k, 0]
                    state[s, c, k, 0] = cur[k, 1] * x - cur[k, 3] * y + state[s, c, k, 1]
                    state[s, c, k, 1] = cur[k, 2] * x - cur[k, 4] * y
                    x = y
                dry[c, n] += x
        for c in range(n_channels):
            for k in range(n_biquads):
                for j in range(2):
                    if abs(state[s, c, k, j]) < _FLUSH:
                        state[s, c, k, j] = 0.0


_FDN_SIG = (
    "void(float64[:, ::1], float64, float64, float64[::1], float64[::1], float64, float64, "
    "float64[:, ::1], int64[::1], int64[::1], float64[:, ::1], float64[:, ::1], float64[:, ::1], "
    "float64, float32[:, ::1])"
)


@numba.njit(_FDN_SIG, cache=True, nogil=True, error_model="numpy")
def reverb_and_master(dry, send0, send1, g0, g1, master0, master1, lines, cursor, delays,
                      feedback, inputs, outputs, damping, out):
    """out = master * (dry + FDN(send * dry)), sample by sample (see effects.reverb).

    ``lines`` [L, M] are circular delay buffers (M a power of two above the longest delay);
    ``cursor`` [2] holds the write position and for how many samples every value written was
    negligible: after M such samples the buffers hold nothing audible, they are cleared, and a
    closed send with a finished tail costs nothing.
    """
    n_samples = dry.shape[1]
    n_lines = delays.shape[0]
    mask = lines.shape[1] - 1
    pos = cursor[0]
    quiet = cursor[1]
    if send0 == 0.0 and send1 == 0.0 and quiet > mask:
        for n in range(n_samples):
            master = master0 + (n + 1.0) / n_samples * (master1 - master0)
            for c in range(2):
                out[c, n] = np.float32(master * dry[c, n])
        return
    tap = np.empty(n_lines)
    for n in range(n_samples):
        t = (n + 1.0) / n_samples
        send = send0 + t * (send1 - send0)
        master = master0 + t * (master1 - master0)
        wet_l = 0.0
        wet_r = 0.0
        for i in range(n_lines):
            s = ((1.0 - damping) * lines[i, (pos - delays[i]) & mask]
                 + damping * lines[i, (pos - delays[i] - 1) & mask])
            wet_l += outputs[0, i] * s
            wet_r += outputs[1, i] * s
            tap[i] = (g0[i] + t * (g1[i] - g0[i])) * s
        in_l = send * dry[0, n]
        in_r = send * dry[1, n]
        loud = False
        for i in range(n_lines):
            acc = inputs[i, 0] * in_l + inputs[i, 1] * in_r
            for j in range(n_lines):
                acc += feedback[i, j] * tap[j]
            lines[i, pos] = acc
            loud |= abs(acc) > _QUIET
        quiet = 0 if loud else quiet + 1
        pos = (pos + 1) & mask
        out[0, n] = np.float32(master * (dry[0, n] + wet_l))
        out[1, n] = np.float32(master * (dry[1, n] + wet_r))
    if quiet > mask:
        lines[:, :] = 0.0
    cursor[0] = pos
    cursor[1] = quiet
