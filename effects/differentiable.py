"""The differentiable mixer: parameter curves -> stereo mix, batched, on any torch device.

Signal flow (the same as ``StreamingMixer``):

    stem x fader gain x crossfader --> low shelf -> mid peak -> high shelf -> highpass -> lowpass
    --> sum of all stems = dry;  out = master gain x (dry + reverb(send x dry))

Gains, crossfader, master, reverb send and decay follow the curves at audio rate (linear
interpolation between frames, so nothing steps). The filters are applied per frame in the
frequency domain: each stem is cut into Hann-windowed frames (fft_size/2 long, hop fft_size/4),
every frame is multiplied by the exact frequency response of its stem's biquad cascade at that
frame's parameters, and the frames are overlap-added. For constant parameters this is the same
linear convolution as running the biquads, as long as their impulse responses fit in fft_size/2
samples (93 ms at 44.1 kHz: the slowest filter here, the highpass near 20 Hz, has decayed by
60 dB after ~70 ms). Filter changes are crossfaded over one frame.

Curve frames are placed at the centres of equal spans of the signal: frame i of F sits at sample
(i + 0.5) * N / F, and the curves hold their first and last value outside the frames.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import MixerConfig
from .filters import N_FILTERS, biquad_coefficients
from .params import (CROSSFADER, FILTERS, GAINS, MASTER_GAIN, N_PARAMS, REVERB_DECAY, REVERB_WET,
                     crossfader_gains, gain_to_amplitude, reverb_decay_to_rt60, reverb_wet_to_send)
from .reverb import fdn_design, loop_gains

N_STEMS = 4
N_CHANNELS = 2
# Audio-rate controls: 8 stem gains, then crossfader, master gain, reverb wet, reverb decay.
_CONTROLS = np.concatenate([GAINS, [CROSSFADER, MASTER_GAIN, REVERB_WET, REVERB_DECAY]])


def sample_curves(curves: torch.Tensor, positions: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Linearly interpolate curves [B, F, P] at sample positions [M] of an N-sample signal.

    Returns [B, M, P]; frame i sits at sample (i + 0.5) * N / F.
    """
    n_frames = curves.shape[1]
    u = ((positions + 0.5) * (n_frames / n_samples) - 0.5).clamp(0.0, n_frames - 1.0)
    i0 = u.floor().long()
    i1 = (i0 + 1).clamp(max=n_frames - 1)
    frac = (u - i0).to(curves.dtype)[None, :, None]
    return curves[:, i0] * (1.0 - frac) + curves[:, i1] * frac


