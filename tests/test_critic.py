"""The transition critic on constructed transitions whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.key import key_index
from analysis.synth import render_track
from effects import DifferentiableMixer, MixerConfig
from effects.params import DECKS, PARAM_INDEX, STEMS, neutral_frame
from evaluation.critic import WEIGHTS, critique, render_and_critique

SR = 22050  # half the usual rate: the critic reads any rate, and the tests run twice as fast
BEAT = 0.5  # 120 BPM
C_MAJOR, A_MINOR = key_index(0, "major"), key_index(9, "minor")
F_SHARP_MAJOR = key_index(6, "major")  # across the wheel from C major
BASS, VOCALS, OTHER = (STEMS.index(name) for name in ("bass", "vocals", "other"))


@pytest.fixture(scope="module")
def mixer() -> DifferentiableMixer:
    return DifferentiableMixer(MixerConfig(sample_rate=SR))


def beats(seconds: float, offset: float = 0.0) -> np.ndarray:
    return np.arange(0.0, seconds, BEAT) + offset


def sine(freq: float, seconds: float, level: float) -> np.ndarray:
    return level * np.sin(2 * np.pi * freq * np.arange(int(seconds * SR)) / SR)


def gate(signal: np.ndarray, first_beat: int, last_beat: int) -> np.ndarray:
    """The signal on beats first..last-1 only (edges on the beat's sample)."""
    out = np.zeros_like(signal)
    a, b = int(first_beat * BEAT * SR), int(last_beat * BEAT * SR)
    out[a:b] = signal[a:b]
    return out


def shares(**parts: np.ndarray) -> np.ndarray:
    """Stems [8, 2, N] from mono parts named like ``a_bass``."""
    n = len(next(iter(parts.values())))
    stems = np.zeros((8, 2, n), dtype=np.float32)
    for name, signal in parts.items():
        deck, stem = name.split("_")
        stems[len(STEMS) * DECKS.index(deck) + STEMS.index(stem)] = signal
    return stems


def judge(stems: np.ndarray, beats_a=None, beats_b=None, key_a=C_MAJOR, key_b=C_MAJOR,
          curves=None):
    seconds = stems.shape[-1] / SR
    curves = neutral_frame(crossfader=1.0)[None] if curves is None else curves
    return critique(stems.sum(axis=0), stems, SR, beats(seconds) if beats_a is None else beats_a,
                    beats(seconds) if beats_b is None else beats_b, key_a, key_b, curves)


def test_per_stem_shares_sum_to_the_mix_reverb_included(mixer):
    rng = np.random.default_rng(0)
    stems_a, stems_b = (torch.from_numpy(rng.standard_normal((1, 4, 2, SR // 4)).astype(np.float32)
                                         * 0.1) for _ in range(2))
    stems_a[:, VOCALS] = 0.0
    curves = torch.from_numpy(rng.uniform(0.0, 1.0, (1, 8, 52)).astype(np.float32))
    curves[..., PARAM_INDEX["reverb_wet"]] = 0.6
    with torch.no_grad():
        mix = mixer(stems_a, stems_b, curves)
        parts = mixer(stems_a, stems_b, curves, per_stem=True)
    assert parts.shape == (1, 8, 2, SR // 4)
    assert float((parts.sum(dim=1) - mix).abs().max()) < 1e-5 * float(mix.abs().max())
    assert float(parts[0, VOCALS].abs().max()) == 0.0  # a silent stem has no share, not even reverb
    assert float(parts[0, 4 + VOCALS].abs().max()) > 0.0


def _crossfade(dip_db: float) -> np.ndarray:
    """Uncorrelated noise on deck A and B, equal-power crossfaded from 4 s to 20 s, the level
    down by ``dip_db`` over the middle 8 s (reached and left in 4 s ramps, linear in dB)."""
    rng = np.random.default_rng(1)
    t = np.arange(24 * SR) / SR
    x = np.clip((t - 4.0) / 16.0, 0.0, 1.0)
    dip = 10 ** (-dip_db * np.clip(2.0 - np.abs(4.0 * x - 2.0), 0.0, 1.0) / 20)
    a, b = rng.standard_normal((2, t.size)) * 0.1
    return shares(a_drums=a * np.cos(x * np.pi / 2) * dip, b_drums=b * np.sin(x * np.pi / 2) * dip)


def test_loudness_continuity_reads_a_six_db_dip_as_six_lu():
    flat, dipped = judge(_crossfade(0.0)), judge(_crossfade(6.0))
    assert flat.loudness_max_dev_lu < 0.5
    assert 5.7 < dipped.loudness_max_dev_lu < 6.3
    assert 3.0 < dipped.loudness_mean_dev_lu < 4.5
    assert dipped.score < flat.score
    assert dipped.sub_scores["loudness"] < flat.sub_scores["loudness"] == 1.0


def _two_basslines(seconds: float = 20.0) -> dict[str, np.ndarray]:
    """Deck A's bass on beats 0-23, deck B's on beats 16-39: exactly 8 beats together. Vocals
    on beats 8-19 (A) and 18-29 (B): 2 beats together. Quiet drums under it all."""
    rng = np.random.default_rng(2)
    return dict(
        a_bass=gate(sine(55.0, seconds, 0.3), 0, 24), b_bass=gate(sine(82.4, seconds, 0.3), 16, 40),
        a_vocals=gate(sine(440.0, seconds, 0.2), 8, 20),
        b_vocals=gate(sine(523.3, seconds, 0.2), 18, 30),
        a_drums=gate(rng.standard_normal(int(seconds * SR)) * 0.02, 0, 24),
        b_drums=gate(rng.standard_normal(int(seconds * SR)) * 0.02, 16, 40))


def test_two_basslines_overlapping_for_eight_beats_clash_for_eight_beats():
    result = judge(shares(**_two_basslines()))
    assert result.bass_clash_beats == 8
    assert result.vocal_clash_beats == 2
    assert result.overlap_beats == 8
    parts = _two_basslines()
    parts["b_bass"] = gate(parts["b_bass"], 24, 40)  # B's bass waits for A's to stop
    assert judge(shares(**parts)).bass_clash_beats == 0


def test_key_clash_counts_the_harmonic_overlap_only_when_keys_clash():
    stems = shares(**_two_basslines())
    compatible = judge(stems, key_a=C_MAJOR, key_b=A_MINOR)
    clashing = judge(stems, key_a=C_MAJOR, key_b=F_SHARP_MAJOR)
    assert compatible.keys_compatible and compatible.key_clash_s == 0.0
    assert not clashing.keys_compatible
    assert clashing.key_clash_s == pytest.approx(8 * BEAT)  # beats 16-23, bass and vocals
    assert clashing.score < compatible.score


def test_beat_alignment_is_the_grid_offset_while_both_decks_play():
    stems = shares(**_two_basslines())
    assert judge(stems).beat_error_ms == 0.0
    late = judge(stems, beats_b=beats(20.0, offset=0.015))
    assert late.beat_error_ms == pytest.approx(15.0, abs=0.01)
    assert late.beat_error_max_ms == pytest.approx(15.0, abs=0.01)
    # Against a grid that drifts, the error is read only where both decks are heard.
    drifting = judge(stems, beats_b=np.arange(40) * (BEAT + 0.001))
    assert drifting.beat_error_max_ms == pytest.approx(23.0, abs=0.01)  # B's beat 23
    assert drifting.beat_error_ms == pytest.approx(19.5, abs=0.01)  # beats 16-23


def test_end_state_needs_deck_a_gone_and_deck_b_neutral():
    parts = _two_basslines()
    assert judge(shares(**parts)).end_clean
    curves = neutral_frame(crossfader=1.0)[None].copy()
    curves[0, PARAM_INDEX["b_bass_low_eq"]] = 0.3
    held = judge(shares(**parts), curves=curves)
    assert not held.end_clean and held.end_param_dev == pytest.approx(0.2)
    parts["a_drums"] = np.random.default_rng(3).standard_normal(20 * SR) * 0.1
    ringing = judge(shares(**parts))
    assert not ringing.end_clean and ringing.end_a_db > -20.0
    assert ringing.sub_scores["end"] < 1.0


@pytest.fixture(scope="module")
def synth_a() -> np.ndarray:
    return render_track(seed=11, bpm=120.0, bars=4, sample_rate=SR).stems


def test_a_click_is_found_at_its_sample(synth_a):
    stems = np.concatenate([synth_a, np.zeros_like(synth_a)])
    assert judge(stems).clicks == 0
    at = int(9.25 * BEAT * SR) + 37  # between a kick and an offbeat hat
    stems[OTHER, :, at] += 0.5
    result = judge(stems)
    assert result.clicks == 1 and result.discontinuities == 1
    assert abs(result.click_times_s[0] - at / SR) < 0.001
    assert result.worst_click_db > 12.0
    assert result.sub_scores["discontinuities"] < 1.0


def test_a_fader_cut_to_silence_in_one_sample_clicks():
    tone = sine(1000.0, 4.0, 0.3)
    at = int(2.1 * SR) + 5  # not on a zero crossing
    tone[at:] = 0.0
    result = judge(shares(a_other=tone))
    assert result.clicks == 1 and abs(result.click_times_s[0] - at / SR) < 0.001


def _fine_curves(n_frames: int, moves: dict[str, tuple[float, float]], at: int) -> np.ndarray:
    """Neutral curves whose named parameters step from one value to another at frame ``at``."""
    curves = np.tile(neutral_frame(), (n_frames, 1))
    for name, (before, after) in moves.items():
        curves[:at, PARAM_INDEX[name]] = before
        curves[at:, PARAM_INDEX[name]] = after
    return curves


def test_a_band_slammed_shut_by_the_curves_is_a_spectral_jump(mixer):
    rng = np.random.default_rng(4)
    noise = (rng.standard_normal((2, 4, 2, 4 * SR)) * 0.05).astype(np.float32)
    noise[:, 1:] = 0.0  # drums only
    kw = dict(sample_rate=SR, beats_a=beats(4.0), beats_b=beats(4.0), key_a=C_MAJOR,
              key_b=C_MAJOR, mixer=mixer)
    # 400 frames of 10 ms: deck A's drums shut within one frame at 2 s, nothing replaces them.
    slam = render_and_critique(noise[0], noise[1], _fine_curves(
        400, {"a_drums_gain": (1.0, 0.0), "b_drums_gain": (0.0, 0.0)}, 200), **kw)
    assert slam.spectral_jumps == 1 and abs(slam.jump_times_s[0] - 2.0) < 0.04
    assert slam.worst_jump_db > 30.0
    # A cut: deck B comes in as deck A goes out; the bands stay where they were.
    cut = render_and_critique(noise[0], noise[1], _fine_curves(
        400, {"crossfader": (0.0, 1.0)}, 200), **kw)
    assert cut.spectral_jumps == 0
    # The music stopping by itself, the curves still: its own business, not the mixer's.
    stopping = noise[0].copy()
    stopping[..., 2 * SR:] = 0.0
    still = render_and_critique(stopping, np.zeros_like(stopping), _fine_curves(400, {}, 200),
                                **kw)
    assert still.spectral_jumps == 0


@pytest.fixture(scope="module")
def decks():
    """Drums and chords of two generated tracks (no bass or vocals: nothing to clash), 12 s."""
    a, b = (render_track(seed=s, bpm=120.0, bars=6, sample_rate=SR).stems for s in (21, 22))
    for stems in (a, b):
        stems[[BASS, VOCALS]] = 0.0
    return a, b


def _xfade_curves(dip_db: float = 0.0, n_frames: int = 64) -> np.ndarray:
    """Equal-power crossfade over the middle half of the transition; master gain ``dip_db``
    down over the crossfade's middle half."""
    curves = np.tile(neutral_frame(), (n_frames, 1))
    position = np.clip((np.arange(n_frames) - n_frames / 8) / (n_frames / 2), 0.0, 1.0)
    curves[:, PARAM_INDEX["crossfader"]] = position
    dip_at = np.clip(2.0 - np.abs(4.0 * position - 2.0), 0.0, 1.0)
    curves[:, PARAM_INDEX["master_gain"]] = 10 ** (-dip_db * dip_at / 60)  # cubic fader law
    return curves


def test_a_clean_crossfade_scores_above_a_dipping_one_and_random_curves(mixer, decks):
    seconds = decks[0].shape[-1] / SR

    def score(curves: np.ndarray):
        return render_and_critique(*decks, curves, SR, beats(seconds), beats(seconds), C_MAJOR,
                                   A_MINOR, mixer)

    clean, dipped = score(_xfade_curves()), score(_xfade_curves(6.0))
    assert clean.end_clean and clean.discontinuities == 0
    assert clean.score > 0.9
    assert clean.score > dipped.score
    # Two beat-matched decks' kicks add up in phase: the clean crossfade bumps ~2 LU midway,
    # which the dip partly fills.
    assert dipped.loudness_max_dev_lu > clean.loudness_max_dev_lu + 1.5
    for seed in range(2):
        curves = np.random.default_rng(seed).uniform(0.0, 1.0, (64, 52))
        curves[:, PARAM_INDEX["reverb_wet"]] = 0.0  # the reverb only slows the test down
        noisy = score(curves)
        assert noisy.score < clean.score - 0.2
        assert noisy.score == pytest.approx(sum(WEIGHTS[p] * s
                                                for p, s in noisy.sub_scores.items()))
        assert 0.0 <= min(noisy.sub_scores.values()) <= max(noisy.sub_scores.values()) <= 1.0
    row = clean.metrics()
    assert all(isinstance(v, float) for v in row.values()) and row["score"] == clean.score
    # A crossfade that stalls halfway: as smooth and clash-free as the clean one, but deck A is
    # still up at the end. That is no transition, and loses a quarter of the score.
    stalled_curves = _xfade_curves()
    xfade = stalled_curves[:, PARAM_INDEX["crossfader"]]
    stalled_curves[:, PARAM_INDEX["crossfader"]] = np.minimum(xfade, 0.5)
    stalled = score(stalled_curves)
    assert stalled.sub_scores["end"] == 0.0 and not stalled.end_clean
    assert stalled.score < clean.score - 0.2


@pytest.mark.parametrize("change, message", [
    (dict(stems=np.zeros((7, 2, SR))), "stems"),
    (dict(mix=np.zeros(SR)), "mix"),
    (dict(beats_a=[0.5]), "beats_a"),
    (dict(beats_b=[np.nan, 1.0]), "beats_b"),
    (dict(curves=np.zeros((4, 51))), "curves"),
    (dict(curves=np.full((4, 52), np.nan)), "curves"),
    (dict(sample_rate=0), "sample_rate"),
])
def test_bad_input_is_one_clear_error(change, message):
    args = dict(mix=np.zeros((2, SR)), stems=np.zeros((8, 2, SR)), sample_rate=SR,
                beats_a=beats(1.0), beats_b=beats(1.0), key_a=C_MAJOR, key_b=C_MAJOR,
                curves=np.tile(neutral_frame(), (4, 1)))
    args.update(change)
    with pytest.raises(ValueError, match=message):
        critique(**args)
