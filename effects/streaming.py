"""The streaming mixer: the same sound as ``DifferentiableMixer``, block by block, in real time.

One parameter frame per block. Within a block every gain, biquad coefficient and reverb loop gain
moves linearly from the previous frame's value to this one's, so a changed frame never clicks.
All work happens in two compiled kernels (``effects.kernels``) on buffers allocated up front; the
per-block Python part only designs the 40 biquads of the new frame.

Bad frames never stop the music: values outside [0, 1] are clamped, and a NaN or infinite value
keeps that parameter's previous value (``rejected_frames`` counts such frames). Wrong shapes are
caller bugs and raise ``ValueError`` with the expected shape.
"""

from __future__ import annotations

import numpy as np

from . import kernels
from .config import MixerConfig
from .filters import N_FILTERS, biquad_coefficients
from .params import (CROSSFADER, FILTERS, GAINS, MASTER_GAIN, N_PARAMS, REVERB_DECAY, REVERB_WET,
                     crossfader_gains, gain_to_amplitude, neutral_frame, reverb_decay_to_rt60,
                     reverb_wet_to_send)
from .reverb import fdn_design, loop_gains

N_STEMS = 4
N_CHANNELS = 2


class StreamingMixer:
    """Stateful two-deck mixer for the audio callback.

    ``process(stems_a, stems_b, frame, out, trim)`` takes each deck's stems as float32 [4, 2, n],
    one parameter frame [52] and each deck's linear gain trim [2] (its track's level, outside the
    52 parameters), and writes the stereo mix [2, n] into ``out``.
    """

    def __init__(self, config: MixerConfig | None = None, max_block: int = 4096) -> None:
        self.config = config or MixerConfig()
        self._fdn = fdn_design(self.config)
        size = 1 << int(self._fdn.delays.max() + 2).bit_length()
        self._lines = np.zeros((len(self._fdn.delays), size))
        self._cursor = np.zeros(2, dtype=np.int64)
        self._delays_f = self._fdn.delays.astype(np.float64)
        self._state = np.zeros((2 * N_STEMS, N_CHANNELS, N_FILTERS, 2))
        self._dry = np.zeros(N_CHANNELS * max_block)
        self._frame = np.empty(N_PARAMS)
        self._last_input = np.full(N_PARAMS, np.nan)
        self._trim = np.ones(2)
        self._unity = np.ones(2)
        self._prev: tuple | None = None
        self.rejected_frames = 0
        self.reset()
        # Compile the design now (about four seconds, once per process), never in the callback.
        self._controls(self._frame, self._trim)

    def reset(self) -> None:
        """Silence every filter and the reverb tail; the next frame is taken without a ramp."""
        self._state[:] = 0.0
        self._lines[:] = 0.0
        self._cursor[:] = (0, self._lines.shape[1])
        self._frame[:] = neutral_frame()
        self._last_input[:] = np.nan
        self._trim[:] = 1.0
        self._prev = None

    def process(self, stems_a: np.ndarray, stems_b: np.ndarray, frame: np.ndarray,
                out: np.ndarray | None = None, trim: np.ndarray | None = None) -> np.ndarray:
        """Mix one block; returns ``out`` (float32 [2, n], allocated if not given). ``trim``:
        decks A and B's linear gains (default 1); a change ramps over the block like a frame's."""
        n = stems_a.shape[-1]
        for name, stems in (("stems_a", stems_a), ("stems_b", stems_b)):
            if stems.shape != (N_STEMS, N_CHANNELS, n):
                raise ValueError(f"{name} must be [4 stems, 2 channels, {n} samples], "
                                 f"got {list(stems.shape)}")
        if np.shape(frame) != (N_PARAMS,):
            raise ValueError(f"frame must hold {N_PARAMS} parameters, got shape {np.shape(frame)}")
        trim = self._unity if trim is None else trim
        if out is None:
            out = np.empty((N_CHANNELS, n), dtype=np.float32)
        elif out.shape != (N_CHANNELS, n) or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous float32 [2, {n}] array")
        if N_CHANNELS * n > self._dry.size:
            self._dry = np.zeros(N_CHANNELS * n)  # only when the host grows its block size
        stems_a = np.asarray(stems_a, dtype=np.float32)
        stems_b = np.asarray(stems_b, dtype=np.float32)

        # Between transitions the frame rarely changes: then nothing needs redesigning.
        if (self._prev is not None and np.array_equal(frame, self._last_input)
                and np.array_equal(trim, self._trim)):
            current = self._prev
        else:
            gains = np.asarray(trim, dtype=np.float64)
            if gains.shape != (2,) or not np.all(np.isfinite(gains) & (gains >= 0.0)):
                raise ValueError(f"trim must be two finite gains >= 0 (decks A, B), got {trim!r}")
            current = self._controls(frame, trim)
            self._last_input[:] = frame
            self._trim[:] = trim
        previous = self._prev if self._prev is not None else current
        amp0, coef0, send0, g0, master0 = previous
        amp1, coef1, send1, g1, master1 = current
        dry = self._dry[:N_CHANNELS * n].reshape(N_CHANNELS, n)
        kernels.mix_stems(stems_a, stems_b, amp0, amp1, coef0, coef1, self._state, dry)
        fdn = self._fdn
        kernels.reverb_and_master(dry, send0, send1, g0, g1, master0, master1, self._lines,
                                  self._cursor, fdn.delays, fdn.feedback, fdn.input, fdn.output,
                                  fdn.damping, out)
        self._prev = current
        return out

    def _controls(self, frame: np.ndarray, trim: np.ndarray) -> tuple:
        """The block-end values of everything the kernels interpolate, from a sanitized frame
        and the decks' trims."""
        frame = np.asarray(frame, dtype=np.float64)
        finite = np.isfinite(frame)
        if not finite.all():
            self.rejected_frames += 1
            frame = np.where(finite, frame, self._frame)
        p = self._frame
        np.clip(frame, 0.0, 1.0, out=p)
        deck_a, deck_b = crossfader_gains(p[CROSSFADER])
        amp = gain_to_amplitude(p[GAINS]) * np.repeat([deck_a * trim[0], deck_b * trim[1]],
                                                      N_STEMS)
        coef = biquad_coefficients(p[FILTERS], self.config)
        gains = loop_gains(reverb_decay_to_rt60(p[REVERB_DECAY:REVERB_DECAY + 1]),
                           self._delays_f, self.config.sample_rate)[0]
        return (amp, coef, float(reverb_wet_to_send(p[REVERB_WET])), gains,
                float(gain_to_amplitude(p[MASTER_GAIN])))
