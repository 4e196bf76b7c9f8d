"""Transitions as the engine schedules them: curves in beat time, where they start, and which way.

The model and the policy write a transition from deck A (outgoing) into deck B (incoming). The
engine's decks are physical, like a DJ mixer's channels: after a transition into deck B the next
one goes from B back to A, and its curves are the same curves with the decks exchanged
(effects.params.swap_decks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analysis.beats import BEATS_PER_BAR
from effects.params import N_PARAMS, swap_decks

from .deck import Track


@dataclass(frozen=True)
class Transition:
    """A transition as generated: curves [frames, 52] over ``bars`` bars, deck A into deck B."""

    curves: np.ndarray
    bars: int
    source: str  # "model" or "policy"
    candidate: int = 0

    @property
    def beats(self) -> float:
        return float(BEATS_PER_BAR * self.bars)

    def physical(self, outgoing: int) -> np.ndarray:
        """The curves for the engine's decks when ``outgoing`` (0 = A, 1 = B) plays out."""
        curves = np.ascontiguousarray(self.curves, dtype=np.float32)
        return curves if outgoing == 0 else np.ascontiguousarray(swap_decks(curves))


@dataclass(eq=False)
class Take:
    """What the mixer played during one transition, for the performer log (engine.performer_log).

    The engine makes it, arrays and all, off the callback; the core writes into it while the
    transition plays and hands the ``Scheduled`` that carries it back (``EngineCore.ended``) when
    the transition ends. ``curves`` are in the engine's physical deck orientation: frame i is the
    frame the mixer played (the hand's parameters included) in the control block where the
    transition first reached beat i * beats / frames, as ``frame_at`` places frame i; NaN where
    it never got (an abort)."""

    curves: np.ndarray  # [frames, 52] float32
    taken: np.ndarray  # [52] bool: the parameters the hand held when it ended
    rates: np.ndarray  # [2]: the decks' tempo rates when it ended
    tracks: tuple[Track | None, Track | None]  # on decks A and B at the trigger
    checkpoint: str = ""  # the model's weights, for curves the model wrote
    frames: int = 0  # curve frames reached
    start_beat: float = 0.0  # the outgoing deck's beat where it started
    progress: float = 0.0  # the furthest it got, in beats
    aborted: bool = False

    @classmethod
    def blank(cls, frames: int, tracks: tuple[Track | None, Track | None],
              checkpoint: str = "") -> Take:
        return cls(np.full((frames, N_PARAMS), np.nan, dtype=np.float32),
                   np.zeros(N_PARAMS, dtype=bool), np.ones(2), tracks, checkpoint)


@dataclass(frozen=True)
class Scheduled:
    """A transition placed in time: it starts when the outgoing deck reaches ``start_beat``
    (None: at once), with the incoming deck's ``cue_beat`` aligned to that moment; ``take``
    records what is played (None: nothing is)."""

    transition: Transition
    outgoing: int
    start_beat: float | None
    cue_beat: float
    take: Take | None = field(default=None, compare=False)


def frame_at(curves: np.ndarray, beats: float, progress: float, out: np.ndarray) -> None:
    """The frame ``progress`` beats into a transition of ``beats`` beats, linearly interpolated
    between curve frames (frame i starts at beat i * beats / frames)."""
    n = curves.shape[0]
    x = min(max(progress * n / beats, 0.0), n - 1.0)
    i = int(x)
    j = min(i + 1, n - 1)
    f = x - i
    np.multiply(curves[i], 1.0 - f, out=out)
    out += f * curves[j]


def next_start(beat: float, quantize: str) -> float | None:
    """The beat at which a transition triggered at ``beat`` starts (None: immediately)."""
    step = {"off": 0, "beat": 1, "bar": BEATS_PER_BAR, "phrase": 8 * BEATS_PER_BAR}[quantize]
    if step == 0:
        return None
    return float(np.floor(beat / step + 1e-9) + 1) * step
