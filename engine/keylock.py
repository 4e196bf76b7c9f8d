"""Key lock: each deck plays at its tempo at the track's own pitch, through time-stretched copies.

The loop's thread decides which copy each deck should play. The deck on air plays at its own
rate; the other deck at its own rate while it plays, and when stopped at the rate that sync and a
transition will give it (the deck on air's tempo), so its copy is ready before it is heard. A
copy made for a rate serves while the rate stays within ``TOLERANCE_CENTS`` of it (the reader
makes up the difference, vinyl-style, a pitch error of at most that); beyond it a new copy is
stretched (engine/stretch.py: in a child process live, in this thread offline, which keeps
offline renders deterministic), and until it is ready the deck resamples whichever copy it has,
or the original, that is nearer in pitch. The core swaps a copy in on a beat (``core.Swap``).
"""

from __future__ import annotations

import threading

import numpy as np

from .core import EngineCore, Swap
from .deck import Track, stretched_track, sync_rate
from .stretch import StretchJob, stretch_stems

# Pitch error a deck may play with before its copy is made again (the smallest pitch difference
# listeners notice is about 5 to 10 cents).
TOLERANCE_CENTS = 5.0


def cents(ratio: float) -> float:
    return float(1200.0 * np.log2(ratio))


def within(ratio: float) -> bool:
    return abs(cents(ratio)) <= TOLERANCE_CENTS


class KeyLock:
    """The copies the decks play and the stretch jobs that make them (the loop's thread).

    ``synchronous``: stretch in this thread (the offline renderer), else in a ``StretchJob``.
    """

    def __init__(self, core: EngineCore, sample_rate: int, on: bool = False,
                 synchronous: bool = False) -> None:
        self.core = core
        self.sample_rate = sample_rate
        self.on = on
        self.synchronous = synchronous
        self._tracks: list[Track | None] = [None, None]  # the originals
        self._copies = [1.0, 1.0]  # the stretch of the copy last sent to each deck
        self._jobs: list[StretchJob | None] = [None, None]
        self._failed: list[float | None] = [None, None]  # a stretch that failed is not retried
        self._ready: list[tuple[int, StretchJob, np.ndarray | BaseException]] = []
        self._lock = threading.Lock()  # guards _ready between job threads and the loop

    def loaded(self, deck: int, track: Track | None) -> None:
        """``track`` (an original; None: ejected) went onto ``deck``."""
        self._cancel(deck)
        self._tracks[deck] = track
        self._copies[deck] = 1.0
        self._failed[deck] = None

    def regridded(self, deck: int, track: Track) -> None:
        """``deck``'s original now has another beat grid (the same stems): the stretches under
        way go on, and the copies they make carry the new grid."""
        self._tracks[deck] = track

    def update(self, on_air: int) -> list[str]:
        """Put finished copies on their decks and start the stretches the tempos call for;
        returns messages for the user."""
        messages = []
        with self._lock:
            ready, self._ready = self._ready, []
        for deck, job, result in ready:
            if job is self._jobs[deck]:  # else superseded
                self._jobs[deck] = None
                self._take(deck, job.factor, result, messages)
        if self.core.status.phase in ("running", "returning"):
            # A transition's tempo may move all through it (a set ramps it to the next track's):
            # a copy started now would be late and superseded, and its stretch costs the CPU
            # the audio needs. The copies stay; the readers make up the difference.
            return messages
        for deck, rate in enumerate(self._targets(on_air)):
            self._aim(deck, rate, messages)
        return messages

    def mode(self, deck: int) -> str:
        """How ``deck`` plays: "key lock" (a stretched copy, or key lock on and the pitch the
        track's) or "vinyl", with the pitch error in cents where there is one and "stretching"
        while a copy is being made."""
        s = self.core.status
        pitch = cents(s.rates[deck] / s.stretches[deck])
        locked = s.stretches[deck] != 1.0 or (self.on and abs(pitch) <= TOLERANCE_CENTS)
        mode = "key lock" if locked else "vinyl"
        if abs(pitch) >= 0.5:
            mode += f" {pitch:+.0f}ct"
        return mode + (", stretching" if self._jobs[deck] is not None else "")

    @property
    def busy(self) -> bool:
        """Whether a copy is being made."""
        return any(job is not None for job in self._jobs)

    def close(self) -> None:
        """Stop the stretch jobs (their temporary files go with them)."""
        jobs = [job for job in self._jobs if job is not None]
        for deck in (0, 1):
            self._cancel(deck)
        for job in jobs:
            job.join(timeout=5)

    def _targets(self, on_air: int) -> list[float]:
        s = self.core.status
        out, inc = on_air, 1 - on_air
        a, b = self._tracks[out], self._tracks[inc]
        rates = [1.0, 1.0]
        if self.on:
            rates[out] = s.rates[out]
            if b is not None:
                rates[inc] = s.rates[inc] if s.playing[inc] or a is None \
                    else s.rates[out] * sync_rate(b, a)
        return rates

    def _aim(self, deck: int, rate: float, messages: list[str]) -> None:
        track = self._tracks[deck]
        if track is None:
            return
        want = 1.0 if within(rate) else rate
        if within(rate / self._copies[deck]):
            self._cancel(deck)  # the copy in place serves
            return
        job = self._jobs[deck]
        if job is not None and within(want / job.factor):
            return  # on its way
        self._cancel(deck)
        if want == 1.0 or abs(cents(rate)) < abs(cents(rate / self._copies[deck])):
            self._send(deck, track)  # the original is nearer in pitch than the copy
        if want == 1.0 or (self._failed[deck] is not None and within(want / self._failed[deck])):
            return
        try:
            if not self.synchronous:
                self._jobs[deck] = StretchJob(track.stems, want, self.sample_rate,
                                              self._finished(deck))
                return
            result: np.ndarray | BaseException = stretch_stems(track.stems, want,
                                                               self.sample_rate)
        except ValueError as err:  # a tempo beyond the stretcher's range
            result = err
        self._take(deck, want, result, messages)

    def _take(self, deck: int, factor: float, result: np.ndarray | BaseException,
              messages: list[str]) -> None:
        if isinstance(result, BaseException):
            self._failed[deck] = factor
            messages.append(f"deck {'AB'[deck]}: key lock failed ({result}); the pitch follows "
                            f"the tempo")
        else:
            self._send(deck, stretched_track(self._tracks[deck], result))

    def _finished(self, deck: int):
        def done(job: StretchJob, result: np.ndarray | BaseException) -> None:
            with self._lock:
                self._ready.append((deck, job, result))
        return done

    def _send(self, deck: int, copy: Track) -> None:
        if copy.stretch != self._copies[deck]:
            self.core.send(Swap(deck, copy))
            self._copies[deck] = copy.stretch

    def _cancel(self, deck: int) -> None:
        if self._jobs[deck] is not None:
            self._jobs[deck].cancel()
            self._jobs[deck] = None
