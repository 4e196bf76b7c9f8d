"""OSC control over UDP (TouchOSC, Ableton via Max/M4L, any OSC client): the address space, input
validation, and feedback to registered clients.

python-osc parses the packets; the routing is ours, because python-osc's dispatcher sleeps inside
the event loop for bundles time-tagged in the future (``strict_timing``) and its asyncio server
does not await ``async def`` handlers. Here a future bundle is scheduled on the loop with
``call_at`` and every handler is a plain function that sends a command to the engine.

Security: the server binds 127.0.0.1 unless told otherwise; binding another address needs an
allow-list of client addresses, and packets from anyone else are dropped (and counted).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pythonosc
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket, ParseError, TimedMessage

from engine.engine import PARAM_NAMES

from .ratelimit import RateLimitedLog

log = logging.getLogger("automix.osc")

DEFAULT_PORT = 8000  # TouchOSC's default outgoing port
FEEDBACK_PORT = 9000  # TouchOSC's default incoming port
FEEDBACK_HZ = 20.0
MAX_CLIENTS = 16  # feedback clients: a flood of /register must not grow the list without end


class BadMessage(ValueError):
    pass


_PYTHONOSC = os.path.dirname(pythonosc.__file__)


class _PythonOscWarnings(logging.Filter):
    """Holds back python-osc's own warnings (on the root logger) and keeps their text."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.pathname.startswith(_PYTHONOSC):
            self.problems.append(record.getMessage())
            return False
        return True


def parse(data: bytes) -> list[TimedMessage]:
    """The messages of one packet, or BadMessage naming why it cannot be read.

    python-osc raises UnicodeDecodeError (not its ParseError) for a string that is not UTF-8,
    and for an unknown type tag or an unreadable bundle element it logs a warning on the root
    logger per packet and parses on (misreading the arguments after an unknown tag). Such a
    packet is rejected here, so it is reported once, through our rate-limited log.
    """
    held = _PythonOscWarnings()
    root = logging.getLogger()
    root.addFilter(held)
    try:
        messages = OscPacket(data).messages
    except (ParseError, UnicodeDecodeError) as err:
        raise BadMessage(f"unreadable packet ({err})") from None
    finally:
        root.removeFilter(held)
    if held.problems:
        raise BadMessage(f"unreadable packet ({held.problems[0]})")
    return messages


def unit(args: tuple) -> float:
    """One finite number in [0, 1] (TouchOSC's continuous controls)."""
    value = number(args)
    if not 0.0 <= value <= 1.0:
        raise BadMessage(f"value {value} is outside 0..1")
    return value


def number(args: tuple) -> float:
    if len(args) != 1 or isinstance(args[0], bool) or not isinstance(args[0], (int, float)):
        raise BadMessage(f"expects one number, got {list(args)!r}")
    value = float(args[0])
    if not math.isfinite(value):
        raise BadMessage(f"value {value} is not finite")
    return value


def switch(args: tuple) -> bool:
    """Buttons: no argument (a press), or 1/0 (TouchOSC sends 1.0 on press, 0.0 on release)."""
    if not args:
        return True
    return number(args) >= 0.5


def text(args: tuple) -> str:
    if len(args) != 1 or not isinstance(args[0], str):
        raise BadMessage(f"expects one string, got {list(args)!r}")
    return args[0]


@dataclass(frozen=True)
class Route:
    address: str
    types: str  # for the documentation: f float, i int, s string, - none
    meaning: str
    handle: Callable[[Any, tuple], None]


def _press(action: Callable[[Any], Any]) -> Callable[[Any, tuple], None]:
    def handle(engine: Any, args: tuple) -> None:
        if switch(args):  # act on press, ignore the release
            action(engine)
    return handle


