"""The output limiter: a look-ahead true-peak limiter after the mixer, so that no sample and no
inter-sample peak of what is played, recorded or rendered reaches the ceiling (-1 dBTP).

Per input sample:

1. True peak. The signal is interpolated at points between each sample and the next by two
   polyphase FIRs: the BS.1770-4 annex 2 interpolator of a true-peak meter (4 points, 12 taps)
   and a Kaiser-windowed sinc (3 points, 24 taps); the peak is the largest of the sample and
   all seven points, over both channels (the gain is stereo-linked, so the image stays put).
2. Gain needed: target / peak where the peak is above the target (the ceiling less a 0.1 dB
   guard for the spread between meters), else 1.
3. Hold: the smallest gain needed over the last ``lookahead + 2 * taps`` samples.
4. Release: the held gain is followed at once downwards and exponentially upwards.
5. Attack: a moving average over ``lookahead`` samples turns each step down into a linear ramp.

The audio is delayed by ``latency = lookahead - 1 + 2 * taps`` samples, so that each peak meets
the bottom of its ramp: the hold keeps the averaged gain at or below the gain a peak needs over
the whole stretch of samples its interpolation reads (taps samples either side). Everything
runs always, so the delay is constant: 89 samples (2.0 ms) at 44.1 kHz with the 1.5 ms
look-ahead. Where no peak passes the target the gain is exactly 1 and the output is the input,
delayed, bit for bit. The state lives in arrays carried from block to block, and every step is
per sample, so the output does not depend on the block size.

Not caught: peaks of content right at Nyquist between the interpolated points (up to ~0.7 dB at
fs/2, an ideal reconstruction's reading of white noise); a 4x meter does not read them either.
"""

from __future__ import annotations

import numba
import numpy as np

LOOKAHEAD_S = 0.0015  # the attack ramp: short enough to be heard as no delay at all
# A released gain this close to where it is going is taken as there: the last steps of an
# exponential are inaudible (1e-7 is -0.000001 dB) and would keep the gain off exactly 1.
_SETTLED = 1e-7

# Samples read on either side of a sample's interval by the true-peak interpolators.
TAPS = 12
# ITU-R BS.1770-4 annex 2: the 48-tap interpolator of a true-peak meter, as four phases of 12
# taps (points 1/8, 3/8, 5/8 and 7/8 of the way to the next sample, read backwards). The
# prototype is symmetric, so the last two phases are the first two reversed.
_BS1770 = np.array([
    [0.0017089843750, 0.0109863281250, -0.0196533203125, 0.0332031250000, -0.0594482421875,
     0.1373291015625, 0.9721679687500, -0.1022949218750, 0.0476074218750, -0.0266113281250,
     0.0148925781250, -0.0083007812500],
    [-0.0291748046875, 0.0292968750000, -0.0517578125000, 0.0891113281250, -0.1665039062500,
     0.4650878906250, 0.7797851562500, -0.2003173828125, 0.1015625000000, -0.0582275390625,
     0.0330810546875, -0.0189208984375]])
# The limiter aims this far under the ceiling: 4x meters with other interpolation filters read
# full-band material up to ~0.05 dB higher than the largest of the two read here.
GUARD_DB = 0.1


def sinc_phases(taps: int = TAPS, beta: float = 5.0, points: int = 4) -> np.ndarray:
    """Kaiser-windowed sinc interpolators [points - 1, 2 * taps]: row p - 1 gives the signal at
    p / points of the way from sample k to k + 1 from samples k - taps + 1 ... k + taps (the
    filter of scipy's ``resample_poly``, 4x). Rows sum to 1: a constant stays itself."""
    t = taps - 1 - np.arange(2 * taps) + np.arange(1, points)[:, None] / points
    rows = np.sinc(t) * np.i0(beta * np.sqrt(1.0 - (t / taps) ** 2)) / np.i0(beta)
    return rows / rows.sum(axis=1, keepdims=True)


def true_peak_taps() -> np.ndarray:
    """Every interpolator the peak is read from, as taps [2 * TAPS, 8]: column p is one
    interpolated point, from samples k - TAPS + 1 ... k + TAPS. Columns 0-3 are BS.1770's four
    phases (what a loudness meter reads as dBTP: its passband ripple reads some peaks 0.1-0.2
    dB high, and it misses up to 0.4 dB of peaks near Nyquist), 4-6 a longer windowed sinc's
    three; column 7 is zero, so that a sample's eight sums fill two SIMD registers."""
    annex = np.vstack([_BS1770, _BS1770[::-1, ::-1]])
    # Annex phase rows read samples k - 5 ... k + 6: centred in the longer rows.
    pad = TAPS - annex.shape[1] // 2
    rows = np.vstack([np.pad(annex, ((0, 0), (pad, pad))), sinc_phases(), np.zeros(2 * TAPS)])
    return np.ascontiguousarray(rows.T)


_LIMIT_SIG = ("void(float32[:, :], float32[:, :], float64[:, ::1], float64, float64, int64, "
              "float64[:, ::1], float64[::1], float64[::1], float64[::1], int64[::1])")


