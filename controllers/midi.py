"""MIDI controllers through mido + python-rtmidi: messages -> engine commands by a mapping file,
and engine state -> LEDs.

The input ports' queues are read by a poller thread every quarter millisecond and the messages
handled on the asyncio loop, like OSC (no Python runs on rtmidi's thread: see ``MidiInput``).
Decoding covers what real controllers send: 14-bit CC pairs (MSB and LSB in either order),
relative encoders, note-on with velocity 0 as a release, a Shift layer, inverted controls, and
soft takeover for continuous controls.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import mido
import numpy as np
import rtmidi

from .mapping import BARS_CHOICES, Control, Mapping
from .ratelimit import RateLimitedLog

log = logging.getLogger("automix.midi")

CONTINUOUS = {"param", "filter", "tempo", "bars"}
CLOCK_PPQN = 24  # MIDI clock ticks per quarter note
CLOCK_WINDOW = 2 * CLOCK_PPQN + 1
# A continuous control is picked up when it comes this close to the engine's value or crosses it.
PICKUP = 0.03
# How often the poller thread reads the input ports: a JACK period (1.45 ms at 64 frames) plus
# this is the worst latency. The loop itself could not wait less than epoll's 1 ms.
POLL_SECONDS = 0.00025
QUEUE = 4096  # messages an input port holds between two reads


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


CLIENT = "automix-live"  # our MIDI clients' name: their own ports are never taken as a controller


def matching(ports: list[str], name: str | None) -> list[str]:
    """The ports whose name contains ``name`` (all of them for None), ours left out."""
    return [p for p in ports if (name is None or name.lower() in p.lower())
            and not p.startswith(CLIENT)]


class Ports:
    """The open ports of one direction, one rtmidi client (a JACK or ALSA client) each.

    Ports are listed through a client already open, and a client whose port went away is kept
    to list with and to open the next one. mido's get_input_names() opens and closes a client at
    each call, and each JACK client that comes or goes re-sorts the JACK graph: the hot-plug scan
    every 2 s cost 66-99 xruns in 20 s that way.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make
        self.open: dict[str, Any] = {}
        self._spare: Any = None

    def _client(self) -> Any:
        if self._spare is None:
            self._spare = self.make()
        return self._spare

    def scan(self, name: str | None) -> list[str]:
        """Open newly plugged matching ports, close vanished ones; returns the new names."""
        lister = next(iter(self.open.values()), None)
        names = matching((lister if lister is not None else self._client()).get_ports(), name)
        for gone in set(self.open) - set(names):
            port = self.open.pop(gone)
            port.close_port()
            if self._spare is None:
                self._spare = port
            else:
                port.delete()
        new = [n for n in names if n not in self.open]
        for n in new:
            port, self._spare = self._client(), None
            port.open_port(port.get_ports().index(n))
            self.open[n] = port
        return new

    def close(self) -> None:
        for port in [*self.open.values(), self._spare]:
            if port is not None:
                port.delete()
        self.open.clear()
        self._spare = None


