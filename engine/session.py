"""A session of the engine: live (worker, engine, audio output, recorder and the parts that drive
it, started and stopped as one) or offline (a whole transition rendered to a file).

Controllers live above the engine and may not be imported here: ``run_live`` takes them as
``Part``s, each a function of the engine and the audio output that returns an async context
manager; the session enters them in order after the decks are loaded and leaves them in reverse
after the audio has stopped.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np
import soundfile as sf

from analysis.beats import BEATS_PER_BAR

from . import djset, progress
from .backends import AudioOutput, BlockAdapter, Cue, render_offline
from .config import EngineConfig
from .core import CONTROL_BLOCK
from .cuesheet import write_set_files
from .engine import Engine
from .recorder import Recorder
from .worker import GenerationWorker

Part = Callable[[Engine, AudioOutput], AbstractAsyncContextManager[Any]]
# A set's tick (offline) every this many control blocks: 93 ms at 44.1 kHz, the live loop's pace.
TICK_BLOCKS = 32


def mix_out_bar(engine: Engine, transition_at: int | None) -> int:
    """Where the transition starts (a bar of deck A from 0): the given bar, or where a DJ would
    mix out (``djset.mix_out_bar``)."""
    if transition_at is not None:
        return max(0, transition_at - 1)
    return djset.mix_out_bar(engine.tracks[0], engine.bars)


def render_set(config: EngineConfig, tracks: list[Path], out: Path, order: str = "given") -> int:
    """A playlist mixed offline into ``out``, auto-mixed as live, with ``out``'s cue sheet and
    tracklist beside it; the exit code of the command. The mix goes to the file as it is made:
    a set of any length holds two decks in memory, not the whole mix."""
    progress.say(f"starting the engine for a set of {len(tracks)} tracks")
    engine = Engine(config)
    dj = djset.DjSet(engine, tracks, order=order, auto=True, seed=config.seed)
    dj.analyse_all()
    for message in engine.poll():
        print(message)
    print(engine.model_note)
    if not dj.summaries:
        print("error: no track of the playlist could be analysed", file=sys.stderr)
        return 1
    sr = config.sample_rate
    # A set is never longer than its tracks end to end; past that something is stuck.
    limit = int(sum(s.duration for s in dj.summaries.values()) * sr * 1.2) + 60 * sr
    block = np.zeros((2, TICK_BLOCKS * CONTROL_BLOCK), dtype=np.float32)
    adapter, clock, finished = BlockAdapter(engine.core), 0, 0
    t0 = time.perf_counter()
    with sf.SoundFile(out, "w", sr, 2, subtype="PCM_24") as f:
        while not dj.finished and clock < limit:
            for message in engine.poll():
                finished += message.startswith("transition finished")
                progress.say(f"{clock / sr:7.1f} s  {message}")
            dj.tick()
            adapter.render(block)
            if dj.played:  # the file starts with the first track, not with its loading
                f.write(block.T)
            clock += block.shape[1]
    elapsed = time.perf_counter() - t0
    cue, text = write_set_files(out, dj.starts(sr, dj.played[0].start if dj.played else 0),
                                dj.details())
    played = len(dj.played)
    print(f"set: {played} tracks, {finished} transitions finished, {clock / sr / 60:.1f} min "
          f"rendered in {elapsed:.0f} s ({clock / sr / elapsed:.0f}x real time)")
    progress.say(f"wrote {out}, {cue.name}, {text.name}")
    if not dj.finished:
        print(f"error: the set did not finish within {limit / sr:.0f} s", file=sys.stderr)
        return 1
    return 0


def render_mix(config: EngineConfig, deck_a: Path, deck_b: Path, out: Path,
               transition_at: int | None) -> int:
    """Deck A, the transition from ``transition_at`` (or where a DJ would mix out) and deck B to
    its end, rendered offline to ``out``; the exit code of the command."""
    progress.say("starting the engine (the model, the mixer)")
    engine = Engine(config, plan_on_load=False)
    for deck, path in ((0, deck_a), (1, deck_b)):
        progress.say(f"deck {'AB'[deck]}: analysing {Path(path).name} "
                     "(read from the cache after the first time)")
        engine.load(deck, path)
    for message in engine.poll():
        print(message)
    print(engine.model_note)
    if engine.tracks[0] is None or engine.tracks[1] is None:
        print("error: both decks need a track that loads", file=sys.stderr)
        return 1
    a, b = engine.tracks
    start_bar = mix_out_bar(engine, transition_at)
    start_beat = float(start_bar * BEATS_PER_BAR)
    who = f"the model, {config.steps} steps each" if engine.model_ready \
        else "the rule-based policy"
    progress.say(f"planning the transition: {config.candidates} candidates from {who}")
    engine.plan_next(a_beat=start_beat)
    sr = config.sample_rate
    trigger_at = int(a.position_of(start_beat - 1.0, sr))
    rate_b = b.grid.beat_period / a.grid.beat_period
    total = int(a.position_of(start_beat, sr) + (b.samples - b.position_of(0.0, sr)) / rate_b)
    said: list[str] = []
    script = [Cue(0, lambda: engine.play(0)),
              Cue(max(trigger_at, 0), lambda: said.append(engine.trigger(start=start_beat)))]
    progress.say(f"rendering {total / sr:.1f} s of audio")
    t0 = time.perf_counter()
    mix = render_offline(engine.core, total, config.block_size, out, script)
    elapsed = time.perf_counter() - t0
    print(*said, *engine.poll(), sep="\n")
    if engine.plan and engine.plan.note and engine.plan.note != engine.model_note:
        print(f"note: {engine.plan.note}")  # the model failed on this request
    if config.key_lock:
        print(f"deck B: {engine.keylock.mode(1)}")
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    print(f"transition from bar {start_bar + 1} of {a.name}; {mix.shape[1] / sr:.1f} s rendered "
          f"in {elapsed:.1f} s ({mix.shape[1] / sr / elapsed:.0f}x real time), "
          f"peak {20 * np.log10(max(peak, 1e-9)):.1f} dBFS")
    progress.say(f"wrote {out}")
    return 0


# Terminal keys (a line each, Enter sends it): what each does. Digits choose a candidate.
KEYS: dict[str, tuple[str, Callable[[Engine], str | None]]] = {
    "": ("transition", Engine.trigger),
    "a": ("abort", Engine.abort),
    "h": ("hold/release", lambda engine: engine.hold(not engine.core.status.held)),
    "r": ("regenerate", Engine.regenerate),
    "n": ("set: skip the next track", Engine.playlist_skip),
}
PLAY_NEXT = "p"  # "p5": the playlist's track 5 comes next
# Grid keys act on the deck on air, or on deck A or B with the letter before them ("b[").
GRID_KEYS: dict[str, tuple[str, Callable[[Engine, int], None]]] = {
    "[": ("grid -1/64 beat", lambda engine, deck: engine.grid(deck, "shift_back")),
    "]": ("+1/64", lambda engine, deck: engine.grid(deck, "shift_forward")),
    "d": ("downbeat here", Engine.grid_downbeat),
    "/": ("half BPM", Engine.grid_half),
    "*": ("double BPM", Engine.grid_double),
    "t": ("tap tempo", Engine.grid_tap),
}
QUIT = "q"
HELP = "\n".join([
    "  |  ".join([*(f"{key or 'Enter'}: {what}" for key, (what, _) in KEYS.items()),
                 "1-8: candidate", f"{PLAY_NEXT}N: set: track N next", f"{QUIT}: quit"]),
    "  |  ".join([*(f"{key}: {what}" for key, (what, _) in GRID_KEYS.items()),
                  "deck on air, or a/b first (b[)"])])


def press(engine: Engine, key: str) -> str | None:
    """What a terminal line does, and what it says (None: nothing). Only Enter triggers: any
    other line not in the table gets a hint, so a stray key never starts a transition."""
    if key.isdigit():
        ready = len(engine.plan.transitions) if engine.plan else 0
        if not 0 < int(key) <= ready:
            return f"candidate {key}: {ready} ready"
        engine.select(int(key) - 1)
        return None
    if key[-1:] in GRID_KEYS and key[:-1] in ("", "a", "b"):
        GRID_KEYS[key[-1]][1](engine, "ab".index(key[0]) if key[:-1] else engine.outgoing)
        return None  # the engine says what the grid did
    try:
        if key[:1] == PLAY_NEXT and key[1:].isdigit():
            return engine.playlist_choose(int(key[1:]))
        if key not in KEYS:
            return f"{key!r} does nothing; keys: {HELP}"
        return KEYS[key][1](engine)
    except ValueError as err:  # a set's move that cannot be made now, or no set
        return str(err)


@dataclass(frozen=True)
class LiveOptions:
    record: Path | None = None
    auto_trigger: int | None = None  # bar of deck A where the transition triggers by itself
    seconds: float | None = None  # stop after this long
    playlist: tuple[Path, ...] = ()  # a DJ set of these tracks instead of two decks' files
    order: str = "given"  # the set's order: given or smart
    auto_mix: bool = False  # the set triggers every transition itself


def say(text: str, stream: TextIO | None = None) -> None:
    """A line above the status line (which it overwrites)."""
    print(f"\r{text:<120}", file=stream)


def fit(line: str, width: int) -> str:
    """The status line in ``width`` characters, cut before its end: the callback's load and
    xruns there are the engine's health, and always show."""
    if len(line) <= width:
        return line
    head, sep, health = line.rpartition(" | load ")
    if not sep:
        head, sep, health = line.rpartition(" | xruns ")
    return head[:max(0, width - len(sep + health) - 1)] + "~" + sep + health


