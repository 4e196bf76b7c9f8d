"""MIDI through real rtmidi ports on a JACK server (dummy driver): the presets' real byte
sequences in, engine state and LED messages out; mapping files with clear errors."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mido
import numpy as np
import pytest

from controllers.mapping import MappingError, load_mapping
from controllers.midi import MidiClockOut, MidiController, MidiError, MidiInput
from effects.params import PARAM_NAMES
from engine.engine import Engine
from tests.conftest import SR, loaded_engine, settle

PRESETS = Path(__file__).resolve().parents[1] / "presets"


def replay(jack_server, engine: Engine, preset: str, port: str, data: list[list[int]],
           feedback: bool = False) -> tuple[MidiController, list[mido.Message]]:
    """Send raw MIDI bytes from a virtual controller port into the engine's input; collect what
    the engine sends back to the controller's LEDs."""
    backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK")
    controller = MidiController(engine, load_mapping(PRESETS / preset, PARAM_NAMES))
    hardware_out = backend.open_output(port, virtual=True)
    leds: list[mido.Message] = []
    hardware_in = backend.open_input(port + " LEDs", virtual=True, callback=leds.append)

    async def scenario():
        midi = MidiInput(controller, port, backend)
        assert await midi.scan(), "the controller's port was not found"
        await asyncio.sleep(0.1)
        for message in data:
            hardware_out.send(mido.Message.from_bytes(message))
            await asyncio.sleep(0.002)
            settle(engine)
        await asyncio.sleep(0.2)
        settle(engine)
        if feedback:
            midi.send_feedback(engine.feedback_state())
            await asyncio.sleep(0.2)
        midi.close()

    try:
        asyncio.run(scenario())
    finally:
        hardware_out.close()
        hardware_in.close()
    return controller, leds


def fourteen_bit(status: int, msb_cc: int, value: float, lsb_first: bool = False) -> list:
    v = round(value * 16383)
    pair = [[status, msb_cc, v >> 7], [status, msb_cc + 32, v & 127]]
    return pair[::-1] if lsb_first else pair


def test_ddj_400_bytes_drive_the_engine_and_light_its_leds(two_tracks, jack_server):
    engine = loaded_engine(two_tracks)
    # Crossfader swept up from the left (picked up at 0), stopping at 0.75.
    sweep = [m for x in np.linspace(0.0, 0.75, 6) for m in fourteen_bit(0xB6, 0x1F, x)]
    # Deck A's low EQ knob, LSB before MSB, turned down from the centre to 0.25.
    eq = [m for x in np.linspace(0.5, 0.25, 4) for m in fourteen_bit(0xB0, 0x0F, x, True)]
    play = [[0x91, 0x0B, 0x7F], [0x91, 0x0B, 0x00]]  # deck 2 PLAY: press, release (vel. 0)
    jog = [[0xB0, 0x22, 0x41]] * 32  # deck 1 (stopped): 32 ticks forward, offset-64
    controller, leds = replay(jack_server, engine, "ddj-400.yaml", "DDJ-400 test",
                              sweep + eq + play + jog, feedback=True)
    assert engine.param_value("crossfader") == pytest.approx(0.75, abs=1e-3)
    for stem in ("drums", "bass", "vocals", "other"):
        assert engine.param_value(f"a_{stem}_low_eq") == pytest.approx(0.25, abs=1e-3)
    status = engine.core.status
    assert status.playing == (False, True)
    start = two_tracks[0].beat_at(0.0, SR)
    assert status.beats[0] == pytest.approx(start + 32 / 64)  # a 64th of a beat a tick
    assert controller.ignored == 0
    # The first feedback sets every LED of the preset once: deck 2's PLAY lit, deck 1's dark,
    # the transition pads of both decks dark (idle); both BEAT SYNC LEDs blink together.
    beat = [m.bytes() for m in leds if m.note == 0x58]
    assert sorted(m.bytes() for m in leds if m.note != 0x58) == [
        [0x90, 0x0B, 0x00], [0x91, 0x0B, 0x7F],
        [0x97, 0x00, 0x00], [0x97, 0x01, 0x00], [0x99, 0x00, 0x00], [0x99, 0x01, 0x00]]
    assert len(beat) == 2 and beat[0][1:] == beat[1][1:]
    assert sorted(b[0] for b in beat) == [0x90, 0x91] and beat[0][2] in (0x00, 0x7F)


