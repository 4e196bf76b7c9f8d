"""The shipped TouchOSC layout (presets/touchosc/automix.tosc): a well-formed document in the
format TouchOSC's editor writes, what the generator makes, and every control it has, sent as
TouchOSC would send it over real UDP, changes the engine; the engine's feedback lands on controls
that can show it.

TouchOSC itself cannot run here: the messages are built from the file by this test's reading of
the format (path and argument partials, conversion, scaling), a stand-in for the app."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
import xml.etree.ElementTree as ET
import zlib

import numpy as np
import pytest
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from controllers.commands import routes
from controllers.osc import OSCServer
from controllers.touchosc import LAYOUT, REGISTER, build, main, send, to_bytes, value
from engine.config import EngineConfig
from engine.engine import Engine
from tests.conftest import settle

PROPERTY_TYPES = {"b", "i", "f", "s", "c", "r"}
VALUE_KEYS = {"GROUP": {"touch"}, "PAGER": {"page", "touch"}, "LABEL": {"text", "touch"},
              "BUTTON": {"touch", "x"}, "FADER": {"touch", "x"}, "RADIAL": {"touch", "x"},
              "RADIO": {"touch", "x"}}
CONVERSIONS = {"BOOLEAN", "INTEGER", "FLOAT", "STRING"}
TAGS = {"INTEGER": "i", "FLOAT": "f", "STRING": "s"}


def document() -> ET.Element:
    return ET.fromstring(zlib.decompress(LAYOUT.read_bytes()))


def props(node: ET.Element) -> dict[str, object]:
    out: dict[str, object] = {}
    for p in node.find("properties"):
        value = p.find("value")
        key, kind = p.findtext("key"), p.get("type")
        assert kind in PROPERTY_TYPES, f"{key}: property type {kind}"
        if kind in ("c", "r"):
            fields = "rgba" if kind == "c" else "xywh"
            assert [c.tag for c in value] == list(fields), key
            out[key] = {c.tag: (float if kind == "c" else int)(c.text) for c in value}
        elif kind == "b":
            assert value.text in ("0", "1"), key
            out[key] = value.text == "1"
        else:
            out[key] = {"i": int, "f": float, "s": str}[kind](value.text or "")
    return out


def defaults(node: ET.Element) -> dict[str, str]:
    out = {}
    for v in node.find("values"):
        assert [c.tag for c in v] == ["key", "locked", "lockedDefaultCurrent", "default",
                                      "defaultPull"]
        out[v.findtext("key")] = v.findtext("default") or ""
    return out


def controls(doc: ET.Element):
    """(node, its frame in document coordinates) for every node of the document, parents
    first."""
    def walk(node, x0, y0):
        frame = props(node)["frame"]
        x, y = x0 + frame["x"], y0 + frame["y"]
        yield node, (x, y, frame["w"], frame["h"])
        children = node.find("children")
        for child in children if children is not None else ():
            yield from walk(child, x, y)
    yield from walk(doc[0], 0, 0)


def osc_messages(node: ET.Element) -> list[ET.Element]:
    messages = node.find("messages")
    return [] if messages is None else messages.findall("osc")


def address(osc: ET.Element) -> str:
    partials = osc.find("path").findall("partial")
    assert all(p.findtext("type") == "CONSTANT" for p in partials)
    return "".join(p.findtext("value") for p in partials)


def sent(node: ET.Element, osc: ET.Element, raw: float) -> tuple[str, list[tuple[str, object]]]:
    """What TouchOSC sends for ``osc`` when the control's value is ``raw``: a VALUE argument is
    raw scaled to scaleMin..scaleMax, then converted; a CONSTANT is its text, converted."""
    args = []
    for p in osc.find("arguments").findall("partial"):
        conversion = p.findtext("conversion")
        if p.findtext("type") == "CONSTANT":
            value: object = p.findtext("value")
        else:
            lo, hi = float(p.findtext("scaleMin")), float(p.findtext("scaleMax"))
            value = lo + raw * (hi - lo)
        value = {"INTEGER": lambda v: int(round(float(v))), "FLOAT": float,
                 "STRING": str}[conversion](value)
        args.append((TAGS[conversion], value))
    return address(osc), args


def typical(node: ET.Element) -> float:
    """A value a performer sets: a press, a fader off its start, the last step of a radio."""
    kind = node.get("type")
    if kind == "RADIO":
        return props(node)["steps"] - 1
    return 1.0 if kind == "BUTTON" else 0.3


def senders(root: ET.Element) -> list[tuple[ET.Element, ET.Element]]:
    return [(node, osc) for node, _ in controls(root) for osc in osc_messages(node)
            if osc.findtext("send") == "1"]


# --- the file --------------------------------------------------------------------------------

def test_the_layout_is_a_well_formed_touchosc_document():
    root = document()
    assert root.tag == "lexml" and root.get("version") == "3"
    assert [n.get("type") for n in root] == ["GROUP"]
    ids, kinds = set(), set()
    for node, (x, y, w, h) in controls(root):
        kind = node.get("type")
        kinds.add(kind)
        ids.add(uuid.UUID(node.get("ID")))
        p = props(node)
        assert {"name", "frame", "color", "visible", "interactive"} <= p.keys()
        assert list(p) == sorted(p), "properties in the editor's (alphabetical) order"
        assert all(0.0 <= c <= 1.0 for c in p["color"].values())
        assert 0 <= x and 0 <= y and x + w <= 1024 and y + h <= 768, p["name"]
        values = defaults(node)
        assert set(values) == VALUE_KEYS[kind], p["name"]
        if kind == "RADIO":
            assert 0 <= int(values["x"]) < p["steps"]
        elif "x" in values:
            assert 0.0 <= float(values["x"]) <= 1.0
        for osc in osc_messages(node):
            assert osc.findtext("connections") == "00001"
            for flag in ("enabled", "send", "receive", "feedback"):
                assert osc.findtext(flag) in ("0", "1")
            assert {t.findtext("condition") for t in osc.iter("trigger")} <= {"ANY", "RISE"}
            assert {t.findtext("var") for t in osc.iter("trigger")} <= set(values)
            for partial in osc.find("arguments"):
                assert partial.findtext("conversion") in CONVERSIONS
                if partial.findtext("type") == "VALUE":
                    assert partial.findtext("value") in values
                else:
                    assert partial.findtext("type") == "CONSTANT"
    assert len(ids) == sum(1 for _ in root.iter("node"))
    assert {"PAGER", "FADER", "RADIAL", "BUTTON", "RADIO", "LABEL"} <= kinds


def test_the_shipped_file_is_what_the_generator_makes(tmp_path):
    out = tmp_path / "automix.tosc"
    main([str(out)])
    made = zlib.decompress(out.read_bytes())
    assert made == zlib.decompress(LAYOUT.read_bytes()), \
        "presets/touchosc/automix.tosc is stale: run python -m controllers.touchosc"
    assert made == zlib.decompress(to_bytes(build()))


def test_addresses_are_the_engines():
    root = document()
    table = routes()
    sends = {address(osc) for _, osc in senders(root)}
    assert sends - set(table) == {REGISTER}
    # Every parameter is on the tablet (the crossfader and master by their /mixer names).
    params = {a for a in table if a.startswith("/param/")}
    missing = params - sends - {"/param/crossfader", "/param/master_gain"}
    assert not missing and {"/mixer/crossfader", "/mixer/master"} <= sends
    receives = {address(osc) for node, _ in controls(root) for osc in osc_messages(node)
                if osc.findtext("receive") == "1"}
    engine = Engine(EngineConfig(checkpoint="none"))
    assert receives == set(engine.feedback_state())


# --- the controls over UDP -------------------------------------------------------------------

class Same:
    """Compares by identity (a new plan of candidates is a new object)."""

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Same) and self.obj is other.obj


def state(engine: Engine, server: OSCServer) -> dict[str, object]:
    """What a control can change; positions only of stopped decks (playing ones move)."""
    settle(engine)
    s = engine.core.status
    return dict(params=engine.core._manual.tolist(), playing=s.playing, rates=s.rates,
                stopped_at=[None if p else round(b, 6) for b, p in zip(s.beats, s.playing)],
                phase=s.phase, held=s.held, key_lock=engine.key_lock, bars=engine.bars,
                quantize=engine.quantize, guidance=engine.guidance, candidate=engine.candidate,
                plan=Same(engine.plan), grids=[t.grid for t in engine.tracks],
                feedback=list(server.feedback))


def running(engine: Engine) -> None:
    engine.set_quantize("off")
    engine.play("a")
    engine.trigger()
    settle(engine)
    assert engine.core.status.phase == "running"


# What must hold before a control can show its effect (on a fresh engine: stopped at the start,
# no transition, the configuration's defaults).
PREPARE = {
    "/deck/a/cue": lambda e, args: e.seek("a", 6.0),
    "/deck/b/cue": lambda e, args: e.seek("b", 6.0),
    "/transition/hold": lambda e, args: running(e),
    "/transition/abort": lambda e, args: running(e),
    "/transition/bars": lambda e, args: e.set_bars(1),
    "/transition/quantize": lambda e, args: e.set_quantize("beat" if args[0][1] == "off"
                                                           else "off"),
    # Three taps half a second apart: the pad's tap is the fourth.
    **{f"/deck/{d}/grid/tap": lambda e, args, d=d: [
        e.grid_tap(d, time.monotonic() - 0.5 * k) for k in (3, 2, 1)] for d in "ab"},
}


async def deliver(server: OSCServer, sock: socket.socket, message: tuple[str, list]) -> None:
    """Send one message as TouchOSC would and wait until the server has taken it."""
    path, args = message
    builder = OscMessageBuilder(path)
    for tag, arg in args:
        builder.add_arg(arg, tag)
    def taken():
        return server.stats.handled, server.stats.rejected, list(server.feedback)

    seen = taken()
    sock.sendto(builder.build().dgram, ("127.0.0.1", server.port))
    for _ in range(2000):
        if taken() != seen:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{path} never arrived")


def test_every_control_changes_the_engine_and_starts_where_the_engine_is(two_tracks):
    root = document()

    def fresh() -> Engine:
        engine = Engine(EngineConfig(checkpoint="none"))
        for deck, track in enumerate(two_tracks):
            engine.put_track(deck, track)
        return engine

    async def scenario():
        server = OSCServer(None, port=0)
        await server.start()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        unchanged, moved_from_start = [], []
        for node, osc in senders(root):
            message = sent(node, osc, typical(node))
            server.engine = engine = fresh()
            server.feedback.clear()
            PREPARE.get(message[0], lambda e, args: None)(engine, message[1])
            before = state(engine, server)
            await deliver(server, sock, message)
            if state(engine, server) == before:
                unchanged.append(message)
            # A fader, knob, toggle or radio sent at its start leaves the engine as it is.
            if osc.find("triggers").findtext("trigger/condition") == "ANY":
                server.engine = engine = fresh()
                before = state(engine, server)
                await deliver(server, sock, sent(node, osc, float(defaults(node)["x"])))
                if state(engine, server) != before:
                    moved_from_start.append(message[0])
        server.close()
        return server, unchanged, moved_from_start

    server, unchanged, moved_from_start = asyncio.run(scenario())
    assert server.stats.rejected == 0 and server.stats.handled > 70
    assert unchanged == []
    assert moved_from_start == []


def test_the_engines_feedback_lands_on_controls_that_show_it(two_tracks):
    root = document()
    shows: dict[str, list[tuple[ET.Element, ET.Element]]] = {}
    for node, _ in controls(root):
        for osc in osc_messages(node):
            if osc.findtext("receive") == "1":
                shows.setdefault(address(osc), []).append((node, osc))
    engine = Engine(EngineConfig(checkpoint="none"))
    for deck, track in enumerate(two_tracks):
        engine.put_track(deck, track)

    async def scenario():
        server = OSCServer(engine, port=0)
        await server.start()
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        listener.bind(("127.0.0.1", 0))
        listener.setblocking(False)
        server.feedback.append(("127.0.0.1", listener.getsockname()[1]))
        running(engine)
        block = np.zeros((2, 128), np.float32)
        for _ in range(60):  # 3.5 s, seven beats; feedback every 20 blocks as the loop does
            for _ in range(20):
                engine.core.process(block)
            server.send_feedback(engine.feedback_state())
        await asyncio.sleep(0.05)
        received = []
        while True:
            try:
                data = listener.recv(4096)
            except BlockingIOError:
                break
            received += [(m.message.address, m.message.params) for m in OscPacket(data).messages]
        server.close()
        return received

    received = asyncio.run(scenario())
    assert {a for a, _ in received} == set(shows)
    beats = set()
    for path, params in received:
        (value,) = params
        for node, osc in shows[path]:
            (arg,) = osc.find("arguments").findall("partial")
            if arg.findtext("conversion") == "STRING":
                assert str(value), path
                continue
            lo, hi = float(arg.findtext("scaleMin")), float(arg.findtext("scaleMax"))
            raw = (float(value) - lo) / (hi - lo)  # TouchOSC scales a received value back
            if node.get("type") == "RADIO":
                assert raw == int(raw) and 0 <= raw < props(node)["steps"], (path, value)
                if path == "/beat":
                    beats.add(int(raw))
            else:
                assert 0.0 <= raw <= 1.0, (path, value)
    assert beats == {0, 1, 2, 3}  # the beat radio stepped through the bar
    assert ("/deck/a/playing", [1]) in received


@pytest.mark.parametrize("address", ["/no/such/place", "/transition/quantize"])
def test_the_generator_refuses_what_the_engine_would(address):
    with pytest.raises(ValueError, match=address):
        send(address, value())
