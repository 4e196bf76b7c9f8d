"""The transition critic: numbers that say whether a rendered transition is good, as a DJ hears it.

    critique(mix, stems, sample_rate, beats_a, beats_b, key_a, key_b, curves) -> Critique
    render_and_critique(stems_a, stems_b, curves, sample_rate, beats_a, ...) -> Critique

It reads the mixer's output, every stem's share of it after the effects
(``DifferentiableMixer(..., per_stem=True)``), both decks' beats in the transition's time, their
keys and the 52 curves. The measurements, each a field of ``Critique``:

- loudness continuity: ITU-R BS.1770 short-term loudness (K-weighted, 3 s windows) of the mix
  against the straight line from where it starts (deck A) to where it ends (deck B);
- bass clash and vocal clash: beats in which both decks' bass (vocals) are audible;
- beat alignment: how far apart the decks' beats fall while both decks are audible;
- key clash: time both decks' pitched stems (bass, vocals, other) sound while their keys are not
  neighbours on the Camelot wheel;
- discontinuities: clicks (sample-level jumps that stand out of the music's own transients) and
  abrupt drops of a band of the mix that the curves made (a fader or filter slammed shut);
- end state: at the end deck A is inaudible and deck B's parameters (and the global ones) are back
  to neutral, so the engine can hand deck B over as a plain playing track.

A stem "is audible" in a beat when its level is within ``audible_db`` (20 dB) of the mix's level
in that beat: a bass 20 dB under the mix is masked, one 10 dB under is heard fighting. Beats are
deck A's (continued by deck B's where A's grid ends), counted from the first beat.

The summary ``score`` is in [0, 1], higher is better. Each measurement becomes a sub-score that is
1 up to what a listener lets pass and falls linearly to 0 at what a DJ calls a failed transition;
the score is their weighted sum:

    part             weight  scores 1 at          scores 0 at
    end               0.25   clean                dirty   a transition must end: deck B alone,
                                                          its controls back where a DJ leaves them
    loudness          0.20   1 LU max deviation   10 LU   a hole or bump the floor notices first
    bass              0.15   1 beat of clash      8 beats one beat is a bass swap's ramp; two
                                                          bars of basses beating is a train wreck
    vocals            0.10   0 beats              8 beats two singers at once: the clash a DJ
                                                          avoids first
    beat              0.10   2 ms mean error      20 ms   kicks flam audibly past ~10 ms
    key               0.10   0 s of key clash     15 s    a few seconds of clashing pads pass
    discontinuities   0.10   0 events             4       every click is heard

The end part is the mean of two ramps: deck A's level in the last beat (1 at -40 dB under the
mix, 0 at -20 dB) and the largest distance of a deck B or global parameter from neutral (1 at 0,
0 at 0.2). It weighs most because curves that never finish (both decks still up, a filter still
half closed: what an untrained or collapsed model writes) are otherwise smooth and clash-free,
and at a weight of 0.10 they scored 0.86-0.90, as high as the policy; a stalled crossfade now
loses a quarter of the score. Loudness comes next because every listener hears it; the clashes
next, in the order DJs avoid them; beat and key errors come from the analysis more than from
the curves, so they weigh less in a score meant to compare curves.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import scipy.signal
import torch
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import BaseModel, ConfigDict, Field

from analysis.features import frame_rms
from analysis.key import compatible
from analysis.loudness import k_weighting_filters
from effects import DifferentiableMixer, MixerConfig
from effects.differentiable import response_at, sample_curves
from effects.filters import biquad_coefficients
from effects.params import (DECKS, FILTERS, N_DECK_PARAMS, N_PARAMS, STEMS, neutral_frame,
                            stem_amplitudes)

N_STEMS = len(STEMS)
BASS, VOCALS = STEMS.index("bass"), STEMS.index("vocals")
HARMONIC = [STEMS.index(s) for s in ("bass", "vocals", "other")]
# Deck B's parameters and the global ones: what must be neutral when deck B plays on alone.
END_PARAMS = np.arange(N_DECK_PARAMS, N_PARAMS)
# Levels of silence, so that logarithms stay finite.
_FLOOR_DB = -120.0
_EPS = 10.0 ** (_FLOOR_DB / 10)
# Where clicks are looked for (Hz): see ``find_clicks``.
_CLICK_BAND_HZ = (2000.0, 8000.0)
# The mixer's gain in a band is its response averaged over this many log-spaced frequencies.
_TRANSFER_POINTS = 12

# The summary score's weights, and each measurement's ramp (value scoring 1, value scoring 0);
# see the module docstring.
WEIGHTS: dict[str, float] = {"loudness": 0.20, "bass": 0.15, "vocals": 0.10, "beat": 0.10,
                             "key": 0.10, "discontinuities": 0.10, "end": 0.25}
RAMPS: dict[str, tuple[float, float]] = {
    "loudness": (1.0, 10.0), "bass": (1.0, 8.0), "vocals": (0.0, 8.0), "beat": (2.0, 20.0),
    "key": (0.0, 15.0), "discontinuities": (0.0, 4.0), "end_a_db": (-40.0, -20.0),
    "end_param_dev": (0.0, 0.2),
}


class CriticConfig(BaseModel):
    """Thresholds of the critic; the defaults are what the docstrings describe."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # A stem is audible within this many dB of the mix's level in the same beat...
    audible_db: float = Field(-20.0, lt=0.0)
    # ...and above this absolute level (dBFS), so that two near-silent decks never clash.
    silence_dbfs: float = Field(-60.0, lt=0.0)
    # EBU R128 short-term loudness: 3 s windows, read every 100 ms.
    short_term_s: float = Field(3.0, gt=0.0)
    loudness_hop_s: float = Field(0.1, gt=0.0)
    # Clicks (see ``find_clicks``): 1 ms frames of the 2-8 kHz band that stand this far
    # above the median of the 8 ms before and after them, with at most this many rivals as
    # strong within 1.5 s either side (a dropout's two edges are two; a kick's attack on every
    # other beat has more down to 80 BPM).
    click_frame_ms: float = Field(1.0, gt=0.0)
    click_local_ms: float = Field(8.0, gt=0.0)
    click_db: float = Field(12.0, gt=0.0)
    click_context_s: float = Field(1.5, gt=0.0)
    click_rivals: int = Field(2, ge=1)
    # Abrupt drops (see ``find_jumps``): a band of the mix (below the low shelf, between the
    # shelves, above the high shelf) falling this many dB within ``jump_ms`` while the curves
    # take it out; read on frames of ``jump_frame_ms``.
    jump_db: float = Field(30.0, gt=0.0)
    jump_ms: float = Field(30.0, gt=0.0)
    jump_frame_ms: float = Field(10.0, gt=0.0)
    # End state: deck A inaudible means below this level against the mix (dB), in the last beat.
    end_a_db: float = Field(-40.0, lt=0.0)
    end_param_tolerance: float = Field(0.01, ge=0.0)