def _keys(stack: AsyncExitStack) -> asyncio.Queue[str]:
    """Lines typed in the terminal (none when stdin is not one)."""
    lines: asyncio.Queue[str] = asyncio.Queue()
    if sys.stdin.isatty():
        loop = asyncio.get_running_loop()
        loop.add_reader(sys.stdin, lambda: lines.put_nowait(sys.stdin.readline().strip()))
        stack.callback(loop.remove_reader, sys.stdin)
    return lines


async def run_live(config: EngineConfig, deck_a: Path | None, deck_b: Path | None,
                   options: LiveOptions = LiveOptions(), parts: tuple[Part, ...] = ()) -> int:
    """Play deck A live, with deck B cued, until quit or ``options.seconds``; the exit code.

    Raises ``AudioDeviceError`` (before any music) when the output cannot be opened, and what
    a part raises on entering (a port, an address)."""
    async with AsyncExitStack() as stack:
        worker = stack.enter_context(GenerationWorker(
            config.worker, config.checkpoint, config.model_device, config.worker_threads))
        engine = Engine(config, worker=worker)
        # What closing it says (the performer log's last writes) comes after it is closed.
        stack.callback(lambda: [say(m) for m in engine.messages.drain()])
        stack.enter_context(engine)
        recorder = None
        if options.record is not None:
            recorder = Recorder(options.record, config.sample_rate, config.record_seconds)
            stack.callback(lambda: print(recorder.summary()))  # once the file is closed
            stack.enter_context(recorder)
        output = stack.enter_context(AudioOutput(
            engine.core, config.sample_rate, config.block_size, config.device, config.latency,
            recorder))
        stack.callback(lambda: print(output.summary()))
        if options.playlist:
            dj = djset.DjSet(engine, list(options.playlist), options.order, options.auto_mix,
                             config.seed)
            if recorder is not None:
                stack.callback(lambda: print("set: wrote " + ", ".join(
                    p.name for p in write_set_files(options.record, dj.starts(
                        config.sample_rate), dj.details()))))
        else:
            engine.load(0, deck_a)
            engine.load(1, deck_b)
        for part in parts:
            await stack.enter_async_context(part(engine, output))
        keys = _keys(stack)
        print(HELP)
        stack.callback(print)  # ends the status line
        output.start()
        return await _play(engine, output, keys, options)


