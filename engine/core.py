"""The per-block code every audio back end runs: decks, beat sync, transitions, the mixer.

``EngineCore.process(out)`` is called from the audio callback (or the offline renderer) and
owns the playback state. Other threads never touch that state: they ``send`` immutable commands,
which the core drains at the start of each control block (a deque's append and popleft are
atomic, so neither side waits), and they read ``status``, an immutable snapshot the core
replaces after every call. Audio is computed in control blocks of ``CONTROL_BLOCK`` samples
whatever the host's block size, and commands and parameter frames change only on that grid,
which is what makes offline renders identical at any block size.

Beat sync: during a transition the incoming deck is slaved to the outgoing one through both beat
grids: at every control block its position is set so that its beat is the cue beat plus the
beats the outgoing deck has played since the start, and its rate follows the outgoing deck's
tempo. The curves advance in the outgoing deck's beats, so "16 bars" lasts 16 bars at any tempo.

Levels: each deck's stems are scaled by its track's trim (``Track.trim``, a part of the track,
so it comes and goes with the track), and the mix goes through the true-peak limiter
(engine.limiter) before anything else sees it: the host, the recorder and the offline renderer
all get the limited mix, ``limiter.latency`` samples after the mixer made it.

Key lock: a deck's rate is its tempo relative to the track as analysed; the reader advances
rate / stretch samples of the copy the deck holds (the original, or a time-stretched copy that a
``Swap`` puts in place from the same beat, on a beat, crossfaded over one control block).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from analysis.track import TrackAnalysis
from effects import MixerConfig, StreamingMixer
from effects.levels import LevelsConfig
from effects.params import (MASTER_GAIN, N_DECK_PARAMS, N_PARAMS, PARAM_NAMES,
                            neutral_frame)

from .deck import Track, read_stems, sync_rate
from .limiter import Limiter
from .transition import Scheduled, Take, frame_at

CONTROL_BLOCK = 128
# A hand picks a parameter up when it comes this close to the curve's value (or crosses it).
PICKUP = 0.02
# An aborted transition runs back to its start this many times faster than it came.
ABORT_SPEED = 8.0


@dataclass(frozen=True)
class Load:
    deck: int
    track: Track | None


@dataclass(frozen=True)
class Transport:
    deck: int
    playing: bool | None = None
    rate: float | None = None
    seek_beat: float | None = None
    nudge_beats: float = 0.0  # relative move (a jog wheel), added to the position


@dataclass(frozen=True)
class Sync:
    """Match ``deck``'s tempo to the deck on air and align it to the same place in the bar."""

    deck: int


@dataclass(frozen=True)
class Swap:
    """Play ``track``, another copy of the music on ``deck`` (time-stretched for key lock, or the
    original back), from the same beat: at once if the deck is stopped, else on its next beat."""

    deck: int
    track: Track


@dataclass(frozen=True)
class Regrid:
    """Give ``deck``'s music another beat grid (``analysis``: the same stems, a fixed grid). The
    copies the deck holds keep their audio position; only the beat<->sample mapping changes,
    from this control block on, so nothing is heard but the beat counted elsewhere."""

    deck: int
    analysis: TrackAnalysis


@dataclass(frozen=True)
class SetParam:
    index: int
    value: float


@dataclass(frozen=True)
class Schedule:
    scheduled: Scheduled


@dataclass(frozen=True)
class Hold:
    on: bool


@dataclass(frozen=True)
class Abort:
    pass


Command = Load | Transport | Sync | Swap | Regrid | SetParam | Schedule | Hold | Abort


@dataclass(frozen=True)
class Status:
    clock: int  # samples rendered
    positions: tuple[float, float]  # samples of the copy each deck plays
    beats: tuple[float, float]  # beat of each deck (0 at its first downbeat)
    playing: tuple[bool, bool]
    rates: tuple[float, float]  # tempo relative to each track as analysed
    stretches: tuple[float, float]  # of the copy each deck plays (1: the original, vinyl-style)
    on_air: int  # the deck the last transition went to (0 = A)
    phase: str  # "idle", "pending", "running", "returning"
    progress: float  # beats into the transition
    length: float  # beats of the transition
    held: bool
    taken_over: tuple[str, ...]  # parameters following the hand during the transition
    errors: int
    last_error: str
    events: int  # transitions started + finished + aborted (the loop watches it move)


