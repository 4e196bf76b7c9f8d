"""Key lock: a synced deck plays at the live tempo at its own pitch (time-stretched copies made
off the callback), vinyl-style without it; the copy is swapped in without moving the beat."""

from __future__ import annotations

import dataclasses
import gc
import shutil
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pytest

from analysis.beats import BeatGrid
from engine import core as c
from engine.config import EngineConfig
from engine.deck import Track, read_stems, stretched_track
from engine.engine import Engine
from engine.keylock import cents
from engine.stretch import StretchJob, stretch_stems
from engine.worker import GenerationWorker

from conftest import SR, settle, tone_stems

TONE = 440.0


def peak_frequency(x: np.ndarray) -> float:
    """The strongest frequency of a mono signal, interpolated between FFT bins."""
    w = x * np.hanning(x.size)
    spectrum = np.abs(np.fft.rfft(w, 8 * x.size)) + 1e-12
    k = int(np.argmax(spectrum))
    a, b, g = np.log(spectrum[k - 1:k + 2])
    return (k + 0.5 * (a - g) / (a - 2 * b + g)) * SR / (8 * x.size)


def clicks_on(grid: BeatGrid, n: int) -> np.ndarray:
    """Stems [4, 2, n] with a short click on every beat of ``grid`` in the drums."""
    stems = np.zeros((4, 2, n), dtype=np.float32)
    for t in grid.beat_times():
        k = int(round(t * SR))
        if k + 32 <= n:
            stems[0, :, k:k + 32] = np.hanning(32)
    return stems


def with_tempo(track: Track, bpm: float, stems: np.ndarray, name: str) -> Track:
    """Other stems on a grid at ``bpm`` (the same first downbeat)."""
    g = track.grid
    grid = BeatGrid(bpm, g.first_downbeat, stems.shape[-1] / SR)
    return Track(name, stems, dataclasses.replace(track.analysis, grid=grid, stems=stems))


@pytest.fixture(scope="module")
def silent_a(two_tracks) -> Track:
    a = two_tracks[0]
    return Track("silent", np.zeros_like(a.stems), a.analysis)


def engine_with(a: Track, b: Track, **config) -> Engine:
    """Deck A playing, deck B synced to it and playing alone (the crossfader at B)."""
    engine = Engine(EngineConfig(candidates=1, checkpoint="none", **config))
    engine.put_track(0, a)
    engine.put_track(1, b)
    engine.play(0)
    engine.sync(1)
    engine.play(1)
    engine.set_param("crossfader", 1.0)
    return engine