@numba.njit(_LIMIT_SIG, cache=True, error_model="numpy")
def limit(audio, out, taps, target, release, latency, history, needed, ramp, gains, counters):
    """Limit ``audio`` [2, N] into ``out`` [2, N] (may be the same array), ``latency`` samples
    late (see the module's docstring).

    taps [2T, 8] the interpolators (``true_peak_taps``); target: the peak allowed; release:
    per-sample factor of the gain's distance to the held gain. State, updated in place:
    history [2, 2M] the input, written twice (at i and i + M, M a power of two above
    latency + T) so that the last 2T samples always lie side by side; needed [H] the gain each
    sample's interval needed (H = lookahead + 2T), a ring; ramp [W] the released gains being
    averaged (W = lookahead), a ring; gains [3] the released gain, the sum of ``ramp`` and the
    smallest gain in ``needed``; counters [5] the write positions in ``history``, ``needed`` and
    ``ramp``, the age of that smallest gain, and for how many samples the released gain has
    been 1 (saturating).
    """
    n_samples = audio.shape[1]
    size = history.shape[1] // 2
    mask = size - 1
    reach = taps.shape[0] // 2
    n_needed = needed.shape[0]
    width = ramp.shape[0]
    pos, q, b, age, steady = counters[0], counters[1], counters[2], counters[3], counters[4]
    env, total, held = gains[0], gains[1], gains[2]
    for n in range(n_samples):
        for c in range(2):
            x = audio[c, n]
            # One NaN or infinity would poison the gain state for good: it is played as silence.
            x = x if np.isfinite(x) else 0.0
            history[c, pos] = x
            history[c, pos + size] = x
        # The true peak of the interval from sample k = pos - reach to k + 1.
        last = pos + size  # history[:, first:last + 1] are samples k - reach + 1 ... k + reach
        first = last - 2 * reach + 1
        peak = 0.0
        for c in range(2):
            peak = max(peak, abs(history[c, last - reach]))
            # Eight sums in locals (not an array the compiler must assume aliases ``history``)
            # stay in registers, two SIMD lanes of four.
            p0 = p1 = p2 = p3 = p4 = p5 = p6 = p7 = 0.0
            for j in range(2 * reach):
                x = history[c, first + j]
                p0 += taps[j, 0] * x
                p1 += taps[j, 1] * x
                p2 += taps[j, 2] * x
                p3 += taps[j, 3] * x
                p4 += taps[j, 4] * x
                p5 += taps[j, 5] * x
                p6 += taps[j, 6] * x
                p7 += taps[j, 7] * x
            peak = max(peak, abs(p0), abs(p1), abs(p2), abs(p3), abs(p4), abs(p5), abs(p6),
                       abs(p7))
        need = target / peak if peak > target else 1.0
        needed[q] = need
        # Hold: the smallest need of the last H samples, found again only when it leaves them.
        age += 1
        if need <= held:
            held = need
            age = 0
        elif age >= n_needed and held < 1.0:
            held = 1.0
            for i in range(n_needed):  # i samples old, youngest first
                value = needed[q - i if q >= i else q - i + n_needed]
                if value < held:
                    held = value
                    age = i
        q = q + 1 if q + 1 < n_needed else 0
        env = held if held <= env or held - env < _SETTLED else held - (held - env) * release
        total += env - ramp[b]
        ramp[b] = env
        b = b + 1 if b + 1 < width else 0
        steady = min(steady + 1, width) if env == 1.0 else 0
        if steady == width:
            # The ramp holds nothing but 1: the gain is exactly 1 again, and the running sum
            # sheds the rounding it gathered while limiting.
            total = float(width)
        gain = total / width
        for c in range(2):
            y = history[c, last - latency] * gain
            # Rounding in the gain must not leave a sample a hair above the target.
            out[c, n] = np.float32(min(max(y, -target), target))
        pos = (pos + 1) & mask
    counters[0], counters[1], counters[2], counters[3], counters[4] = pos, q, b, age, steady
    gains[0], gains[1], gains[2] = env, total, held


class Limiter:
    """``limit`` with its design and state: ``process(audio, out)`` block by block."""

    def __init__(self, sample_rate: int, ceiling_dbtp: float = -1.0,
                 release_ms: float = 100.0) -> None:
        self.target = 10.0 ** ((ceiling_dbtp - GUARD_DB) / 20.0)
        self.release = float(np.exp(-1.0 / (release_ms * 1e-3 * sample_rate)))
        self.taps = true_peak_taps()
        lookahead = max(1, round(LOOKAHEAD_S * sample_rate))
        self.latency = lookahead - 1 + 2 * TAPS  # samples from input to output
        self._history = np.zeros((2, 2 << (self.latency + TAPS).bit_length()))
        self._needed = np.ones(lookahead + 2 * TAPS)
        self._ramp = np.ones(lookahead)
        self._gains = np.zeros(3)
        self._counters = np.zeros(5, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        """Silence and unity gain: the next block starts from nothing held."""
        self._history[:] = 0.0
        self._needed[:] = 1.0
        self._ramp[:] = 1.0
        self._gains[:] = (1.0, float(self._ramp.size), 1.0)
        self._counters[:] = (0, 0, 0, 0, self._ramp.size)

    def process(self, audio: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Limit a block of float32 [2, n]; returns ``out`` (allocated if not given)."""
        if out is None:
            out = np.empty_like(audio)
        limit(audio, out, self.taps, self.target, self.release, self.latency, self._history,
              self._needed, self._ramp, self._gains, self._counters)
        return out
