"""Property-based fuzzing (hypothesis) of what reaches the engine from outside: OSC packets over
real UDP, raw MIDI bytes through real rtmidi ports on a JACK server, and mapping files.

The properties: nothing escapes but the documented error (MappingError for a mapping file; the
OSC and MIDI paths never raise), every rejected OSC packet or message is reported once, valid
input does what it says, and the engine stays consistent and keeps rendering.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import socket
import string
import struct
from dataclasses import dataclass, field
from pathlib import Path

import mido
import numpy as np
import pytest
import rtmidi
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controllers.mapping import MappingError, load_mapping
from controllers.midi import MidiController, MidiInput
from controllers.clients import MAX_CLIENTS
from controllers.commands import BadMessage, routes
from controllers.osc import OSCServer, parse
from effects.params import PARAM_NAMES
from engine.core import CONTROL_BLOCK
from tests.conftest import loaded_engine, settle

PRESETS = Path(__file__).resolve().parents[1] / "presets"
# Examples share one engine and one server (their state carries over, as in a performance).
FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def assert_consistent(engine) -> None:
    """The engine renders finite audio without an error, its frame within the contract."""
    clock = engine.core.status.clock
    out = np.zeros((2, 4 * CONTROL_BLOCK), np.float32)
    engine.core.process(out)
    s = engine.core.status
    assert s.errors == 0, s.last_error
    assert s.clock == clock + out.shape[1]
    assert np.isfinite(out).all()
    frame = engine.core.frame
    assert np.isfinite(frame).all() and frame.min() >= 0.0 and frame.max() <= 1.0
    # A synced deck's rate is the on-air deck's times the tempo ratio, so it may leave the
    # tempo fader's range; it must stay a rate the decks (and key lock's stretcher) can play.
    assert np.isfinite(s.positions).all() and all(0.25 <= r <= 4.0 for r in s.rates), s.rates


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Rig:
    """An event loop of our own (hypothesis examples are plain functions) that collects what
    escapes into its exception handler."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.escaped: list[dict] = []
        self.loop.set_exception_handler(lambda loop, context: self.escaped.append(context))

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    async def until(self, done, seconds: float = 3.0) -> None:
        deadline = self.loop.time() + seconds
        while not done() and not self.escaped and self.loop.time() < deadline:
            await asyncio.sleep(0.001)


# --- OSC ------------------------------------------------------------------------------------

