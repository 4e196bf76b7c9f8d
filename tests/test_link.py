"""Ableton Link: a second Link peer in this process (standing in for Live or another app) leads
the session; the engine, playing through a real PortAudio stream on a JACK server, follows its
tempo and bar phase. Link finds peers by UDP multicast on the machine's interfaces."""

from __future__ import annotations

import asyncio
import sys

import pytest

from controllers.link import LinkFollower, LinkUnavailable
from engine.backends import AudioOutput
from tests.conftest import SR, loaded_engine


def test_without_aalink_link_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "aalink", None)  # as if it were not installed
    with pytest.raises(LinkUnavailable, match=r"aalink.*pip install"):
        LinkFollower(None)


def beats_apart(a: float, b: float, quantum: float = 4.0) -> float:
    return (a - b + quantum / 2) % quantum - quantum / 2


def test_the_deck_on_air_follows_a_link_sessions_tempo_and_phase(two_tracks, jack_server):
    aalink = pytest.importorskip("aalink", reason="aalink (Ableton Link, GPL) is an optional "
                                 "extra: pip install -e '.[link]'")
    engine = loaded_engine(two_tracks)
    out = AudioOutput(engine.core, SR, 256, device=jack_server)
    follower = LinkFollower(engine, latency=out.output_latency)
    bpm_a = two_tracks[0].analysis.bpm

    def session_error(peer) -> float:
        """The deck's bar phase against the session's, measured from the other peer's side."""
        heard = peer.phase + out.output_latency * peer.tempo / 60.0
        return beats_apart(engine.core.status.beats[0], heard)

    async def until(done, seconds: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not done() and loop.time() < deadline:
            await asyncio.sleep(0.02)
        return done()

    async def scenario() -> dict:
        engine.play("a")
        out.start()
        await follower.start()
        following = asyncio.create_task(follower.run())
        peer = aalink.Link(131.0)
        peer.quantum = 4.0
        seen = {}
        try:
            await asyncio.sleep(0.3)
            seen["alone_rate"] = engine.core.status.rates[0]  # nobody to follow yet
            peer.enabled = True
            if not await until(lambda: follower.peers and peer.num_peers, 5.0):
                pytest.skip("Link found no peer in 5 s: it discovers peers by UDP multicast "
                            "(224.76.78.75:20808), which this machine's network does not carry")
            peer.tempo = 131.0  # the other peer sets the session's tempo
            seen["tempo"] = await until(
                lambda: abs(engine.core.status.rates[0] * bpm_a - 131.0) < 0.01, 3.0)
            seen["aligned"] = await until(lambda: abs(session_error(peer)) < 0.1, 3.0)
            seen["error"] = session_error(peer)
            # The other peer shifts the session's bar by a beat: the deck catches up.
            nudges = follower.nudges
            peer.force_beat(peer.beat + 1.0)
            seen["shifted"] = session_error(peer)
            seen["realigned"] = await until(lambda: follower.nudges > nudges
                                            and abs(session_error(peer)) < 0.1, 3.0)
            seen["error_after"] = session_error(peer)
        finally:
            following.cancel()
            follower.close()
            peer.enabled = False
            out.stop()
        return seen

    seen = asyncio.run(scenario())
    print(seen)
    assert seen["alone_rate"] == 1.0
    assert seen["tempo"], "the deck did not take the session's tempo"
    assert seen["aligned"] and abs(seen["error"]) < 0.1
    assert abs(abs(seen["shifted"]) - 1.0) < 0.2  # a beat out after the shift...
    assert seen["realigned"] and abs(seen["error_after"]) < 0.1  # ... and back in phase
    assert out.errors == 0 and engine.core.status.errors == 0
