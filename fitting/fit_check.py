"""The fitter checked on mixes with known curves: render one, fit it, compare where it matters.

``render_known_mix`` makes the kind of recording fitting.fit reads: two generated tracks
(analysis.synth), deck B played at deck A's tempo (vinyl-style, as the engine plays), a
transition from the rule-based policy, all through DifferentiableMixer, with a few bars of deck A
alone before it and of deck B alone after it.

``recovery_errors`` compares fitted curves with the true ones only where a parameter can be
heard, because elsewhere any value reproduces the recording equally well:

- a stem's gain, where the stem with its fader up would be within ``HEARD_DB`` of the mix (its
  deck's side of the crossfader open, the stem playing) and its deck is heard (one of its stems
  as mixed is within ``HEARD_DB``: a deck with every fader down sounds the same with its side of
  the crossfader closed and its faders anywhere); both values are clipped from below at the
  gain that puts the stem ``HEARD_DB`` under the mix (below it, -40 and -60 dB sound alike);
- the crossfader, where both decks are heard in a frame and in both its neighbours (with one
  deck silent it only scales the other, which its faders do as well: after an echo out, say;
  and the fitted curves, on a grid of their own, are read between frames, so a frame next to
  one where a deck falls silent holds part of a jump the recording cannot place);
- none of a stem's parameters where the same stem of the other deck sounds alike (their log
  band powers over the transition correlate by ``TWIN_CORRELATION``: the generated tracks all
  share one kick drum, and two beat-matched kicks land together) and is not ``TWIN_DB``
  quieter: then only their sum is heard, and how it splits between the decks is not;
- an EQ band of a stem, where the stem's part of the band (below the low shelf, around the mid
  peak, above the high shelf) with that EQ flat would be within ``HEARD_DB`` of the mix's part;
  both values (dB) clipped from below at the cut that puts it ``HEARD_DB`` under;
- a highpass or lowpass of a stem, where the stem with its filters open is heard and either
  value engages the filter; both cutoffs are clipped to the range of frequencies the stem holds
  (within ``CONTENT_DB`` of its loudest band, and below the fit's Nyquist): a highpass under
  the stem's lowest note changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import soxr
import torch

from analysis.separation import get_separator
from analysis.synth import SynthTrack, render_track
from analysis.track import TrackAnalysis, analyze_stems
from effects.config import MixerConfig
from effects.differentiable import DifferentiableMixer
from effects.params import (CROSSFADER, FILTER_BYPASS_EDGE, FILTERS, GAINS, eq_to_db,
                            highpass_to_hz, lowpass_to_hz, neutral_frame)

from .fit import FitConfig, SpectralMixer
from model.policy import plan_transition

HEARD_DB = -20.0
CONTENT_DB = -30.0
TWIN_CORRELATION = 0.8
TWIN_DB = 10.0
EQ_COLUMNS = FILTERS[:, :3]  # [8 stems, low/mid/high]
HIGHPASS, LOWPASS = FILTERS[:, 3], FILTERS[:, 4]


@dataclass(frozen=True)
class KnownMix:
    mix: np.ndarray  # float32 [2, N]
    sample_rate: int
    track_a: SynthTrack
    track_b: SynthTrack
    curves: np.ndarray  # [frames, 52] the transition's true curves
    start: float  # mix time (s) of the transition's first frame
    end: float  # and of its end
    bars: int
    rate_b: float  # deck B's rate
    stems_a: np.ndarray  # [4, 2, N] as heard in the mix (before the mixer)
    stems_b: np.ndarray


def render_known_mix(seed: int, style: str, bars: int, bpm_a: float = 124.0,
                     bpm_b: float = 127.0, lead_bars: int = 2, tail_bars: int = 2,
                     cue_bar: int = 0, sample_rate: int = 44100) -> KnownMix:
    """A recording of a policy transition between two generated tracks (see the docstring)."""
    rng = np.random.default_rng(seed)
    plan = plan_transition(9 + 12, 0, rng, style=style, bars=bars)  # A minor into C major
    track_a = render_track(seed, bpm_a, tonic=9, mode="minor", bars=lead_bars + bars + 1,
                           sample_rate=sample_rate)
    track_b = render_track(seed + 1, bpm_b, tonic=0, mode="major",
                           bars=cue_bar + bars + tail_bars + 1, sample_rate=sample_rate)
    bar_s = 4 * 60.0 / bpm_a
    total_bars = lead_bars + bars + tail_bars
    n = int(round(total_bars * bar_s * sample_rate))
    stems_a = np.zeros((4, 2, n), dtype=np.float32)
    stems_a[..., :min(n, track_a.stems.shape[-1])] = track_a.stems[..., :n]
    # Deck B starts from its cue point on the transition's first downbeat, at deck A's tempo.
    rate_b = bpm_a / bpm_b
    cue = int(round(cue_bar * 4 * 60.0 / bpm_b * sample_rate))
    played = soxr.resample(track_b.stems[..., cue:].reshape(8, -1).T, sample_rate * rate_b,
                           sample_rate).T.reshape(4, 2, -1)
    start = lead_bars * bar_s
    first = int(round(start * sample_rate))
    stems_b = np.zeros_like(stems_a)
    take = min(n - first, played.shape[-1])
    stems_b[..., first:first + take] = played[..., :take]
    per_bar = plan.curves.shape[0] // bars
    curves = np.concatenate([np.tile(neutral_frame(), (lead_bars * per_bar, 1)), plan.curves,
                             np.tile(plan.curves[-1], (tail_bars * per_bar, 1))])
    # Filter frames as long as at 44.1 kHz whatever the rate (a test renders at 16 kHz).
    fft = 1 << round(math.log2(MixerConfig().filter_fft_size * sample_rate / 44100))
    mixer = DifferentiableMixer(MixerConfig(sample_rate=sample_rate, filter_fft_size=fft))
    with torch.no_grad():
        mix = mixer(torch.from_numpy(stems_a)[None], torch.from_numpy(stems_b)[None],
                    torch.from_numpy(curves)[None])[0].numpy()
    return KnownMix(mix, sample_rate, track_a, track_b, plan.curves, start, start + bars * bar_s,
                    bars, rate_b, stems_a, stems_b)


def analysed(track: SynthTrack, separator: str | None = "dsp") -> TrackAnalysis:
    """A generated track as the fitter sees it: stems from ``separator`` (None: the true
    stems, as from a folder of stems), beat grid, key and features from the analysis."""
    stems = track.stems
    if separator is not None:
        stems = get_separator(separator).separate(track.mix, track.sample_rate)
    return analyze_stems(stems, track.sample_rate, source=f"synth:{track.key_name}")


def _per_frame(values: torch.Tensor, positions: torch.Tensor, n_samples: int,
               n_frames: int) -> np.ndarray:
    """Mean over the STFT frames of each curve frame's span [..., T] -> [..., n_frames]."""
    which = torch.floor(positions / n_samples * n_frames).long()
    inside = (which >= 0) & (which < n_frames)
    out = torch.zeros(*values.shape[:-1], n_frames, dtype=values.dtype)
    count = torch.zeros(n_frames, dtype=values.dtype)
    out.index_add_(-1, which[inside], values[..., inside])
    count.index_add_(0, which[inside], torch.ones(int(inside.sum()), dtype=values.dtype))
    return (out / count.clamp(min=1)).numpy()


