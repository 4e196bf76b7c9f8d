"""OSC control over UDP (TouchOSC, Ableton via Max/M4L, any OSC client): packets, the allow-list
and feedback to registered clients. The address space is controllers.commands, which the web view
shares.

python-osc parses the packets; the routing is ours, because python-osc's dispatcher sleeps inside
the event loop for bundles time-tagged in the future (``strict_timing``) and its asyncio server
does not await ``async def`` handlers. Here a future bundle is scheduled on the loop with
``call_at`` and every handler is a plain function that sends a command to the engine.

Security: the server binds 127.0.0.1 unless told otherwise; binding another address needs an
allow-list of client addresses, and packets from anyone else are dropped (and counted).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pythonosc
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket, ParseError, TimedMessage

from .clients import FEEDBACK_HZ, MAX_CLIENTS, Changes, allowed, check_listen
from .commands import REFUSED, BadMessage, dispatch, number, routes
from .ratelimit import RateLimitedLog

log = logging.getLogger("automix.osc")

DEFAULT_PORT = 8000  # TouchOSC's default outgoing port
FEEDBACK_PORT = 9000  # TouchOSC's default incoming port


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
        check_listen(self.host, self.allow, "OSC")
        self.routes = routes()
        self._bad = RateLimitedLog(log, "bad OSC messages")
        self._transport: asyncio.DatagramTransport | None = None
        self._changes = Changes()

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
        if not allowed(addr[0], self.allow):
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
            self._changes.forget()
            self.stats.handled += 1
            return
        try:
            dispatch(self.routes, self.engine, address, args)
        except REFUSED as err:
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
        for address, value in self._changes(state).items():
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
