"""The engine's command API: what controllers, the command line and the offline script call.

Everything here runs on the asyncio loop's thread (or the offline renderer's). It never touches
the playback state: it reads the core's ``status`` snapshot and sends commands. Analysis and
sampling go to the generation worker; their results come back through ``poll()``, which the loop
calls a few times a second along with the status line.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from analysis import grid_edits
from analysis.beats import BEATS_PER_BAR, PHRASE_BARS, BeatGrid
from analysis.track import TrackAnalysis, TrackSummary, analyze, track_hash
from effects.levels import trim_for
from effects.params import PARAM_INDEX, PARAM_NAMES, PARAM_SPECS

from . import core as c
from .config import EngineConfig, Quantize
from .deck import Track, track_from_analysis
from .keylock import KeyLock
from .performer_log import PerformerLog, default_log_dir
from .release import release
from .taps import TapTempo
from .transition import Scheduled, Take, Transition, next_start
from .worker import (AnalyzeRequest, GenerateRequest, Generator, GenerationWorker, Result,
                     policy_transitions)

if TYPE_CHECKING:
    from .djset import DjSet

DECK_NAMES = ("A", "B")
GRID_STEP = 1.0 / 64  # beats a grid nudge moves it: a jog wheel's tick, 7.8 ms at 120 BPM
# What a controller's grid button does (the MIDI command "grid" names one as its target).
GRID_ACTIONS = ("shift_back", "shift_forward", "downbeat", "half", "double", "tap")


@dataclass
class Plan:
    """Candidates sampled for the next transition, and what they were sampled for."""

    outgoing: int
    a_beat: float
    b_beat: float
    bars: int
    serial: int = 0
    transitions: tuple[Transition, ...] = ()
    note: str = ""


@dataclass
class Messages:
    """What the engine has to say (errors and events), drained by the loop."""

    items: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.items.append(text)

    def drain(self) -> list[str]:
        out, self.items = self.items, []
        return out


def deck_index(deck: int | str) -> int:
    if isinstance(deck, str) and deck.upper() in DECK_NAMES:
        return DECK_NAMES.index(deck.upper())
    if deck in (0, 1):
        return int(deck)
    raise ValueError(f"no deck {deck!r}; decks are A and B")


class Engine:
    """Decks, candidates and the transition's settings, in front of an ``EngineCore``.

    ``worker``: a started ``GenerationWorker`` (live), or None to do the work synchronously in
    this thread (the offline renderer: the result does not depend on timing).
    ``plan_on_load``: sample candidates as soon as both decks hold a track (live); the offline
    renderer plans once, from where it mixes out (sampling on load too cost it seconds).
    """

    def __init__(self, config: EngineConfig | None = None, core: c.EngineCore | None = None,
                 worker: GenerationWorker | None = None, plan_on_load: bool = True) -> None:
        self.config = config or EngineConfig()
        self.plan_on_load = plan_on_load
        self.core = core or c.EngineCore(self.config.sample_rate, levels=self.config.levels)
        self.worker = worker
        self._generator = Generator(self.config.checkpoint, self.config.model_device) \
            if worker is None else None
        self.keylock = KeyLock(self.core, self.config.sample_rate, self.config.key_lock,
                               synchronous=worker is None)
        self.tracks: list[Track | None] = [None, None]
        self._loading: dict[int, tuple[int, str]] = {}  # worker serial -> (deck, path)
        self._reading = 0  # loads analysed, their stems being read back off the loop
        self._ahead: dict[int, str] = {}  # worker serial -> path analysed ahead of its load
        # Tracks analysed ahead, for the set: (path, summary or None, the error).
        self.analysed: list[tuple[str, TrackSummary | None, str]] = []
        self.failed_loads: list[tuple[int, str]] = []  # (deck, why) for the set
        # Where the next transition starts in the outgoing track (a beat), when something
        # decides it (a DJ set); else from the next phrase.
        self.mix_out: Callable[[Track], float] | None = None
        self.playlist: DjSet | None = None  # the DJ set that drives the decks, if one does
        self.plan: Plan | None = None
        self.candidate = 0
        self.scheduled: Scheduled | None = None  # the transition last triggered (a view shows it)
        self.quantize: Quantize = self.config.quantize
        self.bars = self.config.bars
        self.guidance = self.config.guidance
        self.model_note = self._generator.note if self._generator else "model loading"
        self.checkpoint = self._generator.checkpoint if self._generator else ""  # the model's file
        # Known at once offline; live, from the worker's first answer.
        self.model_ready = bool(self._generator and self._generator.model is not None)
        self.messages = Messages()
        self._seed = self.config.seed
        self._last_events = 0
        self._last_errors = 0
        self._on_air = 0
        self._loaded: list[tuple[int, tuple[Track, bool] | BaseException]] = []
        self._taps = [TapTempo(), TapTempo()]
        # Grid fixes are kept (features made again on the new grid, the file written) one at a
        # time off the loop; a job whose edit was superseded meanwhile does nothing.
        self._grid_jobs = ThreadPoolExecutor(1, "grid") if worker is not None else None
        self._kept: list[tuple[int, TrackAnalysis, TrackAnalysis | None, str]] = []
        self._lock = threading.Lock()  # guards _loaded and _kept between threads and the loop
        # Stems the decks let go are freed on a thread of their own (engine.release).
        self._releases = ThreadPoolExecutor(1, "release")
        self._releasing: Future | None = None
        self.log = PerformerLog(Path(self.config.log_dir or default_log_dir()),
                                synchronous=worker is None) if self.config.log else None

    # --- decks ----------------------------------------------------------------------------

    def load(self, deck: int | str, path: Path | str) -> None:
        """Load a track (a file or a folder of stems) onto a deck: analysed in the worker, then
        put on the deck. The deck on air and decks in a transition refuse a new track."""
        d = deck_index(deck)
        if self.worker is None:
            try:
                track, edited = self._open(path)
            except (OSError, ValueError) as err:
                self._load_failed(d, str(err))
                return
            self.put_track(d, track, edited)
            return
        serial = self.worker.submit(lambda s: AnalyzeRequest(s, str(path), self.config.sample_rate,
                                                             self.config.separator))
        self._loading[serial] = (d, str(path))

    @property
    def loading(self) -> bool:
        """Whether a deck is still taking a track in: its analysis, its stems read back, its
        key-lock copy, or the next transition's candidates."""
        return bool(self._loading) or self._reading > 0 or self.keylock.busy or \
            (self.plan is not None and not self.plan.transitions)

    def analyse_ahead(self, path: Path | str) -> None:
        """Analyse a track (into the cache) before it is loaded; its summary or error goes to
        ``analysed``."""
        request = AnalyzeRequest(0, str(path), self.config.sample_rate, self.config.separator)
        if self.worker is None:
            self._analysed(str(path), self._generator.handle(request))
            return
        serial = self.worker.submit(lambda s: replace(request, serial=s))
        self._ahead[serial] = str(path)

    def _analysed(self, path: str, result: Result) -> None:
        self.analysed.append((path, result.extra.get("summary"), result.error))

    def _load_failed(self, deck: int, why: str) -> None:
        self.messages.add(f"deck {DECK_NAMES[deck]}: {why}")
        if self.playlist is not None:
            self.failed_loads.append((deck, why))

    def make_track(self, analysis: TrackAnalysis) -> Track:
        """A deck's track from an analysis, with the trim of its loudness (auto gain)."""
        return track_from_analysis(analysis, trim_for(analysis.loudness_lufs,
                                                      self.config.levels))

    def _open(self, path: Path | str) -> tuple[Track, bool]:
        """The analysed track with the grid kept for it, if one was (and whether one was)."""
        analysis = analyze(path, self.config.sample_rate, self.config.separator)
        analysis, edited = grid_edits.apply_saved(analysis, track_hash(path))
        return self.make_track(analysis), edited

    def put_track(self, deck: int, track: Track, grid_edited: bool = False) -> None:
        status = self.core.status
        if status.phase in ("running", "returning"):
            self.messages.add(f"deck {DECK_NAMES[deck]}: busy in a transition; load refused")
            return
        if status.playing[deck] and deck == self._on_air:
            # The music must not stop because a track was dropped on the wrong deck.
            self.messages.add(f"deck {DECK_NAMES[deck]} is on air; stop it before loading")
            return
        self.tracks[deck] = track
        self._taps[deck] = TapTempo()
        self.core.send(c.Load(deck, track))
        self.keylock.loaded(deck, track)
        a = track.analysis
        grid = ", grid: edited" if grid_edited else ""
        self.messages.add(f"deck {DECK_NAMES[deck]}: {track.name}, {a.grid.describe()}, "
                          f"{a.key_name} ({a.camelot}), {a.loudness_lufs:.1f} LUFS, "
                          f"trim {20 * np.log10(track.trim):+.1f} dB{grid}")
        self._update_key_lock()
        if self.plan_on_load:
            self.plan_next()

    def eject(self, deck: int | str) -> None:
        """Take the track off a deck that is neither on air nor in a transition (a set does it
        to the deck a transition left: nothing triggers back into the track just played, and
        its stems leave memory before the next track's arrive)."""
        d = deck_index(deck)
        status = self.core.status
        if status.phase != "idle" or (status.playing[d] and d == self._on_air):
            self.messages.add(f"deck {DECK_NAMES[d]}: in use; not ejected")
            return
        self.tracks[d] = None
        self.plan = None
        self.core.send(c.Load(d, None))
        self.keylock.loaded(d, None)

    def play(self, deck: int | str, playing: bool = True) -> None:
        self.core.send(c.Transport(deck_index(deck), playing=playing))

    def cue(self, deck: int | str) -> None:
        """Back to the first downbeat, stopped (a deck's cue point)."""
        self.core.send(c.Transport(deck_index(deck), playing=False, seek_beat=0.0))

    def seek(self, deck: int | str, beat: float) -> None:
        self.core.send(c.Transport(deck_index(deck), seek_beat=float(beat)))

    def nudge(self, deck: int | str, beats: float) -> None:
        """Move a deck's position by ``beats`` (a jog wheel; negative is back)."""
        self.core.send(c.Transport(deck_index(deck), nudge_beats=float(beats)))

    def tempo(self, deck: int | str, rate: float) -> None:
        """Playback rate (1.0 = the track's own tempo), within ±50 %."""
        self.core.send(c.Transport(deck_index(deck), rate=float(np.clip(rate, 0.5, 1.5))))

    def follow_tempo(self, bpm: float) -> None:
        """Play the deck on air at ``bpm`` (an external clock leads); the incoming deck follows
        it in a transition."""
        track = self.tracks[self._on_air]
        if track is not None and bpm > 0:
            self.tempo(self._on_air, bpm / track.analysis.bpm)

    def live_bpm(self) -> float:
        """The tempo of the deck on air, as it plays."""
        track = self.tracks[self._on_air]
        if track is None:
            return 120.0
        return track.analysis.bpm * self.core.status.rates[self._on_air]

    def sync(self, deck: int | str) -> None:
        self.core.send(c.Sync(deck_index(deck)))

    # --- beat grid editing ----------------------------------------------------------------

    def grid_shift(self, deck: int | str, beats: float) -> None:
        """Move the deck's grid later by ``beats`` (earlier when negative; within a bar)."""
        beats = float(beats)
        if not math.isfinite(beats) or abs(beats) > BEATS_PER_BAR:
            raise ValueError(f"grid shift {beats!r} beats: choose a number within "
                             f"±{BEATS_PER_BAR}")
        self._edit_grid(deck, f"moved {beats:+.4g} beats",
                        lambda grid, at: grid_edits.shifted(grid, beats))

    def grid_downbeat(self, deck: int | str) -> None:
        """Make the deck's play position the downbeat of a bar (the tempo stays)."""
        self._edit_grid(deck, "downbeat here",
                        lambda grid, at: grid_edits.anchored(grid, at, grid.bpm))

    def grid_half(self, deck: int | str) -> None:
        self._edit_grid(deck, "half tempo", lambda grid, at: grid_edits.scaled(grid, 0.5))

    def grid_double(self, deck: int | str) -> None:
        self._edit_grid(deck, "double tempo", lambda grid, at: grid_edits.scaled(grid, 2.0))

    def grid_tap(self, deck: int | str, now: float | None = None) -> None:
        """A tap (at ``now`` on the monotonic clock, or now): from the fourth tap of a series
        the deck's tempo is the taps', and the last tap a beat; which beat of the bar it is
        stays as the grid had it, so the bars keep their place."""
        d = deck_index(deck)
        bpm = self._taps[d].tap(time.monotonic() if now is None else float(now))
        if bpm is None:
            return
        self._edit_grid(d, "tapped", lambda grid, at: grid_edits.anchored(
            grid, at, bpm, round(float(grid.beat_position(at))) % BEATS_PER_BAR))

    def grid(self, deck: int | str, action: str) -> None:
        """One of GRID_ACTIONS on a deck (a controller's grid buttons)."""
        actions = {"shift_back": lambda d: self.grid_shift(d, -GRID_STEP),
                   "shift_forward": lambda d: self.grid_shift(d, GRID_STEP),
                   "downbeat": self.grid_downbeat, "half": self.grid_half,
                   "double": self.grid_double, "tap": self.grid_tap}
        if action not in actions:
            raise ValueError(f"grid action {action!r}: choose one of {', '.join(GRID_ACTIONS)}")
        actions[action](deck)

    def _edit_grid(self, deck: int | str, what: str,
                   make: Callable[[BeatGrid, float], BeatGrid]) -> None:
        """Put ``make(grid, play position in seconds)`` on the deck at once (the audio does not
        move), then keep it: features on the new grid and the file, off the loop."""
        d = deck_index(deck)
        name, track, status = DECK_NAMES[d], self.tracks[d], self.core.status
        if track is None:
            self.messages.add(f"deck {name}: grid {what}: no track on the deck")
            return
        if status.phase in ("running", "returning"):
            self.messages.add(f"deck {name}: grid {what} refused: a transition is "
                              f"{status.phase} (the decks are beat-locked)")
            return
        # The position is in samples of the copy the deck plays; the grid in the original's.
        at = status.positions[d] * status.stretches[d] / self.config.sample_rate
        try:
            grid = make(track.analysis.grid, at)
        except ValueError as err:
            self.messages.add(f"deck {name}: grid {what} refused: {err}")
            return
        analysis = replace(track.analysis, grid=grid)
        self._put_grid(d, track.regridded(analysis))
        self.messages.add(f"deck {name}: grid {what}: {grid.bpm:.2f} BPM, first downbeat "
                          f"{grid.first_downbeat:.3f} s")
        if self._grid_jobs is None:
            self._take_kept(*self._keep_grid(d, analysis))
        else:
            self._grid_jobs.submit(self._keep_in_background, d, analysis)

    def _put_grid(self, d: int, track: Track) -> None:
        self.tracks[d] = track
        self.core.send(c.Regrid(d, track.analysis))
        self.keylock.regridded(d, track)

    def _keep_grid(self, d: int, analysis: TrackAnalysis
                   ) -> tuple[int, TrackAnalysis, TrackAnalysis | None, str]:
        """The analysis with features on its grid, and what to say; the grid kept for the
        track's file (none for music that is not from a file)."""
        try:
            full = grid_edits.with_grid(analysis, analysis.grid)
            key = track_hash(analysis.source)
            if not key:
                return d, analysis, full, "grid not kept (the track is not from a file)"
            grid_edits.save_grid(key, analysis.grid)
            return d, analysis, full, ""
        except Exception as err:  # noqa: BLE001 - said by the loop; the new grid still plays
            return d, analysis, None, f"grid not kept ({type(err).__name__}: {err})"

    def _keep_in_background(self, d: int, analysis: TrackAnalysis) -> None:
        track = self.tracks[d]
        if track is None or track.analysis is not analysis:
            return  # edited again or unloaded since: that edit is kept instead
        kept = self._keep_grid(d, analysis)
        with self._lock:
            self._kept.append(kept)

    def _take_kept(self, d: int, analysis: TrackAnalysis, full: TrackAnalysis | None,
                   note: str) -> None:
        if note:
            self.messages.add(f"deck {DECK_NAMES[d]}: {note}")
        track = self.tracks[d]
        if full is None or track is None or track.analysis is not analysis:
            return
        self._put_grid(d, track.regridded(full))  # the same grid: only the features are new
        self.plan_next()

    @property
    def key_lock(self) -> bool:
        return self.keylock.on

    def set_key_lock(self, on: bool = True) -> None:
        """Key lock: the decks keep their tracks' pitch at any tempo (time-stretched copies,
        vinyl-style until a copy is ready); off, the pitch follows the tempo (vinyl)."""
        self.keylock.on = bool(on)
        self._update_key_lock()

    def _update_key_lock(self) -> None:
        for message in self.keylock.update(self._on_air):
            self.messages.add(message)

    parameter_names = PARAM_NAMES
    parameter_specs = PARAM_SPECS  # each parameter's deck, stem, kind, unit, neutral value

    def param_value(self, param: int | str) -> float:
        """A parameter's value in the frame last played."""
        index = PARAM_INDEX[param] if isinstance(param, str) else int(param)
        return float(self.core.frame[index])

    def set_param(self, param: int | str, value: float) -> None:
        """One of the 52 parameters by hand (during a transition: soft takeover)."""
        index = PARAM_INDEX[param] if isinstance(param, str) else int(param)
        if not 0 <= index < len(PARAM_NAMES):
            raise KeyError(f"no parameter {param!r}")
        if not np.isfinite(value):
            raise ValueError(f"{PARAM_NAMES[index]}: value {value!r} is not a number")
        self.core.send(c.SetParam(index, float(value)))

    # --- transitions ------------------------------------------------------------------------

    @property
    def outgoing(self) -> int:
        return self._on_air

    def set_bars(self, bars: int) -> None:
        bars = int(bars)
        if not 1 <= bars <= 64:
            raise ValueError(f"transition length {bars} bars: choose 1 to 64")
        if bars != self.bars:
            self.bars = bars
            self.plan_next()

    def set_quantize(self, quantize: str) -> None:
        if quantize not in ("off", "beat", "bar", "phrase"):
            raise ValueError(f"quantize {quantize!r}: choose off, beat, bar or phrase")
        self.quantize = quantize  # type: ignore[assignment]

    def set_guidance(self, guidance: float) -> None:
        if not 0.0 <= guidance <= 10.0:
            raise ValueError(f"guidance {guidance}: choose 0 to 10")
        if guidance != self.guidance:
            self.guidance = float(guidance)
            self.plan_next()

    def select(self, candidate: int) -> None:
        n = len(self.plan.transitions) if self.plan else 0
        if not 0 <= candidate < max(n, self.config.candidates):
            raise ValueError(f"candidate {candidate}: choose 0 to {max(n, 1) - 1}")
        self.candidate = int(candidate)

    def regenerate(self) -> None:
        self._seed += 1
        self.plan_next()

    def plan_next(self, a_beat: float | None = None) -> None:
        """Sample candidates for the next transition out of the deck on air (both decks loaded,
        no transition running). It is planned from the outgoing deck's next phrase start, or
        from ``a_beat``; the incoming deck enters from its first downbeat."""
        out, inc = self._on_air, 1 - self._on_air
        a, b = self.tracks[out], self.tracks[inc]
        if a is None or b is None or self.core.status.phase in ("running", "returning"):
            return
        if a_beat is None and self.mix_out is not None:
            a_beat = self.mix_out(a)
        if a_beat is None:
            phrase = PHRASE_BARS * BEATS_PER_BAR
            a_beat = float(np.floor(self.core.status.beats[out] / phrase + 1) * phrase)
        start_bar = int(a_beat // BEATS_PER_BAR)
        request = dict(
            key_a=a.analysis.key_index, key_b=b.analysis.key_index,
            vocals_a=bool(a.vocal_bars[start_bar:start_bar + self.bars].any()),
            vocals_b=bool(b.vocal_bars[:self.bars].any()),
            n_samples=self.config.candidates, guidance=self.guidance, steps=self.config.steps,
            seed=self._seed)
        self.plan = Plan(out, a_beat, 0.0, self.bars)

        def make(serial: int) -> GenerateRequest:
            return GenerateRequest.between(serial, a.analysis.features, a_beat,
                                           b.analysis.features, 0.0, self.bars, **request)
        if self.worker is None:
            self._take_plan(self._generator.handle(make(0)))
        else:
            self.plan.serial = self.worker.submit(make)

    def _take_plan(self, result: Result) -> None:
        if self.plan is None or result.serial != self.plan.serial:
            return  # an answer to a plan since replaced
        self.plan.transitions = result.transitions
        self.plan.note = result.error
        self.candidate = min(self.candidate, len(result.transitions) - 1)

    def trigger(self, bars: int | None = None, start: float | None = None) -> str:
        """Start the transition on the next beat/bar/phrase (the quantize setting), or on the
        outgoing deck's beat ``start`` (a planned transition: an offline render)."""
        status = self.core.status
        if status.phase != "idle":
            return f"a transition is already {status.phase}"
        out, inc = self._on_air, 1 - self._on_air
        if self.tracks[out] is None or self.tracks[inc] is None:
            return "load both decks first"
        if bars is not None:
            self.set_bars(bars)
        plan = self.plan
        if plan and plan.transitions and plan.outgoing == out and plan.bars == self.bars:
            transition = plan.transitions[self.candidate]
            how = f"{transition.source} candidate {self.candidate + 1}/{len(plan.transitions)}"
        else:
            # Nothing sampled yet for this deck and length: the policy now, never a wait.
            a, b = self.tracks[out].analysis, self.tracks[inc].analysis
            transition = policy_transitions(GenerateRequest.between(
                0, a.features, 0.0, b.features, 0.0, self.bars, key_a=a.key_index,
                key_b=b.key_index, n_samples=1, seed=self._seed))[0]
            how = "policy (no candidates ready)"
        if start is None:
            start = next_start(status.beats[out], self.quantize)
        track = self.tracks[out]
        left = track.grid.beat_position(track.grid.duration) - (
            status.beats[out] if start is None else start)
        bars = max(1, int(left / BEATS_PER_BAR + 0.05))  # what is left, as Track.bars counts
        if bars < transition.bars:  # the outgoing track ends first: the curves run faster
            transition = replace(transition, bars=bars)
            how += f", shortened to {bars} bars (deck {DECK_NAMES[out]} ends)"
        # The take's arrays are made here: the callback records into them and allocates none.
        take = Take.blank(transition.curves.shape[0], tuple(self.tracks),
                          self.checkpoint if transition.source == "model" else "") \
            if self.log is not None else None
        scheduled = Scheduled(transition, out, start, 0.0, take)
        self.core.send(c.Schedule(scheduled))
        self.scheduled = replace(scheduled, take=None)  # the take would keep its tracks alive
        where = "now" if start is None else (f"on bar {start // BEATS_PER_BAR + 1:.0f}, beat "
                                             f"{start % BEATS_PER_BAR + 1:.0f} of deck "
                                             f"{DECK_NAMES[out]}")
        return f"transition {DECK_NAMES[out]}->{DECK_NAMES[inc]}, {self.bars} bars, {how}, {where}"

    def hold(self, on: bool = True) -> None:
        self.core.send(c.Hold(bool(on)))

    def abort(self) -> None:
        self.core.send(c.Abort())

    # --- the set ----------------------------------------------------------------------------

    def _set(self) -> DjSet:
        if self.playlist is None:
            raise ValueError("no playlist: start with --playlist")
        return self.playlist

    def playlist_skip(self) -> None:
        """Drop the next track from the queue: the one after it comes next."""
        self._set().skip()

    def playlist_choose(self, number: int) -> None:
        """Track ``number`` of the playlist (from 1, as the tracklist prints it) comes next."""
        self._set().choose(int(number) - 1)

    def playlist_browse(self, steps: int) -> None:
        """Move the playlist's selection (a browse encoder) by ``steps`` tracks."""
        self._set().browse(int(steps))

    def playlist_queue(self, path: Path | str) -> None:
        """A track (a file or a stem folder) at the end of the set's queue."""
        self._set().add(path)

    def playlist_load_selected(self) -> None:
        """The selected track comes next (a LOAD button)."""
        self._set().choose(self._set().selected)

    # --- the loop's side ----------------------------------------------------------------------

    def poll(self) -> list[str]:
        """Take in worker results and the core's events; returns messages for the user."""
        if self.worker is not None:
            for result in self.worker.poll():
                self._result(result)
            if not self.worker.alive():
                self.messages.add("generation worker stopped; the policy plays")
        with self._lock:
            loaded, self._loaded = self._loaded, []
            kept, self._kept = self._kept, []
        self._reading -= len(loaded)
        for deck, item in loaded:
            if isinstance(item, BaseException):
                self._load_failed(deck, str(item))
            else:
                self.put_track(deck, *item)
        for result in kept:
            self._take_kept(*result)
        status = self.core.status
        new = status.events - self._last_events
        finished = False
        if new:
            self._last_events = status.events
            for what, clock in list(self.core.events)[-new:]:
                seconds = clock / self.config.sample_rate
                self.messages.add(f"{what.replace('_', ' ')} at {seconds:.2f} s")
                finished |= what == "transition_finished"
            if status.on_air != self._on_air:
                self._on_air = status.on_air
                self.plan = None  # the next transition goes the other way
                if self.playlist is None:  # a set plans once the next track is on the deck
                    self.plan_next()
        if status.errors != self._last_errors:
            self._last_errors = status.errors
            self.messages.add(f"audio errors: {status.errors} (last: {status.last_error})")
        if self.core.released and (self._releasing is None or self._releasing.done()):
            self._releasing = self._releases.submit(release, self.core.released)
        if not finished:
            # Key lock waits a poll: a set empties the deck the transition left right after
            # this one (DjSet.tick), and a copy aimed at its stopped track now would copy 400 MB
            # for the stretcher, for nothing, as the next track loads.
            self._update_key_lock()
        self._log_ended()
        return self.messages.drain()

    def _log_ended(self, closing: bool = False) -> None:
        """Hand the transitions that ended to the performer log (closing: and wait for it to
        write them), and say what it said."""
        if self.log is None:
            return
        while self.core.ended:
            self.log.submit(self.core.ended.popleft())
        if closing:
            self.log.close()
        for message in self.log.drain():
            self.messages.add(message)

    def close(self) -> None:
        """Stop what runs beside the loop (key-lock stretches, grid fixes not yet kept) and
        write the transitions still to be logged."""
        self.keylock.close()
        if self._grid_jobs is not None:
            self._grid_jobs.shutdown(wait=True, cancel_futures=True)
        self._releases.shutdown(wait=True)
        self._log_ended(closing=True)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _result(self, result: Result) -> None:
        if result.serial == -1:
            self.model_note = result.extra["note"]
            self.checkpoint = result.extra["checkpoint"]
            self.model_ready = not result.error
            self.messages.add(self.model_note)
            return
        if result.serial in self._ahead:
            self._analysed(self._ahead.pop(result.serial), result)
            return
        if result.serial in self._loading:
            deck, path = self._loading.pop(result.serial)
            if result.error:
                self._load_failed(deck, result.error)
                return
            # The worker filled the analysis cache; reading it back is decoding, off the loop.
            self._reading += 1
            threading.Thread(target=self._read_back, args=(deck, path), daemon=True).start()
            return
        self._take_plan(result)

    def _read_back(self, deck: int, path: str) -> None:
        try:
            item: tuple[Track, bool] | BaseException = self._open(path)
            item[0].vocal_bars  # noqa: B018 - computed here, off the loop's thread
        except Exception as err:  # noqa: BLE001 - reported by poll()
            item = err
        with self._lock:
            self._loaded.append((deck, item))

    def status_line(self, load: tuple[float, float, float] | None = None, xruns: int = 0,
                    held_up: int = 0) -> str:
        """One line: both decks, the transition, the model, the callback's load and xruns (and,
        once there are any, the callbacks held up waiting for the GIL: ``AudioOutput``)."""
        s = self.core.status
        parts = []
        for d in (0, 1):
            t = self.tracks[d]
            if t is None:
                parts.append(f"{DECK_NAMES[d]}: empty")
                continue
            bar = int(s.beats[d] // BEATS_PER_BAR) + 1
            state = "play" if s.playing[d] else "stop"
            mode = f" {self.keylock.mode(d)}" if self.keylock.on or s.stretches[d] != 1.0 else ""
            weak = " weak grid" if t.grid.weak else ""
            parts.append(f"{DECK_NAMES[d]}: {state} bar {bar:3d}.{int(s.beats[d] % 4) + 1} "
                         f"{t.analysis.bpm * s.rates[d]:6.2f} BPM{weak} "
                         f"{t.analysis.camelot:>3}{mode}")
        if s.phase == "idle":
            ready = len(self.plan.transitions) if self.plan else 0
            parts.append(f"next: {self.bars} bars, {ready} candidates, cand {self.candidate + 1}")
        else:
            held = " held" if s.held else ""
            parts.append(f"transition {s.phase}{held} {s.progress / BEATS_PER_BAR:4.1f}/"
                         f"{s.length / BEATS_PER_BAR:.0f} bars")
        if load is not None:
            parts.append(f"load {load[0]:.0%}/{load[1]:.0%} p99")
        parts.append(f"xruns {xruns}")
        if held_up:
            parts.append(f"GIL waits {held_up}")
        return " | ".join(parts)

    def feedback_state(self) -> dict[str, float | int | str]:
        """What controllers show: play states, bar and beat (for a blinking beat LED), the
        transition's phase and progress (0..1), length and candidate."""
        s = self.core.status
        state: dict[str, float | int | str] = {}
        for d, name in enumerate("ab"):
            state[f"/deck/{name}/playing"] = int(s.playing[d])
            state[f"/deck/{name}/bar"] = int(s.beats[d] // BEATS_PER_BAR) + 1
            track = self.tracks[d]  # the grid's tempo as it plays (a grid fix changes it)
            state[f"/deck/{name}/bpm"] = round(track.analysis.bpm * s.rates[d], 2) \
                if track is not None else 0.0
            state[f"/deck/{name}/grid/confidence"] = (
                round(track.grid.confidence, 2) if track is not None else 0.0)
        state["/beat"] = int(s.beats[s.on_air] % BEATS_PER_BAR) + 1
        state["/transition/phase"] = s.phase
        state["/transition/progress"] = round(s.progress / s.length, 3) if s.length else 0.0
        state["/transition/bars"] = self.bars
        state["/transition/candidate"] = self.candidate + 1
        state["/transition/ready"] = len(self.plan.transitions) if self.plan else 0
        state["/mixer/keylock"] = int(self.keylock.on)
        if self.playlist is not None:
            state.update(self.playlist.feedback())
        return state
