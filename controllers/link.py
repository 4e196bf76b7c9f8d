"""Follow an Ableton Link session (Live, Bitwig, Traktor, many phone apps on the same network):
the deck on air plays at the session's tempo, its bars in phase with the session's.

Link comes through ``aalink`` (Artem Popov's binding of Ableton's Link library). Both are GPL,
so they stay an optional extra that the user installs (``pip install 'aalink>=0.2.3,<0.3'``);
this module imports aalink only when ``--link`` is asked for, and the rest of the project never
does.

While at least one other peer is in the session, the session's tempo is the deck's tempo, and
the deck's bar phase (beat modulo ``quantum``, 4 = a bar) follows the session's: when the beat
heard from the deck and the session's beat at that moment differ by more than ``tolerance``
beats, the deck is nudged by the difference, as a DJ nudges a jog wheel. ``latency`` (seconds
from the engine's block to the speaker) shifts the comparison to the moment the block is heard.
Alone in a session there is nothing to follow and the engine's own tempo stands.
"""

from __future__ import annotations

import asyncio
from typing import Any

FOLLOW_SECONDS = 0.05  # how often the session is read
TEMPO_TOLERANCE = 0.005  # BPM


class LinkUnavailable(RuntimeError):
    """aalink is not installed; the message says how to install it."""


class LinkFollower:
    def __init__(self, engine: Any, quantum: float = 4.0, latency: float = 0.0,
                 tolerance: float = 1 / 32) -> None:
        try:
            import aalink
        except ImportError:
            raise LinkUnavailable("--link needs the aalink package (GPL, optional): "
                                  "pip install 'aalink>=0.2.3,<0.3'") from None
        self._aalink = aalink
        self.engine, self.quantum, self.latency, self.tolerance = (engine, quantum, latency,
                                                                   tolerance)
        self.link: Any = None
        self.peers = 0
        self.nudges = 0  # phase corrections made
        self._nudged_at = -1  # the engine clock of the last nudge: one at a time

    async def start(self) -> None:
        """Join the session (on the running loop: aalink's Link calls back on it)."""
        self.link = self._aalink.Link(self.engine.live_bpm())
        self.link.quantum = self.quantum
        self.link.enabled = True

    def step(self) -> None:
        """Follow the session once: its tempo, then its bar phase."""
        self.peers = self.link.num_peers
        if not self.peers:
            return
        bpm = self.link.tempo
        if abs(self.engine.live_bpm() - bpm) > TEMPO_TOLERANCE:
            self.engine.follow_tempo(bpm)
        error = self.phase_error()
        status = self.engine.core.status
        if error is not None and abs(error) > self.tolerance and status.clock > self._nudged_at:
            self.engine.nudge(self.engine.outgoing, -error)
            self._nudged_at = status.clock
            self.nudges += 1

    def phase_error(self) -> float | None:
        """Beats the deck on air is ahead of the session's phase (None: it is not playing)."""
        status, deck = self.engine.core.status, self.engine.outgoing
        if not status.playing[deck]:
            return None
        session = self.link.phase + self.latency * self.link.tempo / 60.0
        q = self.quantum
        return (status.beats[deck] - session + q / 2) % q - q / 2

    async def run(self) -> None:
        while True:
            self.step()
            await asyncio.sleep(FOLLOW_SECONDS)

    def close(self) -> None:
        if self.link is not None:
            self.link.enabled = False
