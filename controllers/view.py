"""What the web view is told, made from the engine on the loop's thread.

A page that connects gets everything at once (``View.snapshot``); after that every page gets
what changed, at most FEEDBACK_HZ times a second (``View.tick``). Messages are JSON objects
with a ``type``:

- ``hello``: the parameters, grouped into the lanes the page draws curves in, the stems, bars
  and phrases (once);
- ``deck``: a deck's track: name, duration, beat grid, key, sections (on a load or a grid edit);
- ``wave``: a deck's waveform (``analysis.waveform``; once per track, made with the analysis);
- ``plan``: the candidates for the next transition, their curves as bytes;
- ``running``: the transition last triggered, with its curves and where it starts;
- ``state``: small values by OSC-style address (those of ``Engine.feedback_state`` and the
  view's own: positions, beats, the frame played, the hand's parameters, load and xruns),
  only those that changed.

Curves are sent for the physical decks (a transition out of deck B has its curves exchanged,
as the engine plays them), 0..1 as 0..255, frame by frame.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import numpy as np

from engine.backends import AudioOutput
from engine.deck import Track
from engine.engine import BEATS_PER_BAR, PHRASE_BARS, Engine, Plan
from engine.transition import Scheduled, Transition, next_start

from .clients import Changes

log = logging.getLogger("automix.web")

Message = dict[str, Any]
LANE_TITLES = {"gain": "faders", "low_eq": "low EQ", "mid_eq": "mid EQ", "high_eq": "high EQ",
               "highpass": "highpass", "lowpass": "lowpass", "": "global"}


def _b64(values: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(values, np.uint8).tobytes()).decode("ascii")


def hello(engine: Engine) -> Message:
    """The parameters as the page draws them: one lane per kind of per-stem parameter (each
    stem of both decks in it), then the global ones."""
    lanes: dict[str, list[dict[str, Any]]] = {}
    for spec in engine.parameter_specs:
        lanes.setdefault(spec.kind if spec.stem else "", []).append(
            {"index": spec.index, "name": spec.name, "deck": spec.deck, "stem": spec.stem,
             "neutral": spec.neutral})
    stems = list(dict.fromkeys(s.stem for s in engine.parameter_specs if s.stem))
    return {"type": "hello", "params": list(engine.parameter_names), "stems": stems,
            "lanes": [{"title": LANE_TITLES.get(kind, kind), "params": params}
                      for kind, params in lanes.items()],
            "beats_per_bar": BEATS_PER_BAR, "phrase_bars": PHRASE_BARS}


def deck_message(deck: int, track: Track | None) -> Message:
    if track is None:
        return {"type": "deck", "deck": deck, "track": None}
    a, grid = track.analysis, track.analysis.grid
    return {"type": "deck", "deck": deck, "track": {
        "name": track.name, "duration": a.duration, "bpm": grid.bpm,
        "first_downbeat": grid.first_downbeat, "confidence": round(grid.confidence, 2),
        "weak": grid.weak, "grid": grid.describe(), "key": a.key_name, "camelot": a.camelot,
        "sections": [[label, start, end] for label, start, end in a.sections]}}


def wave_message(deck: int, track: Track | None, sample_rate: int) -> Message:
    """A deck's waveform (``Track.waveform``: made with the analysis, or else here, so run it
    off the loop); None for no track, or one whose waveform is still being made."""
    if track is None:
        return {"type": "wave", "deck": deck, "wave": None}
    wave = track.waveform(sample_rate)
    return {"type": "wave", "deck": deck, "wave": {
        "points_per_second": wave.points_per_second, "peak": [_b64(row) for row in wave.peak],
        "rms": [_b64(row) for row in wave.rms]}}


def _curves(transition: Transition, outgoing: int) -> dict[str, Any]:
    curves = transition.physical(outgoing)
    return {"source": transition.source, "bars": transition.bars, "frames": curves.shape[0],
            "curves": _b64(np.round(255.0 * np.clip(curves, 0.0, 1.0)))}


def plan_message(plan: Plan | None) -> Message:
    if plan is None:
        return {"type": "plan", "plan": None}
    return {"type": "plan", "plan": {
        "outgoing": plan.outgoing, "bars": plan.bars, "note": plan.note,
        "candidates": [_curves(t, plan.outgoing) for t in plan.transitions]}}


def running_message(scheduled: Scheduled | None) -> Message:
    if scheduled is None:
        return {"type": "running", "running": None}
    return {"type": "running", "running": {
        "outgoing": scheduled.outgoing, "start_beat": scheduled.start_beat,
        "cue_beat": scheduled.cue_beat, **_curves(scheduled.transition, scheduled.outgoing)}}


def state(engine: Engine, output: AudioOutput | None) -> dict[str, Any]:
    """The small values a page shows, by address."""
    s = engine.core.status
    values: dict[str, Any] = dict(engine.feedback_state())
    sample_rate = engine.config.sample_rate
    for d, name in enumerate("ab"):
        # Seconds of the track as analysed (a key-lock copy's samples scaled back).
        values[f"/deck/{name}/position"] = round(s.positions[d] * s.stretches[d] / sample_rate, 3)
        values[f"/deck/{name}/beat"] = round(s.beats[d], 3)
        values[f"/deck/{name}/rate"] = round(s.rates[d], 5)
    values["/transition/outgoing"] = s.on_air
    # Where a trigger now would start on the outgoing deck (None: at once).
    values["/transition/start"] = next_start(s.beats[s.on_air], engine.quantize)
    values["/transition/beats"] = [round(s.progress, 3), s.length]
    values["/transition/held"] = int(s.held)
    values["/transition/taken"] = list(s.taken_over)
    values["/transition/quantize"] = engine.quantize
    values["/transition/guidance"] = engine.guidance
    values["/mixer/frame"] = np.round(engine.core.frame.astype(np.float64), 3).tolist()
    values["/engine/model"] = engine.model_note
    if engine.playlist is not None:
        values["/playlist/queue"] = engine.playlist.queue_view()
    if output is not None:
        values["/engine/load"] = [round(v, 3) for v in output.load_percentiles()]
        values["/engine/xruns"] = output.xruns
    return values


class View:
    """The messages for the pages of one engine, and what they were made from (a message is made
    again only when its source object is replaced)."""

    def __init__(self, engine: Engine, output: AudioOutput | None = None) -> None:
        self.engine, self.output = engine, output
        self._hello = hello(engine)
        self._tracks: list[Track | None] = [None, None]
        self._decks = [deck_message(0, None), deck_message(1, None)]
        self._stems: list[np.ndarray | None] = [None, None]
        self._waves = [wave_message(0, None, 0), wave_message(1, None, 0)]
        self._making: list[asyncio.Future | None] = [None, None]
        self._plan: tuple[Plan | None, tuple[Transition, ...] | None] = (None, None)
        self._plan_message = plan_message(None)
        self._scheduled: Scheduled | None = None
        self._running = running_message(None)
        self._state: dict[str, Any] = {}
        self._changes = Changes()

    def tick(self) -> list[tuple[str, Message]]:
        """What changed since the last tick, as (kind, message): a page needs only the latest
        message of each kind."""
        out: list[tuple[str, Message]] = []
        engine = self.engine
        for d, track in enumerate(engine.tracks):
            if track is not self._tracks[d]:  # a load, or a grid edit (a new Track, same stems)
                self._tracks[d] = track
                self._decks[d] = deck_message(d, track)
                out.append((f"deck{d}", self._decks[d]))
            out += self._wave(d, track)
        plan = engine.plan
        transitions = None if plan is None else plan.transitions  # a plan is filled in later
        if plan is not self._plan[0] or transitions is not self._plan[1]:
            self._plan = (plan, transitions)
            self._plan_message = plan_message(plan)
            out.append(("plan", self._plan_message))
        if engine.scheduled is not self._scheduled:
            self._scheduled = engine.scheduled
            self._running = running_message(engine.scheduled)
            out.append(("running", self._running))
        self._state = state(engine, self.output)
        if changed := self._changes(self._state):
            out.append(("state", {"type": "state", "values": changed}))
        return out

    def snapshot(self) -> list[tuple[str, Message]]:
        """Everything as of the last tick, for a page that just connected."""
        out = [("hello", self._hello)]
        for d in (0, 1):
            out += [(f"deck{d}", self._decks[d]), (f"wave{d}", self._waves[d])]
        return out + [("plan", self._plan_message), ("running", self._running),
                      ("state", {"type": "state", "values": self._state})]

    def _wave(self, d: int, track: Track | None) -> list[tuple[str, Message]]:
        """A new track's waveform: none at once (the old one is gone), then, made in a thread,
        the new one."""
        stems = None if track is None else track.stems
        out = []
        if stems is not self._stems[d]:
            self._stems[d], self._waves[d] = stems, wave_message(d, None, 0)
            out.append((f"wave{d}", self._waves[d]))
            if self._making[d] is not None:
                self._making[d].cancel()
            self._making[d] = None if track is None else asyncio.get_running_loop(
            ).run_in_executor(None, wave_message, d, track, self.engine.config.sample_rate)
        making = self._making[d]
        if making is None or not making.done():
            return out
        self._making[d] = None
        if making.cancelled():
            return out
        if (error := making.exception()) is not None:
            log.warning("web view: no waveform for deck %s (%s: %s)", "AB"[d],
                        type(error).__name__, error)
            return out
        self._waves[d] = making.result()
        return out + [(f"wave{d}", self._waves[d])]
