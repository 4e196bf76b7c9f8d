"""MIDI controllers through mido + python-rtmidi: messages -> engine commands by a mapping file,
and engine state -> LEDs.

The ports live in a process of their own (``controllers.midiports``), which reads their queues
every quarter millisecond; the messages are handled on the asyncio loop, like OSC.
Decoding covers what real controllers send: 14-bit CC pairs (MSB and LSB in either order),
relative encoders, note-on with velocity 0 as a release, a Shift layer, inverted controls, and
soft takeover for continuous controls.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mido
import numpy as np
import rtmidi

from .mapping import BARS_CHOICES, Control, Mapping
from .midiports import CLOCK_PPQN
from .ratelimit import RateLimitedLog

log = logging.getLogger("automix.midi")

CONTINUOUS = {"param", "filter", "tempo", "bars"}
CLOCK_WINDOW = 2 * CLOCK_PPQN + 1
# A continuous control is picked up when it comes this close to the engine's value or crosses it.
PICKUP = 0.03
SCAN_TIMEOUT = 10.0  # seconds for the ports process to start and list the ports
UNSENT_LIMIT = 1 << 16  # bytes of LED messages held for a ports process that does not read


@dataclass
class _ControlState:
    msb: int = 0
    lsb: int = 0
    last: float | None = None  # the last position received
    engaged: bool = False  # soft takeover: the control has reached the engine's value


@dataclass
class MidiController:
    """Translates one controller's messages for ``engine`` (the command API).

    With ``follow_clock`` the deck on air follows incoming MIDI clock (24 ticks a beat).
    """

    engine: Any
    mapping: Mapping
    follow_clock: bool = False
    shift: bool = False
    handled: int = 0
    ignored: int = 0
    clock_bpm: float | None = None
    _state: dict[int, _ControlState] = field(default_factory=dict)
    _ticks: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        # (kind, channel 0-based, number) -> indices of controls it feeds
        self._index: dict[tuple[str, int, int], list[int]] = {}
        for i, c in enumerate(self.mapping.controls):
            self._index.setdefault((c.message, c.channel - 1, c.number), []).append(i)
            if c.lsb is not None:
                self._index.setdefault(("cc_lsb", c.channel - 1, c.lsb), []).append(i)
            self._state[i] = _ControlState()
        self._lit: dict[tuple[str, int, int], int] = {}

    def handle(self, message: mido.Message, now: float | None = None) -> None:
        """One incoming message (on the loop's thread; ``now``: its arrival, perf_counter)."""
        if message.type == "clock":
            self._clock_tick(time.perf_counter() if now is None else now)
            if self.follow_clock:
                self.handled += 1
            else:
                self.ignored += 1
            return
        if message.type in ("note_on", "note_off"):
            pressed = message.type == "note_on" and message.velocity > 0
            hits = [(i, 127 if pressed else 0, False)
                    for i in self._index.get(("note", message.channel, message.note), [])]
        elif message.type == "control_change":
            key = (message.channel, message.control)
            hits = [(i, message.value, False) for i in self._index.get(("cc", *key), [])]
            hits += [(i, message.value, True) for i in self._index.get(("cc_lsb", *key), [])]
        else:
            hits = []
        acted = False
        for i, value, is_lsb in hits:
            control = self.mapping.controls[i]
            if control.command != "shift" and control.shift is not None \
                    and control.shift != self.shift:
                continue
            try:
                self._apply(i, control, value, is_lsb)
                acted = True
            except (ValueError, KeyError) as err:
                log.warning("MIDI %s: %s", control.command, err)
        if acted:
            self.handled += 1
        else:
            self.ignored += 1

    def _clock_tick(self, now: float) -> None:
        # The median of the last two beats' tick intervals rides out USB/driver jitter.
        self._ticks.append(now)
        del self._ticks[:-CLOCK_WINDOW]
        if len(self._ticks) < CLOCK_WINDOW:
            return
        interval = float(np.median(np.diff(self._ticks)))
        if interval <= 0.0:
            return  # ticks stamped at one instant carry no tempo
        bpm = 60.0 / (CLOCK_PPQN * interval)
        if self.follow_clock and (self.clock_bpm is None or abs(bpm - self.clock_bpm) > 0.01):
            self.engine.follow_tempo(bpm)
        self.clock_bpm = bpm

    def _apply(self, i: int, c: Control, raw: int, is_lsb: bool) -> None:
        e = self.engine
        if c.command == "shift":
            self.shift = raw > 0
            return
        if c.encoding != "absolute":
            steps = raw - 64 if c.encoding == "offset64" else (raw - 128 if raw >= 64 else raw)
            self._relative(i, c, -steps if c.invert else steps)
            return
        value = self._position(i, c, raw, is_lsb)
        # "bars" on a knob picks a length; on a button (a note) it steps through them.
        if c.command in CONTINUOUS and not (c.command == "bars" and c.message == "note"):
            if c.soft_takeover and not self._picked_up(i, c, value):
                return
            if c.command == "param":
                for name in self._targets(c):
                    e.set_param(name, value)
            elif c.command == "filter":
                # One knob: left of centre closes the lowpass, right of centre opens the highpass.
                for stem in ("drums", "bass", "vocals", "other"):
                    e.set_param(f"{c.deck}_{stem}_lowpass", min(1.0, 2.0 * value))
                    e.set_param(f"{c.deck}_{stem}_highpass", max(0.0, 2.0 * value - 1.0))
            elif c.command == "tempo":
                e.tempo(c.deck, 1.0 + 0.16 * (value - 0.5))
            else:
                e.set_bars(BARS_CHOICES[min(int(value * len(BARS_CHOICES)), 3)])
            return
        pressed = value >= 0.5
        if c.command == "hold":  # momentary: held while the button is down
            e.hold(pressed)
        elif not pressed:
            return
        elif c.command == "play":
            e.play(c.deck, not e.core.status.playing["ab".index(c.deck)])
        elif c.command == "candidate":
            n = len(e.plan.transitions) if e.plan and e.plan.transitions else 1
            e.select((e.candidate + 1) % n)
        elif c.command == "keylock":  # a toggle, like a deck's KEY LOCK button
            e.set_key_lock(not e.key_lock)
        elif c.command == "grid":
            e.grid(c.deck, c.target)
        elif c.command == "bars":  # the next longer length, after the longest the shortest
            e.set_bars(next((b for b in BARS_CHOICES if b > e.bars), BARS_CHOICES[0]))
        else:
            {"cue": lambda: e.cue(c.deck), "sync": lambda: e.sync(c.deck),
             "trigger": e.trigger, "abort": e.abort, "regenerate": e.regenerate,
             "load": e.playlist_load_selected, "skip": e.playlist_skip}[c.command]()

    def _position(self, i: int, c: Control, raw: int, is_lsb: bool) -> float:
        s = self._state[i]
        if c.lsb is None:
            value = raw / 127.0
        else:  # either half updates the pair; the other keeps its last value
            if is_lsb:
                s.lsb = raw
            else:
                s.msb = raw
            value = ((s.msb << 7) | s.lsb) / 16383.0
        return 1.0 - value if c.invert else value

    def _picked_up(self, i: int, c: Control, value: float) -> bool:
        s = self._state[i]
        if not s.engaged:
            current = self._current(c)
            crossed = s.last is not None and (s.last - current) * (value - current) <= 0
            s.engaged = current is None or abs(value - current) <= PICKUP or crossed
        s.last = value
        return s.engaged

    def _targets(self, c: Control) -> list[str]:
        return fnmatch.filter(self.engine.parameter_names, c.target)

    def _current(self, c: Control) -> float | None:
        if c.command == "param":
            return self.engine.param_value(self._targets(c)[0])
        if c.command == "filter":
            lowpass = self.engine.param_value(f"{c.deck}_drums_lowpass")
            highpass = self.engine.param_value(f"{c.deck}_drums_highpass")
            return lowpass / 2.0 if lowpass < 1.0 else 0.5 + highpass / 2.0
        if c.command == "tempo":
            rate = self.engine.core.status.rates["ab".index(c.deck)]
            return (rate - 1.0) / 0.16 + 0.5
        return None

    def _relative(self, i: int, c: Control, steps: int) -> None:
        e = self.engine
        if c.command == "jog":  # a jog wheel nudges the position, a 64th of a beat a step
            e.nudge(c.deck, steps / 64.0)
        elif c.command == "param":
            # Steps add up here: several can arrive before the engine's next block shows them.
            s = self._state[i]
            start = s.last if s.last is not None else e.param_value(self._targets(c)[0])
            s.last = min(1.0, max(0.0, start + steps * c.step))
            for name in self._targets(c):
                e.set_param(name, s.last)
        elif c.command == "bars":
            k = BARS_CHOICES.index(e.bars) if e.bars in BARS_CHOICES else 2
            e.set_bars(BARS_CHOICES[min(max(k + (1 if steps > 0 else -1), 0), 3)])
        elif c.command == "candidate":
            n = len(e.plan.transitions) if e.plan and e.plan.transitions else 1
            e.select((e.candidate + (1 if steps > 0 else -1)) % n)
        elif c.command == "browse":  # a browse encoder moves the playlist's selection
            e.playlist_browse(steps)

    def feedback_messages(self, state: dict[str, Any]) -> list[mido.Message]:
        """LED messages for the states that changed since the last call."""
        out = []
        for f in self.mapping.feedback:
            value = state.get(f.state)
            lit = (value == f.equals) if f.equals is not None else bool(value)
            velocity = f.on if lit else f.off
            key = (f.message, f.channel - 1, f.number)
            if self._lit.get(key) == velocity:
                continue
            self._lit[key] = velocity
            if f.message == "note":
                out.append(mido.Message("note_on", channel=f.channel - 1, note=f.number,
                                        velocity=velocity))
            else:
                out.append(mido.Message("control_change", channel=f.channel - 1,
                                        control=f.number, value=velocity))
        return out


class MidiError(RuntimeError):
    """A MIDI port that cannot be opened, said in one line."""


def _api(backend: mido.Backend | None) -> int:
    """The rtmidi API of ``backend``; MIDO_BACKEND picks it as in mido (None), e.g.
    mido.backends.rtmidi/UNIX_JACK for JACK."""
    backend = backend or mido.Backend(os.environ.get("MIDO_BACKEND", "mido.backends.rtmidi"))
    return getattr(rtmidi, f"API_{backend.api}") if backend.api else rtmidi.API_UNSPECIFIED


class PortsProcess:
    """A ``controllers.midiports`` process (``args`` after the rtmidi API's number), written to
    without blocking: the loop writes to it, and one that stopped reading must not stop the
    loop. What the pipe has no room for waits for the next write; more than UNSENT_LIMIT is
    dropped, with a warning."""

    def __init__(self, api: int, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("midiports.py")), str(api), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        os.set_blocking(self.process.stdin.fileno(), False)
        self._unsent = b""
        self._dropped = RateLimitedLog(log, "MIDI ports process")

    def write(self, command: dict) -> None:
        self._unsent += (json.dumps(command) + "\n").encode()
        try:
            written = os.write(self.process.stdin.fileno(), self._unsent)
        except BlockingIOError:
            written = 0
        except OSError as err:  # the process ended: its reader says so
            self._unsent = b""
            log.debug("MIDI ports: %s", err)
            return
        self._unsent = self._unsent[written:]
        if len(self._unsent) > UNSENT_LIMIT:
            self._dropped.warn(f"MIDI ports process not reading; {len(self._unsent)} bytes "
                               f"dropped")
            self._unsent = b""

    def close(self) -> None:
        """Close its input, which ends it; wait for it (2 s, then kill)."""
        self.process.stdin.close()
        try:
            self.process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class MidiInput:
    """A controller's real ports, opened, read and written by a process of their own
    (``controllers.midiports``): the messages it reads come back over a pipe to a reader thread
    here, which hands them to the loop (call_soon_threadsafe), where the controller turns them
    into engine commands; LED messages go the other way. rtmidi's own delta times keep the
    arrival times exact for MIDI clock. Bytes that do not decode are reported (rate-limited),
    ignored. A MIDI system that cannot be opened, or a ports process that ends, is reported in
    ``error``; the music goes on.
    """

    def __init__(self, controller: MidiController, name: str | None,
                 backend: mido.Backend | None = None) -> None:
        self.controller = controller
        self.name = name
        self.api = _api(backend)
        self.error = ""
        self.undecodable = 0
        self.inputs: list[str] = []  # the input ports open, as of the last scan
        self._bad = RateLimitedLog(log, "bad MIDI messages")
        self._ports: PortsProcess | None = None
        self._reader: threading.Thread | None = None
        self._scanned: asyncio.Future | None = None
        self._closing = False

    @property
    def pid(self) -> int | None:
        """The ports process's, from the first scan on."""
        return None if self._ports is None else self._ports.process.pid

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._ports = PortsProcess(self.api, *([self.name] if self.name else []))
        self._reader = threading.Thread(target=self._read, args=(loop,), name="midi-in",
                                        daemon=True)
        self._reader.start()

    async def scan(self) -> list[str]:
        """Open newly plugged matching ports, close vanished ones; returns the new input names."""
        loop = asyncio.get_running_loop()
        if self._ports is None:
            self._start(loop)
        if self.error:
            return []
        self._scanned = loop.create_future()
        self._ports.write({"scan": True})
        try:
            new = await asyncio.wait_for(self._scanned, SCAN_TIMEOUT)
        except asyncio.TimeoutError:
            self.error = f"MIDI ports did not answer within {SCAN_TIMEOUT:.0f} s"
            return []
        return new

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        """The reader thread: the ports process's lines, to the loop."""
        try:
            for line in self._ports.process.stdout:
                try:
                    message = json.loads(line)
                except ValueError:  # not ours (a library printing): said, and skipped
                    log.warning("MIDI ports process said: %s", line.strip()[:200])
                    continue
                if "events" in message:
                    loop.call_soon_threadsafe(self.deliver, message["events"])
                else:
                    loop.call_soon_threadsafe(self._answer, message)
            if not self._closing:
                code = self._ports.process.wait()
                loop.call_soon_threadsafe(self._answer,
                                          {"error": f"MIDI ports process ended (exit {code})"})
        except RuntimeError:  # the loop is closed: nobody is listening any more
            return

    def _answer(self, message: dict) -> None:
        if "error" in message:
            self.error = message["error"]
        else:
            self.inputs = message["open"]
        if self._scanned is not None and not self._scanned.done():
            self._scanned.set_result(message.get("scanned", []))

    def deliver(self, events: list[tuple[str, list[int], float]]) -> None:
        """Hand messages read from the ports, (port, bytes, arrival), to the controller (on the
        loop)."""
        for name, data, now in events:
            try:
                message = mido.Message.from_bytes(data)
            except (ValueError, IndexError) as err:  # mido: IndexError for some short ones
                self.undecodable += 1
                self._bad.warn(f"MIDI from {name}: {data} does not decode ({err}); ignored")
                continue
            try:
                self.controller.handle(message, now)
            except Exception:  # noqa: BLE001 - a bug on one message must not end the input
                log.exception("MIDI %s: not handled", message)

    def send_feedback(self, state: dict[str, Any]) -> None:
        messages = self.controller.feedback_messages(state)
        if messages and self._ports is not None:
            self._ports.write({"send": [m.bytes() for m in messages]})

    def close(self) -> None:
        self._closing = True
        if self._ports is not None:
            self._ports.close()
            self._reader.join(timeout=1.0)


class MidiClockOut:
    """Sends MIDI clock (24 ticks a beat) to lead other gear, from a ports process of its own
    (``controllers.midiports``, clock mode), at the tempo ``tempo()`` last gave."""

    def __init__(self, port_name: str, backend: mido.Backend | None = None) -> None:
        self.port_name = port_name
        self.api = _api(backend)
        self._ports: PortsProcess | None = None
        self._bpm = 0.0

    async def start(self, bpm: float) -> str:
        """Open the first output port whose name contains ``port_name`` and start the clock;
        returns the port's name. Raises MidiError when there is none or MIDI fails."""
        self._bpm = bpm
        self._ports = PortsProcess(self.api, "--clock", self.port_name, repr(float(bpm)))
        line = await asyncio.get_running_loop().run_in_executor(
            None, self._ports.process.stdout.readline)
        try:
            answer = json.loads(line)
        except ValueError:
            answer = {"error": f"MIDI clock process ended (exit {self._ports.process.wait()})"}
        if "clock" not in answer:
            self._ports.close()
            self._ports = None
            raise MidiError(answer.get("error", "MIDI clock: no answer"))
        return answer["clock"]

    def tempo(self, bpm: float) -> None:
        if self._ports is not None and abs(bpm - self._bpm) > 1e-3:
            self._bpm = bpm
            self._ports.write({"bpm": bpm})

    def stop(self) -> None:
        """Stop (the process sends "stop" at the end of its input)."""
        if self._ports is not None:
            self._ports.close()
            self._ports = None