@dataclass
class CountingServer(OSCServer):
    packets: int = 0

    def packet(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            super().packet(data, addr)
        finally:
            self.packets += 1


@pytest.fixture(scope="module")
def osc_rig(two_tracks):
    rig = Rig()
    rig.engine = loaded_engine(two_tracks)
    rig.engine.play("a")
    rig.server = CountingServer(rig.engine, port=0)
    rig.run(rig.server.start())
    rig.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rig.reports = Records()
    rig.leaked = Records()  # python-osc's own warnings on the root logger
    logging.getLogger("automix.osc").addHandler(rig.reports)
    logging.getLogger().addHandler(rig.leaked)
    yield rig
    logging.getLogger("automix.osc").removeHandler(rig.reports)
    logging.getLogger().removeHandler(rig.leaked)
    rig.server.close()
    rig.sock.close()
    rig.loop.close()


ADDRESSES = sorted(routes()) + ["/register"]
UNIT = ["/mixer/crossfader", "/mixer/master"] + [f"/param/{n}" for n in PARAM_NAMES]
UNIT_PARAM = {"/mixer/crossfader": "crossfader", "/mixer/master": "master_gain",
              **{f"/param/{n}": n for n in PARAM_NAMES}}
osc_args = st.lists(st.one_of(
    st.floats(0.0, 1.0, width=32).map(lambda v: ("f", v)),  # what a fader sends
    st.floats(width=32).map(lambda v: ("f", v)),
    st.floats().map(lambda v: ("d", v)),
    st.integers(-2**31, 2**31 - 1).map(lambda v: ("i", v)),
    st.integers(-2**63, 2**63 - 1).map(lambda v: ("h", v)),
    st.text(max_size=12).map(lambda v: ("s", v)),
    st.binary(max_size=12).map(lambda v: ("b", v)),
    st.sampled_from([("T", True), ("F", False), ("N", None)])), max_size=3)
osc_address = st.one_of(st.sampled_from(ADDRESSES), st.sampled_from(UNIT), st.text(max_size=24),
                        st.sampled_from(ADDRESSES).map(lambda a: a + "/x"))


def padded(data: bytes) -> bytes:
    data += b"\0"
    return data + b"\0" * (-len(data) % 4)


PACK = {"f": ">f", "d": ">d", "i": ">i", "h": ">q"}


def encode(address: str, args: list[tuple[str, object]]) -> bytes:
    """An OSC message by the spec (python-osc's builder refuses some of what a client can send,
    such as an address without a slash)."""
    payload = b""
    for kind, value in args:
        if kind in PACK:
            payload += struct.pack(PACK[kind], value)
        elif kind == "s":
            payload += padded(value.encode())
        elif kind == "b":
            payload += struct.pack(">i", len(value)) + value + b"\0" * (-len(value) % 4)
    tags = "," + "".join(kind for kind, _ in args)
    return padded(address.encode()) + padded(tags.encode()) + payload


@st.composite
def datagrams(draw) -> bytes:
    """Well-formed messages, the same with bytes cut or changed, and raw bytes."""
    message = encode(draw(osc_address), draw(osc_args))
    kind = draw(st.sampled_from(["message", "message", "cut", "flip", "raw"]))
    if kind == "cut":
        return message[:draw(st.integers(0, len(message)))]
    if kind == "flip":
        i = draw(st.integers(0, len(message) - 1))
        return message[:i] + bytes([draw(st.integers(0, 255))]) + message[i + 1:]
    if kind == "raw":
        return draw(st.binary(max_size=48))
    return message


def is_unit(args: list) -> bool:
    return len(args) == 1 and isinstance(args[0], (int, float)) \
        and not isinstance(args[0], bool) and math.isfinite(args[0]) and 0.0 <= args[0] <= 1.0


SUPPRESSED = re.compile(r"^(\d+) more bad (OSC|MIDI) messages suppressed$")


def reported(records: Records, limiter, about: str = "") -> int:
    """Rejections reported so far: warnings (those containing ``about``, and the rate limit's
    summaries), plus the ones counted by the rate limit."""
    lines = [m for m in (r.getMessage() for r in records.records)
             if about in m or SUPPRESSED.match(m)]
    summaries = [int(m.group(1)) for m in map(SUPPRESSED.match, lines) if m]
    return len(lines) - len(summaries) + sum(summaries) + limiter.suppressed


@settings(FUZZ, max_examples=200)
@given(data=datagrams())
def test_osc_over_udp_never_raises_and_reports_each_rejection(osc_rig, data):
    rig, server, engine = osc_rig, osc_rig.server, osc_rig.engine
    try:
        expected = [t.message for t in parse(data)]
    except BadMessage:
        expected = None
    stats = server.stats
    handled, rejected, scheduled, sent = (stats.handled, stats.rejected, stats.scheduled,
                                          server.packets)
    before = engine.core.frame
    idle = engine.core.status.phase == "idle"  # in a transition, a hand takes over softly
    rig.sock.sendto(data, ("127.0.0.1", server.port))
    rig.run(rig.until(lambda: server.packets > sent))
    assert not rig.escaped, rig.escaped[0]
    assert server.packets == sent + 1, "the packet did not arrive"
    settle(engine)

    if expected is None:
        assert (stats.handled, stats.rejected) == (handled, rejected + 1)
    else:  # one outcome per message; a bundle for later waits on the loop
        assert (stats.handled - handled) + (stats.rejected - rejected) \
            + (stats.scheduled - scheduled) == len(expected)
    if idle and expected and len(expected) == 1 and stats.scheduled == scheduled:
        message = expected[0]
        name = UNIT_PARAM.get(message.address)
        if name is not None and is_unit(message.params):
            assert stats.handled == handled + 1
            assert engine.param_value(name) == pytest.approx(float(message.params[0]))
        elif name is not None:
            assert stats.rejected == rejected + 1
            assert engine.param_value(name) == before[PARAM_NAMES.index(name)]
        elif message.address not in ADDRESSES:
            assert stats.rejected == rejected + 1
    assert reported(rig.reports, server._bad) == stats.rejected + stats.refused
    assert not [r for r in rig.leaked.records if "pythonosc" in r.pathname]
    assert all(0 < port < 65536 for _, port in server.feedback)
    assert len(server.feedback) <= MAX_CLIENTS
    server.feedback.clear()  # no feedback to whatever listens on a fuzzed port
    assert_consistent(engine)
    # A fuzzed trigger, pause or cue is not the point of the next example.
    engine.abort()
    for _ in range(10_000):
        settle(engine)
        if engine.core.status.phase == "idle":
            break
    engine.play("a")


# --- MIDI -----------------------------------------------------------------------------------

@dataclass
class RecordingController(MidiController):
    seen: list[mido.Message] = field(default_factory=list)

    def handle(self, message: mido.Message, now: float | None = None) -> None:
        self.seen.append(message)
        super().handle(message, now)


def mapped(preset: str) -> st.SearchStrategy[list[int]]:
    """Messages that hit the preset's controls (and 14-bit halves), with any value."""
    targets = []
    for c in load_mapping(PRESETS / preset).controls:
        status = (0xB0 if c.message == "cc" else 0x90) | (c.channel - 1)
        targets += [(status, c.number)] + ([(status, c.lsb)] if c.lsb is not None else [])
        if c.message == "note":
            targets.append((0x80 | (c.channel - 1), c.number))
    return st.builds(lambda t, v: [*t, v], st.sampled_from(targets), st.integers(0, 127))


DATA = st.integers(0, 127)
# Lengths of the data that follows each status byte (MIDI 1.0).
LENGTH = {**{s: 1 for s in range(0xC0, 0xE0)}, 0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0,
          **{s: 0 for s in (0xF8, 0xFA, 0xFB, 0xFC, 0xFE, 0xFF)}}


def valid_message(preset: str) -> st.SearchStrategy[list[int]]:
    """Any decodable MIDI message: channel and system messages, sysex, the preset's own."""
    channel = st.integers(0x80, 0xEF).flatmap(
        lambda s: st.lists(DATA, min_size=LENGTH.get(s, 2), max_size=LENGTH.get(s, 2))
        .map(lambda d: [s, *d]))
    system = st.sampled_from(sorted(s for s in LENGTH if s >= 0xF0)).flatmap(
        lambda s: st.lists(DATA, min_size=LENGTH[s], max_size=LENGTH[s]).map(lambda d: [s, *d]))
    sysex = st.lists(DATA, max_size=8).map(lambda d: [0xF0, *d, 0xF7])
    return st.one_of(mapped(preset), mapped(preset), channel, system, sysex)


def raw_message(preset: str) -> st.SearchStrategy[list[int]]:
    """What a wire can carry in one event, decodable or not. Left out: active sensing (the
    input port asks rtmidi to drop it) and an unterminated sysex or a lone 0xF7 (rtmidi's JACK
    input joins those with the next events into one sysex)."""
    status = st.integers(0x80, 0xFF).filter(lambda s: s not in (0xF0, 0xF7, 0xFE))
    broken = st.builds(lambda s, d: [s, *d], status, st.lists(st.integers(0, 255), max_size=2))
    stray = st.lists(DATA, min_size=1, max_size=3)  # data bytes with no status
    return st.one_of(valid_message(preset).filter(lambda m: m[0] != 0xFE), broken, stray)


def decodable(data: list[int]) -> bool:
    try:
        mido.Message.from_bytes(data)
    except (ValueError, IndexError):  # mido: IndexError for a short song position pointer
        return False
    return True


@pytest.fixture(scope="module")
def midi_rig(two_tracks, jack_server):
    rig = Rig()
    rig.engine = loaded_engine(two_tracks)
    rig.engine.play("a")
    rig.controller = RecordingController(rig.engine, load_mapping(PRESETS / "ddj-400.yaml",
                                                                  PARAM_NAMES))
    # python-rtmidi itself sends the bytes: mido's ports only send messages it can encode.
    rig.wire = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK)
    rig.wire.open_virtual_port("fuzzed DDJ-400")
    rig.midi = MidiInput(rig.controller, "fuzzed DDJ-400",
                         mido.Backend("mido.backends.rtmidi/UNIX_JACK"))
    assert rig.run(rig.midi.scan()), rig.midi.error or "the fuzzed port was not found"
    rig.reports = Records()
    logging.getLogger("automix.midi").addHandler(rig.reports)
    yield rig
    logging.getLogger("automix.midi").removeHandler(rig.reports)
    rig.midi.close()
    rig.run(asyncio.sleep(0))  # deliveries the poller scheduled before it stopped
    rig.wire.close_port()
    rig.loop.close()