def render(engine: Engine, seconds: float) -> tuple[np.ndarray, list[tuple]]:
    """The mix and each control block's (beat A, beat B, stretch B)."""
    blocks, trace = [], []
    out = np.zeros((2, c.CONTROL_BLOCK), np.float32)
    for _ in range(int(seconds * SR) // c.CONTROL_BLOCK):
        engine.core.process(out)
        blocks.append(out.copy())
        s = engine.core.status
        trace.append((s.beats[0], s.beats[1], s.stretches[1]))
    return np.concatenate(blocks, axis=1), trace


def test_stretch_keeps_the_pitch_and_puts_onsets_where_the_ratio_says():
    factor = 1.05
    stems = tone_stems(TONE, 4.0, stem=3)
    clicks = (np.arange(1, 8) * 0.5 * SR).astype(int)
    for k in clicks:
        stems[0, :, k:k + 32] = np.hanning(32)
    out = stretch_stems(stems, factor, SR)
    assert out.shape[:2] == (4, 2) and out.shape[2] == pytest.approx(4 * SR / factor, abs=1)
    assert abs(cents(peak_frequency(out[3, 0, SR:]) / TONE)) < 1.0
    for k in clicks:
        expected = (k + 16) / factor
        lo = int(expected) - 1000
        found = lo + int(np.argmax(np.abs(out[0, 0, lo:lo + 2000])))
        assert abs(found - expected) < 0.001 * SR  # within a millisecond
    with pytest.raises(ValueError, match="stretch factor 9"):
        stretch_stems(stems, 9.0, SR)


@pytest.mark.parametrize("key_lock", [True, False])
def test_a_synced_deck_plays_the_live_tempo_at_its_own_pitch_with_key_lock(
        silent_a, key_lock):
    bpm_a = silent_a.analysis.bpm
    b = with_tempo(silent_a, bpm_a * 1.05, tone_stems(TONE, 6.0, stem=3), "tone")  # 5 % faster
    engine = engine_with(silent_a, b, key_lock=key_lock)
    mix, trace = render(engine, 3.0)
    rate = b.beat_seconds / silent_a.beat_seconds  # 1 / 1.05: deck A's tempo
    s = engine.core.status
    assert s.rates[1] == pytest.approx(rate)
    # The tempo: deck B's beats advance at deck A's, locked to its phase.
    beats = np.array(trace)
    assert np.ptp(beats[:, 1] - beats[:, 0]) < 1e-6
    assert beats[-1, 1] - beats[0, 1] == pytest.approx(
        (len(trace) - 1) * c.CONTROL_BLOCK / SR * bpm_a / 60, rel=1e-6)
    pitch = cents(peak_frequency(mix[0, SR:]) / TONE)
    if key_lock:
        assert s.stretches[1] == pytest.approx(rate, rel=1e-4)
        assert abs(pitch) < 3.0
        assert engine.keylock.mode(1) == "key lock"
    else:
        assert s.stretches[1] == 1.0
        assert pitch == pytest.approx(cents(rate), abs=3.0)  # vinyl: -84 cents
        assert engine.keylock.mode(1) == "vinyl -84ct"


def test_swapping_in_the_stretched_copy_keeps_the_beat(silent_a):
    bpm_a = silent_a.analysis.bpm
    grid = with_tempo(silent_a, bpm_a * 0.95, np.zeros((4, 2, 6 * SR), np.float32), "").grid
    b = with_tempo(silent_a, grid.bpm, clicks_on(grid, 6 * SR), "clicks")
    rate = b.beat_seconds / silent_a.beat_seconds
    copy = stretched_track(b, stretch_stems(b.stems, rate, SR))
    engine = engine_with(silent_a, b)  # vinyl-style until the swap
    first, trace = render(engine, 1.5)
    engine.core.send(c.Swap(1, copy))  # the deck is playing: on its next beat
    second, more = render(engine, 2.5)
    mix, trace = np.concatenate([first, second], axis=1), np.array(trace + more)
    swapped = int(np.argmax(trace[:, 2] != 1.0))
    assert swapped > 0 and trace[-1, 2] == pytest.approx(rate, rel=1e-4)
    # On a beat: the beat's integer part moves in the block of the swap.
    assert np.floor(trace[swapped, 1]) != np.floor(trace[swapped - 1, 1])
    # No jump: deck B's beat advances by the same step in every block, across the swap too.
    steps = np.diff(trace[:, 1])
    assert np.ptp(steps) < 1e-9
    # And the audio agrees: every click sounds where deck B's beat says, before and after.
    beat0 = trace[0, 1] - steps[0]  # deck B's beat at the start of the render
    per_sample = steps[0] / c.CONTROL_BLOCK
    heard_after = 0
    for k in range(int(np.ceil(beat0)), int(trace[-1, 1])):
        # The click's centre, heard the limiter's look-ahead later.
        expected = (k - beat0) / per_sample + 16 + engine.core.limiter.latency
        lo = int(expected) - 500
        if lo < 0 or lo + 1000 > mix.shape[1]:
            continue
        found = lo + int(np.argmax(np.abs(mix[0, lo:lo + 1000])))
        assert abs(found - expected) < 0.001 * SR, f"beat {k}"
        heard_after += expected > swapped * c.CONTROL_BLOCK
    assert heard_after >= 3


def test_live_key_lock_stretches_in_a_process_and_follows_the_decks(silent_a):
    bpm_a = silent_a.analysis.bpm
    faster = with_tempo(silent_a, bpm_a * 1.05, tone_stems(TONE, 4.0, stem=3), "faster")
    slower = with_tempo(silent_a, bpm_a * 0.96, tone_stems(TONE, 4.0, stem=3), "slower")
    worker = GenerationWorker("thread", "none")
    worker.start()
    engine = Engine(EngineConfig(candidates=1, checkpoint="none", key_lock=True), worker=worker)
    out = np.zeros((2, c.CONTROL_BLOCK), np.float32)

    def wait_for(predicate) -> None:
        for _ in range(3000):  # a limit, not a timing
            engine.poll()
            engine.core.process(out)
            if predicate(engine.core.status):
                return
            time.sleep(0.01)
        raise AssertionError("the key-lock copy never came")

    try:
        engine.put_track(0, silent_a)
        engine.put_track(1, faster)
        engine.poll()
        assert engine.keylock.mode(1) == "key lock, stretching"  # stopped at its own tempo
        engine.put_track(1, slower)  # a new track: the first stretch is cancelled
        rate = slower.beat_seconds / silent_a.beat_seconds
        wait_for(lambda s: s.stretches[1] != 1.0)
        assert engine.core.status.stretches[1] == pytest.approx(rate, rel=1e-4)
        engine.set_key_lock(False)
        wait_for(lambda s: s.stretches[1] == 1.0)  # back to vinyl
        assert engine.keylock.mode(1) == "vinyl"
    finally:
        engine.close()
        worker.stop()


def keylock_mappings() -> int:
    return Path("/proc/self/maps").read_text().count("automix-keylock-")


def test_a_stretch_job_in_a_process_returns_what_this_thread_would_make():
    stems = tone_stems(TONE, 1.0, stem=3)
    results, finished = [], threading.Event()

    def done(job, result):
        results.append(result)
        finished.set()

    StretchJob(stems, 0.9, SR, done)
    assert finished.wait(60)
    copy = results.pop()
    assert np.array_equal(copy, stretch_stems(stems, 0.9, SR))
    # In memory (/dev/shm), the copy is played where the child wrote it: its pages are mapped,
    # not copied, and its file is gone already; the deck's reader (compiled for writable arrays)
    # takes it, and the pages go with the array.
    if shutil.disk_usage("/dev/shm").free > 3 * stems.nbytes:
        assert copy.flags.writeable
        assert keylock_mappings() == 1 and not list(Path("/dev/shm").glob("automix-keylock-*"))
        out = np.empty((4, 2, 64), np.float32)
        read_stems(copy, 100.0, 1.0, out)
        assert np.array_equal(out[3], copy[3, :, 100:164])
        del copy
        gc.collect()
        assert keylock_mappings() == 0
    # A cancelled job never answers.
    finished.clear()
    job = StretchJob(stems, 1.1, SR, done)
    job.cancel()
    job.join()
    assert not finished.is_set() and not results


def test_a_stretch_job_lets_go_of_the_stems_once_the_child_has_them():
    """A track let go while its copy is made (an eject, a set's transition's end) leaves memory
    with the release thread: the job holds its stems only until they are copied for the child.
    It used to hold them to its end, and its thread freed them, the GIL held."""
    stems = tone_stems(TONE, 1.0, stem=3)
    held, finished = [], threading.Event()
    let_go = weakref.ref(stems)

    def done(job, result):
        gc.collect()
        held.append(let_go() is not None)
        finished.set()

    StretchJob(stems, 0.9, SR, done)
    del stems
    assert finished.wait(60)
    assert held == [False]


def test_main_renders_with_key_lock(tmp_path, capsys, monkeypatch):
    import soundfile as sf

    import main
    from analysis.synth import render_track
    from effects.params import STEMS

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folders = []
    for name, seed, bpm in (("a", 61, 120.0), ("b", 62, 126.0)):
        folder = tmp_path / name
        folder.mkdir()
        for stem, audio in zip(STEMS, render_track(seed=seed, bpm=bpm, bars=12).stems):
            sf.write(folder / f"{stem}.flac", audio.T, SR, subtype="PCM_24")
        folders.append(folder)
    out = tmp_path / "mix.wav"
    assert main.main(["--deck-a", str(folders[0]), "--deck-b", str(folders[1]), "--render",
                      str(out), "--bars", "2", "--checkpoint", "none", "--key-lock"]) == 0
    text = capsys.readouterr().out
    assert "deck B: key lock\n" in text and "transition finished" in text


def test_a_tempo_beyond_the_stretcher_says_so_and_plays_vinyl(silent_a):
    far = with_tempo(silent_a, silent_a.analysis.bpm * 5, tone_stems(TONE, 1.0, stem=3), "far")
    engine = engine_with(silent_a, far, key_lock=True)
    messages = engine.poll()
    assert any("deck B: key lock failed (stretch factor 0.2" in m for m in messages), messages
    settle(engine)
    assert engine.core.status.stretches[1] == 1.0
    assert engine.keylock.mode(1).startswith("vinyl -27")  # -2786 cents: a fifth of the tempo
