"""The performer log: a scripted performance with hand takeovers, played by the real engine, is
logged as dataset examples whose curves are the frames the mixer played; transitions out of
deck B are stored A into B; aborts stay out of training; the folder fine-tunes the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import main
from analysis.synth import render_track
from analysis.track import analyze_stems
from effects.params import PARAM_INDEX, swap_decks
from engine import core as c
from engine.config import EngineConfig
from engine.deck import track_from_analysis
from engine.engine import Engine
from engine.performer_log import PerformerLog
from engine.transition import Scheduled, Take, Transition
from model.checkpoint import DEFAULT_CHECKPOINT
from model.data import EXAMPLES, EXCLUDED, PERFORMED_STYLE, TransitionDataset, read_examples
from model.policy import plan_transition
from model.training import main as train_main

SR = 44100
BARS = 4
XF = PARAM_INDEX["crossfader"]


@pytest.fixture(scope="module")
def decks():
    a = render_track(seed=11, bpm=120.0, tonic=9, mode="minor", bars=12)
    b = render_track(seed=12, bpm=126.0, tonic=0, mode="major", bars=12)
    return (track_from_analysis(analyze_stems(a.stems, SR, "a")),
            track_from_analysis(analyze_stems(b.stems, SR, "b")))


def engine_on(decks, folder: Path, **config) -> Engine:
    """An offline engine (the policy writes the curves) with ``decks`` loaded, deck A playing."""
    engine = Engine(EngineConfig(candidates=1, checkpoint="none", log_dir=str(folder), **config))
    for deck, track in enumerate(decks):
        engine.put_track(deck, track)
    engine.play(engine.outgoing)
    return engine


def play(engine: Engine, until, cues=()) -> list[tuple[float, np.ndarray]]:
    """Control blocks until ``until(status)``; each cue (when(status), action) runs once, before
    the first block after one whose status met it. Returns, from the block where a transition
    starts to the one where it ends, the transition's progress and the frame the mixer played."""
    cues = list(cues)
    out = np.zeros((2, c.CONTROL_BLOCK), np.float32)
    played, inside = [], False
    for _ in range(SR * 60 // c.CONTROL_BLOCK):
        status = engine.core.status
        if until(status):
            return played
        for cue in [cue for cue in cues if cue[0](status)]:
            cues.remove(cue)
            cue[1]()
        events = status.events
        engine.core.process(out)
        new = [what for what, _ in list(engine.core.events)[-(engine.core.status.events - events):]
               ] if engine.core.status.events != events else []
        inside = inside or "transition_started" in new
        if inside:
            played.append((engine.core.status.progress, engine.core.frame))
        inside = inside and not any(w in new for w in ("transition_finished",
                                                       "transition_aborted"))
    raise AssertionError(f"never got there: {engine.core.status}")


def heard_at_curve_frames(played: list[tuple[float, np.ndarray]], beats: float,
                          frames: int = 128) -> np.ndarray:
    """The frame played in the first block whose progress reached each curve frame's beat."""
    out = np.full((frames, 52), np.nan, np.float32)
    for i in range(frames):
        reached = [frame for progress, frame in played if progress >= i * beats / frames]
        if reached:
            out[i] = reached[0]
    return out


def progress_over(beats: float):
    return lambda s: s.phase == "running" and s.progress > beats


@pytest.fixture(scope="module")
def performance(decks, tmp_path_factory):
    """A set: A into B with the hands on three parameters (one held from before the trigger,
    one picked up by crossing the curve, one picked up where the curve is) and a hold; then B
    back into A with a hand on deck B's EQ from before the trigger. The log's folder and the
    frames heard at each curve frame, per transition."""
    folder = tmp_path_factory.mktemp("log")
    engine = engine_on(decks, folder, bars=BARS)
    engine.set_param("a_drums_high_eq", 0.3)  # the hand on the outgoing deck, before the trigger
    play(engine, lambda s: s.beats[0] > 2.0)
    assert "A->B" in engine.trigger()
    hands = [(progress_over(2.0), lambda: engine.set_param(XF, 0.95)),  # far: not picked up
             (progress_over(3.0), lambda: engine.set_param(XF, 0.0)),  # crosses the curve
             (progress_over(5.0), lambda: engine.set_param(XF, 0.4)),
             (progress_over(6.0),  # where the curve is
              lambda: engine.set_param("reverb_wet", engine.param_value("reverb_wet"))),
             (progress_over(7.0), lambda: engine.set_param("reverb_wet", 0.3)),
             (progress_over(8.0), lambda: engine.hold(True)),
             (progress_over(8.0), lambda: engine.set_param(XF, 0.55)),  # moved while held
             (lambda s: s.held and s.clock > SR * 8, lambda: engine.hold(False)),
             (progress_over(12.0), lambda: engine.set_param(XF, 0.8))]
    a_to_b = play(engine, lambda s: s.on_air == 1 and s.phase == "idle", hands)
    said = engine.poll()
    assert any("transition saved" in m for m in said), said
    engine.set_param("b_drums_low_eq", 0.7)
    play(engine, lambda s: s.beats[1] > 2.0)
    assert "B->A" in engine.trigger()
    b_to_a = play(engine, lambda s: s.on_air == 0 and s.phase == "idle")
    engine.poll()
    beats = 4.0 * BARS
    return folder, heard_at_curve_frames(a_to_b, beats), heard_at_curve_frames(b_to_a, beats)


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def test_a_performance_with_hand_takeovers_is_logged_as_the_mixer_played_it(performance):
    folder, heard, _ = performance
    examples = read_examples(folder)
    assert examples["curves"].shape == (2, 128, 52)
    # Frame for frame what the mixer played (the format stores float16).
    assert not np.isnan(heard).any()
    np.testing.assert_array_equal(examples["curves"][0], heard.astype(np.float16))
    # ...which is the hand's, not the curve's, where the hand had the crossfader.
    assert np.any(examples["curves"][0][:, XF] == np.float16(0.4))
    assert np.any(examples["curves"][0][:, XF] == np.float16(0.8))
    assert np.all(examples["curves"][0][:, PARAM_INDEX["a_drums_high_eq"]] == np.float16(0.3))
    entry = manifest(folder)["performed"][0]
    assert sorted(entry["taken_over"]) == ["a_drums_high_eq", "crossfader", "reverb_wet"]
    assert entry["decks"] == "A->B" and entry["source"] == "policy" and not entry["aborted"]
    assert entry["file"] == EXAMPLES and entry["row"] == 0 and entry["frames_reached"] == 128
    assert entry["tempos_bpm"][0] == pytest.approx(120.0, abs=0.5)
    assert examples["style"][0] == PERFORMED_STYLE and examples["bars"][0] == BARS
    # Deck A's span starts where the transition started, on the features' grid.
    tracks = manifest(folder)["tracks"]
    a = tracks[examples["a_track"][0]]
    assert a["name"] == "a" and a["split"] == "train"
    assert examples["a_frame"][0] == a["bar0"] + round(entry["start_beat"] * 4)
    assert examples["b_frame"][0] == tracks[examples["b_track"][0]]["bar0"]


def test_a_transition_out_of_deck_b_is_stored_deck_a_into_deck_b(performance):
    folder, _, heard = performance
    examples = read_examples(folder)
    np.testing.assert_array_equal(examples["curves"][1], swap_decks(heard).astype(np.float16))
    entry = manifest(folder)["performed"][1]
    assert entry["decks"] == "B->A"
    # The hand was on the engine's deck B, the outgoing deck: deck A of the example.
    assert entry["taken_over"] == ["a_drums_low_eq"]
    assert np.all(examples["curves"][1][:, PARAM_INDEX["a_drums_low_eq"]] == np.float16(0.7))
    tracks = manifest(folder)["tracks"]
    assert len(tracks) == 2  # each track written once
    assert tracks[examples["a_track"][1]]["name"] == "b"
    assert tracks[examples["b_track"][1]]["name"] == "a"
    # Deck A of the example ends neutral and B alone: the crossfader runs from A to B.
    assert examples["curves"][1][0, XF] < 0.5 < examples["curves"][1][-1, XF]


def test_an_aborted_transition_is_logged_as_aborted_and_kept_out_of_training(decks, tmp_path):
    engine = engine_on(decks, tmp_path, bars=BARS)
    play(engine, lambda s: s.beats[0] > 2.0)
    engine.trigger()
    played = play(engine, lambda s: s.phase == "idle" and s.events >= 2,
                  [(progress_over(5.0), engine.abort)])
    assert "aborted transition saved" in " ".join(engine.poll())
    entry = manifest(tmp_path)["performed"][0]
    furthest = max(progress for progress, _ in played)
    assert entry["aborted"] and entry["file"] == EXCLUDED and entry["excluded"] == "aborted"
    assert entry["progress_beats"] == pytest.approx(furthest, abs=1e-3)
    assert not (tmp_path / EXAMPLES).exists()
    curves = read_examples(tmp_path, EXCLUDED)["curves"][0]
    reached = int(furthest * 128 / (4 * BARS)) + 1
    assert entry["frames_reached"] == reached
    assert not np.isnan(curves[:reached]).any() and np.isnan(curves[reached:]).all()
    np.testing.assert_array_equal(
        curves[:reached], heard_at_curve_frames(played, 4 * BARS)[:reached].astype(np.float16))
    # A transition played to its end afterwards is the only training example.
    engine.trigger()
    play(engine, lambda s: s.on_air == 1 and s.phase == "idle")
    engine.poll()
    assert len(TransitionDataset(tmp_path)) == 1 and manifest(tmp_path)["n_examples"] == 1


def test_no_log_writes_nothing_and_the_default_folder_is_the_users(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    paths = []
    for seed in (21, 22):
        paths.append(tmp_path / f"{seed}.wav")
        sf.write(paths[-1], render_track(seed=seed, bpm=124.0, bars=8).mix.T, SR)
    render = ["--deck-a", str(paths[0]), "--deck-b", str(paths[1]), "--bars", "4",
              "--checkpoint", "none", "--render", str(tmp_path / "mix.wav")]
    assert main.main([*render, "--no-log"]) == 0
    assert not (tmp_path / "data").exists()
    assert main.main(render) == 0
    folder = tmp_path / "data" / "automix-live" / "transitions"
    assert len(TransitionDataset(folder)) == 1


def test_the_log_fine_tunes_the_shipped_model(performance, tmp_path):
    folder = performance[0]
    run = tmp_path / "run"
    assert train_main(["--init", str(DEFAULT_CHECKPOINT), "--data", str(folder), "--output",
                       str(run), "--steps", "2", "--batch-size", "2", "--checkpoint-every", "2",
                       "--device", "cpu"]) == 0
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {"init": str(DEFAULT_CHECKPOINT), "new_parameters": []} in records
    assert records[-1]["step"] == 2 and np.isfinite(records[-1]["best_train_loss"])
    assert (run / "best.safetensors").is_file()


def test_a_write_that_fails_says_so_once_and_the_music_plays_on(decks, tmp_path):
    junk = b"not a zip archive"
    (tmp_path / EXAMPLES).write_bytes(junk)  # an examples file that cannot be read
    engine = engine_on(decks, tmp_path, bars=2)
    play(engine, lambda s: s.beats[0] > 2.0)
    engine.trigger()
    play(engine, lambda s: s.on_air == 1 and s.phase == "idle")
    said = [m for m in engine.poll() if m.startswith("performer log")]
    assert len(said) == 1 and f"not saved in {tmp_path}" in said[0], said
    assert (tmp_path / EXAMPLES).read_bytes() == junk  # what was there is left alone
    clock = engine.core.status.clock
    play(engine, lambda s: s.clock > clock + SR)
    status = engine.core.status
    assert status.playing == (False, True) and status.errors == 0
    assert not [m for m in engine.poll() if m.startswith("performer log")]


def test_the_writer_thread_writes_what_the_offline_writer_writes(decks, tmp_path):
    a, b = decks
    core = c.EngineCore(SR)
    curves = plan_transition(9, 0, np.random.default_rng(1), style="filter", bars=2).curves
    take = Take.blank(128, (a, b))
    for cmd in (c.Load(0, a), c.Load(1, b), c.Transport(0, playing=True),
                c.Schedule(Scheduled(Transition(curves, 2, "policy"), 0, 4.0, 0.0, take))):
        core.send(cmd)
    out = np.zeros((2, 1024), np.float32)
    while not core.ended:
        core.process(out)
    ended = core.ended.popleft()
    inline, threaded = PerformerLog(tmp_path / "inline", synchronous=True), \
        PerformerLog(tmp_path / "thread")
    inline.submit(ended)
    threaded.submit(ended)
    threaded.close()  # waits for the write
    assert threaded.drain() == [f"performer log: transition saved in {tmp_path / 'thread'} "
                                "(example 0)"]
    for name, value in read_examples(tmp_path / "inline").items():
        np.testing.assert_array_equal(value, read_examples(tmp_path / "thread")[name])