def routes() -> dict[str, Route]:
    """The address space (the README's table is made from it: ``address_table``)."""
    table = [
        Route("/transition/trigger", "-|f", "start the transition (on press)",
              _press(lambda e: e.trigger())),
        Route("/transition/bars", "i|f", "length in bars, 1..64",
              lambda e, a: e.set_bars(int(number(a)))),
        Route("/transition/quantize", "s", "off, beat, bar or phrase",
              lambda e, a: e.set_quantize(text(a))),
        Route("/transition/guidance", "f", "guidance scale, 0..1 maps to 0..4",
              lambda e, a: e.set_guidance(4.0 * unit(a))),
        Route("/transition/candidate", "i|f", "candidate number from 1",
              lambda e, a: e.select(int(number(a)) - 1)),
        Route("/transition/hold", "i|f", "1 holds the curves, 0 releases",
              lambda e, a: e.hold(switch(a))),
        Route("/transition/abort", "-|f", "run back to the outgoing deck (on press)",
              _press(lambda e: e.abort())),
        Route("/transition/regenerate", "-|f", "sample new candidates (on press)",
              _press(lambda e: e.regenerate())),
        Route("/mixer/crossfader", "f", "crossfader 0 (A) .. 1 (B)",
              lambda e, a: e.set_param("crossfader", unit(a))),
        Route("/mixer/master", "f", "master gain 0..1",
              lambda e, a: e.set_param("master_gain", unit(a))),
        Route("/mixer/keylock", "i|f", "1: the decks keep their pitch at any tempo, 0: vinyl",
              lambda e, a: e.set_key_lock(switch(a))),
        Route("/playlist/next", "-|f", "a set: skip the next track (on press)",
              _press(lambda e: e.playlist_skip())),
        Route("/playlist/load", "i|f", "a set: track N of the playlist (from 1) comes next",
              lambda e, a: e.playlist_choose(int(number(a)))),
    ]
    for deck in ("a", "b"):
        table += [
            Route(f"/deck/{deck}/play", "i|f", "1 plays, 0 pauses",
                  lambda e, a, d=deck: e.play(d, switch(a))),
            Route(f"/deck/{deck}/cue", "-|f", "back to the first downbeat, stopped",
                  _press(lambda e, d=deck: e.cue(d))),
            Route(f"/deck/{deck}/sync", "-|f", "match the other deck's tempo and bar phase",
                  _press(lambda e, d=deck: e.sync(d))),
            Route(f"/deck/{deck}/seek", "f", "position in beats from the first downbeat",
                  lambda e, a, d=deck: e.seek(d, number(a))),
            Route(f"/deck/{deck}/tempo", "f", "tempo fader 0..1 = -8 %..+8 % (0.5: the track's)",
                  lambda e, a, d=deck: e.tempo(d, 1.0 + 0.16 * (unit(a) - 0.5))),
            Route(f"/deck/{deck}/load", "s", "load a track (file or stem folder path)",
                  lambda e, a, d=deck: e.load(d, text(a))),
            Route(f"/deck/{deck}/grid/shift", "f", "move the beat grid by beats (+: later), "
                  "within ±4", lambda e, a, d=deck: e.grid_shift(d, number(a))),
            Route(f"/deck/{deck}/grid/downbeat", "-|f", "the play position becomes a downbeat",
                  _press(lambda e, d=deck: e.grid_downbeat(d))),
            Route(f"/deck/{deck}/grid/half", "-|f", "half the grid's BPM (same anchor)",
                  _press(lambda e, d=deck: e.grid_half(d))),
            Route(f"/deck/{deck}/grid/double", "-|f", "double the grid's BPM (same anchor)",
                  _press(lambda e, d=deck: e.grid_double(d))),
            Route(f"/deck/{deck}/grid/tap", "-|f", "tap tempo: from the 4th tap the BPM of the "
                  "taps, the last one a beat", _press(lambda e, d=deck: e.grid_tap(d))),
        ]
    table += [Route(f"/param/{name}", "f", "any of the 52 parameters, 0..1",
                    lambda e, a, n=name: e.set_param(n, unit(a))) for name in PARAM_NAMES]
    return {r.address: r for r in table}


def address_table() -> str:
    """The README's table of addresses (a test checks the README holds it): one row for both
    decks' addresses and one for the parameters'."""
    rows = ["| address | arguments | meaning |", "| --- | --- | --- |"]
    seen = set()
    for route in routes().values():
        address = route.address.replace("/deck/a/", "/deck/{a,b}/")
        if address.startswith("/deck/b/"):
            continue
        if address.startswith("/param/"):
            address = "/param/<name>"
        if address not in seen:
            seen.add(address)
            rows.append(f"| `{address}` | {route.types} | {route.meaning} |")
    return "\n".join(rows)


