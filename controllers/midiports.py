"""The MIDI ports' own process: opens a controller's input and LED output ports with
python-rtmidi, reads the inputs, and speaks JSON lines with the engine over its stdin and stdout.

Why a process: an rtmidi JACK input client inside the engine's process made the engine's own
JACK client (PortAudio's) late, even with nothing read, nothing sent and no other control open:
2-3 xruns in 12 s sessions of ``main.py --midi`` where there were 0 without the port open, and
0 with the same port open from a child process (JACK named PortAudio's client as the late one).
Only the standard library and python-rtmidi are imported here, so the process starts in a
fraction of a second. It ends when its stdin closes, so it never outlives the engine.

Engine -> ports: ``{"scan": true}`` (open newly plugged ports, close vanished ones; answered with
``{"scanned": [new input names], "open": [input names]}`` or ``{"error": text}``),
``{"send": [[bytes], ...]}`` (to every LED output). Ports -> engine: ``{"events": [[port, [bytes],
arrival], ...]}``, arrival in ``time.perf_counter()`` seconds, a clock the whole machine shares.

Clock mode (``--midi-clock-out``, a process of its own): MIDI clock to one output port, at the
tempo the engine sends (``{"bpm": x}``), from "start" until its input ends, then "stop"; it
answers ``{"clock": port}`` once the port is open, or ``{"error": text}``. The ticks keep
absolute deadlines, so they do not drift. An in-process clock port cost the engine 0, 1, 1, 0
xruns in 12 s sessions against 0, 0, 0, 0 without, and JACK named its audio client late.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from typing import Any, Callable

import rtmidi

CLIENT = "automix-live"  # our MIDI clients' name: their own ports are never taken as a controller
# How often the input ports are read: a JACK period (1.45 ms at 64 frames) plus this is the
# worst latency. Each wake-up costs about 35 µs of CPU in a VM like this one: reading every
# 0.25 ms, the engine's and the ports' processes took 15 % of a core with the input idle, every
# 1 ms 8 %, and the median latency was no worse (bench/controllers.py, README).
POLL_SECONDS = 0.001
# With no input open there is nothing to read: the engine's next line waits at most this long
# (a controller not plugged in would otherwise cost 4,000 wake-ups a second).
IDLE_SECONDS = 0.02
QUEUE = 4096  # messages an input port holds between two reads
CLOCK_PPQN = 24  # MIDI clock ticks per quarter note
START, CLOCK, STOP = [0xFA], [0xF8], [0xFC]


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


def _input(api: int) -> rtmidi.MidiIn:
    # No Python callback: one would run on rtmidi's thread, for JACK MIDI the JACK process
    # thread, and wait there for this process's GIL. The queue is read by polling instead.
    port = rtmidi.MidiIn(rtapi=api, name=f"{CLIENT} in", queue_size_limit=QUEUE)
    port.ignore_types(sysex=False, timing=False, active_sense=True)
    return port


def _listen(stream: Any) -> queue.SimpleQueue:
    """A queue that a thread fills with the engine's lines from ``stream``, parsed, then None
    at the end of the stream."""
    into: queue.SimpleQueue = queue.SimpleQueue()

    def read() -> None:
        for line in stream:
            try:
                into.put(json.loads(line))
            except ValueError:
                print(f"MIDI ports: not a command: {line[:80]!r}", file=sys.stderr, flush=True)
        into.put(None)

    threading.Thread(target=read, daemon=True).start()
    return into


def _say(out: Any, message: dict) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def serve(api: int, name: str | None, commands: Any, out: Any) -> None:
    """Answer ``commands`` (a text stream) and report input on ``out`` until ``commands`` ends."""
    inputs = Ports(lambda: _input(api))
    outputs = Ports(lambda: rtmidi.MidiOut(rtapi=api, name=f"{CLIENT} LEDs"))
    arrival: dict[str, float] = {}  # per port: when its last message arrived
    waiting = _listen(commands)
    try:
        while True:
            while not waiting.empty():
                command = waiting.get()
                if command is None:
                    return
                if command.get("scan"):
                    try:
                        new = inputs.scan(name)
                        outputs.scan(name)
                    except Exception as err:  # noqa: BLE001 - rtmidi raises its own types
                        _say(out, {"error": f"MIDI unavailable ({type(err).__name__}: {err})"})
                        continue
                    for gone in set(arrival) - set(inputs.open):
                        del arrival[gone]
                    _say(out, {"scanned": new, "open": list(inputs.open)})
                for data in command.get("send", ()):
                    for port in outputs.open.values():
                        port.send_message(data)
            events = []
            for port_name, port in inputs.open.items():
                while (event := port.get_message()) is not None:
                    data, delta = event
                    last = arrival.get(port_name)
                    now = time.perf_counter() if last is None else last + delta
                    arrival[port_name] = now
                    events.append([port_name, data, now])
            if events:
                _say(out, {"events": events})
            time.sleep(POLL_SECONDS if inputs.open else IDLE_SECONDS)
    except BrokenPipeError:  # the engine is gone
        return
    finally:
        inputs.close()
        outputs.close()


def clock(api: int, name: str, bpm: float, commands: Any, out: Any) -> None:
    """Clock mode: ticks to the first output port whose name contains ``name``."""
    port = rtmidi.MidiOut(rtapi=api, name=f"{CLIENT} clock")
    try:
        names = matching(port.get_ports(), name)
        if not names:
            _say(out, {"error": f"no MIDI output port matches {name}"})
            return
        port.open_port(port.get_ports().index(names[0]))
        _say(out, {"clock": names[0]})
        waiting = _listen(commands)
        port.send_message(START)
        deadline = time.perf_counter()
        while True:
            while not waiting.empty():
                command = waiting.get()
                if command is None:
                    port.send_message(STOP)
                    return
                try:
                    bpm = float(command["bpm"])
                except (KeyError, TypeError, ValueError):
                    print(f"MIDI clock: not a tempo: {command!r:.80}", file=sys.stderr, flush=True)
            port.send_message(CLOCK)
            deadline += 60.0 / (CLOCK_PPQN * max(bpm, 20.0))
            delay = deadline - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                deadline = time.perf_counter()  # fell behind: restart the grid, no burst
    finally:
        port.delete()


def main() -> None:
    """``python midiports.py API [NAME]``, or ``API --clock PORT BPM``: API an rtmidi API
    constant's number."""
    api, args = int(sys.argv[1]), sys.argv[2:]
    if args[:1] == ["--clock"]:
        clock(api, args[1], float(args[2]), sys.stdin, sys.stdout)
    else:
        serve(api, args[0] if args else None, sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
