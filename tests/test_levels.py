"""Levels: loudness and the gain trim it gives, and the output's true-peak limiter."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.signal import resample_poly

from analysis.loudness import integrated_loudness
from analysis.synth import render_track
from effects.levels import LevelsConfig, trim_for
from engine.limiter import Limiter

SR = 44100
CEILING = 10 ** (-1 / 20)  # -1 dBTP, the default


def true_peak(audio: np.ndarray) -> float:
    """Largest absolute value of the signal oversampled 4x (scipy's polyphase resampler, a
    filter of its own, not the limiter's)."""
    return max(float(np.abs(resample_poly(ch.astype(np.float64), 4, 1)).max()) for ch in audio)


def sine(freq: float, amplitude: float, seconds: float = 2.0, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    tone = amplitude * np.sin(2 * np.pi * freq * t + phase)
    return np.stack([tone, tone])


def faded(audio: np.ndarray, seconds: float = 0.05) -> np.ndarray:
    """Audio faded in and out, between short silences: no edge reads as a peak."""
    n = audio.shape[-1]
    ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / (seconds * SR))
    return np.pad(audio * ramp, ((0, 0), (500, 1000))).astype(np.float32)


def limited(audio: np.ndarray, block: int = 256) -> np.ndarray:
    limiter = Limiter(SR)
    out = np.empty_like(audio)
    for start in range(0, audio.shape[1], block):
        limiter.process(audio[:, start:start + block], out[:, start:start + block])
    return out


def test_a_sine_measures_its_level_and_gets_the_trim_to_the_target():
    # A 1 kHz sine at -20 dBFS on both channels reads -20 LUFS (K-weighting is ~0 dB at 1 kHz,
    # and two channels at -3 dB each make the 0 dB of BS.1770's reference).
    loudness = integrated_loudness(sine(1000.0, 0.1, seconds=5.0), SR)
    assert loudness == pytest.approx(-20.0, abs=0.5)
    assert 20 * np.log10(trim_for(loudness, LevelsConfig())) == pytest.approx(-14.0 - loudness)
    assert trim_for(-20.0, LevelsConfig()) == pytest.approx(10 ** (6 / 20))
    assert trim_for(-8.0, LevelsConfig(target_lufs=-16.0)) == pytest.approx(10 ** (-8 / 20))


def test_silence_short_audio_and_quiet_tracks_get_a_safe_trim():
    assert integrated_loudness(np.zeros((2, SR * 2)), SR) == float("-inf")
    assert integrated_loudness(sine(1000.0, 0.5, seconds=0.2), SR) == float("-inf")
    config = LevelsConfig()
    assert trim_for(float("-inf"), config) == 1.0 and trim_for(float("nan"), config) == 1.0
    # A very quiet track is raised by the cap only.
    assert 20 * np.log10(trim_for(-60.0, config)) == pytest.approx(config.max_boost_db)
    assert trim_for(-30.0, LevelsConfig(auto_gain=False)) == 1.0


@pytest.mark.parametrize("name", ["clipped sine +6 dB", "band-limited square +7 dB",
                                  "generated track +12 dB", "fs/4 at 45 degrees",
                                  "11 kHz at 45 degrees", "19 kHz"])
def test_the_limiter_keeps_samples_and_true_peaks_under_the_ceiling(name):
    t = np.arange(2 * SR) / SR
    if name.startswith("clipped"):
        audio = np.clip(8 * sine(100.0, 1.0), -2.0, 2.0)
    elif name.startswith("band-limited"):
        square = sum(np.sin(2 * np.pi * 100 * k * t) / k for k in range(1, 220, 2))
        audio = np.stack([square, square]) * 8 / np.pi
    elif name.startswith("generated"):
        audio = 4 * render_track(seed=3, bars=4).stems.sum(axis=0)[:, :2 * SR]
    elif name.startswith("fs/4"):
        # Samples at 0.707 of a peak that lies between them: +3 dB of inter-sample peak.
        audio = sine(SR / 4, 1.4, phase=np.pi / 4)
    elif name.startswith("11"):
        audio = sine(11025.0, 2.0, phase=np.pi / 4)
    else:
        audio = sine(19000.0, 2.0)
    audio = faded(audio)
    assert true_peak(audio) > 1.0  # hot: over full scale between or on the samples
    out = limited(audio)
    assert np.abs(out).max() < CEILING
    assert true_peak(out) < CEILING
    assert true_peak(out) > CEILING * 10 ** (-0.5 / 20)  # it limits, it does not duck


def test_the_limiter_is_transparent_under_the_ceiling_apart_from_its_delay():
    rng = np.random.default_rng(0)
    quiet = faded(np.clip(rng.standard_normal((2, 2 * SR)) * 0.1, -0.4, 0.4))
    delay = Limiter(SR).latency
    assert delay == 89  # 2.0 ms at 44.1 kHz
    out = limited(quiet)
    assert np.array_equal(out[:, delay:], quiet[:, :-delay])
    assert not out[:, :delay].any()
    # After a loud passage the gain comes back to exactly 1.
    hot = np.concatenate([faded(sine(100.0, 2.0, seconds=0.5)), quiet], axis=1)
    out = limited(hot)
    tail = slice(-SR // 2, None)
    assert np.array_equal(out[:, tail], hot[:, -SR // 2 - delay:-delay])


def test_the_limiter_does_not_depend_on_the_block_size_and_survives_silence_and_nan():
    rng = np.random.default_rng(1)
    bursts = rng.standard_normal((2, SR)) * np.repeat(rng.uniform(0.05, 1.5, 20), SR // 20)
    audio = bursts.astype(np.float32)
    reference = limited(audio, 256)
    for block in (64, 1000, 1):
        assert np.array_equal(limited(audio, block), reference)
    silent = limited(np.zeros((2, SR), np.float32))
    assert np.all(silent == 0.0)
    audio[:, 1000] = (np.nan, np.inf)
    out = limited(audio)
    assert np.all(np.isfinite(out)) and np.abs(out).max() < CEILING


# --- in the engine -------------------------------------------------------------------------


def blend_script(core, a, b) -> list:
    """Deck A plays; a two-bar blend into deck B starts on A's beat 8."""
    from engine import core as c
    from engine.backends import Cue
    from engine.transition import Scheduled, Transition
    from model.policy import plan_transition

    plan = plan_transition(9, 0, np.random.default_rng(1), style="blend", bars=2)
    blend = Transition(plan.curves, 2, "policy")
    return [Cue(0, lambda: [core.send(cmd) for cmd in (c.Load(0, a), c.Load(1, b),
                                                        c.Transport(0, playing=True))]),
            Cue(SR // 2, lambda: core.send(c.Schedule(Scheduled(blend, 0, 8.0, 0.0))))]


def test_a_tracks_trim_reaches_the_engines_output(two_tracks):
    from engine import core as c
    from engine.backends import render_offline

    a, b = two_tracks
    halved = dataclasses.replace(a, trim=0.5)
    outs = []
    for track in (a, halved):
        core = c.EngineCore(SR)
        outs.append(render_offline(core, SR * 2, 256, script=blend_script(core, track, b)))
    # Deck A alone, under the ceiling: the trim is all that differs.
    np.testing.assert_allclose(outs[1], 0.5 * outs[0], atol=1e-6)


def test_an_offline_render_of_two_loud_tracks_stays_under_the_ceiling(two_tracks):
    from engine.backends import render_offline
    from engine.config import EngineConfig
    from engine.engine import Engine

    engine = Engine(EngineConfig(candidates=1, steps=2, checkpoint="none"))
    for deck, track in enumerate(two_tracks):
        # 12 dB hotter than generated: peaks at +6 dBFS, as a loud master's decoded peaks go.
        stems = track.stems * 4.0
        loud = dataclasses.replace(track.analysis, stems=stems,
                                   loudness_lufs=integrated_loudness(stems.sum(axis=0), SR))
        engine.put_track(deck, engine.make_track(loud))
        trim_db = 20 * np.log10(engine.tracks[deck].trim)
        assert trim_db == pytest.approx(-14.0 - loud.loudness_lufs)
    a, b = engine.tracks
    core = engine.core
    mix = render_offline(core, SR * 12, 256, script=blend_script(core, a, b))
    assert dict(core.events).keys() >= {"transition_started", "transition_finished"}
    assert np.abs(mix).max() < CEILING < 1.0
    assert true_peak(mix) < CEILING
    # At -14 LUFS a trimmed deck alone peaks over full scale: the limiter held it.
    assert true_peak(a.stems.sum(axis=0) * a.trim) > 1.0