def test_nanokontrol2_faders_and_transport(two_tracks, jack_server):
    engine = loaded_engine(two_tracks)
    fader = [[0xB0, 0x05, v] for v in (127, 100, 80, 64)]  # fader 6 (deck B bass) down
    jump = [[0xB0, 0x00, 100]]  # fader 1 far from deck A's drums (at 1.0): not picked up...
    knob = [[0xB0, 0x10, 30]]  # knob 1 at 30/127 from the centre: not picked up either
    transport = [[0xB0, 0x20, 127], [0xB0, 0x20, 0],  # S1: play deck A
                 [0xB0, 0x29, 127], [0xB0, 0x29, 0]]  # PLAY: trigger the transition
    controller, _ = replay(jack_server, engine, "nanokontrol2.yaml", "nanoKONTROL2 test",
                           fader + jump + knob + transport)
    assert engine.param_value("b_bass_gain") == pytest.approx(64 / 127, abs=1e-4)
    assert engine.param_value("a_drums_gain") == 1.0  # soft takeover held it
    assert engine.param_value("a_bass_low_eq") == 0.5
    assert engine.core.status.playing[0]
    assert engine.core.status.phase in ("pending", "running")


def test_relative_encodings_shift_layer_and_momentary_hold(tmp_path, two_tracks):
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "name: test\ncontrols:\n"
        "  - {message: note, channel: 1, number: 1, command: shift}\n"
        "  - {message: cc, channel: 1, number: 10, encoding: twos_complement, command: param,"
        " target: reverb_wet, step: 0.1}\n"
        "  - {message: cc, channel: 1, number: 11, encoding: offset64, command: param,"
        " target: reverb_wet, step: 0.1, shift: true}\n"
        "  - {message: note, channel: 1, number: 2, command: hold}\n")
    engine = loaded_engine(two_tracks)
    c = MidiController(engine, load_mapping(mapping, PARAM_NAMES))

    def send(*data):
        c.handle(mido.Message.from_bytes(list(data)))
        settle(engine)

    send(0xB0, 10, 3)  # +3 steps
    assert engine.param_value("reverb_wet") == pytest.approx(0.3)
    send(0xB0, 10, 127)  # -1 step in two's complement
    assert engine.param_value("reverb_wet") == pytest.approx(0.2)
    send(0xB0, 11, 66)  # a Shift-layer control without Shift: ignored
    assert engine.param_value("reverb_wet") == pytest.approx(0.2) and c.ignored == 1
    send(0x90, 1, 127)
    send(0xB0, 11, 66)  # with Shift: +2 steps
    assert engine.param_value("reverb_wet") == pytest.approx(0.4)
    send(0x90, 1, 0)  # Shift released by a note-on with velocity 0
    assert not c.shift
    send(0xB0, 11, 66)  # the Shift layer is off again
    assert engine.param_value("reverb_wet") == pytest.approx(0.4)

    # Hold is momentary: the transition stands still while the button is down.
    engine.play("a")
    engine.set_quantize("off")
    engine.trigger()
    settle(engine)
    assert engine.core.status.phase == "running" and not engine.core.status.held
    send(0x90, 2, 127)
    held_at = engine.core.status.progress
    settle(engine)
    assert engine.core.status.held and engine.core.status.progress == held_at
    send(0x90, 2, 0)
    settle(engine)
    assert not engine.core.status.held and engine.core.status.progress > held_at


