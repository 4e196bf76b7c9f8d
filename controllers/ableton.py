"""Follow Ableton Live's tempo through AbletonOSC (github.com/ideoforms/AbletonOSC).

AbletonOSC listens on UDP 11000 and answers on 11001. We ask for the tempo
(``/live/song/get/tempo``) and subscribe to its changes (``/live/song/start_listen/tempo``);
every answer ``/live/song/get/tempo <bpm>`` sets the deck on air to that tempo. Live runs on the
same machine by default; AbletonOSC itself answers to the address the request came from.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from pythonosc.osc_message_builder import OscMessageBuilder

from .commands import BadMessage
from .osc import parse

LIVE_PORT = 11000
REPLY_PORT = 11001


class AbletonTempo:
    def __init__(self, engine: Any, host: str = "127.0.0.1", live_port: int = LIVE_PORT,
                 reply_port: int = REPLY_PORT) -> None:
        self.engine = engine
        self.live = (host, live_port)
        self.reply_port = reply_port
        self.bpm: float | None = None
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        follower = self

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                if addr[0] == follower.live[0]:  # only Live's machine sets the tempo
                    follower.received(data)

        self._transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            Protocol, local_addr=("0.0.0.0" if self.live[0] != "127.0.0.1" else "127.0.0.1",
                                  self.reply_port))
        self.reply_port = self._transport.get_extra_info("sockname")[1]
        for address in ("/live/song/get/tempo", "/live/song/start_listen/tempo"):
            self._transport.sendto(OscMessageBuilder(address).build().dgram, self.live)

    def received(self, data: bytes) -> None:
        try:
            messages = parse(data)
        except BadMessage:
            return
        for timed in messages:
            m = timed.message
            if m.address == "/live/song/get/tempo" and m.params and \
                    isinstance(m.params[0], (int, float)) and math.isfinite(m.params[0]) and \
                    20.0 <= m.params[0] <= 999.0:
                self.bpm = float(m.params[0])
                self.engine.follow_tempo(self.bpm)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.sendto(
                OscMessageBuilder("/live/song/stop_listen/tempo").build().dgram, self.live)
            self._transport.close()