@dataclass(frozen=True)
class Critique:
    """What the critic measured on one transition, and its summary score (higher is better)."""

    # Loudness continuity (LU): how far the mix's short-term loudness strays from the straight
    # line between deck A's level at the start and deck B's at the end. 0 is a seamless
    # blend; 3 is a dip or bump the floor feels; 6 is a hole in the music.
    loudness_max_dev_lu: float
    loudness_mean_dev_lu: float
    # Beats in which both decks' bass lines are heard at once: two bass lines beat against each
    # other and muddy the low end. A good blend swaps the basses within a beat.
    bass_clash_beats: int
    # Beats in which both decks' vocals are heard at once: two singers, words lost.
    vocal_clash_beats: int
    # Beats in which both decks are heard at all (the length of the real overlap).
    overlap_beats: int
    # How far deck B's beats fall from deck A's while both are heard (ms, mean and worst):
    # past ~10 ms the kicks flam, past ~30 ms it is a train wreck.
    beat_error_ms: float
    beat_error_max_ms: float
    # Whether the keys are neighbours on the Camelot wheel, and how long both decks' pitched
    # stems (bass, vocals, other) sound together while they are not (s): clashing harmony.
    keys_compatible: bool
    key_clash_s: float
    # Clicks: sample-level jumps in the mix that stand out of the music around them (a gain
    # step, a dropout's edge); when they are (s), and how far the strongest stands above the
    # 8 ms before and after it (dB; 0 without clicks).
    clicks: int
    click_times_s: tuple[float, ...]
    worst_click_db: float
    # Abrupt drops of a band of the mix that the curves caused (a fader or filter slammed shut
    # with nothing in its place); when (s), and the largest such fall of a band within
    # ``jump_ms`` (dB; 30 and more counts).
    spectral_jumps: int
    jump_times_s: tuple[float, ...]
    worst_jump_db: float
    # End state: deck A's level against the mix in the last beat (dB; below -40 it is gone), the
    # largest distance of a deck B or global parameter from neutral in the last frame (0..1;
    # crossfader fully on B), and whether both are clean.
    end_a_db: float
    end_param_dev: float
    end_clean: bool
    # Sub-scores in [0, 1] by part (see the module docstring) and their weighted sum.
    sub_scores: dict[str, float]
    score: float

    @property
    def discontinuities(self) -> int:
        """Clicks and abrupt drops together."""
        return self.clicks + self.spectral_jumps

    def metrics(self) -> dict[str, float]:
        """The scalar measurements and sub-scores as floats, for tables (no time lists)."""
        row = {k: float(v) for k, v in asdict(self).items()
               if isinstance(v, (int, float, bool, np.floating))}
        row.update({f"score_{k}": v for k, v in self.sub_scores.items()})
        return row


