"""Curves fitted from a mix: the 52 parameter curves that reproduce a recorded transition.

    python -m fitting.fit --mix MIX.wav --deck-a A.wav --deck-b B.wav --out DIR

Given a recording of a transition and its two tracks (files, or folders of stems), this finds
where each track sits in the mix and at which rate (fitting.align), where the transition starts
and ends (on deck A's bars), and then the curves, by gradient descent (Adam), that make the
mixer turn the two tracks' stems into the recording. The result is one dataset example, appended
to DIR (or a new dataset there) in model.data's format, so that the model can learn from real DJ
mixes on the user's machine.

How the fit works (a spectral model of the mixer, the loss, the regularizers, the start) and why:
docs/fitting.md.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soxr
import torch
from scipy.ndimage import median_filter
from scipy.optimize import nnls
from pydantic import BaseModel, ConfigDict, Field

from analysis.audio import AudioLoadError, load_audio
from analysis.beats import BEATS_PER_BAR, estimate_beat_grid
from analysis.features import FRAMES_PER_BEAT
from analysis.separation import SEPARATORS
from analysis.track import AnalysisError, TrackAnalysis, analyze
from effects.config import MixerConfig
from effects.differentiable import biquad_cascade_response, sample_curves
from effects.filters import biquad_coefficients
from effects.params import (CROSSFADER, FILTERS, GAINS, MASTER_GAIN, N_PARAMS, REVERB_DECAY,
                            REVERB_WET, crossfader_gains, gain_to_amplitude, neutral_frame,
                            reverb_decay_to_rt60, reverb_wet_to_send)
from effects.reverb import N_LINES, OUTPUT_LEVEL, fdn_design

from .align import Alignment, AlignmentError, align
from model.data import (FRAMES_PER_BAR, DatasetError, add_track, append_examples, open_manifest,
                        save_manifest, swap_bar)
from model.policy import PHRASE_BARS

N_DECK_STEMS = 4
# Values this close to an end of [0, 1] are that end: the sigmoid never reaches it.
SNAP = 0.01
INIT_GAIN = 0.5  # -18 dB


class FitConfig(BaseModel):
    """How the fit reads the recording and how hard it tries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The fit runs at this rate; the mixer's high shelf (4 kHz) must lie below its Nyquist, and
    # a lowpass above it cannot be told from an open one.
    sample_rate: int = Field(22050, ge=9000, le=48000)
    n_fft: int = Field(2048, ge=256)  # 93 ms at 22.05 kHz: 11 Hz bins for the low EQ and highpass
    hop: int = Field(1024, ge=64)
    # Filter responses are designed every `control_every` STFT frames (372 ms at the defaults;
    # the policy's filter moves take bars) and interpolated between.
    control_every: int = Field(8, ge=1)
    bands_per_octave: float = Field(6.0, gt=0)
    min_hz: float = Field(30.0, gt=0)
    floor_db: float = Field(-80.0, lt=0)  # below the recording's loudest band-frame
    steps: int = Field(300, ge=1)
    lr: float = Field(0.08, gt=0)
    neutral_weight: float = Field(0.05, ge=0)
    # EQ boosts are pulled back this many times harder than cuts: boosting a stem's three bands
    # together is a louder fader, which the fader (at most unity) cannot be, and DJs cut.
    boost_weight: float = Field(20.0, ge=1)
    smooth_weight: float = Field(0.5, ge=0)
    n_frames: int = Field(128, ge=8)
    # Alignment: deck rates searched when the mix has no beat grid to read them from.
    rate_range: tuple[float, float] = (0.92, 1.08)
    # A deck counts as heard where its share of the recording's power is above this.
    heard_db: float = Field(-25.0, lt=0)
    margin_bars: int = Field(1, ge=0)  # fitted either side of the transition, curves held

    def mixer_config(self) -> MixerConfig:
        return MixerConfig(sample_rate=self.sample_rate)


class FitError(ValueError):
    """A mix the fitter could not make sense of; the message names the input and the step."""


# --- the mixer on spectra ---

