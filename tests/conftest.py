"""Shared helpers: mixers are built once per session (the streaming design compiles once)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from effects import DifferentiableMixer, MixerConfig, StreamingMixer

SR = MixerConfig().sample_rate


@pytest.fixture(scope="session", autouse=True)
def data_home(tmp_path_factory) -> None:
    """The engine logs every transition it plays under $XDG_DATA_HOME (engine.performer_log):
    the suite's go to a folder of its own, never the user's (subprocesses inherit it)."""
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("data-home"))


@pytest.fixture(scope="session")
def streaming() -> StreamingMixer:
    return StreamingMixer()


@pytest.fixture(scope="session")
def differentiable() -> DifferentiableMixer:
    return DifferentiableMixer()


def render_streaming(mixer: StreamingMixer, stems_a: np.ndarray, stems_b: np.ndarray,
                     frames: np.ndarray, block: int = 256, trim=None) -> np.ndarray:
    """Stream [4, 2, N] stems through the mixer; ``frames`` is one frame [52] or one per block;
    ``trim`` the decks' gains [2]."""
    mixer.reset()
    n = stems_a.shape[-1]
    out = np.zeros((2, n), dtype=np.float32)
    for k, start in enumerate(range(0, n, block)):
        stop = min(start + block, n)
        frame = frames if frames.ndim == 1 else frames[k]
        out[:, start:stop] = mixer.process(stems_a[..., start:stop], stems_b[..., start:stop],
                                           frame, trim=trim)
    return out


def render_differentiable(mixer: DifferentiableMixer, stems_a: np.ndarray, stems_b: np.ndarray,
                          frame: np.ndarray, trim=None) -> np.ndarray:
    """One static frame through the differentiable mixer, numpy in and out; ``trim`` the decks'
    gains [2]."""
    with torch.no_grad():
        out = mixer(torch.from_numpy(stems_a)[None], torch.from_numpy(stems_b)[None],
                    torch.from_numpy(np.asarray(frame, dtype=np.float32))[None, None],
                    trim=None if trim is None else torch.tensor(trim))
    return out[0].numpy()


def noise_stems(seed: int, seconds: float = 1.0, level: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((4, 2, int(seconds * SR))) * level).astype(np.float32)


def tone_stems(freq: float, seconds: float = 1.0, stem: int = 0) -> np.ndarray:
    """A sine on both channels of one stem, silence elsewhere."""
    t = np.arange(int(seconds * SR)) / SR
    stems = np.zeros((4, 2, t.size), dtype=np.float32)
    stems[stem] = 0.5 * np.sin(2 * np.pi * freq * t)
    return stems


def rel_db(x: np.ndarray, ref: np.ndarray) -> float:
    """Error of x against ref, in dB relative to ref's energy."""
    return float(10 * np.log10(np.sum((x - ref) ** 2) / np.sum(ref**2) + 1e-30))


@pytest.fixture(scope="module")
def two_tracks():
    """Two short generated tracks, analysed, as engine decks."""
    from analysis.synth import render_track
    from analysis.track import analyze_stems
    from engine.deck import track_from_analysis

    return [track_from_analysis(analyze_stems(render_track(seed=s, bars=8).stems, SR, str(s)))
            for s in (51, 52)]


def stem_decks(folder, bars: int = 12) -> list:
    """Two generated tracks at 128 BPM as stem folders (the analysis is then quick): A minor
    (8A) and C minor (5A)."""
    import soundfile as sf

    from analysis.synth import render_track

    decks = []
    for name, seed, tonic in (("a", 31, 9), ("b", 32, 0)):
        deck = folder / name
        deck.mkdir()
        track = render_track(seed=seed, bpm=128.0, tonic=tonic, mode="minor", bars=bars)
        for stem, audio in zip(("drums", "bass", "vocals", "other"), track.stems):
            sf.write(deck / f"{stem}.wav", audio.T, 44100)
        decks.append(deck)
    return decks


def loaded_engine(tracks):
    """An engine (synchronous worker) with ``tracks`` on decks A and B."""
    from engine.config import EngineConfig
    from engine.engine import Engine

    engine = Engine(EngineConfig(candidates=1, steps=2))
    for deck, track in enumerate(tracks):
        engine.put_track(deck, track)
    return engine


def settle(engine) -> None:
    """Let the core apply the commands sent so far (one control block)."""
    engine.core.process(np.zeros((2, 128), np.float32))


@pytest.fixture(scope="session")
def jack_server():
    """PortAudio's output device on a JACK server with the dummy driver (engine.jackserver)."""
    from engine.jackserver import dummy_jack

    server = dummy_jack()
    try:
        device = server.__enter__()
    except RuntimeError as err:
        pytest.fail(str(err))
    yield device
    server.__exit__(None, None, None)