def critique(mix: np.ndarray, stems: np.ndarray, sample_rate: int, beats_a: np.ndarray,
             beats_b: np.ndarray, key_a: int, key_b: int, curves: np.ndarray,
             config: CriticConfig | None = None,
             mixer_config: MixerConfig | None = None) -> Critique:
    """Judge a rendered transition.

    mix: the mixer's output [channels, N]; stems: every stem's share of it after the effects,
    [8, channels, N] or [2, 4, channels, N] in deck-major order (``DifferentiableMixer`` with
    ``per_stem=True``); beats_a, beats_b: each deck's beat times in seconds of the transition (a
    ``BeatGrid``'s ``beat_times()`` minus where the transition starts in the track); key_a,
    key_b: key indices (analysis.key); curves: the transition's parameter frames [F, 52];
    mixer_config: the mixer's EQ settings (its defaults at ``sample_rate`` if not given).
    """
    config = config or CriticConfig()
    mix, stems, beats_a, beats_b, curves = _check(mix, stems, sample_rate, beats_a, beats_b,
                                                  curves)
    n = mix.shape[-1]
    edges = _beat_edges(beats_a, beats_b, n / sample_rate)
    beat_s = np.diff(edges)
    # Per-beat levels (dB) of the mix, each stem, each deck, each deck's pitched stems.
    mix_db = _db(frame_rms(mix, sample_rate, edges) ** 2)
    stem_power = frame_rms(stems, sample_rate, edges).astype(np.float64) ** 2  # [8, beats]
    stem_power = stem_power.reshape(len(DECKS), N_STEMS, -1)

    def heard(power: np.ndarray) -> np.ndarray:
        level = _db(power)
        return (level > mix_db + config.audible_db) & (level > config.silence_dbfs)

    stem_heard = heard(stem_power)  # [2, 4, beats]
    deck_heard = heard(stem_power.sum(axis=1))  # [2, beats]
    harmonic_heard = heard(stem_power[:, HARMONIC].sum(axis=1))
    both = deck_heard.all(axis=0)
    errors = _beat_errors(edges[:-1][both], beats_b) * 1000.0
    keys_ok = compatible(key_a, key_b)
    loud_max, loud_mean = loudness_deviation(mix, sample_rate, config)
    click_times, worst_click = find_clicks(mix, sample_rate, config)
    jump_times, worst_jump = find_jumps(mix, sample_rate, curves, config, mixer_config)
    end_a, end_dev = _end_state(mix, stems, sample_rate, beats_b, curves)
    values = dict(
        loudness_max_dev_lu=loud_max, loudness_mean_dev_lu=loud_mean,
        bass_clash_beats=int(stem_heard[:, BASS].all(axis=0).sum()),
        vocal_clash_beats=int(stem_heard[:, VOCALS].all(axis=0).sum()),
        overlap_beats=int(both.sum()),
        beat_error_ms=float(np.abs(errors).mean()) if errors.size else 0.0,
        beat_error_max_ms=float(np.abs(errors).max()) if errors.size else 0.0,
        keys_compatible=keys_ok,
        key_clash_s=0.0 if keys_ok else float(beat_s[harmonic_heard.all(axis=0)].sum()),
        clicks=len(click_times), click_times_s=click_times, worst_click_db=worst_click,
        spectral_jumps=len(jump_times), jump_times_s=jump_times, worst_jump_db=worst_jump,
        end_a_db=end_a, end_param_dev=end_dev,
        end_clean=bool(end_a <= config.end_a_db and end_dev <= config.end_param_tolerance),
    )
    subs = sub_scores(values)
    score = sum(WEIGHTS[part] * s for part, s in subs.items())
    return Critique(**values, sub_scores=subs, score=float(score))