@dataclass
class OSCStats:
    handled: int = 0
    rejected: int = 0
    refused: int = 0  # from clients outside the allow-list
    scheduled: int = 0  # bundles time-tagged in the future


@dataclass
class OSCServer:
    """Receives OSC on UDP and drives ``engine`` (the command API); sends feedback."""

    engine: Any
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    allow: tuple[str, ...] = ()
    feedback: list[tuple[str, int]] = field(default_factory=list)
    stats: OSCStats = field(default_factory=OSCStats)

    def __post_init__(self) -> None:
        if not ipaddress.ip_address(self.host).is_loopback and not self.allow:
            raise ValueError(f"OSC on {self.host}: listening beyond this machine needs an "
                             f"allow-list of client addresses")
        self.routes = routes()
        self._bad = RateLimitedLog(log, "bad OSC messages")
        self._transport: asyncio.DatagramTransport | None = None
        self._last_sent: dict[str, Any] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        server = self

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                server.packet(data, addr)

        self._transport, _ = await loop.create_datagram_endpoint(
            Protocol, local_addr=(self.host, self.port))
        self.port = self._transport.get_extra_info("sockname")[1]
        # A deeper receive buffer rides out bursts (a flood, a TouchOSC page change) while the
        # loop is busy, instead of the kernel dropping them.
        sock = self._transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def packet(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.allow and addr[0] not in self.allow:
            self.stats.refused += 1
            self._bad.warn(f"OSC from {addr[0]} refused (not in the allow-list)")
            return
        try:
            messages = parse(data)
        except BadMessage as err:
            self.stats.rejected += 1
            self._bad.warn(f"OSC from {addr[0]}: {err}")
            return
        loop = asyncio.get_running_loop()
        now = time.time()
        for timed in messages:
            message = timed.message
            if timed.time > now:  # a bundle for later: schedule it, never sleep in the loop
                self.stats.scheduled += 1
                loop.call_later(timed.time - now, self.message, message.address,
                                tuple(message.params), addr)
            else:
                self.message(message.address, tuple(message.params), addr)

    def message(self, address: str, args: tuple, addr: tuple[str, int]) -> None:
        if address == "/register":  # feedback to the sender, on its port or the one given
            try:
                port = int(number(args)) if args else addr[1]
                if not 0 < port < 65536:
                    raise BadMessage(f"port {port} is outside 1..65535")
                if (addr[0], port) not in self.feedback and len(self.feedback) >= MAX_CLIENTS:
                    raise BadMessage(f"already {MAX_CLIENTS} feedback clients")
            except BadMessage as err:
                self._reject(address, err)
                return
            if (addr[0], port) not in self.feedback:
                self.feedback.append((addr[0], port))
            self._last_sent.clear()
            self.stats.handled += 1
            return
        route = self.routes.get(address)
        if route is None:
            self._reject(address, "unknown address")
            return
        try:
            route.handle(self.engine, args)
        except (BadMessage, ValueError, KeyError) as err:
            self._reject(address, err)
            return
        self.stats.handled += 1

    def _reject(self, address: str, why: object) -> None:
        self.stats.rejected += 1
        self._bad.warn(f"OSC {address}: {why}; ignored")

    def send_feedback(self, state: dict[str, Any]) -> None:
        """Send the values in ``state`` that changed since the last call to every client."""
        if self._transport is None or not self.feedback:
            return
        for address, value in state.items():
            if self._last_sent.get(address) == value:
                continue
            self._last_sent[address] = value
            builder = OscMessageBuilder(address)
            builder.add_arg(value)
            datagram = builder.build().dgram
            for client in self.feedback:
                self._transport.sendto(datagram, client)

    async def feedback_loop(self, state: Callable[[], dict[str, Any]]) -> None:
        """Feedback at most FEEDBACK_HZ times a second."""
        while True:
            self.send_feedback(state())
            await asyncio.sleep(1.0 / FEEDBACK_HZ)
