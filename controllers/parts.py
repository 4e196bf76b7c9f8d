"""The controllers as parts of a live session (``engine.session.Part``): each attaches to the
engine, starts, and on leaving stops and closes what it opened, whatever happened meanwhile."""

from __future__ import annotations

import asyncio
import sys
from contextlib import asynccontextmanager
from typing import AsyncIterator

from engine.backends import AudioOutput
from engine.engine import Engine
from engine.session import say

from .ableton import AbletonTempo
from .link import LinkFollower
from .midi import MidiClockOut, MidiError, MidiInput
from .osc import OSCServer
from .web import WebServer

MIDI_SCAN_SECONDS = 2.0  # hot-plug: how often the MIDI ports are looked for again
MIDI_FEEDBACK_SECONDS = 0.1
CLOCK_TEMPO_SECONDS = 0.05  # how often the clock out is given the live tempo


@asynccontextmanager
async def osc_part(server: OSCServer, engine: Engine, output: AudioOutput
                   ) -> AsyncIterator[OSCServer]:
    server.engine = engine
    await server.start()
    feedback = asyncio.create_task(server.feedback_loop(engine.feedback_state))
    print(f"OSC on {server.host}:{server.port}")
    try:
        yield server
    finally:
        feedback.cancel()
        server.close()


@asynccontextmanager
async def web_part(server: WebServer, engine: Engine, output: AudioOutput
                   ) -> AsyncIterator[WebServer]:
    server.engine, server.output = engine, output
    await server.start()
    print(f"web view on {server.url}")
    try:
        yield server
    finally:
        await server.close()


async def _midi_loop(midi: MidiInput, engine: Engine) -> None:
    """Hot-plug scans and LED feedback; a MIDI system that fails is reported once, and the
    music goes on without it."""
    loop = asyncio.get_running_loop()
    next_scan = 0.0
    while True:
        if loop.time() >= next_scan:
            for name in await midi.scan():
                say(f"MIDI: {name} ({midi.controller.mapping.name})")
            if midi.error:
                say(midi.error, sys.stderr)
                return
            next_scan = loop.time() + MIDI_SCAN_SECONDS
        midi.send_feedback(engine.feedback_state())
        await asyncio.sleep(MIDI_FEEDBACK_SECONDS)


@asynccontextmanager
async def midi_part(midi: MidiInput, engine: Engine, output: AudioOutput
                    ) -> AsyncIterator[MidiInput]:
    midi.controller.engine = engine
    task = asyncio.create_task(_midi_loop(midi, engine))
    try:
        yield midi
    finally:
        task.cancel()
        midi.close()


async def _lead(clock: MidiClockOut, engine: Engine) -> None:
    while True:
        clock.tempo(engine.live_bpm())
        await asyncio.sleep(CLOCK_TEMPO_SECONDS)


@asynccontextmanager
async def clock_part(port_name: str, engine: Engine, output: AudioOutput
                     ) -> AsyncIterator[MidiClockOut | None]:
    """MIDI clock out at the live tempo; a port that is not there is said, and not fatal."""
    clock = MidiClockOut(port_name)
    try:
        await clock.start(engine.live_bpm())
    except MidiError as err:
        print(f"error: {err}", file=sys.stderr)
        yield None
        return
    task = asyncio.create_task(_lead(clock, engine))
    try:
        yield clock
    finally:
        task.cancel()
        clock.stop()


@asynccontextmanager
async def ableton_part(host: str, engine: Engine, output: AudioOutput
                       ) -> AsyncIterator[AbletonTempo]:
    live = AbletonTempo(engine, host)
    await live.start()
    try:
        yield live
    finally:
        live.close()


@asynccontextmanager
async def link_part(link: LinkFollower, engine: Engine, output: AudioOutput
                    ) -> AsyncIterator[LinkFollower]:
    link.engine, link.latency = engine, output.output_latency
    await link.start()
    following = asyncio.create_task(link.run())
    try:
        yield link
    finally:
        following.cancel()
        link.close()