def on_known_frames(known: KnownMix, fitted: np.ndarray, start: float,
                    end: float) -> np.ndarray:
    """Fitted curves [frames, 52] placed from mix time ``start`` to ``end``, read at the centres
    of the true curves' frames (holding their first and last values outside, as the mixer does).

    The fit places a transition from what it hears, which may start after the policy's first
    frame (deck B's side of the crossfader opens a few bars in) and end before its last.
    """
    n_true, n_fit = known.curves.shape[0], fitted.shape[0]
    at = known.start + (np.arange(n_true) + 0.5) * (known.end - known.start) / n_true
    centres = start + (np.arange(n_fit) + 0.5) * (end - start) / n_fit
    return np.stack([np.interp(at, centres, column) for column in fitted.T], axis=1)


def recovery_errors(known: KnownMix, fitted: np.ndarray, start: float, end: float,
                    config: FitConfig | None = None) -> dict[str, float]:
    """RMS errors of ``fitted`` curves (placed from mix time ``start`` to ``end``) against the
    truth, where each parameter is heard (module docstring)."""
    config = config or FitConfig()
    fitted = on_known_frames(known, fitted, start, end)
    sr = config.sample_rate
    mixer = SpectralMixer(config)
    lo, hi = int(known.start * known.sample_rate), int(known.end * known.sample_rate)

    def resampled(x: np.ndarray) -> np.ndarray:
        flat = x[..., lo:hi].reshape(-1, hi - lo)
        return soxr.resample(flat.T, known.sample_rate, sr).T.reshape(*x.shape[:-1], -1)

    mix, stems_a, stems_b = (resampled(x) for x in (known.mix, known.stems_a, known.stems_b))
    spectra = mixer.spectra(mix, stems_a, stems_b, 0, mix.shape[-1])
    n_frames = known.curves.shape[0]

    def frames(x: torch.Tensor) -> np.ndarray:
        return _per_frame(x, spectra.positions, spectra.n_samples, n_frames)

    def stem_power(curves: np.ndarray) -> np.ndarray:  # [8, bands, frames]
        with torch.no_grad():
            return frames(mixer.stem_power(torch.from_numpy(curves), spectra).double())

    mix_power = frames(spectra.mix.double())  # [bands, frames]
    centres = mixer.bands.centres
    regions = _eq_regions(centres, config.mixer_config())
    errors: dict[str, list[np.ndarray]] = {"gain": [], "crossfader": [], "eq": [], "filter": []}

    # Gains: the stem with its fader up, against the mix (broadband).
    up = known.curves.copy()
    up[:, GAINS] = 1.0
    potential = _rel_db(stem_power(up).sum(1), mix_power.sum(0))  # [8, frames]
    floor = 10 ** ((HEARD_DB - potential) / 60.0)  # fader position at HEARD_DB
    apart = _told_apart(frames(torch.diagonal(spectra.cross, dim1=-2, dim2=-1).real.permute(
        2, 1, 0).double()), mixer.bands.group.double().numpy(), potential)
    # A deck is heard where one of its stems is (as mixed); a silent deck's side of the
    # crossfader and its faders can be anything that keeps it silent.
    sounding = _rel_db(stem_power(known.curves).sum(1), mix_power.sum(0)) >= HEARD_DB
    deck_heard = sounding.reshape(2, 4, -1).any(axis=1)  # [2, frames]
    heard = (potential >= HEARD_DB) & apart & np.repeat(deck_heard, 4, axis=0)
    for s in range(8):
        g_true = np.maximum(known.curves[:, GAINS[s]], floor[s])
        g_fit = np.maximum(fitted[:, GAINS[s]], floor[s])
        errors["gain"].append((g_fit - g_true)[heard[s]])
    both = deck_heard.all(axis=0)
    both[1:-1] &= both[:-2] & both[2:]
    errors["crossfader"].append((fitted[:, CROSSFADER] - known.curves[:, CROSSFADER])[both])

    # EQ bands: the stem's part of the band with the EQ flat, against the mix's part.
    flat = known.curves.copy()
    flat[:, EQ_COLUMNS.reshape(-1)] = 0.5
    flat_power = stem_power(flat)
    for k, region in enumerate(regions):
        rel = _rel_db(flat_power[:, region].sum(1), mix_power[region].sum(0))  # [8, frames]
        for s in range(8):
            col = EQ_COLUMNS[s, k]
            cut = HEARD_DB - rel[s]
            d_true = np.maximum(eq_to_db(known.curves[:, col]), cut)
            d_fit = np.maximum(eq_to_db(fitted[:, col]), cut)
            errors["eq"].append((d_fit - d_true)[(rel[s] >= HEARD_DB) & apart[s]])

    # Filters: the stem with both filters open, and the frequencies it holds.
    open_ = known.curves.copy()
    open_[:, HIGHPASS] = 0.0
    open_[:, LOWPASS] = 1.0
    heard_open = (_rel_db(stem_power(open_).sum(1), mix_power.sum(0)) >= HEARD_DB) & apart
    own = torch.diagonal(spectra.cross, dim1=-2, dim2=-1).real.sum(0)  # [sub, 8]
    content = (mixer.bands.group.double() @ own.double()).numpy().T  # [8, bands]
    for s in range(8):
        level = 10 * np.log10(content[s] + 1e-30)
        held = centres[level >= level.max() + CONTENT_DB]
        f_lo, f_hi = held.min(), min(held.max(), sr / 2)
        for col, is_high in ((HIGHPASS[s], True), (LOWPASS[s], False)):
            x_true, x_fit = known.curves[:, col], fitted[:, col]
            hz_true, hz_fit = (_cutoff(x, is_high, f_lo, f_hi) for x in (x_true, x_fit))
            engaged = _engaged(x_true, is_high) | _engaged(x_fit, is_high)
            errors["filter"].append(np.log2(hz_fit / hz_true)[heard_open[s] & engaged])

    def rms(parts: list[np.ndarray]) -> float:
        values = np.concatenate(parts)
        return float(np.sqrt(np.mean(values**2))) if values.size else 0.0

    return {"gain_rms": rms(errors["gain"] + errors["crossfader"]),
            "stem_gain_rms": rms(errors["gain"]), "crossfader_rms": rms(errors["crossfader"]),
            "eq_db": rms(errors["eq"]), "filter_octaves": rms(errors["filter"]),
            "compared": {k: int(sum(p.size for p in v)) for k, v in errors.items()}}