@settings(FUZZ, max_examples=30)
@given(events=st.lists(raw_message("ddj-400.yaml"), min_size=1, max_size=12))
def test_raw_midi_through_a_jack_port_never_raises(midi_rig, events):
    """Every decodable event reaches the handler, in order, and counts once; every other one is
    reported once and goes no further."""
    rig, c = midi_rig, midi_rig.controller
    c.seen.clear()
    counted, undecodable = c.handled + c.ignored, rig.midi.undecodable
    for event in events:
        rig.wire.send_message(event)
    expected = [mido.Message.from_bytes(e).bytes() for e in events if decodable(e)]
    rig.run(rig.until(lambda: len(c.seen) + rig.midi.undecodable - undecodable >= len(events)))
    assert not rig.escaped, rig.escaped[0]
    assert [m.bytes() for m in c.seen] == expected
    assert c.handled + c.ignored == counted + len(expected)
    assert rig.midi.undecodable == undecodable + len(events) - len(expected)
    # Decoded controls the engine refuses (LOAD with no playlist) are reported too, not counted.
    assert reported(rig.reports, rig.midi._bad, "does not decode") == rig.midi.undecodable
    assert_consistent(rig.engine)


@pytest.mark.parametrize("preset", ["ddj-400.yaml", "nanokontrol2.yaml", "generic.yaml"])
def test_any_midi_message_into_each_preset_never_raises(two_tracks, preset):
    """Straight into the handler, without a port: a port waits a JACK period for each batch,
    and the test above covers the way through one; here many more messages per preset."""
    engine = loaded_engine(two_tracks)
    engine.play("a")
    controller = MidiController(engine, load_mapping(PRESETS / preset, PARAM_NAMES),
                                follow_clock=True)

    clock = [0.0]  # arrival times as MidiInput stamps them: never backwards, maybe equal

    gap = st.just(0.0) | st.floats(0.0, 0.05)
    one = st.tuples(valid_message(preset), gap).map(lambda event: [event])
    ticks = st.tuples(st.integers(1, 60), gap).map(lambda n_gap: [([0xF8], n_gap[1])] * n_gap[0])

    @settings(FUZZ, max_examples=40)
    @given(chunks=st.lists(one | ticks, max_size=30))
    def fuzz(chunks):
        events = [event for chunk in chunks for event in chunk]
        counted = controller.handled + controller.ignored
        for data, after in events:
            clock[0] += after
            controller.handle(mido.Message.from_bytes(data), clock[0])
        assert controller.handled + controller.ignored == counted + len(events)
        assert_consistent(engine)

    fuzz()


