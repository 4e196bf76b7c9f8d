"""Shared helpers: mixers are built once per session (the streaming design compiles once)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from effects import DifferentiableMixer, MixerConfig, StreamingMixer

SR = MixerConfig().sample_rate


@pytest.fixture(scope="session")
def streaming() -> StreamingMixer:
    return StreamingMixer()


@pytest.fixture(scope="session")
def differentiable() -> DifferentiableMixer:
    return DifferentiableMixer()


def render_streaming(mixer: StreamingMixer, stems_a: np.ndarray, stems_b: np.ndarray,
                     frames: np.ndarray, block: int = 256) -> np.ndarray:
    """Stream [4, 2, N] stems through the mixer; ``frames`` is one frame [52] or one per block."""
    mixer.reset()
    n = stems_a.shape[-1]
    out = np.zeros((2, n), dtype=np.float32)
    for k, start in enumerate(range(0, n, block)):
        stop = min(start + block, n)
        frame = frames if frames.ndim == 1 else frames[k]
        out[:, start:stop] = mixer.process(stems_a[..., start:stop], stems_b[..., start:stop],
                                           frame)
    return out


def render_differentiable(mixer: DifferentiableMixer, stems_a: np.ndarray, stems_b: np.ndarray,
                          frame: np.ndarray) -> np.ndarray:
    """One static frame through the differentiable mixer, numpy in and out."""
    with torch.no_grad():
        out = mixer(torch.from_numpy(stems_a)[None], torch.from_numpy(stems_b)[None],
                    torch.from_numpy(np.asarray(frame, dtype=np.float32))[None, None])
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


@pytest.fixture(scope="session")
def jack_server():
    """A JACK server with its dummy driver: real-time pacing with no sound card. PortAudio is
    re-initialised so that its JACK host API (present only while a server runs) appears."""
    import os
    import shutil
    import subprocess
    import time

    import sounddevice as sd

    if shutil.which("jackd") is None:
        pytest.fail("jackd is missing: run ./setup.sh (Debian package jackd2)")
    name = f"automix-test-{os.getpid()}"
    env = {**os.environ, "JACK_NO_AUDIO_RESERVATION": "1"}
    proc = subprocess.Popen(["jackd", "-n", name, "-d", "dummy", "-r", "44100", "-p", "256"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    previous = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    try:
        for _ in range(50):
            time.sleep(0.1)
            sd._terminate()
            sd._initialize()
            jack = [i for i, api in enumerate(sd.query_hostapis()) if "JACK" in api["name"]]
            if jack and sd.query_hostapis(jack[0])["devices"]:
                break
        else:
            proc.kill()
            pytest.fail(f"jackd did not come up: {proc.stderr.read().decode()[-500:]}")
        yield sd.query_hostapis(jack[0])["default_output_device"]
    finally:
        sd._terminate()  # PortAudio's JACK client must close before the server goes
        proc.terminate()
        proc.wait(timeout=10)
        if previous is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = previous
        sd._initialize()
