"""A deck's track in memory and how the callback reads it at a playback rate.

Playback is vinyl-style: the rate changes tempo and pitch together. Key lock swaps in a copy of
the track time-stretched off the callback (``stretched_track``, engine/keylock.py), which the same
reader plays at a rate near 1. Positions are in samples of the copy a deck plays (at the engine's
rate) and fractional; reading interpolates with a 4-point cubic Hermite, which keeps the images of
a rate change about 40 dB lower than linear interpolation at the same cost in compiled code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from numba import njit

from analysis.beats import BEATS_PER_BAR, BeatGrid
from analysis.track import TrackAnalysis, vocal_bars
from analysis.waveform import Waveform, stem_envelopes



@dataclass(frozen=True)
class Track:
    """What a deck holds: stems at the engine's sample rate and the analysis."""

    name: str
    stems: np.ndarray  # float32 [4, 2, samples], C-contiguous
    analysis: TrackAnalysis
    # A key-lock copy: the track time-stretched to play this many times faster at its own pitch.
    stretch: float = 1.0
    # Linear gain on the deck for this track's level (effects.levels.trim_for); it is part of the
    # track, so a load or a swap brings it in with the stems, in one reference assignment.
    trim: float = 1.0

    @cached_property
    def grid(self) -> BeatGrid:
        """The beat grid in this copy's time (the analysis's, scaled by the stretch)."""
        g = self.analysis.grid
        if self.stretch == 1.0:
            return g
        return replace(g, bpm=g.bpm * self.stretch, first_downbeat=g.first_downbeat / self.stretch,
                       duration=g.duration / self.stretch,
                       unfolded_bpm=g.unfolded_bpm and g.unfolded_bpm * self.stretch)

    @property
    def beat_seconds(self) -> float:
        """A beat of the track as analysed: tempo rates are relative to it, whatever the copy."""
        return self.analysis.grid.beat_period

    @property
    def samples(self) -> int:
        return self.stems.shape[-1]

    @property
    def bars(self) -> int:
        """Bars from the first downbeat to the end (a last bar 95 % there counts)."""
        return int(self.grid.beat_position(self.grid.duration) / BEATS_PER_BAR + 0.05)

    @cached_property
    def vocal_bars(self) -> np.ndarray:
        """Which bars carry vocals (computed once per track, for the policy's vocal rule)."""
        return vocal_bars(self.analysis)

    def regridded(self, analysis: TrackAnalysis) -> Track:
        """This copy (the same stems and stretch) with ``analysis``, the same music on another
        beat grid; the grid is computed here, not when the callback first reads it."""
        copy = replace(self, analysis=analysis)
        copy.grid  # noqa: B018
        return copy

    def waveform(self, sample_rate: int) -> Waveform:
        """The web view's waveform of this copy: the analysis's, on this copy's time (a copy
        that plays ``stretch`` times faster has that many times the points a second); for an
        analysis cached before waveforms were, made here from this copy's stems (a tenth of a
        second of numpy for five minutes: off the loop)."""
        made = self.analysis.waveform
        if made is None:
            return stem_envelopes(self.stems, sample_rate)
        return replace(made, points_per_second=made.points_per_second * self.stretch)

    def beat_at(self, position: float, sample_rate: int) -> float:
        """Beat (0 at the first downbeat) at a position in samples."""
        return (position / sample_rate - self.grid.first_downbeat) / self.grid.beat_period

    def position_of(self, beat: float, sample_rate: int) -> float:
        return (self.grid.first_downbeat + beat * self.grid.beat_period) * sample_rate


def track_from_analysis(analysis: TrackAnalysis, trim: float = 1.0) -> Track:
    stems = np.ascontiguousarray(analysis.stems, dtype=np.float32)
    return Track(analysis.source.rsplit("/", 1)[-1], stems, analysis, trim=trim)


def stretched_track(track: Track, stems: np.ndarray) -> Track:
    """A key-lock copy of ``track`` (an original) from its time-stretched stems; the stretch is
    the ratio of the lengths, so the copy's grid lands on its beats to the sample."""
    copy = replace(track, stems=stems, stretch=track.samples / stems.shape[-1])
    copy.grid  # noqa: B018 - computed here, not in the callback
    return copy


def sync_rate(track: Track, to: Track) -> float:
    """The rate that plays ``track`` at ``to``'s own tempo."""
    return track.beat_seconds / to.beat_seconds


@njit(cache=True, nogil=True)
def read_stems(stems: np.ndarray, start: float, rate: float, out: np.ndarray) -> None:
    """out[4, 2, m] = stems resampled from ``start`` advancing ``rate`` samples per sample
    (silence outside the track)."""
    n = stems.shape[2]
    for i in range(out.shape[2]):
        p = start + rate * i
        k = int(np.floor(p))
        f = p - k
        for s in range(stems.shape[0]):
            for c in range(stems.shape[1]):
                y0 = stems[s, c, k - 1] if 0 <= k - 1 < n else 0.0
                y1 = stems[s, c, k] if 0 <= k < n else 0.0
                y2 = stems[s, c, k + 1] if 0 <= k + 1 < n else 0.0
                y3 = stems[s, c, k + 2] if 0 <= k + 2 < n else 0.0
                # Catmull-Rom (4-point cubic Hermite)
                c1 = 0.5 * (y2 - y0)
                c2 = y0 - 2.5 * y1 + 2.0 * y2 - 0.5 * y3
                c3 = 0.5 * (y3 - y0) + 1.5 * (y1 - y2)
                out[s, c, i] = ((c3 * f + c2) * f + c1) * f + y1