# --- mapping files --------------------------------------------------------------------------

DDJ = yaml.safe_load((PRESETS / "ddj-400.yaml").read_text())
yaml_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-300, 300), st.floats(),
              st.text(max_size=10), st.sampled_from(["cc", "note", "param", "a", "a_*_gain"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)


@st.composite
def mutated_mapping(draw) -> tuple[dict, tuple]:
    """The DDJ-400 preset with one thing changed: a value replaced, a key removed or added."""
    data = yaml.safe_load(yaml.safe_dump(DDJ))
    section = draw(st.sampled_from(["controls", "feedback", None]))
    if section is None:
        node, loc = data, ()
    else:
        i = draw(st.integers(0, len(data[section]) - 1))
        node, loc = data[section][i], (section, i)
    how = draw(st.sampled_from(["replace", "remove", "add"]))
    if how == "add":
        key = draw(st.text(string.ascii_lowercase + "_", min_size=1, max_size=8)
                   .filter(lambda k: k not in node))
        node[key] = draw(yaml_value)
    else:
        key = draw(st.sampled_from(sorted(node)))
        if how == "remove":
            del node[key]
        else:
            node[key] = draw(yaml_value)
    return data, (*loc, key)


def related(field_: str, loc: tuple) -> bool:
    """The reported field is where the change was, or inside or around it."""
    changed = ".".join(str(x) for x in loc)
    return field_.startswith(changed) or changed.startswith(field_)


@settings(FUZZ, max_examples=30)  # about 0.1 s each: the preset is 230 lines of YAML
@given(case=mutated_mapping())
def test_a_changed_preset_loads_or_names_the_changed_field(tmp_path_factory, case):
    data, loc = case
    path = tmp_path_factory.mktemp("mapping") / "changed.yaml"
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    try:
        load_mapping(path, PARAM_NAMES)
    except MappingError as err:
        found = re.match(rf"^{re.escape(str(path))}, line (\d+), field (\S+): .+", str(err))
        assert found, str(err)
        line, field_ = int(found.group(1)), found.group(2)
        assert related(field_, loc), (str(err), loc)
        lines = text.splitlines()
        assert 1 <= line <= len(lines)
        key = field_.split(".")[-1]
        if field_ == ".".join(map(str, loc)) and loc[-1] in (data if len(loc) == 1 else
                                                             data[loc[0]][loc[1]]):
            assert key in lines[line - 1], (str(err), lines[line - 1])


@FUZZ
@given(content=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                         st.lists(st.sampled_from(["name: x\n", "controls:\n", "  - ", "{", "[",
                                                   "message: cc, ", "channel: 1", "number: 300",
                                                   "command: play", "\t", ": ", "&a ", "*a",
                                                   "!!python/object:os.system ", "on: 3",
                                                   "---\n", "}", "]", "\n", "\xff"]),
                                  max_size=20).map(lambda p: "".join(p).encode())))
def test_any_bytes_load_as_a_mapping_or_one_clear_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("mapping") / "any.yaml"
    path.write_bytes(content)
    try:
        load_mapping(path, PARAM_NAMES)
    except MappingError as err:
        assert str(err).startswith(str(path)) and "\n" not in str(err).strip()