def cascade_response(coeffs: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Frequency response [..., n_fft // 2 + 1] of biquad cascades given as [..., K, 5], on the
    bins of an ``n_fft``-point real FFT (see ``response_at``)."""
    return response_at(coeffs, torch.linspace(0.0, torch.pi, n_fft // 2 + 1, dtype=coeffs.dtype,
                                              device=coeffs.device))


def response_at(coeffs: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """Frequency response [..., M] of biquad cascades [..., K, 5] at angular frequencies [M]
    (radians per sample).

    Each biquad is evaluated on its own, in the precision of ``coeffs`` (float64 off MPS): a
    cascade multiplied out into one polynomial loses most of its digits near DC, where a
    low-cutoff highpass and a shelf put several poles close to z = 1. Large inputs are cut into
    row chunks that autograd recomputes in the backward pass, so memory stays at the size of the
    response itself.
    """
    lead = coeffs.shape[:-2]
    rows = coeffs.reshape(-1, *coeffs.shape[-2:])
    z1 = torch.polar(torch.ones_like(omega), -omega)  # e^{-j w}
    chunk = max(1, _RESPONSE_CHUNK // omega.numel())
    needs_grad = torch.is_grad_enabled() and coeffs.requires_grad
    pieces = []
    for start in range(0, rows.shape[0], chunk):
        piece = rows[start:start + chunk]
        if needs_grad:
            pieces.append(checkpoint(biquad_cascade_response, piece, z1, use_reentrant=False))
        else:
            pieces.append(biquad_cascade_response(piece, z1))
    return torch.cat(pieces).reshape(*lead, -1)


# Rows x bins per chunk of ``response_at``: ~32 MB of complex128 per intermediate.
_RESPONSE_CHUNK = 1 << 21


def power_response_at(coeffs: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """Power response |H|^2 [..., M] of biquad cascades [..., K, 5] at angular frequencies [M]
    (radians per sample), in real arithmetic: |b0 + b1 z^-1 + b2 z^-2|^2 on the unit circle is
    b0^2 + b1^2 + b2^2 + 2 (b0 b1 + b1 b2) cos w + 2 b0 b2 cos 2w. An order of magnitude
    cheaper than ``response_at`` with its gradient, for losses that only hear power."""
    cos1, cos2 = omega.cos(), (2.0 * omega).cos()
    b0, b1, b2, a1, a2 = (c[..., None] for c in coeffs.unbind(-1))  # [..., K, 1] each
    numerator = (b0 * b0 + b1 * b1 + b2 * b2 + 2.0 * (b0 * b1 + b1 * b2) * cos1
                 + 2.0 * b0 * b2 * cos2)
    denominator = 1.0 + a1 * a1 + a2 * a2 + 2.0 * (a1 + a1 * a2) * cos1 + 2.0 * a2 * cos2
    return (numerator / denominator).prod(dim=-2)


def biquad_cascade_response(coeffs: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
    """Response [R, M] of biquad cascades [R, K, 5] at z^-1 = ``z1`` [M], each biquad
    evaluated on its own (see ``response_at``, which chunks it for memory)."""
    z2 = z1 * z1
    response = None
    for k in range(coeffs.shape[-2]):
        b0, b1, b2, a1, a2 = coeffs[:, k, :, None].unbind(-2)
        h = (b0 + b1 * z1 + b2 * z2) / (1.0 + a1 * z1 + a2 * z2)
        response = h if response is None else response * h
    return response


class DifferentiableMixer(nn.Module):
    """Stems of decks A and B [B, 4, 2, N] and curves [B, F, 52] in, stereo mix [B, 2, N] out.

    ``trim`` scales each deck's stems by a constant linear gain (its track's level, outside the
    52 parameters): [B, 2] or anything that broadcasts to it; default 1.

    Parameter values outside [0, 1] are clamped (their gradient is then zero); NaN or infinite
    values, wrong shapes and a sample rate other than the config's raise ``ValueError``.
    """

    def __init__(self, config: MixerConfig | None = None) -> None:
        super().__init__()
        self.config = config or MixerConfig()
        self.n_fft = self.config.filter_fft_size
        self.hop = self.n_fft // 4
        fdn = fdn_design(self.config)
        self.chunk = fdn.min_delay
        self.damping = fdn.damping
        self.register_buffer("window", torch.hann_window(2 * self.hop, periodic=True),
                             persistent=False)
        for name, value in (("fdn_delays", fdn.delays.astype(np.float32)),
                            ("fdn_feedback", fdn.feedback), ("fdn_input", fdn.input),
                            ("fdn_output", fdn.output)):
            self.register_buffer(name, torch.as_tensor(value, dtype=torch.float32),
                                 persistent=False)
        self.fdn_delay_steps = [int(d) for d in fdn.delays]

    def forward(self, stems_a: torch.Tensor, stems_b: torch.Tensor, params: torch.Tensor,
                sample_rate: int | None = None, per_stem: bool = False,
                trim: torch.Tensor | float | None = None) -> torch.Tensor:
        """The mix [B, 2, N]; with ``per_stem`` each stem's share of it [B, 8, 2, N] instead.

        A stem's share is what the mix would be with every other stem silent (its own reverb
        tail and the master gain included; the network is linear in its input), so the shares
        sum to the mix. Stems are in deck-major order (A's drums, bass, vocals, other, then B's).
        """
        self._check(stems_a, stems_b, params, sample_rate)
        n = stems_a.shape[-1]
        curves = params.to(stems_a.dtype).clamp(0.0, 1.0)
        positions = torch.arange(n, device=stems_a.device, dtype=torch.float64)
        controls = sample_curves(curves[..., _CONTROLS], positions, n)  # [B, N, 12]
        deck_a, deck_b = crossfader_gains(controls[..., 8:9])
        deck = torch.cat([deck_a.expand(-1, -1, N_STEMS), deck_b.expand(-1, -1, N_STEMS)], -1)
        amp = (gain_to_amplitude(controls[..., :8]) * deck).transpose(1, 2)  # [B, 8, N]
        if trim is not None:
            amp = amp * self._deck_trim(trim, stems_a.shape[0], amp)[:, :, None]
        stems = torch.cat([stems_a, stems_b], dim=1) * amp[:, :, None, :]
        dry = self._filter(stems, curves, n, per_stem)
        # Controls over time, shaped to broadcast against dry [B, 2, N] or [B, 8, 2, N].
        over_time = (dry.shape[0],) + (1,) * (dry.ndim - 2) + (n,)
        send = reverb_wet_to_send(controls[..., 10])
        if params.requires_grad or bool((send > 0).any()):
            rt60 = reverb_decay_to_rt60(controls[..., 11])
            sent = dry * send.reshape(over_time)
            if per_stem:  # stems into the batch: one reverb run each
                rt60 = rt60.repeat_interleave(2 * N_STEMS, dim=0)
                sent = sent.flatten(0, 1)
            dry = dry + self._reverb(sent, rt60).reshape(dry.shape)
        return gain_to_amplitude(controls[..., 9]).reshape(over_time) * dry

    @staticmethod
    def _deck_trim(trim: torch.Tensor | float, batch: int, like: torch.Tensor) -> torch.Tensor:
        """The trim as one gain per stem [B, 8], checked."""
        trim = torch.as_tensor(trim, dtype=like.dtype, device=like.device)
        try:
            trim = trim.expand(batch, 2)
        except RuntimeError:
            raise ValueError(f"trim must broadcast to [batch={batch}, 2 decks], got "
                             f"{list(trim.shape)}") from None
        if not bool(torch.isfinite(trim).all()) or bool((trim < 0).any()):
            raise ValueError("trim must hold finite gains >= 0")
        return trim.repeat_interleave(N_STEMS, dim=1)

    def _filter(self, stems: torch.Tensor, curves: torch.Tensor, n: int,
                per_stem: bool = False) -> torch.Tensor:
        """Filter stems [B, 8, 2, N] frame by frame and sum them -> [B, 2, N] (or, per stem,
        keep them apart -> [B, 8, 2, N])."""
        hop, n_fft = self.hop, self.n_fft
        batch = stems.shape[0]
        n_frames = (n - 1) // hop + 2  # frame t is centred on sample t * hop
        padded = F.pad(stems, (hop, (n_frames + 1) * hop - hop - n))
        frames = padded.unfold(-1, 2 * hop, hop) * self.window  # [B, 8, 2, T, W]
        spectra = torch.fft.rfft(frames, n=n_fft)

        centres = torch.arange(n_frames, device=stems.device, dtype=torch.float64) * hop
        filter_params = sample_curves(curves[..., FILTERS.reshape(-1)], centres, n)
        # MPS has no float64; elsewhere the design runs in float64, as the streaming mixer's does.
        design_dtype = torch.float32 if stems.device.type == "mps" else torch.float64
        filter_params = filter_params.to(design_dtype).reshape(batch, n_frames, 2 * N_STEMS,
                                                              N_FILTERS)
        response = cascade_response(biquad_coefficients(filter_params, self.config), n_fft)
        response = response.to(spectra.dtype)  # [B, T, 8, K]
        mixed = torch.einsum("btsk,bsctk->" + ("bsctk" if per_stem else "bctk"), response,
                             spectra)
        blocks = torch.fft.irfft(mixed, n=n_fft)  # [B, (8,) 2, T, n_fft]
        ola = F.fold(blocks.reshape(-1, n_frames, n_fft).transpose(1, 2),
                     output_size=(1, (n_frames - 1) * hop + n_fft), kernel_size=(1, n_fft),
                     stride=(1, hop))
        return ola.reshape(*blocks.shape[:-2], -1)[..., hop:hop + n]

    def _reverb(self, send: torch.Tensor, rt60: torch.Tensor) -> torch.Tensor:
        """The FDN of ``effects.reverb`` on [B, 2, N], ``min_delay`` samples at a time."""
        batch, _, n = send.shape
        n_lines = len(self.fdn_delay_steps)
        span = max(self.fdn_delay_steps) + 1
        # past holds the last `span` samples written into every line; it starts silent.
        past = send.new_zeros(batch, n_lines, span)
        start_of = torch.tensor([span - d for d in self.fdn_delay_steps], device=send.device)
        wet = []
        for start in range(0, n, self.chunk):
            length = min(self.chunk, n - start)
            idx = (start_of[:, None] + torch.arange(length, device=send.device)).expand(
                batch, n_lines, length)
            taps = ((1.0 - self.damping) * past.gather(-1, idx)
                    + self.damping * past.gather(-1, idx - 1))
            wet.append(torch.einsum("cl,bln->bcn", self.fdn_output.to(send.dtype), taps))
            gains = loop_gains(rt60[:, start:start + length], self.fdn_delays.to(send.dtype),
                               self.config.sample_rate)  # [B, n, L]
            written = (torch.einsum("ij,bjn->bin", self.fdn_feedback.to(send.dtype),
                                    gains.transpose(1, 2) * taps)
                       + torch.einsum("ic,bcn->bin", self.fdn_input.to(send.dtype),
                                      send[..., start:start + length]))
            past = torch.cat([past[..., length:], written], dim=-1)
        return torch.cat(wet, dim=-1)

    def _check(self, stems_a: torch.Tensor, stems_b: torch.Tensor, params: torch.Tensor,
               sample_rate: int | None) -> None:
        if sample_rate is not None and sample_rate != self.config.sample_rate:
            raise ValueError(f"stems are at {sample_rate} Hz but the mixer runs at "
                             f"{self.config.sample_rate} Hz; resample them first")
        for name, stems in (("stems_a", stems_a), ("stems_b", stems_b)):
            if stems.ndim != 4 or tuple(stems.shape[1:3]) != (N_STEMS, N_CHANNELS):
                raise ValueError(f"{name} must be [batch, 4 stems, 2 channels, samples], "
                                 f"got {list(stems.shape)}")
        if stems_a.shape != stems_b.shape:
            raise ValueError(f"deck A stems {list(stems_a.shape)} and deck B stems "
                             f"{list(stems_b.shape)} differ in shape")
        if stems_a.shape[-1] == 0:
            raise ValueError("the stems hold no samples")
        if (params.ndim != 3 or params.shape[-1] != N_PARAMS or params.shape[1] == 0
                or params.shape[0] != stems_a.shape[0]):
            raise ValueError(f"params must be [batch={stems_a.shape[0]}, frames, {N_PARAMS}], "
                             f"got {list(params.shape)}")
        if not bool(torch.isfinite(params).all()):
            bad = (~torch.isfinite(params)).nonzero()[0].tolist()
            raise ValueError(f"params hold NaN or infinite values (first at batch {bad[0]}, "
                             f"frame {bad[1]}, parameter {bad[2]})")
