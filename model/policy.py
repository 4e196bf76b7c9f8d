"""A rule-based transition policy: how DJs mix, as parameter curves in beat time.

It makes the training targets until real DJ mixes are available, and it is the engine's fallback
when the model is missing. A transition spans ``bars`` bars in ``n_frames`` frames (frame i
starts at beat i * 4 * bars / n_frames of the transition); deck A (outgoing) starts alone at full
level and neutral, deck B (incoming) ends alone at full level and neutral.

Styles, each randomized in timing and depth so that the data is multimodal:
- ``blend``: a long EQ blend; B comes in with its lows cut, the basses swap on a phrase boundary
  (mid-transition, on a downbeat), A's highs and mids go last.
- ``filter``: A is highpass-swept out while B opens from a lowpass, bass swap in the middle.
- ``echo_out``: A's send into the reverb opens and A drops out on a downbeat, leaving its tail;
  B comes in under the tail.
- ``cut``: a short cut on a downbeat, as on a drop.
Outgoing vocals are cut before the incoming vocals come in (``vocal_clash``), and compatible keys
(Camelot neighbours) get longer blends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.beats import BEATS_PER_BAR, PHRASE_BARS
from analysis.key import compatible
from effects.params import PARAM_INDEX, STEMS, neutral_frame

STYLES = ("blend", "filter", "echo_out", "cut")
# Where every transition ends: deck B alone, every parameter neutral; the engine hands deck B
# over in this state (and the model's sampler holds it, model.generate's ``end``).
END_FRAME = neutral_frame(crossfader=1.0)
B_BASS = PARAM_INDEX["b_bass_gain"]


@dataclass(frozen=True)
class TransitionPlan:
    style: str
    bars: int
    swap_bar: int  # bar of the transition on which the basses swap (a downbeat)
    curves: np.ndarray  # float32 [n_frames, 52]


def choose_style(rng: np.random.Generator) -> str:
    return str(rng.choice(STYLES, p=(0.4, 0.25, 0.2, 0.15)))


def choose_bars(style: str, key_a: int, key_b: int, rng: np.random.Generator) -> int:
    """A transition length in bars; clashing keys should not overlap long, so blends stay short
    unless the keys agree."""
    choices = {"cut": (4, 8), "echo_out": (8, 16)}.get(
        style, (16, 32) if compatible(key_a, key_b) else (8, 16))
    return int(rng.choice(choices))


def plan_transition(key_a: int, key_b: int, rng: np.random.Generator, n_frames: int = 128,
                    vocals_a: bool = True, vocals_b: bool = True, style: str | None = None,
                    bars: int | None = None, b_phrase_offset: int = 0) -> TransitionPlan:
    """A transition from deck A into deck B; keys are indices into analysis.key.KEY_NAMES.

    ``b_phrase_offset``: the bar of the transition on which deck B starts a phrase (B's phrases
    are ``PHRASE_BARS`` long), where the basses swap when the length allows it.
    """
    style = style or choose_style(rng)
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of {STYLES}")
    bars = bars or choose_bars(style, key_a, key_b, rng)
    beats = np.arange(n_frames) * (BEATS_PER_BAR * bars / n_frames)  # beat of each frame
    swap_bar = _swap_bar(bars, style, b_phrase_offset % PHRASE_BARS, rng)
    swap = swap_bar * BEATS_PER_BAR
    curves = np.tile(neutral_frame(), (n_frames, 1))
    jitter = rng.uniform(-0.5, 0.5)  # beats; keeps the non-swap moves from all landing together

    def ramp(name: str, points: list[tuple[float, float]]) -> None:
        at, value = zip(*points)
        curves[:, PARAM_INDEX[name]] = np.interp(beats, at, value)

    end = BEATS_PER_BAR * bars
    if style == "cut":
        ramp("crossfader", [(swap - 0.25, 0.0), (swap, 1.0)])
    else:
        fade_in, fade_out = rng.uniform(0.0, 0.3) * end, rng.uniform(0.7, 1.0) * end
        ramp("crossfader", [(fade_in, 0.0), (fade_out, 1.0)])
        # The bass swap: one beat, on the downbeat of a phrase boundary.
        ramp("a_bass_gain", [(swap - 1, 1.0), (swap, 0.0)])
        ramp("b_bass_gain", [(0, 0.0), (swap - 1, 0.0), (swap, 1.0)])
        ramp("b_drums_low_eq", [(0, rng.uniform(0.0, 0.3)), (swap - 1 + jitter, 0.3),
                                (swap + jitter, 0.5)])
    if style == "blend":
        for stem in ("drums", "other"):
            ramp(f"a_{stem}_low_eq", [(swap - 1, 0.5), (swap, rng.uniform(0.0, 0.3))])
            ramp(f"a_{stem}_high_eq", [(swap, 0.5), (end, rng.uniform(0.1, 0.4))])
            ramp(f"b_{stem}_high_eq", [(0, rng.uniform(0.1, 0.4)), (swap, 0.5)])
    elif style == "filter":
        depth = rng.uniform(0.55, 0.85)
        for stem in STEMS:
            # A keeps its lows (under 50 Hz cut) until B's bass takes over at the swap: a
            # sweep through the low end before then emptied the mix on real tracks.
            ramp(f"a_{stem}_highpass", [(0, 0.0), (swap, 0.2), (end, depth)])
            ramp(f"b_{stem}_lowpass", [(0, rng.uniform(0.1, 0.4)), (swap + jitter, 1.0)])
    elif style == "echo_out":
        out = swap  # A drops on the downbeat where B's bass comes in: no bar with neither
        ramp("reverb_wet", [(out - 2 * BEATS_PER_BAR, 0.0), (out, rng.uniform(0.35, 0.6)),
                            (end - 0.25, 0.0)])
        ramp("reverb_decay", [(0, rng.uniform(0.5, 0.8))])
        for stem in ("drums", "vocals", "other"):
            ramp(f"a_{stem}_gain", [(out - 0.5, 1.0), (out, 0.0)])
    # Two singers at once is the clash a DJ avoids first: A's vocals go before B's come in.
    if vocals_a and vocals_b and style != "cut":
        ramp("a_vocals_gain", [(swap - BEATS_PER_BAR - 1, 1.0), (swap - BEATS_PER_BAR, 0.0)])
        ramp("b_vocals_gain", [(0, 0.0), (swap - 1, 0.0), (swap, 1.0)])
    # Deck B ends neutral and alone; the last frame is the state the engine hands over.
    curves[-1] = END_FRAME
    return TransitionPlan(style, bars, swap_bar, np.clip(curves, 0.0, 1.0).astype(np.float32))


def _swap_bar(bars: int, style: str, offset: int, rng: np.random.Generator) -> int:
    """The bar of the bass swap: B's phrase start nearest the middle (a cut: a random one in the
    second half), else a half-phrase start, else a downbeat; leaving room to blend either side."""
    margin = max(2, bars // 4)
    lo, hi = (bars // 2, bars - 1) if style == "cut" else (margin, bars - margin)
    for step in (PHRASE_BARS, PHRASE_BARS // 2, 1):
        candidates = [b for b in range(offset % step, bars, step) if lo <= b <= hi]
        if candidates:
            if style == "cut":
                return int(rng.choice(candidates))
            return min(candidates, key=lambda b: abs(b - bars / 2))
    return bars // 2


def swap_beat(curves: np.ndarray, bars: int) -> float | None:
    """The beat of the bass swap in curves [frames, 52]: where deck B's bass gain crosses one
    half, plus the half beat by which the policy's one-beat ramp leads its downbeat."""
    gain = curves[:, B_BASS]
    above = np.flatnonzero(gain >= 0.5)
    if above.size == 0 or above[0] == 0:
        return None
    f = above[0]
    frac = (0.5 - gain[f - 1]) / max(gain[f] - gain[f - 1], 1e-6)
    return (f - 1 + frac) * BEATS_PER_BAR * bars / curves.shape[0] + 0.5