@dataclass(frozen=True)
class Spectra:
    """One excerpt on the fit's time base: what the spectral mixer needs of both decks' stems,
    and the recording's band power."""

    cross: torch.Tensor  # [T, sub-bands, 8, 8] complex64: sum over each sub-band's bins of
    #                      X_i X_j^* for stems i, j (deck A's four, then deck B's)
    mix: torch.Tensor  # [bands, T] band power of the recording
    positions: torch.Tensor  # [T] float64 sample of each frame's centre from the window start
    n_samples: int  # length of the window the curves span


def stft(audio: np.ndarray | torch.Tensor, config: FitConfig) -> torch.Tensor:
    """Mono Hann STFT [..., bins, T] of [..., channels, N] audio; frame t centred on t * hop."""
    x = torch.as_tensor(audio, dtype=torch.float32).mean(dim=-2)
    lead = x.shape[:-1]
    spec = torch.stft(x.reshape(-1, x.shape[-1]), config.n_fft, config.hop,
                      window=torch.hann_window(config.n_fft), center=True, return_complex=True)
    return spec.reshape(*lead, *spec.shape[-2:])


@dataclass(frozen=True)
class Bands:
    """Bins -> sub-bands -> bands. The loss compares bands ``bands_per_octave`` wide; the mixer
    is evaluated on sub-bands a quarter of that (or one bin, where bins are wider), narrow
    enough that a filter's response is flat across one to within a fraction of a dB."""

    sub: torch.Tensor  # [sub-bands, bins] 0/1
    sub_bins: torch.Tensor  # [sub-bands] the bin at each sub-band's middle
    group: torch.Tensor  # [bands, sub-bands] 0/1
    centres: np.ndarray  # [bands] Hz

    @property
    def of_bins(self) -> torch.Tensor:
        return self.group @ self.sub


