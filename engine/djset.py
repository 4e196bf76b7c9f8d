"""A DJ set: a playlist mixed track after track, live or offline, by the same ``tick``.

The set drives the engine through its command API only. Every track is analysed ahead by the
worker, one at a time so that a transition's sampling never waits behind the whole playlist
(the cache answers at once for tracks seen before); a track that fails is reported once and
skipped. When a transition has finished, the deck it left loads the next track, and the model
samples the next transition from where a DJ would mix out of the track on air (``mix_out_bar``)
into the next one's first downbeat. Auto-mix triggers it there; otherwise the performer does,
and skips or chooses the next track meanwhile. Over each transition the tempo ramps from the
track on air's to the next one's, so every track plays at its own tempo once it is on air, and a
step of more than a few percent is a deliberate tempo change rather than a track played off
speed. Only the two decks' tracks are in memory, never the playlist.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analysis.beats import BEATS_PER_BAR, PHRASE_BARS
from analysis.track import TrackSummary

from .deck import Track
from .engine import DECK_NAMES, Engine
from .ordering import describe_step, smart_order
from .playlist import is_stem_folder
from .transition import next_start

# Bars before the track on air ends where a performer who has not triggered is reminded.
REMIND_BARS = 8


def mix_out_bar(track: Track, bars: int) -> int:
    """The bar (from 0) where a DJ starts mixing out of ``track`` with a ``bars``-bar
    transition: the last phrase start that leaves the transition's length before the end, or
    the outro's first phrase when the outro is longer than the transition (nobody waits
    through a long outro)."""
    last = max(0, (track.bars - bars) // PHRASE_BARS * PHRASE_BARS)
    label, start, end = track.analysis.sections[-1] if track.analysis.sections else ("", 0, 0)
    if label != "outro" or (end - start) / (BEATS_PER_BAR * track.grid.beat_period) <= bars:
        return last
    outro = int(round(track.grid.beat_position(start) / BEATS_PER_BAR))
    return max(0, min(last, -(-outro // PHRASE_BARS) * PHRASE_BARS))


@dataclass(frozen=True)
class Played:
    index: int  # in the playlist
    start: int  # the output's sample where the track started to sound


class DjSet:
    """The set's state and its moves; ``tick()`` after each ``engine.poll()``."""

    def __init__(self, engine: Engine, tracks: list[Path], order: str = "given",
                 auto: bool = False, seed: int = 0) -> None:
        if order not in ("given", "smart"):
            raise ValueError(f"order {order!r}: choose given or smart")
        self.engine = engine
        self.paths = [str(Path(p)) for p in tracks]
        self.order = order
        self.auto = auto
        self.seed = seed
        self.summaries: dict[int, TrackSummary] = {}
        self.failed: dict[int, str] = {}
        self.queue = list(range(len(self.paths)))  # not yet on a deck, in playing order
        self.decks: list[int | None] = [None, None]  # the track each deck has or is loading
        self.played: list[Played] = []
        self.selected = 0  # the browse cursor, an index into the playlist
        self.finished = False
        self._to_analyse = list(self.queue)
        self._cold = True  # the deck on air waits for its track to start playing
        self._ended = False  # a deck ran out of music
        self._analysing: str | None = None
        self._ordered = False
        self._events = engine.core.status.events
        self._ramp: tuple[int, float, float, float] | None = None  # deck, rate, bpm from, to
        self._triggered: tuple[int, int] | None = None  # (deck on air, next track) triggered
        self._reminded: int | None = None
        engine.playlist = self
        engine.mix_out = lambda track: float(mix_out_bar(track, engine.bars) * BEATS_PER_BAR)

    # --- what the set is doing ------------------------------------------------------------

    @property
    def next_index(self) -> int | None:
        """The track that comes next: on the free deck, or at the head of the queue."""
        free = self.decks[1 - self.engine.outgoing]
        return free if free is not None else (self.queue[0] if self.queue else None)

    def title(self, index: int) -> str:
        return Path(self.paths[index]).name

    def tracklist(self) -> list[str]:
        """The order as it stands (played, on the decks, queued), with each step's key and
        tempo relation."""
        on_air = self.engine.outgoing
        order = [p.index for p in self.played]
        order += [d for d in (self.decks[on_air], self.decks[1 - on_air]) if d is not None]
        order = list(dict.fromkeys(order + self.queue))
        return [f"{n:3d}. {self.title(i)}  {note or '(not analysed yet)'}"
                for n, (i, note) in enumerate(zip(order, self._notes(order)), 1)]

    def starts(self, sample_rate: int, offset: int = 0) -> list[tuple[str, float]]:
        """Each played track's title and start, in seconds from the output's sample
        ``offset``."""
        return [(self.title(p.index), (p.start - offset) / sample_rate) for p in self.played]

    def details(self) -> list[str]:
        """Tempo and key of each played track, and how it follows the one before."""
        return self._notes([p.index for p in self.played])

    def _notes(self, order: list[int]) -> list[str]:
        """Each track's tempo and key, and how it follows the one before it when both are
        analysed; "" for a track not analysed yet."""
        notes = []
        for k, i in enumerate(order):
            s = self.summaries.get(i)
            before = self.summaries.get(order[k - 1]) if k else None
            step = f" [{describe_step(before, s)}]" if s and before else ""
            notes.append(f"{s.bpm:.1f} BPM {s.camelot}{step}" if s else "")
        return notes

    def feedback(self) -> dict[str, float | int | str]:
        nxt = self.next_index
        return {"/playlist/position": len(self.played),
                "/playlist/length": len(self.paths) - len(self.failed),
                "/playlist/analysed": len(self.summaries),
                "/playlist/next": self.title(nxt) if nxt is not None else "",
                "/playlist/selected": f"{self.selected + 1}. {self.title(self.selected)}"}

    def queue_view(self) -> list[dict[str, object]]:
        """The tracks still to come, for a view: title, tempo, key, and where each stands."""
        view = []
        for state, indices in (("next", [self.next_index] if self.next_index is not None
                                else []), ("queued", self.queue)):
            for i in indices:
                if state == "queued" and i == self.next_index:
                    continue
                s = self.summaries.get(i)
                view.append({"number": i + 1, "title": self.title(i), "state": state,
                             "bpm": round(s.bpm, 2) if s else 0.0,
                             "camelot": s.camelot if s else ""})
        return view

    # --- the performer's moves ------------------------------------------------------------

    def skip(self) -> None:
        """The next track is not played: the one after it comes next (onto the free deck at
        once when the deck is free to load)."""
        nxt = self.next_index
        if nxt is None:
            raise ValueError("no next track to skip")
        self._say(f"skipped {self.title(nxt)}")
        free = 1 - self.engine.outgoing
        if self.decks[free] == nxt:
            self._unload(free)
        else:
            self.queue.remove(nxt)

    def choose(self, index: int) -> None:
        """Track ``index`` (from 0) comes next."""
        if not 0 <= index < len(self.paths):
            raise ValueError(f"track {index + 1}: the playlist has 1 to {len(self.paths)}")
        if index in self.failed:
            raise ValueError(f"track {index + 1} ({self.title(index)}) failed: "
                             f"{self.failed[index]}")
        if index not in self.queue:
            raise ValueError(f"track {index + 1} ({self.title(index)}) is not queued")
        free = 1 - self.engine.outgoing
        if self.decks[free] is not None:
            self.queue.insert(0, self._unload(free))
        self.queue.remove(index)
        self.queue.insert(0, index)
        self._say(f"next: {self.title(index)}")

    def add(self, path: Path | str) -> None:
        """A track at the end of the queue, analysed ahead like the rest."""
        path = Path(path)
        if not (path.is_file() or is_stem_folder(path)):
            raise ValueError(f"{path}: no such track (a file or a folder of stems)")
        self.paths.append(str(path))
        index = len(self.paths) - 1
        self.queue.append(index)
        self._to_analyse.append(index)
        self._say(f"queued {self.title(index)} as track {index + 1}")

    def browse(self, steps: int) -> None:
        self.selected = (self.selected + steps) % len(self.paths)

    def _unload(self, deck: int) -> int:
        """Forget ``deck``'s next track (the deck reloads with the queue's head) and return it.
        Refused while a transition is on the decks."""
        if self.engine.core.status.phase != "idle":
            raise ValueError("a transition is running: choose the next track after it")
        index, self.decks[deck] = self.decks[deck], None
        self._triggered = None
        return index

    # --- the tick ---------------------------------------------------------------------------

    def tick(self) -> None:
        """Take analyses in, load the free deck, follow the transitions, trigger (auto-mix),
        ramp the tempo. Called by the loop after ``engine.poll()``, and offline between blocks."""
        if self.finished:
            return
        self._take_analyses()
        self._follow_events()
        self._fill_decks()
        self._analyse_next()
        if self.auto:
            self._auto_trigger()
        else:
            self._remind()
        self._ramp_tempo()

    def analyse_all(self) -> None:
        """Analyse every track now (offline: the engine analyses in this thread), then order."""
        while self._to_analyse or self._analysing:
            self._analyse_next()
            self._take_analyses()

    def _say(self, text: str) -> None:
        self.engine.messages.add(f"set: {text}")

    def _take_analyses(self) -> None:
        e = self.engine
        results, e.analysed = e.analysed, []
        for path, summary, error in results:
            if path == self._analysing:
                self._analysing = None
            for i in (i for i, p in enumerate(self.paths) if p == path):
                if summary is None:
                    self._fail(i, error)
                else:
                    self.summaries[i] = summary
        for deck, error in e.failed_loads:
            if self.decks[deck] is not None:
                self._fail(self.decks[deck], error)
                self.decks[deck] = None
        e.failed_loads.clear()
        if not self._ordered and not self._to_analyse and self._analysing is None:
            self._ordered = True
            self._put_in_order()

    def _fail(self, index: int, error: str) -> None:
        if index in self.failed:
            return
        self.failed[index] = error
        if index in self.queue:
            self.queue.remove(index)
        self._say(f"track {index + 1} ({self.title(index)}) skipped: {error}")

    def _put_in_order(self) -> None:
        if self.order == "smart":
            fixed = tuple(dict.fromkeys(
                [p.index for p in self.played] + [d for d in (
                    self.decks[self.engine.outgoing], self.decks[1 - self.engine.outgoing])
                    if d is not None]))
            ok = [i for i in range(len(self.paths)) if i in self.summaries]
            position = {i: k for k, i in enumerate(ok)}
            order = smart_order([self.summaries[i] for i in ok],
                                tuple(position[i] for i in fixed if i in position),
                                seed=self.seed)
            self.queue = [ok[k] for k in order if ok[k] not in fixed]
        ready = len(self.paths) - len(self.failed)
        self._say(f"{ready} tracks analysed, {self.order} order:\n" + "\n".join(self.tracklist()))

    def _analyse_next(self) -> None:
        if self._analysing is not None or not self._to_analyse:
            return
        # The tracks due soonest first: the queue's head, then the rest.
        soon = [i for i in self.queue[:2] if i in self._to_analyse]
        i = soon[0] if soon else self._to_analyse[0]
        waited_for = None in self.decks and self.queue[:1] == [i]
        if not waited_for and self.engine.loading:
            # An analysis beside a deck taking its track in (stems read back, a key-lock copy,
            # candidates sampled) made the callback miss deadlines on two cores (bench/set.py
            # --live); the rest of the playlist waits until the decks are settled.
            return
        self._to_analyse.remove(i)
        if i in self.summaries or i in self.failed:
            return
        self._analysing = self.paths[i]
        self._say(f"analysing {len(self.summaries) + len(self.failed) + 1}/{len(self.paths)}: "
                  f"{self.title(i)}")
        self.engine.analyse_ahead(self.paths[i])

    def _on_deck(self, deck: int) -> bool:
        """Whether ``deck`` holds the track the set put there (not the last one, still
        loading)."""
        track, index = self.engine.tracks[deck], self.decks[deck]
        return track is not None and index is not None and \
            track.analysis.source == self.paths[index]

    def _ready(self) -> int | None:
        """The queue's head, once it is analysed (a track that failed never gets there)."""
        return self.queue[0] if self.queue and self.queue[0] in self.summaries else None

    def _load(self, deck: int, index: int) -> None:
        self.queue.remove(index)
        self.decks[deck] = index
        self._reminded = None
        self.engine.load(deck, self.paths[index])

    def _fill_decks(self) -> None:
        e, status = self.engine, self.engine.core.status
        on_air, free = e.outgoing, 1 - e.outgoing
        if self._ended and status.phase == "idle" and not status.playing[on_air] and \
                self._on_deck(on_air):
            nxt = self.decks[free]
            if nxt is None and not self.queue:
                self._finish()
                return
            # No transition was triggered, or the next track was not ready in time: it starts
            # on this deck, after a gap.
            self._say(f"deck {DECK_NAMES[on_air]} ended without a transition; the next track "
                      "starts after it")
            self.decks[on_air], self._cold = None, True
            if nxt is not None:
                self.decks[free] = None
                self.queue.insert(0, nxt)
        self._ended = False
        if self.decks[on_air] is None:
            if (index := self._ready()) is not None:
                self._load(on_air, index)
            elif not self.queue and self.decks[free] is None and self._analysing is None:
                self._finish()  # nothing could be played
            return
        if self._cold and self._on_deck(on_air):
            e.play(on_air)
            self.played.append(Played(self.decks[on_air], status.clock))
            self._cold = False
        if self.decks[free] is None and status.phase == "idle" and \
                (index := self._ready()) is not None:
            self._load(free, index)

    def _follow_events(self) -> None:
        """The core's events since the last tick. ``engine.poll()`` has run: after a finished
        transition, ``engine.outgoing`` is already the deck that took over."""
        e = self.engine
        status = e.core.status
        new, self._events = status.events - self._events, status.events
        for what, clock in (list(e.core.events)[-new:] if new else []):
            if what == "deck_ended":
                self._ended = True
            elif what == "transition_started":
                out = e.outgoing
                if (inc := self.decks[1 - out]) is not None:
                    self.played.append(Played(inc, int(clock)))
                if e.tracks[1 - out] is not None:
                    self._ramp = (out, status.rates[out], e.live_bpm(),
                                  e.tracks[1 - out].analysis.bpm)
            elif what == "transition_finished":
                self.decks[1 - e.outgoing] = None  # the deck that went off air is free
                e.eject(1 - e.outgoing)
                if self._ramp is not None:
                    e.tempo(e.outgoing, 1.0)  # the new track at its own tempo, exactly
                self._ramp, self._triggered = None, None
            elif what == "transition_aborted":
                if self._ramp is not None:
                    e.tempo(self._ramp[0], self._ramp[1])
                if self.played and self.played[-1].index == self.decks[1 - e.outgoing]:
                    self.played.pop()
                self._ramp, self._triggered = None, None

    def _auto_trigger(self) -> None:
        e, status = self.engine, self.engine.core.status
        out, inc = e.outgoing, 1 - e.outgoing
        if status.phase != "idle" or not (self._on_deck(out) and self._on_deck(inc)) \
                or not status.playing[out] or self._triggered == (out, self.decks[inc]):
            return
        start = e.mix_out(e.tracks[out])
        beat = status.beats[out]
        if beat < start - BEATS_PER_BAR:
            return
        if beat >= start:  # the next track came late: from the next bar
            start = next_start(beat, "bar")
        self._triggered = (out, self.decks[inc])
        self._say(e.trigger(start=start))

    def _remind(self) -> None:
        e, status = self.engine, self.engine.core.status
        out = e.outgoing
        track = e.tracks[out]
        if status.phase != "idle" or not self._on_deck(out) or self._reminded == self.decks[out]:
            return
        left = track.bars - status.beats[out] / BEATS_PER_BAR
        if left <= e.bars + REMIND_BARS and (nxt := self.next_index) is not None:
            self._reminded = self.decks[out]
            self._say(f"deck {DECK_NAMES[out]} has {left:.0f} bars left: trigger (Enter) to mix "
                      f"into {self.title(nxt)}")

    def _ramp_tempo(self) -> None:
        status = self.engine.core.status
        if self._ramp is None or status.phase != "running" or not status.length:
            return
        deck, _, bpm_from, bpm_to = self._ramp
        track = self.engine.tracks[deck]
        p = min(status.progress / status.length, 1.0)
        self.engine.tempo(deck, (bpm_from + (bpm_to - bpm_from) * p) / track.analysis.bpm)

    def _finish(self) -> None:
        self.finished = True
        played = len([p for p in self.played if p.index >= 0])
        self._say(f"finished: {played} tracks played, {len(self.failed)} skipped")
