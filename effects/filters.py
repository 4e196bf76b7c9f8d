"""Filter design from normalized parameters: the five biquads of every stem.

Each stem runs a cascade of low shelf, mid peak, high shelf, highpass and lowpass (the order of
``params.FILTER_PARAMS``). The coefficients follow R. Bristow-Johnson's Audio EQ Cookbook.

There is one design, written once against an array module ``xp``: built with torch it is
differentiable and runs on any device (``DifferentiableMixer``); built with numpy and compiled by
numba it costs ~2 us per block for all 40 biquads (``StreamingMixer``; plain numpy spends
~150 us there in per-call overhead, a quarter of the real-time budget).

At flat EQ the cookbook's numerator equals its denominator, and over the last
``FILTER_BYPASS_EDGE`` of their travel the highpass/lowpass move their cutoff out of the audio band
(towards 1 Hz / towards Nyquist) while fading their numerator into the denominator: the neutral
frame is an exact identity, reached continuously and without a dip in the response.
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numba
import numpy as np

from . import params
from .config import MixerConfig

N_FILTERS = 5
# Coefficient layout of one biquad: b0, b1, b2, a1, a2 (a0 normalized to 1).
N_COEFFS = 5
SQRT_HALF = 1.0 / math.sqrt(2.0)


def _make_design(xp: Any, jit: Callable[[Callable], Callable]) -> Callable:
    """The design function for array module ``xp`` (numpy or torch); ``jit`` compiles helpers."""
    eq_to_db = jit(params.eq_to_db)
    highpass_to_hz = jit(params.highpass_to_hz)
    lowpass_to_hz = jit(params.lowpass_to_hz)
    edge = params.FILTER_BYPASS_EDGE

    @jit
    def normalized(b0, b1, b2, a0, a1, a2):
        return xp.stack((b0 / a0, b1 / a0, b2 / a0, a1 / a0, a2 / a0), axis=-1)

    @jit
    def shelf(x, freq_hz, sign, fs):
        # sign +1: low shelf, -1: high shelf (the cookbook's two differ by the sign of cos w0).
        amp = 10.0 ** (eq_to_db(x) / 40.0)
        w0 = (2.0 * math.pi / fs) * (freq_hz + 0.0 * x)
        c = sign * xp.cos(w0)
        beta = 2.0 * xp.sqrt(amp) * (xp.sin(w0) * (0.5 / SQRT_HALF))
        ap = amp + 1.0
        am = amp - 1.0
        return normalized(amp * (ap - am * c + beta), sign * 2.0 * amp * (am - ap * c),
                          amp * (ap - am * c - beta),
                          ap + am * c + beta, sign * -2.0 * (am + ap * c), ap + am * c - beta)

    @jit
    def peak(x, freq_hz, q, fs):
        amp = 10.0 ** (eq_to_db(x) / 40.0)
        w0 = (2.0 * math.pi / fs) * (freq_hz + 0.0 * x)
        c = xp.cos(w0)
        alpha = xp.sin(w0) / (2.0 * q)
        return normalized(1.0 + alpha * amp, -2.0 * c, 1.0 - alpha * amp,
                          1.0 + alpha / amp, -2.0 * c, 1.0 - alpha / amp)

    @jit
    def pass_filter(freq_hz, mix, sign, q, fs):
        # sign +1: highpass, -1: lowpass. ``mix`` fades the numerator from the denominator
        # (identity) to the filter's own.
        w0 = (2.0 * math.pi / fs) * xp.clip(freq_hz, 1.0, 0.49 * fs)
        c = xp.cos(w0)
        alpha = xp.sin(w0) / (2.0 * q)
        a0 = 1.0 + alpha
        a1 = -2.0 * c
        a2 = 1.0 - alpha
        side = (1.0 + sign * c) / 2.0
        keep = 1.0 - mix
        return normalized(keep * a0 + mix * side, keep * a1 - mix * sign * 2.0 * side,
                          keep * a2 + mix * side, a0, a1, a2)

    @jit
    def design(p, fs, low_hz, mid_hz, mid_q, high_hz, filter_q):
        hp = p[:, 3]
        lp = p[:, 4]
        hp_mix = xp.clip(hp / edge, 0.0, 1.0)
        lp_mix = xp.clip((1.0 - lp) / edge, 0.0, 1.0)
        return xp.stack((
            shelf(p[:, 0], low_hz, 1.0, fs),
            peak(p[:, 1], mid_hz, mid_q, fs),
            shelf(p[:, 2], high_hz, -1.0, fs),
            pass_filter(highpass_to_hz(hp) * hp_mix, hp_mix, 1.0, filter_q, fs),
            pass_filter(lowpass_to_hz(lp) / (lp_mix + 1e-3), lp_mix, -1.0, filter_q, fs),
        ), axis=1)

    return design


def _cached_jit(digest: str) -> Callable[[Callable], Callable]:
    """numba's compile for the numpy build, kept on disk like the other kernels'."""

    def jit(f: Callable) -> Callable:
        dispatcher = numba.njit(cache=True, nogil=True, error_model="numpy")(f)
        # numba keys a closure's cache entry on its pickled cells, here other dispatchers, which
        # pickle with a random id: without a fixed one no process ever found another's compile
        # (~4 s per start, 12 s on a loaded machine). The id holds a digest of params.py, whose
        # functions the design calls: numba watches only the closure's own file.
        dispatcher._set_uuid(f"{f.__module__}.{f.__qualname__}@{digest}")
        return dispatcher

    return jit


@lru_cache(maxsize=None)
def _design_for(module_name: str) -> Callable:
    if module_name == "torch":
        import torch

        return _make_design(torch, lambda f: f)
    digest = hashlib.sha256(Path(params.__file__).read_bytes()).hexdigest()[:16]
    return _make_design(np, _cached_jit(digest))


def biquad_coefficients(filter_params: Any, config: MixerConfig) -> Any:
    """Biquad coefficients [..., 5 filters, 5 coeffs] from normalized params [..., 5 filters].

    The last axis of ``filter_params`` holds low_eq, mid_eq, high_eq, highpass, lowpass in [0, 1].
    A torch tensor gives a differentiable torch tensor; a numpy array goes through the compiled
    design and comes back as float64.
    """
    is_numpy = isinstance(filter_params, np.ndarray)
    if is_numpy:
        filter_params = np.ascontiguousarray(filter_params, dtype=np.float64)
    design = _design_for("numpy" if is_numpy else "torch")
    flat = filter_params.reshape(-1, N_FILTERS)
    coeffs = design(flat, float(config.sample_rate), config.low_shelf_hz, config.mid_peak_hz,
                    config.mid_peak_q, config.high_shelf_hz, config.filter_q)
    return coeffs.reshape(tuple(filter_params.shape[:-1]) + (N_FILTERS, N_COEFFS))