def sub_scores(values: dict) -> dict[str, float]:
    """Each part's score in [0, 1] from the measurements (see the table in the docstring)."""
    def ramp(x: float, good: float, bad: float) -> float:
        return float(np.clip((bad - x) / (bad - good), 0.0, 1.0))

    measured = {
        "loudness": values["loudness_max_dev_lu"],
        "bass": values["bass_clash_beats"],
        "vocals": values["vocal_clash_beats"],
        "beat": values["beat_error_ms"],
        "key": values["key_clash_s"],
        "discontinuities": values["clicks"] + values["spectral_jumps"],
    }
    subs = {part: ramp(x, *RAMPS[part]) for part, x in measured.items()}
    subs["end"] = 0.5 * (ramp(values["end_a_db"], *RAMPS["end_a_db"])
                         + ramp(values["end_param_dev"], *RAMPS["end_param_dev"]))
    return subs


def render_and_critique(stems_a: np.ndarray, stems_b: np.ndarray, curves: np.ndarray,
                        sample_rate: int, beats_a: np.ndarray, beats_b: np.ndarray, key_a: int,
                        key_b: int, mixer: DifferentiableMixer | None = None,
                        config: CriticConfig | None = None) -> Critique:
    """Render decks A and B (stems [4, 2, N] each) through ``curves`` [F, 52] with the
    differentiable mixer and judge the result (see ``critique``)."""
    mixer = mixer or DifferentiableMixer(MixerConfig(sample_rate=sample_rate))
    with torch.no_grad():
        shares = mixer(torch.as_tensor(stems_a, dtype=torch.float32)[None],
                       torch.as_tensor(stems_b, dtype=torch.float32)[None],
                       torch.as_tensor(np.asarray(curves), dtype=torch.float32)[None],
                       sample_rate=sample_rate, per_stem=True)[0].numpy()
    return critique(shares.sum(axis=0), shares, sample_rate, beats_a, beats_b, key_a, key_b,
                    curves, config, mixer.config)


# --- measurements ------------------------------------------------------------------------------

