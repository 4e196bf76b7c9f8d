"""What a transition sounds like, from the curves and both decks' stem spectra: the audio-domain
training loss.

    heard = HeardMix.of(curves, band_db, trim_db, bpm)   # differentiable in the curves
    heard.short_term_loudness(config), heard.terms(config)
    audio_loss(curves, band_db, trim_db, bpm, config)     -> [B]

The curves are judged as a DJ hears them, the way ``evaluation.critic`` judges a rendering:
K-weighted short-term loudness that leaves the straight line between the decks' levels (a hole
or a bump), or falls under the path between the decks' own levels as they play (a hole where
the tracks themselves do not dip, ``hole_weight``), two basslines or two vocals audible at once,
and deck A still audible at the end.

Rendering the pair with ``effects.DifferentiableMixer`` and back-propagating through it cost
35 s for a batch of four 16-bar transitions at 11 kHz on the 2-core CPU (82 s at 16 kHz), and
stems cannot travel to a lent GPU. But the mixer is a slowly varying linear system: per stem a
fader, the crossfader, the master and a cascade of five biquads. Over one frame of the time base
(a sixteenth note) it scales a stem's power in a mel band by the gains squared times the
cascade's power response at the band's centre. The dataset holds every stem's power in 32 mel
bands per frame (``analysis.features.stem_band_db``; the conditioning's 128 mels are clipped at
0 dB, which a tenth of a mastered track's cells reach), so the mix's power per band is the sum
over stems of the stem's power times that gain. Stems add in power: separated stems barely
share time-frequency cells, and the decks are independent. This is the mixer's own filter
design (``effects.filters.biquad_coefficients``) evaluated at the bands' centres, so a batch
costs a fraction of a training step and the loss runs at every one. Left out: the reverb (an
echo-out's tail is heard as quieter than it is) and the phase between stems.
``bench/heard.py`` compares the loudness it computes with the critic's on rendered audio.

Levels are up to one constant (the mel filters' scale), which cancels in every term: each is a
difference of two levels computed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np
import torch

from analysis.features import FRAMES_PER_BEAT, MEL_RATE
from analysis.loudness import k_weighting_power
from effects import MixerConfig
from effects.differentiable import power_response_at
from effects.filters import biquad_coefficients
from effects.params import FILTERS, STEMS, stem_amplitudes

from .config import HeardConfig

N_STEMS = len(STEMS)
BASS, VOCALS = STEMS.index("bass"), STEMS.index("vocals")
# Floors that keep logarithms finite: a stem 80 dB under the mix is silent to any term, and
# BS.1770 reads short-term loudness no lower than -70 LUFS.
_POWER_FLOOR = 1e-8
_LOUDNESS_FLOOR = 10.0 ** (-70.0 / 10)


@dataclass(frozen=True)
class HeardMix:
    """Per frame: each stem's K-weighted power after the mixer [B, 8, F] (deck A's four stems,
    then deck B's), each deck's alone, its faders up and its EQ flat [B, 2, F], and the seconds
    a frame lasts [B]."""

    stem_power: torch.Tensor
    deck_power: torch.Tensor
    frame_s: torch.Tensor

    @classmethod
    def of(cls, curves: torch.Tensor, band_db: torch.Tensor, trim_db: torch.Tensor,
           bpm: torch.Tensor) -> "HeardMix":
        """The mix of curves [B, C, 52] in [0, 1] on both decks' stems, given as their band
        levels [B, 2, 4, bands, F] (dB, ``analysis.features.stem_band_db`` of the excerpts),
        each deck at its trim [B, 2] (dB), deck B at deck A's tempo ``bpm`` [B] (both excerpts
        span the transition in beat time). The curves' C frames span the transition at any
        length; they are read at the F frames as the mixer reads them between its samples
        (linearly, frame i at the centre of the i-th C-th of the span)."""
        batch, _, _, n_bands, frames = band_db.shape
        # float64: the shelves' and the highpass's poles sit near z = 1.
        curves = torch.nn.functional.interpolate(
            curves.to(torch.float64).transpose(1, 2), size=frames, mode="linear",
            align_corners=False).transpose(1, 2)
        db = band_db.to(torch.float64) + trim_db.to(torch.float64)[:, :, None, None, None]
        power = (10.0 ** (db / 10.0)).reshape(batch, 2 * N_STEMS, n_bands, frames)
        weights, omega = _bands(n_bands, curves.device)
        coeffs = biquad_coefficients(curves[..., torch.as_tensor(FILTERS)],
                                     MixerConfig(sample_rate=MEL_RATE))  # [B, F, 8, 5, 5]
        response = power_response_at(coeffs, omega)  # [B, F, 8, bands]
        amp = stem_amplitudes(curves)  # [B, F, 8]
        heard = torch.einsum("bsmf,bfsm,m->bsf", power, response, weights)
        alone = torch.einsum("bsmf,m->bsf", power, weights).reshape(batch, 2, N_STEMS, frames)
        frame_s = 60.0 / (FRAMES_PER_BEAT * bpm.reshape(-1).to(torch.float64))
        return cls(heard * amp.square().transpose(1, 2), alone.sum(dim=2), frame_s)

    def short_term_loudness(self, config: HeardConfig, power: torch.Tensor | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """BS.1770 short-term loudness (LUFS, up to a constant) [..., W] of windows of
        ``short_term_s`` starting at each frame, and which windows lie inside the span [B, W]
        (the tempo sets each example's window length in frames); of the mix, or of ``power``
        [B, ..., F] given on the same frames."""
        mix = self.stem_power.sum(dim=1) if power is None else power
        frames = mix.shape[-1]
        window = self._window(config, frames)
        total = torch.nn.functional.pad(mix.cumsum(dim=-1), (1, 0))  # [B, ..., F + 1]
        starts = torch.arange(frames, device=mix.device)
        ends = (starts[None] + window[:, None]).clamp(max=frames)  # [B, W]
        valid = starts[None] + window[:, None] <= frames
        shape = (-1,) + (1,) * (mix.dim() - 2) + (frames,)
        length = window.reshape(shape[:-1] + (1,))
        mean_square = (total.gather(-1, ends.reshape(shape).expand_as(mix))
                       - total[..., :frames]) / length
        loudness = -0.691 + 10.0 * torch.log10(mean_square.clamp_min(_LOUDNESS_FLOOR))
        return loudness, valid

    def loudness_deviation(self, config: HeardConfig) -> tuple[torch.Tensor, torch.Tensor]:
        """The short-term loudness's distance from the straight line between its first and its
        last window [B, W] (LU; 0 outside the span), as ``critic.loudness_deviation`` reads it,
        and which windows lie inside the span."""
        loudness, valid = self.short_term_loudness(config)
        last = valid.sum(dim=1) - 1  # the last window inside the span
        first_value = loudness[:, 0]
        last_value = loudness.gather(1, last[:, None])[:, 0]
        position = (torch.arange(loudness.shape[1], device=loudness.device)
                    / last.clamp_min(1)[:, None])
        line = first_value[:, None] + (last_value - first_value)[:, None] * position
        return torch.where(valid, (loudness - line).abs(), torch.zeros_like(loudness)), valid

    def hole(self, config: HeardConfig) -> tuple[torch.Tensor, torch.Tensor]:
        """How far the mix's short-term loudness falls under the path between the decks' own
        levels as they play [B, W] (LU; 0 above it and outside the span), and which windows lie
        inside the span. The path, at a window centred a fraction p into the span: (1 - p)
        times deck A's loudness alone plus p times deck B's (faders up, EQ flat), so it follows
        each track's own rises and falls where ``loudness_deviation``'s line joins the span's
        ends. An equal-power crossfade stays within a fraction of a LU of it or above (its
        power is a weighted mean of the decks', the path their weighted geometric mean)."""
        loudness, valid = self.short_term_loudness(config)
        alone, _ = self.short_term_loudness(config, self.deck_power)  # [B, 2, W]
        frames = loudness.shape[-1]
        window = self._window(config, frames)
        centre = torch.arange(frames, device=loudness.device)[None] + window[:, None] / 2
        p = (centre / frames).clamp(0.0, 1.0)
        path = (1.0 - p) * alone[:, 0] + p * alone[:, 1]
        under = (path - loudness).clamp_min(0.0)
        return torch.where(valid, under, torch.zeros_like(under)), valid

    def _window(self, config: HeardConfig, frames: int) -> torch.Tensor:
        """Frames in a short-term window [B]: the tempo sets a frame's length."""
        return (config.short_term_s / self.frame_s).round().long().clamp(1, frames)

    def stem_db(self) -> torch.Tensor:
        """Each stem's level against the mix's [B, 8, F] (dB)."""
        mix = self.stem_power.sum(dim=1, keepdim=True)
        return 10.0 * torch.log10(self.stem_power.clamp_min(_POWER_FLOOR)
                                  / mix.clamp_min(_POWER_FLOOR))

    def terms(self, config: HeardConfig) -> dict[str, torch.Tensor]:
        """The loss's four terms [B] each, before their weights: 0 is what the critic lets pass,
        1 a failed transition."""
        deviation, valid = self.loudness_deviation(config)
        windows = valid.sum(dim=1).clamp_min(1)

        def past(lu: torch.Tensor, free: float) -> torch.Tensor:
            """Mean over the span of the squared LU past ``free``, 1 at ``loudness_bad_lu``."""
            excess = (lu - free).clamp_min(0.0) / (config.loudness_bad_lu - free)
            return excess.square().sum(dim=1) / windows

        loudness = past(deviation, config.loudness_free_lu)
        hole = past(self.hole(config)[0], config.hole_free_lu)
        level = self.stem_db()
        clash = 0.0
        for stem in (BASS, VOCALS):
            quieter = torch.minimum(level[:, stem], level[:, N_STEMS + stem])  # [B, F]
            clash = clash + ((quieter - config.audible_db).clamp_min(0.0)
                             / -config.audible_db).square().mean(dim=1)
        deck_a = self.stem_power[:, :N_STEMS, -FRAMES_PER_BEAT:].sum(dim=(1, 2))
        mix = self.stem_power[:, :, -FRAMES_PER_BEAT:].sum(dim=(1, 2))
        end = 10.0 * torch.log10(deck_a.clamp_min(_POWER_FLOOR) / mix.clamp_min(_POWER_FLOOR))
        unfinished = ((end - config.end_db).clamp_min(0.0) / 20.0).square()
        return {"loudness": loudness, "hole": hole, "clash": clash, "unfinished": unfinished}


def audio_loss(curves: torch.Tensor, band_db: torch.Tensor, trim_db: torch.Tensor,
               bpm: torch.Tensor, config: HeardConfig | None = None) -> torch.Tensor:
    """The weighted sum of ``HeardMix.terms`` per example [B], differentiable in the curves
    (arguments as ``HeardMix.of``)."""
    config = config or HeardConfig()
    terms = HeardMix.of(curves, band_db, trim_db, bpm).terms(config)
    return (config.loudness_weight * terms["loudness"] + config.hole_weight * terms["hole"]
            + config.clash_weight * terms["clash"] + config.end_weight * terms["unfinished"])


def _bands(n_bands: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Each mel band's weight in the mix's power (its share of the spectrum times the
    K-weighting at its centre) [n_bands], and its centre in radians per sample at MEL_RATE."""
    edges = librosa.mel_frequencies(n_mels=n_bands + 2, fmin=0.0, fmax=MEL_RATE / 2)
    centres = edges[1:-1]
    # Slaney-normalised mel filters average the spectrum over their band: times the band's own
    # width (half the filter's support) they add up to the whole spectrum's power.
    weights = (edges[2:] - edges[:-2]) / 2 * k_weighting_power(centres, MEL_RATE)
    omega = centres * np.pi / (MEL_RATE / 2)
    return (torch.as_tensor(weights, dtype=torch.float64, device=device),
            torch.as_tensor(omega, dtype=torch.float64, device=device))