async def _play(engine: Engine, output: AudioOutput, keys: asyncio.Queue[str],
                options: LiveOptions) -> int:
    started, auto_done, playing_a = time.monotonic(), False, False
    while True:
        for message in engine.poll():
            say(message)
        if engine.playlist is not None:
            engine.playlist.tick()
            if engine.playlist.finished:
                for message in engine.poll():
                    say(message)
                return 0
        while not keys.empty():
            key = keys.get_nowait()
            if key == QUIT:
                return 0
            if (said := press(engine, key)) is not None:
                say(said)
        if not playing_a and engine.tracks[0] is not None:
            engine.play(0)  # deck A starts as soon as it is loaded
            playing_a = True
        # Like a performer's trigger, it does not wait for the model: the policy stands in.
        if options.auto_trigger is not None and not auto_done \
                and engine.tracks[1] is not None \
                and engine.core.status.beats[0] >= (options.auto_trigger - 1) * BEATS_PER_BAR:
            say(engine.trigger())
            auto_done = True
        width = shutil.get_terminal_size((161, 24)).columns - 1  # a full line would wrap
        sys.stdout.write("\r" + fit(engine.status_line(output.load_percentiles(), output.xruns,
                                                       output.held_up), width))
        sys.stdout.flush()
        if output.finished:
            print("\nerror: the audio device stopped", file=sys.stderr)
            return 2
        if options.seconds is not None and time.monotonic() - started >= options.seconds:
            return 0
        await asyncio.sleep(0.1)