def short_term_loudness(audio: np.ndarray, sample_rate: int,
                        config: CriticConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """BS.1770 short-term loudness (LUFS) of [channels, N] audio, every ``loudness_hop_s``.

    Returns window centres (s) and loudness; windows are ``short_term_s`` long (or the whole
    signal if shorter). Silence reads -70 LUFS, BS.1770's absolute gate.
    """
    config = config or CriticConfig()
    weighted = np.asarray(audio, dtype=np.float64)
    for k_filter in k_weighting_filters(sample_rate):
        weighted = k_filter.apply_filter(weighted)
    # Front channels weigh 1 in BS.1770; mean square summed over channels.
    power = np.concatenate([[0.0], np.cumsum((weighted ** 2).sum(axis=0))])
    n = weighted.shape[-1]
    window = min(n, int(round(config.short_term_s * sample_rate)))
    hop = max(1, int(round(config.loudness_hop_s * sample_rate)))
    starts = np.arange(0, n - window + 1, hop)
    mean_square = (power[starts + window] - power[starts]) / window
    loudness = -0.691 + 10.0 * np.log10(np.maximum(mean_square, 1e-7))
    return (starts + window / 2) / sample_rate, np.maximum(loudness, -70.0)


def loudness_deviation(mix: np.ndarray, sample_rate: int,
                       config: CriticConfig | None = None) -> tuple[float, float]:
    """Max and mean |short-term loudness - the straight line from its first to its last
    value| (LU)."""
    times, loudness = short_term_loudness(mix, sample_rate, config)
    line = np.interp(times, times[[0, -1]], loudness[[0, -1]]) if times.size > 1 else loudness
    deviation = np.abs(loudness - line)
    return float(deviation.max()), float(deviation.mean())


def find_clicks(mix: np.ndarray, sample_rate: int,
                config: CriticConfig | None = None) -> tuple[tuple[float, ...], float]:
    """Times (s) of clicks in [channels, N] audio, and how far the strongest stands above the
    music around it (dB; 0 without clicks).

    A click is broadband and lasts a sample; it is looked for between 2 and 8 kHz, where the ear
    is most sensitive to it and the music's own sharp sounds are weakest (kicks and bass lie
    below, the bulk of hats above). A 1 ms frame of that band is a candidate when it stands
    ``click_db`` above both the frames before and after it (a hat or a clap goes on ringing after
    its onset; a click does not), and a click when at most ``click_rivals`` candidates at least a
    quarter as strong lie within ``click_context_s`` of it: the edges of a naive sawtooth bass
    recur every period and are the music's own sound.
    """
    config = config or CriticConfig()
    band = (_CLICK_BAND_HZ[0], min(_CLICK_BAND_HZ[1], 0.45 * sample_rate))
    sos = scipy.signal.butter(4, band, btype="bandpass", fs=sample_rate, output="sos")
    # Forwards and backwards: no phase shift, so the click's time stays where it is.
    filtered = scipy.signal.sosfiltfilt(sos, np.asarray(mix, dtype=np.float64), axis=-1)
    power = (filtered ** 2).sum(axis=0)
    size = max(1, int(round(config.click_frame_ms * sample_rate / 1000)))
    side = max(1, int(round(config.click_local_ms / config.click_frame_ms)))
    n_frames = power.size // size
    if n_frames < 2 * side + 1:
        return (), 0.0
    frames = power[:n_frames * size].reshape(n_frames, size)
    energy = np.r_[np.full(side, np.nan), frames.mean(axis=1), np.full(side, np.nan)]
    around = sliding_window_view(energy, 2 * side + 1)  # [frames, 2 * side + 1]
    with warnings.catch_warnings():  # all-NaN sides at the signal's ends
        warnings.simplefilter("ignore", RuntimeWarning)
        local = np.fmax(np.nanmedian(around[:, :side], axis=1),
                        np.nanmedian(around[:, side + 1:], axis=1))
    energy = energy[side:-side]
    # Against silence a click is measured from the silence floor, not from digital zero.
    floor = 10.0 ** (config.silence_dbfs / 10)
    excess = np.where(energy > floor, _db(energy) - _db(np.fmax(local, floor)), 0.0)
    candidates = np.flatnonzero(excess > config.click_db)
    # A click spreads over a frame or two after the band filter: one event, its strongest frame.
    groups = np.split(candidates, np.flatnonzero(np.diff(candidates) > side) + 1)
    events = np.array([g[np.argmax(energy[g])] for g in groups if g.size], dtype=int)
    # Rivals: events within the context at least a quarter (6 dB) as strong as each one.
    reach = int(round(config.click_context_s * 1000 / config.click_frame_ms))
    lo = np.searchsorted(events, events - reach)
    hi = np.searchsorted(events, events + reach, side="right")
    strength = energy[events]
    rivals = np.array([(strength[a:b] >= e / 4).sum() for a, b, e in zip(lo, hi, strength)],
                      dtype=int)
    clicks = events[rivals <= config.click_rivals]
    # The click's sample: the strongest of its frame.
    samples = clicks * size + frames[clicks].argmax(axis=1)
    return (tuple(float(s) / sample_rate for s in samples),
            float(excess[clicks].max(initial=0.0)))


def find_jumps(mix: np.ndarray, sample_rate: int, curves: np.ndarray,
               config: CriticConfig | None = None,
               mixer_config: MixerConfig | None = None) -> tuple[tuple[float, ...], float]:
    """Times (s) where a band of the mix [channels, N] falls by ``jump_db`` within ``jump_ms``
    because the mixer's moves took it out, and the largest such fall (dB).

    A fall counts when, over the same span, the curves [F, 52] lower some stem's gain in that
    band (fader, crossfader, master, EQ and filters) by at least half of it: the music's own
    stops (a truncated kick, a note ending into silence) leave the curves alone, and a cut that
    brings deck B in as deck A goes out leaves the band where it was. The reverb is not part of
    the prediction, but it is in the mix: an echo-out's tail keeps the band from falling.
    """
    config = config or CriticConfig()
    mixer_config = mixer_config or MixerConfig(sample_rate=sample_rate)
    mono = np.asarray(mix, dtype=np.float64).mean(axis=0)
    hop = max(1, int(round(config.jump_frame_ms * sample_rate / 1000)))
    lag = max(1, int(round(config.jump_ms / config.jump_frame_ms)))
    window = np.hanning(2 * hop)
    if mono.size < window.size + lag * hop:
        return (), 0.0
    frames = sliding_window_view(mono, window.size)[::hop] * window
    # Scaled by Parseval so that a band's level is its mean square (dBFS).
    spectrum = np.abs(np.fft.rfft(frames, axis=-1)) ** 2 * (2.0 / (window.size
                                                                   * (window ** 2).sum()))
    band = _band_of(np.fft.rfftfreq(window.size, 1.0 / sample_rate), mixer_config)
    levels = _db(np.stack([spectrum[:, band == b].sum(axis=1) for b in range(3)], axis=1))
    falls = np.where(levels[:-lag] > config.silence_dbfs, levels[:-lag] - levels[lag:], 0.0)
    # The mixer's gain per stem and band at the frames' centres (interpolated between curve
    # frames as the mixer does), and its fall over the same span.
    transfer = torch.as_tensor(mixer_transfer_db(curves, mixer_config)).flatten(1)[None]
    centres = torch.arange(levels.shape[0], dtype=torch.float64) * hop + hop
    transfer = sample_curves(transfer, centres, mono.size)[0].numpy().reshape(len(centres), -1, 3)
    moved = (transfer[:-lag] - transfer[lag:]).max(axis=1)  # [frames - lag, 3]
    falls = np.where(moved >= falls / 2, falls, 0.0).max(axis=1)
    starts = _event_starts(falls > config.jump_db)
    return (tuple(float(t) for t in (starts + lag) * hop / sample_rate),
            float(max(falls.max(initial=0.0), 0.0)))


def mixer_transfer_db(curves: np.ndarray, mixer_config: MixerConfig) -> np.ndarray:
    """The mixer's power gain (dB) for every curve frame, stem and EQ band [F, 8, 3]: fader,
    crossfader and master gain times the filter cascade's power response averaged over the band
    (the reverb left out)."""
    frames = torch.as_tensor(np.asarray(curves), dtype=torch.float64).clamp(0.0, 1.0)
    coeffs = biquad_coefficients(frames[:, torch.as_tensor(FILTERS)], mixer_config)
    nyquist = mixer_config.sample_rate / 2
    edges = (20.0, mixer_config.low_shelf_hz, mixer_config.high_shelf_hz, min(20000.0, nyquist))
    power = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        freqs = np.geomspace(lo, hi, _TRANSFER_POINTS)
        omega = torch.as_tensor(freqs * np.pi / nyquist)
        power.append(response_at(coeffs, omega).abs().square().mean(dim=-1).numpy())
    amp = stem_amplitudes(frames.numpy())
    return _db(np.stack(power, axis=-1) * amp[..., None] ** 2)


# --- helpers -----------------------------------------------------------------------------------

def _db(power: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(power, _EPS))


def _band_of(freqs: np.ndarray, mixer_config: MixerConfig) -> np.ndarray:
    """The DJ EQ's band of each frequency: 0 below the low shelf, 1 between, 2 above the high."""
    return np.digitize(freqs, [mixer_config.low_shelf_hz, mixer_config.high_shelf_hz])


def _event_starts(flagged: np.ndarray) -> np.ndarray:
    """Indices where runs of True begin (adjacent flagged frames are one event)."""
    return np.flatnonzero(flagged & ~np.r_[False, flagged[:-1]])


def _beat_edges(beats_a: np.ndarray, beats_b: np.ndarray, duration: float) -> np.ndarray:
    """Edges of the beats the critic counts: deck A's, continued by deck B's after A's grid
    ends, from the first beat to the end (the last beat cut at the end)."""
    period = np.median(np.diff(beats_a))
    beats = np.r_[beats_a, beats_b[beats_b > beats_a[-1] + period / 2]]
    return np.r_[beats, min(beats[-1] + period, duration)]


def _beat_errors(times: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """Signed distance (s) from each of ``times`` to the nearest of ``beats``."""
    if times.size == 0:
        return np.zeros(0)
    right = np.clip(np.searchsorted(beats, times), 1, beats.size - 1)
    left = right - 1
    nearer = np.where(times - beats[left] <= beats[right] - times, left, right)
    return times - beats[nearer]


def _end_state(mix: np.ndarray, stems: np.ndarray, sample_rate: int, beats_b: np.ndarray,
               curves: np.ndarray) -> tuple[float, float]:
    """Deck A's level against the mix over the last beat (dB) and the largest distance of a
    deck B or global parameter from neutral (crossfader on B) in the last frame."""
    last = max(1, int(round(np.median(np.diff(beats_b)) * sample_rate)))
    power_a = np.mean(stems[:N_STEMS, :, -last:].sum(axis=0).astype(np.float64) ** 2)
    power_mix = np.mean(mix[:, -last:].astype(np.float64) ** 2)
    end_a = float(_db(power_a) - _db(power_mix)) if power_mix > _EPS else _FLOOR_DB
    neutral = neutral_frame(crossfader=1.0)
    return end_a, float(np.abs(curves[-1, END_PARAMS] - neutral[END_PARAMS]).max())


def _check(mix, stems, sample_rate, beats_a, beats_b, curves):
    """Arrays in the shapes the critic reads, or a ValueError naming the bad input."""
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    mix = np.asarray(mix, dtype=np.float32)
    if mix.ndim != 2 or mix.shape[-1] == 0:
        raise ValueError(f"mix must be [channels, samples], got shape {list(mix.shape)}")
    stems = np.asarray(stems, dtype=np.float32)
    if stems.shape[-2:] != mix.shape or stems.size != len(DECKS) * N_STEMS * mix.size:
        raise ValueError(f"stems must be [8, {mix.shape[0]}, {mix.shape[1]}] (or [2, 4, ...]) "
                         f"to match the mix, got shape {list(stems.shape)}")
    stems = stems.reshape(len(DECKS) * N_STEMS, *mix.shape)
    duration = mix.shape[-1] / sample_rate
    checked = []
    for name, beats in (("beats_a", beats_a), ("beats_b", beats_b)):
        beats = np.sort(np.asarray(beats, dtype=np.float64).ravel())
        if not np.isfinite(beats).all():
            raise ValueError(f"{name} holds NaN or infinite times")
        beats = beats[(beats >= 0.0) & (beats < duration)]
        if beats.size < 2:
            raise ValueError(f"{name} must hold at least two beat times (s) inside the "
                             f"{duration:.2f} s transition, got {beats.size}")
        checked.append(beats)
    curves = np.asarray(curves, dtype=np.float64)
    if curves.ndim != 2 or curves.shape[0] == 0 or curves.shape[1] != N_PARAMS:
        raise ValueError(f"curves must be [frames, {N_PARAMS}], got shape {list(curves.shape)}")
    if not np.isfinite(curves).all():
        raise ValueError("curves hold NaN or infinite values")
    return mix, stems, checked[0], checked[1], curves