class EngineCore:
    """Two decks into the streaming mixer, block by block (see the module's docstring)."""

    def __init__(self, sample_rate: int = 44100, mixer: StreamingMixer | None = None,
                 levels: LevelsConfig | None = None) -> None:
        self.sample_rate = sample_rate
        self.mixer = mixer or StreamingMixer(MixerConfig(sample_rate=sample_rate),
                                             max_block=CONTROL_BLOCK)
        self.mixer.reset()
        levels = levels or LevelsConfig()
        self.limiter = Limiter(sample_rate, levels.ceiling_dbtp, levels.release_ms)
        self.commands: deque[Command] = deque()
        self.events: deque[tuple[str, int]] = deque(maxlen=256)  # (what, clock)
        # Transitions that played and ended, with their takes filled in, for the loop to take.
        self.ended: deque[Scheduled] = deque(maxlen=16)
        # Tracks the decks let go, for the engine to free off this thread (engine.release): the
        # last reference to stems dropped here would free them with the GIL held, in the callback.
        # Bounded for a core that nobody drains (tests), which then frees the oldest as before.
        self.released: deque[Track] = deque(maxlen=16)
        self._tracks: list[Track | None] = [None, None]
        self._swaps: list[Track | None] = [None, None]  # copies waiting for their deck's beat
        self._pos = np.zeros(2)
        self._rate = np.ones(2)
        self._playing = [False, False]
        self._on_air = 0
        self._manual = neutral_frame(crossfader=0.0)
        self._frame = self._manual.copy()
        self._curves: np.ndarray | None = None
        self._scheduled: Scheduled | None = None
        self._take: Take | None = None
        self._recorded = 0  # curve frames of the take written so far
        self._phase = "idle"
        self._progress = 0.0
        self._start_beat = 0.0
        self._held = False
        self._taken = np.zeros(N_PARAMS, dtype=bool)
        self._hand = np.zeros(N_PARAMS, dtype=np.float32)
        self._last_hand = np.full(N_PARAMS, np.nan, dtype=np.float32)
        self._stems = np.zeros((2, 4, 2, CONTROL_BLOCK), dtype=np.float32)
        self._swap_stems = np.zeros((4, 2, CONTROL_BLOCK), dtype=np.float32)
        self._fade_in = np.linspace(0.0, 1.0, CONTROL_BLOCK, dtype=np.float32)
        self._fade_out = 1.0 - self._fade_in
        self._mix = np.zeros((2, CONTROL_BLOCK), dtype=np.float32)
        self._trim = np.ones(2)
        self._clock = 0
        self._errors = 0
        self._last_error = ""
        self._event_count = 0
        self.status = self._snapshot()
        # Load the compiled reader now: the first call in a process would do it in the callback.
        # numba compiles per array layout: the output must be contiguous like the callback's (a
        # strided slice here had made a second specialization compile there, on the first block).
        read_stems(np.zeros((4, 2, 4), np.float32), 0.0, 1.0, self._swap_stems)

    @property
    def frame(self) -> np.ndarray:
        """A copy of the parameter frame of the last control block."""
        return self._frame.copy()

    def send(self, command: Command) -> None:
        """Queue a command for the next control block (any thread; never blocks)."""
        self.commands.append(command)

    # --- the callback side ------------------------------------------------------------------

    def process(self, out: np.ndarray) -> None:
        """Render out[2, n] (n a multiple of CONTROL_BLOCK). Never raises: an error silences the
        rest of the block, is counted, and the next block plays on."""
        n = out.shape[1]
        done = 0
        try:
            for done in range(0, n, CONTROL_BLOCK):
                self._control_block()
                out[:, done:done + CONTROL_BLOCK] = self._mix
            done = n
        except Exception as err:  # noqa: BLE001 - the callback must not raise
            out[:, done:] = 0.0
            self._errors += 1
            self._last_error = f"{type(err).__name__}: {err}"
            self._clock += n - done
        # Once per block, not per control block: each call of the compiled kernel costs its
        # dispatch, and four of them a callback cost the audio xruns under a MIDI/OSC flood.
        self.limiter.process(out, out)
        self.status = self._snapshot()

    def _control_block(self) -> None:
        while self.commands:
            self._apply(self.commands.popleft())
        if self._scheduled is not None:
            self._advance_transition()
        else:
            self._frame[:] = self._manual
        for d in (0, 1):
            track = self._tracks[d]
            if self._playing[d] and track is not None:
                step = self._rate[d] / track.stretch
                read_stems(track.stems, self._pos[d], step, self._stems[d])
                if self._swaps[d] is not None:
                    step = self._swap_on_beat(d, step)
                    track = self._tracks[d]
                self._pos[d] += step * CONTROL_BLOCK
                if self._pos[d] >= track.samples:
                    self._playing[d] = False
                    self._event("deck_ended")
            else:
                if self._swaps[d] is not None:
                    self._switch(d, self._swaps[d])
                self._stems[d] = 0.0
            if self._tracks[d] is not None:
                self._trim[d] = self._tracks[d].trim
        self.mixer.process(self._stems[0], self._stems[1], self._frame, self._mix, self._trim)
        self._clock += CONTROL_BLOCK

    def _swap_on_beat(self, d: int, step: float) -> float:
        """If a beat falls in this control block, crossfade ``_stems[d]`` (read from the copy
        playing) into the waiting copy from the same beat and switch; returns the step."""
        track, sr = self._tracks[d], self.sample_rate
        b0 = track.beat_at(self._pos[d], sr)
        if np.floor(track.beat_at(self._pos[d] + step * CONTROL_BLOCK, sr)) == np.floor(b0):
            return step
        self._switch(d, self._swaps[d])
        step = self._rate[d] / self._tracks[d].stretch
        read_stems(self._tracks[d].stems, self._pos[d], step, self._swap_stems)
        self._stems[d] *= self._fade_out
        self._swap_stems *= self._fade_in
        self._stems[d] += self._swap_stems
        return step

    def _switch(self, d: int, track: Track) -> None:
        self._pos[d] = track.position_of(self._tracks[d].beat_at(self._pos[d], self.sample_rate),
                                         self.sample_rate)
        self._let_go(self._tracks[d])
        self._tracks[d] = track
        self._swaps[d] = None

    def _advance_transition(self) -> None:
        s = self._scheduled
        o, i = s.outgoing, 1 - s.outgoing
        out_track, in_track = self._tracks[o], self._tracks[i]
        if out_track is None or in_track is None:
            self._end(aborted=True)
            return
        sr = self.sample_rate
        if not self._playing[o] and self._pos[o] >= out_track.samples:
            # The outgoing deck ran out: its beats will never come, so the transition cannot
            # wait for them. Not started: it never will; running: hand over to deck B now.
            if self._phase == "running":
                self._progress = s.transition.beats
                self._play_curves(s.transition.beats)
            self._end(aborted=self._phase != "running")
            return
        per_sample = self._rate[o] / (sr * out_track.beat_seconds)
        b0 = out_track.beat_at(self._pos[o], sr) if self._playing[o] else None
        b1 = b0 + per_sample * CONTROL_BLOCK if b0 is not None else None
        if self._phase == "pending":
            if b0 is None:
                self._frame[:] = self._manual
                return
            start = s.start_beat if s.start_beat is not None else b0
            if b1 <= start:
                self._frame[:] = self._manual
                return
            self._start(s, start)
        if b0 is not None:
            # Slave the incoming deck to the outgoing one through both beat grids.
            self._rate[i] = self._rate[o] * sync_rate(in_track, out_track)
            self._pos[i] = in_track.position_of(s.cue_beat + b0 - self._start_beat, sr)
            self._playing[i] = True
            step = b1 - max(b0, self._start_beat)
        else:
            step = 0.0
        length = s.transition.beats
        if self._phase == "running" and not self._held:
            self._progress += step
        elif self._phase == "returning":
            # Back at ABORT_SPEED times the tempo, and at 120 BPM's pace if the deck is paused.
            self._progress -= ABORT_SPEED * max(step, CONTROL_BLOCK / sr * 2.0)
        self._play_curves(length)
        if self._phase == "running" and self._progress >= length:
            self._end(aborted=False)
        elif self._phase == "returning" and self._progress <= 0.0:
            self._end(aborted=True)

    def _play_curves(self, length: float) -> None:
        """Set the frame of this control block: the curves at the transition's progress, the
        hand's parameters over them; the take records it, so it holds what was heard."""
        frame_at(self._curves, length, self._progress, self._frame)
        np.copyto(self._frame, self._hand, where=self._taken)
        if self._take is not None:
            self._record(length)

    def _record(self, length: float) -> None:
        take = self._take
        n = take.curves.shape[0]
        # Every curve frame reached for the first time; going back (an abort) writes none.
        while self._recorded < n and self._recorded * length / n <= self._progress:
            take.curves[self._recorded] = self._frame
            self._recorded += 1
        if self._progress > take.progress:
            take.progress = self._progress

    def _start(self, s: Scheduled, start: float) -> None:
        self._phase = "running"
        self._start_beat = start
        self._progress = 0.0
        self._curves = s.transition.physical(s.outgoing)
        # The hands stay on what they had moved on the outgoing deck and the master: those
        # parameters are taken over from the start instead of jumping to the curves.
        first = self._curves[0]
        own = np.zeros(N_PARAMS, dtype=bool)
        own[s.outgoing * N_DECK_PARAMS:(s.outgoing + 1) * N_DECK_PARAMS] = True
        own[MASTER_GAIN] = True
        self._taken[:] = own & (np.abs(self._manual - first) > 1e-3)
        self._hand[:] = self._manual
        self._last_hand[:] = np.nan
        self._take = s.take
        self._recorded = 0
        if s.take is not None:
            s.take.start_beat = start
        self._event("transition_started")

    def _end(self, aborted: bool) -> None:
        s = self._scheduled
        incoming = 1 - s.outgoing
        if self._take is not None:  # it started: something was played
            self._hand_over_take(aborted)
        if aborted:
            if self._phase != "pending":
                self._playing[incoming] = False
            self._event("transition_aborted")
        else:
            self._playing[s.outgoing] = False
            self._on_air = incoming
            self._manual[:] = np.where(self._taken, self._hand, self._curves[-1])
            self._event("transition_finished")
        self._scheduled = None
        self._curves = None
        self._phase = "idle"
        self._held = False
        self._taken[:] = False

    def _hand_over_take(self, aborted: bool) -> None:
        take = self._take
        take.frames = self._recorded
        take.aborted = aborted
        take.taken[:] = self._taken
        take.rates[:] = self._rate
        self._take = None
        self.ended.append(self._scheduled)

    def _event(self, what: str) -> None:
        self._event_count += 1
        self.events.append((what, self._clock))

    def _apply(self, c: Command) -> None:
        if isinstance(c, SetParam):
            self._set_param(c.index, float(np.clip(c.value, 0.0, 1.0)))
        elif isinstance(c, Transport):
            if c.rate is not None:
                self._rate[c.deck] = c.rate
            if c.seek_beat is not None and self._tracks[c.deck] is not None:
                self._pos[c.deck] = self._tracks[c.deck].position_of(c.seek_beat,
                                                                     self.sample_rate)
            if c.nudge_beats and self._tracks[c.deck] is not None:
                grid = self._tracks[c.deck].grid
                self._pos[c.deck] += c.nudge_beats * grid.beat_period * self.sample_rate
            if c.playing is not None:
                self._playing[c.deck] = c.playing and self._tracks[c.deck] is not None
        elif isinstance(c, Schedule):
            if self._phase in ("idle", "pending"):
                self._scheduled = c.scheduled
                self._phase = "pending"
        elif isinstance(c, Hold):
            self._held = c.on and self._phase == "running"
        elif isinstance(c, Abort):
            if self._phase == "pending":
                self._end(aborted=True)
            elif self._phase == "running":
                self._phase = "returning"
                self._held = False
        elif isinstance(c, Sync):
            self._sync(c.deck)
        elif isinstance(c, Swap):
            track = self._tracks[c.deck]
            if track is not None and track.analysis is c.track.analysis:  # the same music
                self._let_go(self._swaps[c.deck])
                self._swaps[c.deck] = c.track
            else:
                self._let_go(c.track)
        elif isinstance(c, Regrid):
            self._regrid(c.deck, c.analysis)
        elif isinstance(c, Load):
            if self._scheduled is not None and self._phase != "pending":
                self._let_go(c.track)
                return  # never swap a track out from under a running transition
            self._let_go(self._tracks[c.deck])
            self._let_go(self._swaps[c.deck])
            self._tracks[c.deck] = c.track
            self._swaps[c.deck] = None
            self._playing[c.deck] = False
            self._pos[c.deck] = 0.0
            self._rate[c.deck] = 1.0
            if self._phase == "pending":
                self._end(aborted=True)

    def _let_go(self, track: Track | None) -> None:
        if track is not None:
            self.released.append(track)

    def _regrid(self, d: int, analysis: TrackAnalysis) -> None:
        track = self._tracks[d]
        if track is None or track.analysis.stems is not analysis.stems:
            return  # another track went on the deck since
        if self._phase in ("running", "returning") and analysis.grid != track.analysis.grid:
            return  # the decks are beat-locked: a new grid would move the slaved deck's audio
        # (the same grid with new features goes on, so key lock's copies still match the deck)
        # A few small immutable objects, like the status snapshot; no array is copied.
        self._tracks[d] = track.regridded(analysis)
        if self._swaps[d] is not None:
            self._swaps[d] = self._swaps[d].regridded(analysis)

    def _set_param(self, i: int, value: float) -> None:
        if self._scheduled is None or self._phase == "pending":
            self._manual[i] = value
            return
        if self._taken[i]:
            self._hand[i] = value
            return
        # Soft takeover: the hand takes the parameter where the curve is, when it gets there.
        current = self._frame[i]
        last = self._last_hand[i]
        crossed = not np.isnan(last) and (last - current) * (value - current) <= 0.0
        if abs(value - current) <= PICKUP or crossed:
            self._taken[i] = True
            self._hand[i] = value
        else:
            self._last_hand[i] = value

    def _sync(self, deck: int) -> None:
        other = 1 - deck
        a, b = self._tracks[other], self._tracks[deck]
        if a is None or b is None:
            return
        sr = self.sample_rate
        self._rate[deck] = self._rate[other] * sync_rate(b, a)
        bar_phase = a.beat_at(self._pos[other], sr) % 4.0
        beat = b.beat_at(self._pos[deck], sr)
        target = np.floor(beat / 4.0) * 4.0 + bar_phase
        self._pos[deck] = b.position_of(target, sr)

    def _snapshot(self) -> Status:
        sr = self.sample_rate
        beats = tuple(t.beat_at(p, sr) if t is not None else 0.0
                      for t, p in zip(self._tracks, self._pos))
        s = self._scheduled
        return Status(
            clock=self._clock, positions=(float(self._pos[0]), float(self._pos[1])),
            beats=(float(beats[0]), float(beats[1])), playing=tuple(self._playing),
            rates=(float(self._rate[0]), float(self._rate[1])),
            stretches=tuple(t.stretch if t is not None else 1.0 for t in self._tracks),
            on_air=self._on_air,
            phase=self._phase, progress=float(self._progress),
            length=s.transition.beats if s is not None else 0.0, held=self._held,
            taken_over=tuple(PARAM_NAMES[j] for j in np.flatnonzero(self._taken)),
            errors=self._errors, last_error=self._last_error, events=self._event_count)