def _told_apart(sub_power: np.ndarray, group: np.ndarray, potential: np.ndarray) -> np.ndarray:
    """[8, frames]: False where a stem and the same stem of the other deck are alike (their
    log band powers correlate by ``TWIN_CORRELATION`` over the transition) and the other is
    not ``TWIN_DB`` quieter; ``sub_power`` [8, sub-bands, frames] of the stems as played."""
    bands = np.log10(np.einsum("bk,skf->sbf", group, sub_power) + 1e-12)
    apart = np.ones(potential.shape, dtype=bool)
    for s in range(4):
        a, b = bands[s].ravel(), bands[s + 4].ravel()
        if a.std() > 0 and b.std() > 0 and np.corrcoef(a, b)[0, 1] >= TWIN_CORRELATION:
            apart[s] = potential[s] >= potential[s + 4] + TWIN_DB
            apart[s + 4] = potential[s + 4] >= potential[s] + TWIN_DB
    return apart


def _engaged(x: np.ndarray, highpass: bool) -> np.ndarray:
    """Whether a highpass or lowpass setting is out of its bypass."""
    return x > FILTER_BYPASS_EDGE if highpass else x < 1.0 - FILTER_BYPASS_EDGE


def _cutoff(x: np.ndarray, highpass: bool, f_lo: float, f_hi: float) -> np.ndarray:
    """Cutoff (Hz) of settings, clipped to the stem's range; a bypassed filter sits at its end."""
    hz = highpass_to_hz(x) if highpass else lowpass_to_hz(x)
    hz = np.where(_engaged(x, highpass), hz, f_lo if highpass else f_hi)
    return np.clip(hz, f_lo, f_hi)


def _rel_db(power: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return 10 * np.log10((power + 1e-30) / (reference + 1e-30))


def _eq_regions(centres: np.ndarray, config: MixerConfig) -> list[np.ndarray]:
    """Bands each EQ acts on: below the low shelf, an octave around the mid peak, above the
    high shelf."""
    return [centres < config.low_shelf_hz,
            (centres > config.mid_peak_hz / 2) & (centres < config.mid_peak_hz * 2),
            centres > config.high_shelf_hz]