class MidiInput:
    """Real ports: opens the matching inputs (and outputs for LEDs), re-scans for hot-plug.

    The inputs are python-rtmidi ports without a Python callback, read every POLL_SECONDS by a
    poller thread of ours, which hands what it read to the loop (call_soon_threadsafe), where the
    controller turns it into engine commands. A callback (mido's ports always install one) runs
    Python, and takes the GIL, on rtmidi's thread, which for JACK MIDI is the JACK server's
    process thread: a flood of MIDI then stalled the whole audio graph (xruns). rtmidi's own
    delta times keep the arrival times exact for MIDI clock. Bytes that do not decode are
    reported (rate-limited), ignored.
    """

    def __init__(self, controller: MidiController, name: str | None,
                 backend: mido.Backend | None = None) -> None:
        self.controller = controller
        self.name = name
        # MIDO_BACKEND picks the API as in mido, e.g. mido.backends.rtmidi/UNIX_JACK for JACK.
        self.backend = backend or mido.Backend(os.environ.get("MIDO_BACKEND",
                                                              "mido.backends.rtmidi"))
        api = getattr(rtmidi, f"API_{self.backend.api}") if self.backend.api \
            else rtmidi.API_UNSPECIFIED
        self._inputs = Ports(lambda: self._input(api))
        self._outputs = Ports(lambda: rtmidi.MidiOut(rtapi=api, name=f"{CLIENT} LEDs"))
        self.error = ""
        self.undecodable = 0
        self._bad = RateLimitedLog(log, "bad MIDI messages")
        self._arrival: dict[str, float] = {}  # per port: when its last message arrived
        self._ports_lock = threading.Lock()  # the poller reads the ports that scan opens, closes
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()

    @staticmethod
    def _input(api: int) -> rtmidi.MidiIn:
        port = rtmidi.MidiIn(rtapi=api, name=f"{CLIENT} in", queue_size_limit=QUEUE)
        port.ignore_types(sysex=False, timing=False, active_sense=True)
        return port

    @property
    def inputs(self) -> dict[str, rtmidi.MidiIn]:
        return self._inputs.open

    def scan(self, loop: asyncio.AbstractEventLoop) -> list[str]:
        """Open newly plugged matching ports, forget vanished ones; returns the new names.
        A MIDI system that cannot be opened is reported in ``error``, not raised."""
        try:
            with self._ports_lock:
                new = self._inputs.scan(self.name)
                for name in set(self._arrival) - set(self.inputs):
                    del self._arrival[name]
            self._outputs.scan(self.name)
        except Exception as err:  # noqa: BLE001 - rtmidi raises its own types, SystemError
            self.error = f"MIDI unavailable ({type(err).__name__}: {err})"
            return []
        if self._poller is None:
            self._poller = threading.Thread(target=self._poll_forever, args=(loop,),
                                            name="midi-in", daemon=True)
            self._poller.start()
        return new

    def _poll_forever(self, loop: asyncio.AbstractEventLoop) -> None:
        while not self._stop.is_set():
            events = self.read()
            if events:
                try:
                    loop.call_soon_threadsafe(self.deliver, events)
                except RuntimeError:  # the loop is closed: nobody is listening any more
                    return
            time.sleep(POLL_SECONDS)

    def read(self) -> list[tuple[str, list[int], float]]:
        """Every message waiting in the input ports: (port, bytes, arrival time)."""
        events = []
        with self._ports_lock:
            for name, port in self.inputs.items():
                while (event := port.get_message()) is not None:
                    data, delta = event
                    last = self._arrival.get(name)
                    now = time.perf_counter() if last is None else last + delta
                    self._arrival[name] = now
                    events.append((name, data, now))
        return events

    def deliver(self, events: list[tuple[str, list[int], float]]) -> None:
        """Hand messages ``read`` to the controller (on the loop)."""
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
        for message in self.controller.feedback_messages(state):
            for port in self._outputs.open.values():
                port.send_message(message.bytes())

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=1.0)
        with self._ports_lock:
            self._inputs.close()
        self._outputs.close()


class MidiClockOut:
    """Sends MIDI clock (24 ticks a beat) at the tempo of the deck on air, to lead other gear.

    A thread of its own with absolute deadlines, so the ticks do not drift; the tempo is read
    from ``bpm()`` every tick.
    """

    def __init__(self, port: Any, bpm: Any) -> None:
        self.port, self.bpm = port, bpm
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="midi-clock", daemon=True)

    def start(self) -> None:
        self.port.send(mido.Message("start"))
        self._thread.start()

    def _run(self) -> None:
        tick = mido.Message("clock")
        deadline = time.perf_counter()
        while not self._stop.is_set():
            self.port.send(tick)
            deadline += 60.0 / (CLOCK_PPQN * max(self.bpm(), 20.0))
            delay = deadline - time.perf_counter()
            if delay > 0:
                self._stop.wait(delay)
            else:
                deadline = time.perf_counter()  # fell behind: restart the grid, no burst

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.port.send(mido.Message("stop"))
