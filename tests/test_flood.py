"""A flood of OSC and MIDI, good and malformed, from a client process while the engine plays
through a real PortAudio stream on a JACK server (dummy driver): the audio keeps running as in
a quiet stretch of the same length, and the engine ends in the state the last messages set.
And main.py with --midi, as a user runs it, keeps the audio as it is without."""

from __future__ import annotations

import asyncio
from pathlib import Path

import mido
import numpy as np
import pytest

from controllers.mapping import load_mapping
from controllers.midi import MidiController, MidiInput
from controllers.osc import OSCServer
from effects.params import PARAM_INDEX, PARAM_NAMES
from engine.backends import AudioOutput
from tests.conftest import SR, loaded_engine
from tests.flood_client import (LAST_MIDI, LAST_OSC, MIDI_PARAM, MIDI_PORT, OSC_PARAM,
                                 flood, live_session)

PRESETS = Path(__file__).resolve().parents[1] / "presets"
SECONDS = 1.0  # of flood: 4,000 OSC and 1,000 MIDI messages
RATES = (4000, 1000)  # OSC and MIDI a second (bench/controllers.py --flood: 10,000 and 2,000)


def test_a_flood_of_osc_and_midi_leaves_the_audio_running(two_tracks, jack_server):
    engine = loaded_engine(two_tracks)
    controller = MidiController(engine, load_mapping(PRESETS / "generic.yaml", PARAM_NAMES))
    midi = MidiInput(controller, MIDI_PORT, mido.Backend("mido.backends.rtmidi/UNIX_JACK"))
    out = AudioOutput(engine.core, SR, 256, device=jack_server)
    server = OSCServer(engine, port=0)

    async def scenario():
        await server.start()
        engine.play("a")
        out.start()
        runs = []
        try:
            # xruns come from the machine's other load too: a flood that costs xruns costs
            # them every time, so further runs tell the two apart (two were not enough: the
            # same code failed one time in three on an idle 2-core machine).
            for seed in (6, 7, 8):
                runs.append(await flood(engine, out, server, midi, SECONDS, RATES, seed))
                if runs[-1][0]["xruns"] <= runs[-1][1]["xruns"]:
                    break
            await asyncio.sleep(0.1)  # a few blocks: the callback applies the last commands
        finally:
            out.stop()
            midi.close()
            server.close()
        return runs

    before = engine.core.frame
    runs = asyncio.run(scenario())
    for flooded, quiet, sent in runs:
        print(f"flood {flooded}, quiet {quiet}, sent {sent}")
        for window in (quiet, flooded):  # deck A played every frame the stream rendered
            assert window["rendered"] > 0 and window["deck_a"] == window["rendered"]
        # The stream kept its pace (a stall would show as a fraction of the frames).
        assert flooded["frames"] >= 0.5 * quiet["frames"]
    # The flood cost no xrun that a quiet stretch of the same length does not show.
    assert flooded["xruns"] <= quiet["xruns"], runs
    assert out.errors == 0 and engine.core.status.errors == 0, engine.core.status.last_error
    # Every message arrived and was judged once; the good ones applied, the last one wins.
    total = {key: sum(sent[key] for _, _, sent in runs) for key in runs[0][2]}
    assert (server.stats.handled, server.stats.rejected) == (total["osc_good"],
                                                             total["osc_bad"])
    assert controller.handled + controller.ignored == total["midi"]
    assert midi.undecodable == total["midi_bad"]
    frame = engine.core.frame
    assert frame[PARAM_INDEX[OSC_PARAM]] == pytest.approx(LAST_OSC)
    assert frame[PARAM_INDEX[MIDI_PARAM]] == pytest.approx(LAST_MIDI / 127)
    others = np.ones(len(PARAM_NAMES), bool)
    others[[PARAM_INDEX[OSC_PARAM], PARAM_INDEX[MIDI_PARAM]]] = False
    np.testing.assert_array_equal(frame[others], before[others])


def test_main_with_midi_plays_as_without(jack_server):
    """``main.py --midi --osc`` on JACK MIDI, a controller's port present, idle and then sending
    1,000 MIDI messages a second: no more xruns while the music plays than main.py without them.
    Its hot-plug scan used to open and close JACK clients every 2 s: 31-33 xruns in 8 s against
    0-1 without; its ports, open in the engine's process, 1-2 more in 10 s than without (the
    engine's JACK client was late), and they now live in a process of their own."""
    runs = []
    # Interleaved, the client flooding its port in both (listened to or not): the machine's own
    # xruns come and go (0-1 in 10 s here, bursts of 6 and of 10 and 5 on CI), a cost of --midi
    # comes every time (it was 2, 2, 2, 0 and 2, 2, 7, 2 in 12 s sessions). So the typical
    # session is compared: the medians, which one burst does not move. Three pairs, then one
    # more while the median with --midi is the higher, up to five: a cost that comes in most
    # sessions still fails; two bursts in three (CI's once) are judged beside two more pairs.
    for seed in range(5):
        without = live_session(jack_server, 10.0, controls=False, flood_seconds=3.0,
                               rates=(0, 1000), seed=seed)
        with_midi = live_session(jack_server, 10.0, controls=True, flood_seconds=3.0,
                                 rates=(0, 1000), seed=seed)
        assert with_midi["played"] >= 9.5, with_midi
        runs.append((without["steady_xruns"], with_midi["steady_xruns"]))
        without_median, with_median = (np.median(side) for side in zip(*runs))
        if len(runs) >= 3 and with_median <= without_median:
            break
    print("steady xruns (without, with --midi --osc):", runs)
    assert with_median <= without_median, runs