@pytest.mark.parametrize("text, expected", [
    ("name: x\ncontrols:\n  - {message: cc, channel: 17, number: 1, command: trigger}\n",
     "line 3, field controls.0.channel"),
    ("name: x\ncontrols:\n  - {message: cc, channel: 1, number: 1, command: play}\n",
     "line 3, field controls.0: Value error, command 'play' needs a deck"),
    ("name: x\ncontrols:\n  - {message: cc, channel: 1, number: 1, command: param,\n"
     "     target: a_bass_volume}\n", "line 4, field controls.0.target: no parameter"),
    ("name: x\ncontrols: [\n", "line 3: not valid YAML"),
    ("name: x\ncontrols:\n  - {message: sysex, channel: 1, number: 1, command: trigger}\n",
     "line 3, field controls.0.message"),
    ("name: x\ncontrols:\n  - {message: note, channel: 1, number: 1, command: grid, deck: a,\n"
     "     target: sideways}\n", "line 3, field controls.0: Value error, command 'grid' needs"),
])
def test_a_malformed_mapping_names_file_line_and_field(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(MappingError) as err:
        load_mapping(path, PARAM_NAMES)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_a_flood_of_midi_is_handled_without_error(two_tracks):
    """10,000 random control changes on all 16 channels: the generic preset's (channel 1,
    CC 0-51 -> parameter n) each reach their parameter, every other one is ignored."""
    engine = loaded_engine(two_tracks)
    c = MidiController(engine, load_mapping(PRESETS / "generic.yaml", PARAM_NAMES))
    before = [engine.param_value(n) for n in range(len(PARAM_NAMES))]
    rng = np.random.default_rng(0)
    last: dict[int, int] = {}  # mapped CC -> the last value sent to it
    for _ in range(10_000):
        channel, number, value = (int(x) for x in rng.integers(0, [16, 128, 128]))
        c.handle(mido.Message.from_bytes([0xB0 | channel, number, value]))
        if channel == 0 and number < len(PARAM_NAMES):
            last[number] = value
    settle(engine)
    assert engine.core.status.errors == 0
    mapped = c.handled
    assert c.ignored == 10_000 - mapped and mapped > 100
    # Soft takeover: a parameter follows its control once picked up, so it ends at the last
    # value sent to it, or is where it was (a control never picked up).
    moved = 0
    for n, value in last.items():
        now = engine.param_value(n)
        if now != before[n]:
            assert now == pytest.approx(value / 127, abs=1e-6), PARAM_NAMES[n]
            moved += 1
    assert moved > len(last) // 2


def test_midi_learn_writes_a_valid_mapping_entry(tmp_path, jack_server, monkeypatch, capsys):
    import threading

    import main

    monkeypatch.setenv("MIDO_BACKEND", "mido.backends.rtmidi/UNIX_JACK")
    backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK")
    port = backend.open_output("learn test", virtual=True)
    target = tmp_path / "mine.yaml"

    def press() -> None:
        time.sleep(1.0)
        port.send(mido.Message("control_change", channel=2, control=77, value=10))

    try:
        for command in (["play", "--learn-deck", "b"], ["param", "--learn-target", "a_*_gain"]):
            threading.Thread(target=press).start()
            assert main.main(["--midi", "learn test", "--midi-map", str(target),
                              "--midi-learn", *command]) == 0
    finally:
        port.close()
    mapping = load_mapping(target, PARAM_NAMES)
    # The same message learned twice: the second command replaced the first.
    assert [(c.message, c.channel, c.number, c.command, c.target) for c in mapping.controls] \
        == [("cc", 3, 77, "param", "a_*_gain")]
    assert main.main(["--midi", "learn test", "--midi-map", str(target), "--midi-learn",
                      "play"]) == 2  # no such port any more
    assert "no MIDI input port matches learn test" in capsys.readouterr().err


def test_midi_clock_in_sets_the_tempo_and_clock_out_leads(two_tracks, jack_server):
    engine = loaded_engine(two_tracks)
    c = MidiController(engine, load_mapping(PRESETS / "generic.yaml", PARAM_NAMES),
                       follow_clock=True)
    bpm_a = two_tracks[0].analysis.bpm
    jitter = np.random.default_rng(3).normal(0, 0.0003, 200)
    for k in range(200):  # 24 ticks a beat at 126 BPM, with 0.3 ms of jitter
        c.handle(mido.Message("clock"), now=k * 60 / 126 / 24 + jitter[k])
    settle(engine)
    assert c.clock_bpm == pytest.approx(126.0, rel=0.01)
    assert engine.core.status.rates[0] == pytest.approx(126.0 / bpm_a, rel=0.01)

    backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK")
    received: list[str] = []
    ticks: list[float] = []

    def follower(message: mido.Message) -> None:
        received.append(message.type)
        if message.type == "clock":
            ticks.append(time.perf_counter())

    gear = backend.open_input("clock follower", virtual=True, callback=follower)

    async def lead() -> int:
        with pytest.raises(MidiError, match="no MIDI output port matches no such gear"):
            await MidiClockOut("no such gear", backend).start(120.0)
        clock = MidiClockOut("clock follower", backend)
        assert "clock follower" in await clock.start(150.0)  # 60 ticks a second
        await asyncio.sleep(1.0)
        at_150 = len(ticks)
        clock.tempo(300.0)  # 120 a second
        await asyncio.sleep(1.0)
        clock.stop()
        await asyncio.sleep(0.1)
        return at_150

    try:
        at_150 = asyncio.run(lead())
    finally:
        gear.close()
    assert received[0] == "start" and received[-1] == "stop"
    assert 45 <= at_150 <= 75  # about 60 in the first second
    # At the tempo it was given: 24 ticks a beat, 1/60 s apart at 150 BPM, then 1/120 s. The
    # interval is the slope of a line through every tick's arrival: JACK hands MIDI over once a
    # period, so single intervals jitter by a period, and a mean from the first and last
    # arrivals rests on two of them (CI once got 8.76 ms for 8.33; this machine stalls for up to
    # 100 ms now and then, and 50 ms on the last arrival is that much).
    def interval(arrivals: list[float]) -> float:
        return float(np.polyfit(np.arange(len(arrivals)), arrivals, 1)[0])

    assert interval(ticks[:at_150]) == pytest.approx(1 / 60, rel=0.05)
    assert interval(ticks[at_150 + 5:]) == pytest.approx(1 / 120, rel=0.05)  # after the change


def test_the_key_lock_pad_toggles_key_lock_and_lights_its_led(two_tracks):
    engine = loaded_engine(two_tracks)
    c = MidiController(engine, load_mapping(PRESETS / "generic.yaml", PARAM_NAMES))
    pad = [mido.Message("note_on", channel=0, note=45, velocity=v) for v in (127, 0)]
    for message in pad:  # press and release: on
        c.handle(message)
    assert engine.key_lock
    # The first feedback sets all the preset's LEDs: only the key lock pad's is lit.
    assert [m.bytes() for m in c.feedback_messages(engine.feedback_state())] == [
        [0x90, 36, 0], [0x90, 41, 0], [0x90, 42, 0], [0x90, 45, 127]]
    for message in pad:  # again: off
        c.handle(message)
    assert not engine.key_lock
    assert [m.bytes() for m in c.feedback_messages(engine.feedback_state())] == [
        [0x90, 45, 0]]  # only what changed


def test_learn_refuses_an_entry_the_mapping_would_not_load(tmp_path):
    """A learned param whose target names no parameter is refused before the file is
    written: what learn writes always loads."""
    from controllers.learn import add_control
    from controllers.mapping import Control

    path = tmp_path / "mine.yaml"
    good = Control(message="cc", channel=1, number=7, command="param", target="a_bass_gain")
    add_control(path, good, PARAM_NAMES)
    before = path.read_text()
    bad = Control(message="cc", channel=1, number=8, command="param", target="a_bass_volume")
    with pytest.raises(MappingError, match=r"mine\.yaml: not written: no parameter "
                                           r"'a_bass_volume'"):
        add_control(path, bad, PARAM_NAMES)
    assert path.read_text() == before
    assert [c.target for c in load_mapping(path, PARAM_NAMES).controls] == ["a_bass_gain"]


def test_grid_pads_of_the_generic_preset_and_the_ddj_400s_tap(two_tracks, monkeypatch):
    engine = loaded_engine(two_tracks)
    a, b = (t.grid for t in engine.tracks)
    generic = MidiController(engine, load_mapping(PRESETS / "generic.yaml", PARAM_NAMES))

    def pad(c: MidiController, note: int, channel: int = 0) -> None:
        for velocity in (127, 0):  # press, release
            c.handle(mido.Message("note_on", channel=channel, note=note, velocity=velocity))

    pad(generic, 47)  # deck A forward a 64th of a beat
    pad(generic, 47)
    pad(generic, 46)  # and back one
    pad(generic, 55)  # deck B half
    settle(engine)
    assert engine.tracks[0].grid.first_downbeat == pytest.approx(
        a.first_downbeat + a.beat_period / 64)
    assert engine.tracks[1].grid.bpm == pytest.approx(b.bpm / 2)
    assert generic.ignored == 0
    # The DDJ-400: SHIFT + deck 2's headphone CUE sends note 0x68 on channel 2: tap tempo.
    ddj = MidiController(engine, load_mapping(PRESETS / "ddj-400.yaml", PARAM_NAMES))
    clock = iter(200.0 + 0.5 * k for k in range(5))
    monkeypatch.setattr("engine.engine.time.monotonic", lambda: next(clock))
    for _ in range(5):
        pad(ddj, 0x68, channel=1)
    assert engine.tracks[1].grid.bpm == pytest.approx(120.0)
    assert engine.tracks[0].grid.bpm == a.bpm


def test_the_ddj_400s_shift_pad_1_steps_the_transition_length(two_tracks):
    """SHIFT + pad 1 sends on the pads' channel + 1 (0x98 deck 1, 0x9A deck 2); each press is
    the next length, 16 -> 32 -> 4 -> 8, and neither press nor release triggers anything."""
    engine = loaded_engine(two_tracks)
    ddj = MidiController(engine, load_mapping(PRESETS / "ddj-400.yaml", PARAM_NAMES))
    assert engine.bars == 16
    lengths = []
    for status in (0x98, 0x98, 0x9A):
        for velocity in (0x7F, 0x00):  # press, release
            ddj.handle(mido.Message.from_bytes([status, 0x00, velocity]))
        lengths.append(engine.bars)
    settle(engine)
    assert lengths == [32, 4, 8]
    assert engine.plan is not None and engine.plan.bars == 8  # candidates for the new length
    assert engine.core.status.phase == "idle" and ddj.ignored == 0


def test_the_ports_process_reports_its_end_and_never_outlives_the_engine(two_tracks, jack_server,
                                                                         tmp_path):
    """The ports live in a process of their own: one that dies is said in ``error`` (the music
    goes on without it), and one whose engine is killed ends too (its input closes)."""
    backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK")
    hardware = backend.open_output("ports process test", virtual=True)
    controller = MidiController(loaded_engine(two_tracks),
                                load_mapping(PRESETS / "generic.yaml", PARAM_NAMES))

    async def scenario() -> str:
        midi = MidiInput(controller, "ports process test", backend)
        assert await midi.scan() and midi.inputs
        assert midi.pid != os.getpid()
        os.kill(midi.pid, signal.SIGKILL)
        for _ in range(200):
            if midi.error:
                break
            await asyncio.sleep(0.01)
        midi.send_feedback({"a_playing": 1})  # to a process that is gone: no exception
        assert await midi.scan() == []
        midi.close()
        return midi.error

    try:
        assert "MIDI ports process ended" in asyncio.run(scenario())
    finally:
        hardware.close()

    engine = tmp_path / "engine.py"
    engine.write_text(
        "import asyncio, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import mido\n"
        "from controllers.midi import MidiInput\n"
        "async def main():\n"
        "    midi = MidiInput(None, 'nothing', mido.Backend('mido.backends.rtmidi/UNIX_JACK'))\n"
        "    await midi.scan()\n"
        "    print(midi.pid, flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n")
    killed = subprocess.Popen([sys.executable, str(engine), str(PRESETS.parent)],
                              stdout=subprocess.PIPE, text=True)
    ports = int(killed.stdout.readline())
    killed.kill()
    killed.wait()
    for _ in range(100):
        try:
            os.kill(ports, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(ports, signal.SIGKILL)
        pytest.fail("the ports process outlived its engine")
