"""Beat-grid editing: each command on the engine, no click when the grid moves under a playing
deck, fixes kept per track and back on the next load, tap tempo, bad values refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from analysis import grid_edits
from analysis.synth import render_track
from engine import core as c
from engine.backends import Cue, render_offline
from engine.config import EngineConfig
from engine.engine import GRID_STEP, Engine
from engine.session import press
from engine.taps import TapTempo
from tests.conftest import SR, settle


def engine_with(tracks) -> Engine:
    engine = Engine(EngineConfig(checkpoint="none", candidates=1))
    for deck, track in enumerate(tracks):
        engine.put_track(deck, track)
    engine.messages.drain()
    return engine


def play_until(engine: Engine, seconds: float) -> None:
    engine.play("a")
    out = np.zeros((2, c.CONTROL_BLOCK), np.float32)
    for _ in range(int(seconds * SR) // c.CONTROL_BLOCK):
        engine.core.process(out)


def test_shift_downbeat_half_and_double(two_tracks):
    engine = engine_with(two_tracks)
    play_until(engine, 1.0)
    grid = engine.tracks[0].grid
    position = engine.core.status.positions[0]
    beat = engine.core.status.beats[0]
    engine.grid_shift("a", 0.25)
    settle(engine)
    moved = engine.tracks[0].grid
    assert moved.bpm == grid.bpm
    assert moved.first_downbeat == pytest.approx(grid.first_downbeat + 0.25 * grid.beat_period)
    # The core plays on from where it was; only its beat count moved.
    step = c.CONTROL_BLOCK / SR / grid.beat_period
    assert engine.core.status.positions[0] == position + c.CONTROL_BLOCK
    assert engine.core.status.beats[0] == pytest.approx(beat + step - 0.25)

    engine.grid_downbeat("a")
    settle(engine)
    at = engine.core.status.positions[0] - c.CONTROL_BLOCK  # where the playhead was
    assert engine.tracks[0].beat_at(at, SR) % 4 == pytest.approx(0.0, abs=1e-9)
    assert engine.tracks[0].grid.bpm == grid.bpm

    anchor = engine.tracks[0].grid.first_downbeat
    engine.grid_half("a")
    assert engine.tracks[0].grid.bpm == pytest.approx(grid.bpm / 2)
    engine.grid_double("a")
    engine.grid_double("a")
    assert engine.tracks[0].grid.bpm == pytest.approx(grid.bpm * 2)
    assert engine.tracks[0].grid.first_downbeat == anchor
    settle(engine)
    assert engine.core.status.beats[0] == pytest.approx(
        engine.tracks[0].beat_at(engine.core.status.positions[0], SR))
    said = engine.messages.drain()
    assert any("grid half tempo" in m for m in said) and any("downbeat here" in m for m in said)
    # The model's conditioning was made again on the new grid.
    assert engine.tracks[0].analysis.features.bpm[0] == pytest.approx(grid.bpm * 2)


def test_tap_tempo_sets_the_bpm_from_the_taps_and_puts_a_beat_on_the_last(two_tracks):
    engine = engine_with(two_tracks)
    play_until(engine, 2.0)
    before = engine.tracks[0].grid
    interval = 0.4839  # 124.0 BPM
    jitter = [0.0, 0.001, -0.0015, 0.0005, -0.001, 0.0]  # a hand on a MIDI pad
    for k, e in enumerate(jitter):
        engine.grid_tap("a", now=100.0 + k * interval + e)
    grid = engine.tracks[0].grid
    assert grid.bpm == pytest.approx(60 / interval, rel=0.005)
    at = engine.core.status.positions[0] / SR
    beat = grid.beat_position(at)
    assert beat == pytest.approx(round(beat), abs=1e-9)  # the last tap is a beat
    assert round(beat) % 4 == round(before.beat_position(at)) % 4  # the same beat of the bar
    # Fewer than four taps after a pause of more than 2 s do nothing.
    for k in range(3):
        engine.grid_tap("a", now=110.0 + k * 0.25)
    assert engine.tracks[0].grid == grid
    taps = TapTempo()
    assert [taps.tap(t) for t in (0.0, 0.5, 1.0)] == [None, None, None]
    assert taps.tap(1.5) == pytest.approx(120.0)
    assert taps.tap(4.0) is None  # a pause: a new series


def test_bad_values_are_refused_with_a_message_and_the_music_plays_on(two_tracks):
    engine = engine_with(two_tracks)
    play_until(engine, 0.5)
    grid = engine.tracks[0].grid
    for beats in (float("nan"), float("inf"), 5.0):
        with pytest.raises(ValueError, match="grid shift"):
            engine.grid_shift("a", beats)
    with pytest.raises(ValueError, match="grid action"):
        engine.grid("a", "sideways")
    for _ in range(2):  # 124 -> 62 -> 31: below 40 BPM
        engine.grid_half("a")
    said = engine.messages.drain()
    assert "outside 40-300 BPM" in said[-1] and "refused" in said[-1]
    assert engine.tracks[0].grid.bpm == pytest.approx(grid.bpm / 2)
    for k in range(4):  # taps 20 ms apart: 3000 BPM
        engine.grid_tap("a", now=k * 0.02)
    assert "refused" in engine.messages.drain()[-1]
    empty = Engine(EngineConfig(checkpoint="none"))
    empty.grid_half("b")
    assert empty.messages.drain() == ["deck B: grid half tempo: no track on the deck"]
    # During a transition the decks are beat-locked: refused.
    engine.set_quantize("off")
    engine.trigger()
    settle(engine)
    engine.messages.drain()
    engine.grid_shift("b", 0.1)
    assert "a transition is running" in engine.messages.drain()[0]
    out = np.zeros((2, 1024), np.float32)
    engine.core.process(out)
    assert engine.core.status.errors == 0 and np.abs(out).max() > 0


def test_a_grid_fix_under_a_playing_deck_makes_no_click(two_tracks):
    """The same render with and without a shift mid-way: the same samples (the audio position
    never jumps), and the reported beat moved by the shift."""
    a, b = two_tracks

    def render(shift: float) -> tuple[np.ndarray, list[float]]:
        engine = engine_with([a, b])
        beats = []
        script = [Cue(0, lambda: engine.play("a")),
                  Cue(SR, lambda: beats.append(engine.core.status.beats[0])),
                  Cue(SR + 1, lambda: engine.grid_shift("a", shift) if shift else None),
                  Cue(2 * SR, lambda: beats.append(engine.core.status.beats[0]))]
        return render_offline(engine.core, 3 * SR, 256, script=script), beats

    plain, plain_beats = render(0.0)
    shifted, shifted_beats = render(-GRID_STEP * 8)
    assert np.array_equal(plain, shifted)
    steps = np.abs(np.diff(shifted, axis=1))
    edit = SR + c.CONTROL_BLOCK
    around = steps[:, edit - 2 * c.CONTROL_BLOCK:edit + 2 * c.CONTROL_BLOCK].max()
    assert around <= steps.max() and np.abs(shifted).max() > 0.01
    assert plain_beats[0] == shifted_beats[0]
    assert shifted_beats[1] - plain_beats[1] == pytest.approx(GRID_STEP * 8)


def test_a_fix_is_kept_per_track_and_back_on_the_next_load(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    track = render_track(seed=61, bars=8)
    path = tmp_path / "one.wav"
    sf.write(path, track.stems.sum(axis=0).T, SR, subtype="FLOAT")
    engine = Engine(EngineConfig(checkpoint="none", candidates=1))
    engine.load("a", path)
    assert "grid: edited" not in engine.messages.drain()[0]
    analysed = engine.tracks[0].grid
    engine.grid_shift("a", 0.125)
    engine.grid_double("a")
    edited = engine.tracks[0].grid
    saved = json.loads((tmp_path / "cache" / "automix-live" / "analysis" /
                        grid_edits.FILE_NAME).read_text())
    assert list(saved.values()) == [{"bpm": edited.bpm, "first_downbeat": edited.first_downbeat}]
    # A copy of the file under another name is the same track.
    copy = tmp_path / "copy.wav"
    copy.write_bytes(path.read_bytes())
    again = Engine(EngineConfig(checkpoint="none", candidates=1))
    again.load("b", copy)
    said = again.messages.drain()
    assert said[0].endswith("grid: edited"), said
    assert again.tracks[1].grid == edited != analysed
    assert again.tracks[1].analysis.features.bpm[0] == pytest.approx(edited.bpm)
    # An unreadable file of fixes is no fix (the analysed grid), and is written anew.
    (tmp_path / "cache" / "automix-live" / "analysis" / grid_edits.FILE_NAME).write_text("{")
    third = Engine(EngineConfig(checkpoint="none", candidates=1))
    third.load("a", path)
    assert third.tracks[0].grid == analysed
    third.grid_half("a")
    assert grid_edits.load_grid(next(iter(saved)), analysed).bpm == pytest.approx(
        analysed.bpm / 2)


def test_terminal_keys_act_on_the_deck_on_air_or_the_one_named(two_tracks):
    engine = engine_with(two_tracks)
    a, b = (t.grid for t in engine.tracks)
    assert press(engine, "]") is None
    assert engine.tracks[0].grid.first_downbeat == pytest.approx(
        a.first_downbeat + GRID_STEP * a.beat_period)
    press(engine, "b/")
    assert engine.tracks[1].grid.bpm == pytest.approx(b.bpm / 2)
    press(engine, "b*")
    assert engine.tracks[1].grid.bpm == pytest.approx(b.bpm)
    assert engine.core.status.phase == "idle"  # a grid key never triggers
