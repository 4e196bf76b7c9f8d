"""Stems a deck lets go are freed off the audio callback, and without the GIL where the system
allows (engine/release.py)."""

from __future__ import annotations

import sys
import weakref
from collections import deque
from dataclasses import replace

import numpy as np
import pytest

from analysis.cache import AnalysisCache
from analysis.track import ANALYSIS_VERSION, analyze
from engine import core as c
from engine.deck import stretched_track, track_from_analysis
from engine.release import free_pages, release
from tests.conftest import SR, loaded_engine, settle, stem_decks

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise: Linux only")


def own_copy(track):
    """``track`` with stems of its own, that nothing else holds."""
    return replace(track, stems=track.stems.copy())


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def test_the_callback_hands_over_the_tracks_it_lets_go(two_tracks):
    """A load, a key-lock swap and a refused swap each let a track go; none of them is freed by
    the callback, which would free the stems there with the GIL held."""
    core = c.EngineCore(SR)
    first = own_copy(two_tracks[0])
    stems = weakref.ref(first.stems)
    core.send(c.Load(0, first))
    core.process(np.zeros((2, 128), np.float32))
    del first
    core.send(c.Load(0, own_copy(two_tracks[1])))
    core.process(np.zeros((2, 128), np.float32))
    assert stems() is not None, "the replaced track's stems were freed in the callback"
    assert [t.stems for t in core.released] == [stems()]

    original = core._tracks[0]
    copy = replace(original, stems=original.stems.copy(), stretch=1.0)
    core.send(c.Swap(0, copy))  # the deck is stopped: the copy takes over at once
    core.process(np.zeros((2, 128), np.float32))
    assert core._tracks[0] is copy and core.released[-1] is original

    other = own_copy(two_tracks[0])  # another track's music: the swap is refused
    core.send(c.Swap(0, other))
    core.process(np.zeros((2, 128), np.float32))
    assert core._tracks[0] is copy and core.released[-1] is other


@linux
def test_the_engine_frees_what_nobody_else_holds(two_tracks):
    engine = loaded_engine(two_tracks)
    try:
        engine.put_track(0, own_copy(two_tracks[0]))
        settle(engine)
        engine.poll()  # the track it replaced: the fixture holds its stems, so they stay
        assert engine._releasing.result(timeout=10) == 0
        stems = weakref.ref(engine.core._tracks[0].stems)
        engine.eject("a")
        settle(engine)
        assert stems() is not None and len(engine.core.released) == 1
        engine.poll()
        assert engine._releasing.result(timeout=10) == 1  # freed page by page
        assert stems() is None and not engine.core.released
    finally:
        engine.close()


@pytest.fixture(scope="module")
def read_back(tmp_path_factory):
    """Reads a generated track's analysis back from the analysis cache, as the live engine gets
    every track it plays: the stems are a reshaped view of the decoded array."""
    tmp = tmp_path_factory.mktemp("cached")
    folder = stem_decks(tmp, bars=6)[0]
    cache = AnalysisCache(tmp / "cache", version=ANALYSIS_VERSION)
    analyze(folder, SR, cache=cache)
    return lambda: analyze(folder, SR, cache=cache)


@linux
def test_a_track_read_from_the_analysis_cache_is_freed_too(read_back):
    """Those pages go back too (they were left to free(), with the GIL held, at every
    transition's end of a set), and not while another holder's view of them is still there."""
    engine = loaded_engine([])
    try:
        for kept in (True, False):
            track = engine.make_track(read_back())
            assert track.stems.base is not None
            view = track.stems[2] if kept else None  # what a reader of the vocals would hold
            engine.put_track(0, track)
            stems = weakref.ref(track.stems)
            del track
            settle(engine)
            engine.eject("a")
            settle(engine)
            engine.poll()
            assert engine._releasing.result(timeout=10) == (0 if kept else 1)
            if kept:
                assert view.any()  # still the music
            else:
                assert stems() is None
    finally:
        engine.close()


@linux
def test_a_key_lock_copy_let_go_last_takes_its_original_along(read_back):
    """Once the engine has let an original go, a deck playing its key-lock copy holds it only
    through the analysis they share: the copy's release frees both arrays, and only the copy's
    while anything else still holds the original."""
    for held in (True, False):
        original = track_from_analysis(read_back())
        # A copy of its own stems (a real one is a stretch played from the file it lies in).
        released = deque([stretched_track(original, original.stems[..., ::2].copy())])
        kept = original if held else None
        del original
        assert release(released) == (1 if held else 2)
        if held:
            assert kept.stems.any()


def test_stems_held_elsewhere_are_left_as_they_are(two_tracks):
    """Another copy's, a view's, or the caller's reference: those stems must play on."""
    released = deque([own_copy(two_tracks[0])])
    kept = released[0].stems
    expected = kept.copy()
    assert release(released) == 0
    np.testing.assert_array_equal(kept, expected)

    released = deque([own_copy(two_tracks[0])])
    view = released[0].stems[1]
    expected = view.copy()
    assert release(released) == 0
    np.testing.assert_array_equal(view, expected)

    released = deque([own_copy(two_tracks[0])])
    assert release(released) == 1  # and the same with nothing else holding them

    held = own_copy(two_tracks[0])
    assert release(deque([held])) == 0
    assert np.any(held.stems)


@linux
def test_free_pages_gives_the_memory_back_before_the_array_goes():
    """The pages go while the array is still there: the free that follows has nothing left to
    do with the GIL held."""
    stems = np.ones((4, 2, 8_000_000), np.float32)  # 256 MB, touched
    before = resident_bytes()
    assert free_pages(stems)
    assert before - resident_bytes() > 0.9 * stems.nbytes
    assert not stems[0, 0, 4096::1024].any()  # whole pages read as zeros now
    assert not free_pages(stems[1])  # a view: its memory is not its own