def make_bands(config: FitConfig) -> Bands:
    freqs = np.arange(config.n_fft // 2 + 1) * config.sample_rate / config.n_fft
    top = config.sample_rate / 2
    split = 4
    n = int(math.ceil(config.bands_per_octave * math.log2(top / config.min_hz)))
    edges = np.geomspace(config.min_hz, top, split * n + 1)
    edges[0], edges[-1] = freqs[1] / 2, top + 1.0  # the lowest band takes what lies below it
    which = np.searchsorted(edges, freqs, side="right") - 1
    rows = [(j, np.flatnonzero(which == j)) for j in range(split * n)]
    rows = [(j, r) for j, r in rows if r.size]  # sub-bands narrower than a bin are merged away
    sub = np.zeros((len(rows), freqs.size), dtype=np.float32)
    for k, (_, r) in enumerate(rows):
        sub[k, r] = 1.0
    band_of = np.array([j // split for j, _ in rows])
    used = np.unique(band_of)
    group = (band_of[None, :] == used[:, None]).astype(np.float32)
    centres = np.array([np.sqrt(max(freqs[(sub[group[b] > 0].sum(0) > 0)].min(), freqs[1] / 2)
                                * freqs[(sub[group[b] > 0].sum(0) > 0)].max())
                        for b in range(used.size)])
    return Bands(torch.from_numpy(sub), torch.tensor([r[r.size // 2] for _, r in rows]),
                 torch.from_numpy(group), centres)


class SpectralMixer:
    """The mixer's signal flow per STFT frame (see the module docstring)."""

    def __init__(self, config: FitConfig) -> None:
        self.config = config
        self.mixer_config = config.mixer_config()
        self.bands = make_bands(config)
        omega = self.bands.sub_bins.double() * (2 * math.pi / config.n_fft)
        self.z1 = torch.polar(torch.ones_like(omega), -omega).to(torch.complex64)  # e^{-jw}
        fdn = fdn_design(self.mixer_config)
        self.mean_delay = float(np.exp(np.mean(np.log(fdn.delays))))
        # Power response of the loop's two-tap lowpass per pass, at each band's centre.
        w = 2 * np.pi * self.bands.centres / config.sample_rate
        d = fdn.damping
        self.damping_power = torch.from_numpy((1 - d) ** 2 + d**2 + 2 * d * (1 - d) * np.cos(w))

    def spectra(self, mix: np.ndarray, stems_a: np.ndarray, stems_b: np.ndarray, window: int,
                n_samples: int) -> Spectra:
        """Spectra of an excerpt (all at the fit's rate) whose curves span ``n_samples`` from
        its sample ``window``."""
        x = stft(np.concatenate([stems_a, stems_b]), self.config)  # [8, bins, T]
        cross = torch.einsum("kf,iftj->tkij", self.bands.sub.to(torch.complex64),
                             x[:, :, :, None] * x.conj().permute(1, 2, 0)[None])
        positions = torch.arange(x.shape[-1], dtype=torch.float64) * self.config.hop - window
        return Spectra(cross, self.band_power(stft(mix, self.config)), positions, n_samples)

    def frame_params(self, curves: torch.Tensor, positions: torch.Tensor,
                     n_samples: int) -> torch.Tensor:
        """Parameters [T, 52] at frame positions, the mixer's interpolation."""
        return sample_curves(curves[None], positions, n_samples)[0]

    def stem_gains(self, curves: torch.Tensor, spectra: Spectra) -> torch.Tensor:
        """What each stem is multiplied by per frame and sub-band, before master: fader,
        crossfader and the response of its filters -> [T, 8, sub-bands] complex."""
        cfg = self.config
        p = self.frame_params(curves, spectra.positions, spectra.n_samples)
        deck_a, deck_b = crossfader_gains(p[:, CROSSFADER:CROSSFADER + 1])
        side = torch.cat([deck_a.expand(-1, N_DECK_STEMS), deck_b.expand(-1, N_DECK_STEMS)], 1)
        amp = gain_to_amplitude(p[:, GAINS]) * side  # [T, 8]
        n_frames = spectra.positions.shape[0]
        control = torch.arange(0, n_frames + cfg.control_every - 1, cfg.control_every)
        control = control.clamp(max=n_frames - 1)
        pc = self.frame_params(curves, spectra.positions[control], spectra.n_samples)
        coeffs = biquad_coefficients(pc[:, FILTERS.reshape(-1)].double().reshape(
            -1, 2 * N_DECK_STEMS, FILTERS.shape[1]), self.mixer_config).float()
        # The mixer's own biquad evaluation (cascade_response's), at the sub-bands' middle bins
        # only: the other bins would be thrown away, and they were most of a step's work.
        response = biquad_cascade_response(coeffs.reshape(-1, *coeffs.shape[-2:]), self.z1)
        response = response.reshape(*coeffs.shape[:2], -1)  # [C, 8, sub-bands]
        u = torch.arange(n_frames, dtype=torch.float32) / cfg.control_every
        i0 = u.floor().long().clamp(max=control.numel() - 1)
        i1 = (i0 + 1).clamp(max=control.numel() - 1)
        frac = (u - i0).clamp(0.0, 1.0)[:, None, None]
        return (response[i0] * (1 - frac) + response[i1] * frac) * amp[:, :, None]

    def stem_power(self, curves: torch.Tensor, spectra: Spectra) -> torch.Tensor:
        """Each stem's band power after fader, crossfader and filters [8, bands, T]."""
        g = self.stem_gains(curves, spectra)
        own = torch.diagonal(spectra.cross, dim1=-2, dim2=-1).real  # [T, sub, 8]
        return torch.einsum("bk,tks->sbt", self.bands.group, own * g.abs().square().mT)

    def band_power(self, spec: torch.Tensor) -> torch.Tensor:
        """[..., bins, T] complex -> band power [..., bands, T]."""
        return torch.einsum("kf,...ft->...kt", self.bands.of_bins, spec.real**2 + spec.imag**2)

    def reverb(self, dry: torch.Tensor, send: torch.Tensor, rt60: torch.Tensor) -> torch.Tensor:
        """Band power of the reverb return [bands, T] for dry band power [bands, T] and the send
        level and RT60 (s) per frame [T]: W[t] = rho[t] W[t-1] + kappa[t] send[t]^2 dry[t]."""
        cfg = self.config
        damp = self.damping_power[:, None].to(dry.dtype)
        hop_decay = -6.0 * math.log(10.0) * cfg.hop / (cfg.sample_rate * rt60)  # ln, per hop
        log_rho = hop_decay[None, :] + (cfg.hop / self.mean_delay) * torch.log(damp)
        pass_gain = 10.0 ** (-6.0 * self.mean_delay / (cfg.sample_rate * rt60))[None, :] * damp
        # Steady state W = kappa S / (1 - rho) equals the network's: what the lines hold
        # (input / (1 - loss per pass)) through the output taps; the mono return of the two
        # decorrelated channels is half their power, fed by both (twice the mono send).
        kappa = (OUTPUT_LEVEL**2 / N_LINES) * damp * (1 - log_rho.exp()) / (1 - pass_gain)
        drive = kappa * send[None, :] ** 2 * dry
        return _leaky_sum(log_rho, drive)

    def power(self, curves: torch.Tensor, spectra: Spectra, level: torch.Tensor) -> torch.Tensor:
        """The mix's band power [bands, T] for curves [frames, 52]: per sub-band, the power of
        the stems' sum is the quadratic form g^H C g of their gains and cross-spectra."""
        g = self.stem_gains(curves, spectra)
        cg = torch.einsum("tkij,tjk->tik", spectra.cross, g)
        sub_power = (g.conj() * cg).real.sum(dim=1).T
        dry = self.bands.group @ sub_power
        p = self.frame_params(curves, spectra.positions, spectra.n_samples)
        wet = self.reverb(dry, reverb_wet_to_send(p[:, REVERB_WET]),
                          reverb_decay_to_rt60(p[:, REVERB_DECAY]))
        master = gain_to_amplitude(p[:, MASTER_GAIN]) * level
        return master**2 * (dry + wet)


def _leaky_sum(log_rho: torch.Tensor, drive: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """W[:, t] = exp(log_rho[:, t]) W[:, t-1] + drive[:, t] along the last axis, W[-1] = 0, in
    chunks: within one, W[t] = sum_k exp(L[t] - L[k]) drive[k] + exp(L[t]) W[start - 1], with L
    the cumulative log_rho (every exponent <= 0, so nothing overflows)."""
    out, carry = [], None
    for start in range(0, drive.shape[-1], chunk):
        lr, dr = log_rho[:, start:start + chunk], drive[:, start:start + chunk]
        cum = torch.cumsum(lr, dim=-1)
        diff = cum[:, :, None] - cum[:, None, :]  # [bands, t, k]
        lower = torch.ones(diff.shape[-1], diff.shape[-1], dtype=torch.bool).tril()
        weights = torch.where(lower, diff, torch.full_like(diff, -torch.inf)).exp()
        w = torch.einsum("btk,bk->bt", weights, dr)
        if carry is not None:
            w = w + cum.exp() * carry[:, None]
        out.append(w)
        carry = w[:, -1]
    return torch.cat(out, dim=-1)


# --- the fit ---

def _db(power: torch.Tensor, floor: float) -> torch.Tensor:
    return 10.0 * torch.log10(power + floor)


def _logit(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.05, 0.95)
    return np.log(x / (1 - x))


def power_shares(mix: torch.Tensor, parts: torch.Tensor) -> np.ndarray:
    """Non-negative power gains [K, T] that make the parts' band powers [K, bands, T] add up to
    the mix's [bands, T] best, frame by frame, each band weighted by its mean level."""
    w = 1.0 / (mix.double().mean(dim=1, keepdim=True) + 1e-30)
    m = (mix.double() * w).numpy()
    x = (parts.double() * w).numpy()
    return np.stack([nnls(x[:, :, t].T, m[:, t])[0] for t in range(m.shape[1])], axis=1)


@dataclass
class CurveFit:
    curves: np.ndarray  # float32 [frames, 52]
    level: float  # the recording's level against the mixer's
    loss_db: float  # RMS band-power error (dB) of the fitted curves
    losses: list[float] = field(default_factory=list)  # per step, data term
    seconds: float = 0.0


def _curves(logits: torch.Tensor) -> torch.Tensor:
    """Curves [frames, 52] from logits: a sigmoid, then each deck's stem gains divided by the
    largest of them, frame by frame, and master gain at unity. A deck's level is its side of the
    crossfader and the faders only shape it (one of them is always up), which is how DJs mix
    and leaves no trade between the two for the descent to wander along; master gain moving is
    both decks moving together, which the recording's level and the crossfader already say."""
    x = torch.sigmoid(logits)
    gains = x[:, GAINS].reshape(-1, 2, N_DECK_STEMS)
    gains = gains / gains.amax(dim=-1, keepdim=True)
    x = x.index_copy(1, torch.from_numpy(GAINS), gains.reshape(-1, 2 * N_DECK_STEMS))
    return x.index_fill(1, torch.tensor([MASTER_GAIN]), 1.0)


def fit_curves(spectra: Spectra, config: FitConfig, log=None) -> CurveFit:
    """Gradient descent on the curves [n_frames, 52] from ``initial_curves``."""
    t0 = time.perf_counter()
    mixer = SpectralMixer(config)
    neutral = torch.from_numpy(neutral_frame())
    start, level = initial_curves(spectra, config)
    logits = torch.tensor(_logit(start), dtype=torch.float32, requires_grad=True)
    log_level = torch.tensor(math.log(max(level, 1e-6)), requires_grad=True)
    opt = torch.optim.Adam([logits, log_level], lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps, config.lr * 0.05)
    floor = float(spectra.mix.max()) * 10 ** (config.floor_db / 10)
    target = _db(spectra.mix, floor)
    pull = torch.ones(N_PARAMS)
    pull[np.r_[GAINS, CROSSFADER]] = 0.0
    eq = torch.from_numpy(FILTERS[:, :3].reshape(-1))
    losses = []
    for step in range(config.steps):
        curves = _curves(logits)
        data = ((_db(mixer.power(curves, spectra, log_level.exp()), floor) - target) ** 2).mean()
        weight = pull.expand_as(curves).clone()
        weight[:, eq] = torch.where(curves[:, eq] > 0.5, config.boost_weight, 1.0)
        neutral_term = (weight * (curves - neutral) ** 2).mean()
        curvature = curves[2:] - 2 * curves[1:-1] + curves[:-2]
        smooth = torch.nn.functional.smooth_l1_loss(curvature, torch.zeros_like(curvature),
                                                    beta=0.01)
        loss = data / 100.0 + config.neutral_weight * neutral_term + config.smooth_weight * smooth
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(data.detach()))
        if log is not None and (step % 25 == 0 or step == config.steps - 1):
            log(f"step {step:4d}: band error {math.sqrt(losses[-1]):.2f} dB")
    curves = _curves(logits).detach().numpy()
    curves = np.where(curves < SNAP, 0.0, np.where(curves > 1 - SNAP, 1.0, curves))
    return CurveFit(curves.astype(np.float32), float(log_level.detach().exp()),
                    math.sqrt(losses[-1]),
                    losses, time.perf_counter() - t0)


# --- from a recording to an example ---

@dataclass(frozen=True)
class Placement:
    """Where the transition lies: on the mix's time line and in each track's features."""

    start: float  # mix time (s) of the transition's first downbeat
    end: float  # mix time (s) of its last
    bars: int
    a_frame: int  # feature frame of deck A at ``start``
    b_frame: int  # feature frame of deck B at ``start`` (nearest)


def played_stems(track: TrackAnalysis, where: Alignment, sample_rate: int, start: float,
                 n: int) -> np.ndarray:
    """A track's stems as heard in the mix from mix time ``start``: [4, 2, n] at
    ``sample_rate``, silence where the track does not play."""
    stems = soxr.resample(track.stems.reshape(-1, track.stems.shape[-1]).T,
                          track.sample_rate * where.rate, sample_rate).T
    first = int(round((where.offset - start) * sample_rate))  # where sample 0 lands
    out = np.zeros((stems.shape[0], n), dtype=np.float32)
    lo, hi = max(first, 0), min(first + stems.shape[1], n)
    if hi > lo:
        out[:, lo:hi] = stems[:, lo - first:hi - first]
    return out.reshape(N_DECK_STEMS, 2, n)


def _feature_frame(track: TrackAnalysis, where: Alignment, mix_time: float) -> float:
    beat = track.grid.beat_position(where.track_time(mix_time))
    return (float(beat) - track.features.start_beat) * FRAMES_PER_BEAT


def place_transition(track_a: TrackAnalysis, track_b: TrackAnalysis, at_a: Alignment,
                     at_b: Alignment, heard_a: np.ndarray, heard_b: np.ndarray,
                     times: np.ndarray, mix_seconds: float) -> Placement:
    """The transition from deck A's last downbeat before deck B is heard to its first downbeat
    after deck A is last heard, within the mix and both tracks' features."""
    if not heard_b.any() or not heard_a.any():
        raise FitError(f"{'deck B' if not heard_b.any() else 'deck A'} is never heard in the "
                       f"mix next to the other deck")
    enter = float(times[np.flatnonzero(heard_b)[0]])
    leave = float(times[np.flatnonzero(heard_a)[-1]])
    enter, leave = min(enter, leave), max(enter, leave)
    bar = BEATS_PER_BAR * track_a.grid.beat_period / at_a.rate  # mix seconds
    first_bar = at_a.mix_time(track_a.grid.first_downbeat)
    k0 = math.floor((enter - first_bar) / bar + 1e-6)
    k1 = max(math.ceil((leave - first_bar) / bar - 1e-6), k0 + 1)
    frames_a = track_a.features.n_frames
    frames_b = track_b.features.n_frames

    def frames(k: int) -> tuple[float, float]:
        t = first_bar + k * bar
        return _feature_frame(track_a, at_a, t), _feature_frame(track_b, at_b, t)

    while k0 < k1 and (frames(k0)[0] < 0 or frames(k0)[1] < -0.5 or first_bar + k0 * bar < 0):
        k0 += 1
    while k1 > k0 and (frames(k1)[0] > frames_a + 0.5 or frames(k1)[1] > frames_b + 0.5
                       or first_bar + k1 * bar > mix_seconds):
        k1 -= 1
    if k1 <= k0:
        raise FitError("the transition does not lie inside both tracks' beat grids")
    a_frame, b_frame = frames(k0)
    return Placement(first_bar + k0 * bar, first_bar + k1 * bar, k1 - k0,
                     int(round(a_frame)), int(round(b_frame)))


@dataclass
class FittedTransition:
    placement: Placement
    alignments: tuple[Alignment, Alignment]
    fit: CurveFit
    track_a: TrackAnalysis
    track_b: TrackAnalysis


def fit_mix(mix: np.ndarray, sample_rate: int, track_a: TrackAnalysis, track_b: TrackAnalysis,
            config: FitConfig | None = None, log=None) -> FittedTransition:
    """Fit the transition from ``track_a`` into ``track_b`` heard in ``mix`` [2, N]."""
    config = config or FitConfig()
    say = log or (lambda _msg: None)
    rates = {}
    try:
        mix_bpm = estimate_beat_grid(mix, sample_rate).bpm
    except ValueError:
        mix_bpm = None
    for name, track in (("deck A", track_a), ("deck B", track_b)):
        if track.sample_rate != sample_rate:
            raise FitError(f"{name} ({track.source}) is at {track.sample_rate} Hz, the mix at "
                           f"{sample_rate} Hz")
        # Known tempi: the rate is the mix's BPM over the track's (a beat-matched mix), to
        # within the grids' precision; the fine pass of the alignment does the rest.
        if mix_bpm is not None:
            ratio = mix_bpm / track.bpm
            ratio *= 2.0 ** -round(math.log2(ratio))
            rates[name] = (ratio * 0.995, ratio * 1.005)
    alignments = []
    for name, track in (("deck A", track_a), ("deck B", track_b)):
        try:
            alignments.append(align(mix, track.stems.sum(axis=0), sample_rate,
                                    rates.get(name, config.rate_range), name=name))
        except AlignmentError:
            if name not in rates:
                raise
            alignments.append(align(mix, track.stems.sum(axis=0), sample_rate,
                                    config.rate_range, name=name))
        say(f"{name}: starts at {alignments[-1].offset:.3f} s of the mix, rate "
            f"{alignments[-1].rate:.5f}")
    at_a, at_b = alignments

    # Who is heard when, over the stretch where both tracks play (and a little around it).
    sr = config.sample_rate
    lo = max(0.0, at_b.mix_time(0.0) - 8.0)
    hi = min(mix.shape[1] / sample_rate, at_a.mix_time(track_a.duration) + 8.0)
    if hi - lo < 1.0:
        raise FitError("deck B starts after deck A has ended: there is no transition to fit")
    mixer = SpectralMixer(config)
    mix_lo = _resampled(mix[:, int(lo * sample_rate):int(hi * sample_rate)], sample_rate, sr)
    n = mix_lo.shape[1]
    deck_a = played_stems(track_a, at_a, sr, lo, n).sum(axis=0)
    deck_b = played_stems(track_b, at_b, sr, lo, n).sum(axis=0)
    powers = [mixer.band_power(stft(x, config)) for x in (mix_lo, deck_a, deck_b)]
    share_a, share_b = power_shares(powers[0], torch.stack(powers[1:]))
    total = powers[0].sum(0).numpy() + 1e-12
    times = lo + np.arange(total.size) * config.hop / sr
    threshold = 10 ** (config.heard_db / 10)
    heard_a = share_a * powers[1].sum(0).numpy() / total > threshold
    heard_b = share_b * powers[2].sum(0).numpy() / total > threshold
    place = place_transition(track_a, track_b, at_a, at_b, heard_a, heard_b, times,
                             mix.shape[1] / sample_rate)
    say(f"transition: {place.bars} bars from {place.start:.2f} s to {place.end:.2f} s")

    # The fit, over the transition and a margin either side.
    bar = (place.end - place.start) / place.bars
    e0 = max(0.0, place.start - config.margin_bars * bar)
    e1 = min(mix.shape[1] / sample_rate, place.end + config.margin_bars * bar)
    excerpt = _resampled(mix[:, int(e0 * sample_rate):int(e1 * sample_rate)], sample_rate, sr)
    n = excerpt.shape[1]
    spectra = mixer.spectra(excerpt, played_stems(track_a, at_a, sr, e0, n),
                            played_stems(track_b, at_b, sr, e0, n),
                            int(round((place.start - e0) * sr)),
                            int(round((place.end - place.start) * sr)))
    fit = fit_curves(spectra, config, log=log)
    say(f"fitted in {fit.seconds:.1f} s, band error {fit.loss_db:.2f} dB")
    return FittedTransition(place, (at_a, at_b), fit, track_a, track_b)


def _resampled(audio: np.ndarray, rate: int, to: int) -> np.ndarray:
    if rate == to:
        return np.ascontiguousarray(audio, dtype=np.float32)
    return soxr.resample(audio.T, rate, to).T.astype(np.float32)


def initial_curves(spectra: Spectra, config: FitConfig) -> tuple[np.ndarray, float]:
    """Where the descent starts, from each part's share of the mix's power frame by frame
    (non-negative least squares on band powers, median over each curve frame and its
    neighbours): the crossfader where the two decks' shares put it, each stem's fader at its
    share against its deck's loudest stem, EQs, filters and reverb neutral; and the
    recording's level."""
    mixer = SpectralMixer(config)
    own = torch.diagonal(spectra.cross, dim1=-2, dim2=-1).real  # [T, sub, 8]
    decks = [spectra.cross[:, :, d, d].sum(dim=(-2, -1)).real for d in (
        slice(0, N_DECK_STEMS), slice(N_DECK_STEMS, 2 * N_DECK_STEMS))]
    parts = torch.cat([torch.stack(decks), own.permute(2, 0, 1)])  # [2 + 8, T, sub]
    shares = power_shares(spectra.mix, torch.einsum("bk,dtk->dbt", mixer.bands.group, parts[:2]))
    stems = power_shares(spectra.mix, torch.einsum("bk,dtk->dbt", mixer.bands.group, parts[2:]))
    which = np.floor(spectra.positions.numpy() / spectra.n_samples * config.n_frames)
    per_frame = np.zeros((10, config.n_frames))
    for f in range(config.n_frames):
        sel = np.abs(which - f) <= 1
        if sel.any():
            per_frame[:, f] = np.median(np.r_[shares, stems][:, sel], axis=1)
    amp = np.sqrt(median_filter(per_frame, size=(1, 5), mode="nearest"))
    curves = np.tile(neutral_frame(), (config.n_frames, 1))
    curves[:, CROSSFADER] = np.arctan2(amp[1], amp[0]) * 2 / np.pi
    for deck in range(2):
        rel = amp[2 + 4 * deck:6 + 4 * deck]
        # No lower than INIT_GAIN: a stem 60 dB down changes no band's power, so the descent
        # could never bring it back; one too loud it turns down.
        gains = (rel / (rel.max(0) + 1e-12)).T ** (1 / 3)
        curves[:, GAINS[4 * deck:4 * deck + 4]] = np.maximum(gains, INIT_GAIN)
    # The level: what these curves leave between the mix and the model, in dB (median over
    # bands and frames). The shares themselves overstate it where the decks' kicks land together
    # and add up in amplitude.
    floor = float(spectra.mix.max()) * 10 ** (config.floor_db / 10)
    with torch.no_grad():
        model = mixer.power(torch.from_numpy(curves), spectra, torch.tensor(1.0))
    gap = float(torch.median(_db(spectra.mix, floor) - _db(model, floor)))
    return curves, 10 ** (gap / 20)


# --- the dataset ---

def add_to_dataset(out_dir: Path | str, fitted: FittedTransition, sources: tuple[str, str],
                   mix_source: str, split: str = "train", command: str = "",
                   separator: str = "dsp") -> int:
    """Append the fitted transition to the dataset in ``out_dir`` (made if missing); returns
    the new example's row."""
    out_dir = Path(out_dir)
    curves = fitted.fit.curves
    manifest = open_manifest(out_dir, curves.shape[0], "fitting.fit", command, separator)
    indices = [add_track(manifest, track, source, out_dir, split,
                         lambda e, s=source: Path(e["source"]).resolve() == Path(s).resolve())
               for track, source in zip((fitted.track_a, fitted.track_b), sources)]
    place = fitted.placement
    b_entry = manifest["tracks"][indices[1]]
    b_bar = round((place.b_frame - b_entry["bar0"]) / FRAMES_PER_BAR)
    row = append_examples(out_dir, {
        "a_track": indices[0], "a_frame": place.a_frame, "b_track": indices[1],
        "b_frame": place.b_frame, "bars": place.bars, "style": -1,
        "swap_bar": swap_bar(curves, place.bars),
        "b_phrase_offset": (-b_bar) % PHRASE_BARS}, curves)
    at_a, at_b = fitted.alignments
    manifest.setdefault("fitted", []).append({
        "example": row, "mix": mix_source, "deck_a": sources[0], "deck_b": sources[1],
        "start_s": round(place.start, 4), "bars": place.bars,
        "offsets_s": [round(at_a.offset, 5), round(at_b.offset, 5)],
        "rates": [round(at_a.rate, 6), round(at_b.rate, 6)],
        "band_error_db": round(fitted.fit.loss_db, 3), "command": command})
    manifest["n_examples"] = row + 1
    save_manifest(out_dir, manifest)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mix", type=Path, required=True, help="recording of the transition")
    parser.add_argument("--deck-a", type=Path, required=True,
                        help="the outgoing track (audio file or folder of stems)")
    parser.add_argument("--deck-b", type=Path, required=True, help="the incoming track")
    parser.add_argument("--out", type=Path, required=True, help="dataset folder to add it to")
    parser.add_argument("--split", choices=("train", "test"), default="train",
                        help="split of tracks new to the dataset")
    parser.add_argument("--separator", choices=SEPARATORS, default="dsp",
                        help="stem separation of audio files (stem folders need none)")
    parser.add_argument("--steps", type=int, default=FitConfig().steps)
    args = parser.parse_args(argv)
    manifest = args.out / "manifest.json"
    try:  # examples added to a dataset have its curve length
        n_frames = int(json.loads(manifest.read_text())["n_frames"]) if manifest.exists() else 128
    except (OSError, KeyError, TypeError, ValueError) as err:
        print(f"error: {manifest}: not a dataset manifest ({err})", file=sys.stderr)
        return 1
    config = FitConfig(steps=args.steps, n_frames=n_frames)
    try:
        mix = load_audio(args.mix)
        tracks = [analyze(p, separator=args.separator) for p in (args.deck_a, args.deck_b)]
        fitted = fit_mix(mix, 44100, *tracks, config=config, log=print)
        row = add_to_dataset(args.out, fitted, (str(args.deck_a), str(args.deck_b)),
                             str(args.mix), args.split, separator=args.separator,
                             command="python -m fitting.fit " + shlex.join(argv or sys.argv[1:]))
    except (AudioLoadError, AnalysisError, AlignmentError, FitError, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{args.out}: example {row} ({fitted.placement.bars} bars)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
