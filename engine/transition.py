"""Transitions as the engine schedules them: curves in beat time, where they start, and which way.

The model and the policy write a transition from deck A (outgoing) into deck B (incoming). The
engine's decks are physical, like a DJ mixer's channels: after a transition into deck B the next
one goes from B back to A, and its curves are the same curves with the decks exchanged
(effects.params.swap_decks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.beats import BEATS_PER_BAR
from effects.params import swap_decks


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


@dataclass(frozen=True)
class Scheduled:
    """A transition placed in time: it starts when the outgoing deck reaches ``start_beat``
    (None: at once), with the incoming deck's ``cue_beat`` aligned to that moment."""

    transition: Transition
    outgoing: int
    start_beat: float | None
    cue_beat: float


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
