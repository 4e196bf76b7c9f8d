"""The mixers: identity, crossfader, gains, measured EQ/filter responses, streaming vs
differentiable, block-size invariance, gradients, clicks and bad input."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from effects import MixerConfig, StreamingMixer, neutral_frame
from effects import params as P
from tests.conftest import (SR, noise_stems, rel_db, render_differentiable, render_streaming,
                            tone_stems)


def random_frame(seed: int, reverb: bool = True) -> np.ndarray:
    frame = np.random.default_rng(seed).random(52).astype(np.float32)
    if not reverb:
        frame[P.REVERB_WET] = 0.0
    return frame


def tone_gain_db(mixer, frame: np.ndarray, freq: float, stem: int = 0) -> float:
    """Steady-state gain of one stem's sine through the streaming mixer (deck A)."""
    stems = tone_stems(freq, seconds=1.0, stem=stem)
    out = render_streaming(mixer, stems, np.zeros_like(stems), frame)
    tail = slice(SR // 2, None)
    return float(20 * np.log10(np.std(out[0, tail]) / np.std(stems[stem, 0, tail])))


def with_values(frame=None, **values: float) -> np.ndarray:
    frame = neutral_frame() if frame is None else frame.copy()
    for name, value in values.items():
        frame[P.PARAM_INDEX[name]] = value
    return frame


@pytest.mark.parametrize("render", ["streaming", "differentiable"])
def test_neutral_frame_is_the_sum_of_the_stems(render, request):
    mixer = request.getfixturevalue(render)
    a, b = noise_stems(1), noise_stems(2)
    draw = render_streaming if render == "streaming" else render_differentiable
    assert rel_db(draw(mixer, a, b, neutral_frame()), a.sum(0)) < -80
    assert rel_db(draw(mixer, a, b, neutral_frame(crossfader=1.0)), b.sum(0)) < -80


@pytest.mark.parametrize("render", ["streaming", "differentiable"])
def test_crossfader_ends_play_one_deck_and_the_middle_is_equal_power(render, request):
    mixer = request.getfixturevalue(render)
    draw = render_streaming if render == "streaming" else render_differentiable
    a, b = noise_stems(3), noise_stems(4)
    silent = np.zeros_like(a)
    # EQ and filters on both decks must not leak the other deck through the crossfader.
    frame = random_frame(5, reverb=False)
    frame[P.MASTER_GAIN] = 1.0
    alone_a = draw(mixer, a, silent, with_values(frame, crossfader=0.0))
    alone_b = draw(mixer, silent, b, with_values(frame, crossfader=1.0))
    assert rel_db(draw(mixer, a, b, with_values(frame, crossfader=0.0)), alone_a) < -80
    assert rel_db(draw(mixer, a, b, with_values(frame, crossfader=1.0)), alone_b) < -80
    half = draw(mixer, a, silent, with_values(frame, crossfader=0.5))
    assert 20 * np.log10(np.std(half) / np.std(alone_a)) == pytest.approx(-3.01, abs=0.05)


def test_gain_zero_silences_a_stem_and_master_zero_silences_all(streaming):
    a = noise_stems(6)
    out = render_streaming(streaming, a, a, with_values(a_bass_gain=0.0))
    assert rel_db(out, a.sum(0) - a[1]) < -80
    assert np.max(np.abs(render_streaming(streaming, a, a, with_values(master_gain=0.0)))) == 0.0
    gains = neutral_frame()
    gains[P.GAINS] = 0.0
    assert np.max(np.abs(render_streaming(streaming, a, a, gains))) == 0.0


@pytest.mark.parametrize("name, value, freq, expected, tol", [
    ("a_drums_low_eq", 1.0, 40.0, 12.0, 1.0),
    ("a_drums_low_eq", 0.0, 40.0, -12.0, 1.0),
    ("a_drums_mid_eq", 1.0, 1000.0, 12.0, 0.1),
    ("a_drums_mid_eq", 0.0, 1000.0, -12.0, 0.1),
    ("a_drums_high_eq", 1.0, 16000.0, 12.0, 1.0),
    ("a_drums_high_eq", 0.0, 16000.0, -12.0, 1.0),
    # a flat EQ band elsewhere in the spectrum stays flat
    ("a_drums_low_eq", 1.0, 8000.0, 0.0, 0.3),
    ("a_drums_high_eq", 1.0, 60.0, 0.0, 0.3),
])
def test_eq_bands_hit_their_targets(streaming, name, value, freq, expected, tol):
    assert tone_gain_db(streaming, with_values(**{name: value}), freq) == pytest.approx(
        expected, abs=tol)


def test_highpass_and_lowpass_cut_where_they_are_set(streaming):
    hp_1k = math.log(1000 / 20) / math.log(100)  # normalized setting of a 1 kHz highpass
    assert tone_gain_db(streaming, with_values(a_drums_highpass=hp_1k), 100.0) < -20
    assert tone_gain_db(streaming, with_values(a_drums_highpass=hp_1k), 1000.0) == pytest.approx(
        -3.0, abs=0.2)  # Butterworth: -3 dB at the cutoff
    assert tone_gain_db(streaming, with_values(a_drums_highpass=hp_1k), 8000.0) == pytest.approx(
        0.0, abs=0.2)
    lp_2k = math.log(2000 / 1000) / math.log(20)
    assert tone_gain_db(streaming, with_values(a_drums_lowpass=lp_2k), 20000.0) < -20
    assert tone_gain_db(streaming, with_values(a_drums_lowpass=lp_2k), 2000.0) == pytest.approx(
        -3.0, abs=0.2)
    assert tone_gain_db(streaming, with_values(a_drums_lowpass=lp_2k), 100.0) == pytest.approx(
        0.0, abs=0.2)


@pytest.mark.parametrize("name, settings, freq", [
    ("a_drums_highpass", (0.0, 0.005, 0.01, 0.02, 0.04, 0.08), 40.0),
    ("a_drums_lowpass", (1.0, 0.995, 0.99, 0.98, 0.96), 16000.0),
])
def test_filters_fade_into_bypass_smoothly(streaming, name, settings, freq):
    # From the bypassed end inwards the response falls steadily: no jump, no dip on the way.
    gains = [tone_gain_db(streaming, with_values(**{name: x}), freq) for x in settings]
    assert gains[0] == pytest.approx(0.0, abs=1e-4)
    assert np.all(np.diff(gains) < 0) and np.all(np.diff(gains) > -1.5), gains


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_streaming_matches_differentiable_in_magnitude_response(streaming, differentiable, seed):
    frame = random_frame(seed, reverb=False)
    frame[P.MASTER_GAIN] = 1.0
    frame[P.CROSSFADER] = 0.0
    impulse = np.zeros((4, 2, 16384), dtype=np.float32)
    impulse[:, :, 0] = 1.0
    silent = np.zeros_like(impulse)
    freqs = np.fft.rfftfreq(impulse.shape[-1], 1 / SR)
    band = (freqs >= 40) & (freqs <= 16000)
    db = [20 * np.log10(np.abs(np.fft.rfft(render(mixer, impulse, silent, frame)[0]))[band])
          for render, mixer in ((render_streaming, streaming),
                                (render_differentiable, differentiable))]
    assert np.max(np.abs(db[0] - db[1])) < 0.5


@pytest.mark.parametrize("seed, trim", [(21, None), (22, None), (21, (0.5, 1.8))])
def test_streaming_equals_differentiable_with_every_effect_on(streaming, differentiable, seed,
                                                             trim):
    a, b = noise_stems(seed), noise_stems(seed + 100)
    frame = random_frame(seed)
    frame[P.REVERB_WET] = 0.8
    frame[P.CROSSFADER] = 0.5
    assert rel_db(render_differentiable(differentiable, a, b, frame, trim=trim),
                  render_streaming(streaming, a, b, frame, trim=trim)) < -60


@pytest.mark.parametrize("render", ["streaming", "differentiable"])
def test_a_deck_trim_scales_that_deck_before_the_effects(render, request):
    mixer = request.getfixturevalue(render)
    draw = render_streaming if render == "streaming" else render_differentiable
    a, b = noise_stems(25), noise_stems(26)
    frame = random_frame(27)
    frame[P.CROSSFADER] = 0.5
    trimmed = draw(mixer, a, b, frame, trim=(0.5, 2.0))
    assert rel_db(trimmed, draw(mixer, a * 0.5, b * 2.0, frame)) < -100
    assert rel_db(draw(mixer, a, b, frame, trim=(1.0, 1.0)), draw(mixer, a, b, frame)) < -140


def test_the_differentiable_trim_is_per_batch_item_and_broadcasts(differentiable):
    torch.manual_seed(1)
    a, b = torch.randn(2, 4, 2, 4096) * 0.1, torch.randn(2, 4, 2, 4096) * 0.1
    curves = torch.rand(2, 4, P.N_PARAMS)
    with torch.no_grad():
        out = differentiable(a, b, curves, trim=torch.tensor([[1.0, 0.5], [2.0, 1.0]]))
        assert torch.allclose(out[1], differentiable(a[1:] * 2.0, b[1:], curves[1:])[0],
                              atol=1e-6)
        assert torch.allclose(differentiable(a, b, curves, trim=0.5),
                              differentiable(a * 0.5, b * 0.5, curves), atol=1e-6)


def test_a_trim_change_ramps_over_one_block_in_the_streaming_mixer(streaming):
    a = np.ones((4, 2, 512), dtype=np.float32) * 0.1
    silent = np.zeros_like(a)
    streaming.reset()
    first = streaming.process(a[..., :256], silent[..., :256], neutral_frame(), trim=(1.0, 1.0))
    ramp = streaming.process(a[..., 256:], silent[..., 256:], neutral_frame(), trim=(0.5, 1.0))
    assert first[0, -1] == pytest.approx(0.4) and ramp[0, -1] == pytest.approx(0.2)
    assert max_step(np.concatenate([first, ramp], axis=1)) < 0.001


@pytest.mark.parametrize("highpass, lowpass", [(0.005, 0.995), (0.01, 0.99), (0.3, 0.3)])
def test_streaming_equals_differentiable_near_the_filter_bypass(streaming, differentiable,
                                                               highpass, lowpass):
    # Inside the bypass zone the highpass poles sit a few Hz from DC: the longest responses.
    a, b = noise_stems(23), noise_stems(24)
    frame = neutral_frame(crossfader=0.5)
    frame[P.FILTERS[:, 3]] = highpass
    frame[P.FILTERS[:, 4]] = lowpass
    assert rel_db(render_differentiable(differentiable, a, b, frame),
                  render_streaming(streaming, a, b, frame)) < -60


def test_streaming_output_does_not_depend_on_the_block_size(streaming):
    a, b = noise_stems(31), noise_stems(32)
    frame = random_frame(33)
    frame[P.REVERB_WET] = 0.7
    frame[P.CROSSFADER] = 0.4
    reference = render_streaming(streaming, a, b, frame, block=256)
    for block in (64, 100, 1024, 3000, 8192):
        np.testing.assert_allclose(render_streaming(streaming, a, b, frame, block=block),
                                   reference, atol=1e-6, rtol=0)


def test_gradients_reach_all_52_parameters(differentiable):
    torch.manual_seed(0)
    n = SR // 2
    a, b = torch.randn(2, 4, 2, n) * 0.1, torch.randn(2, 4, 2, n) * 0.1
    curves = (torch.rand(2, 6, 52) * 0.8 + 0.1).requires_grad_(True)
    out = differentiable(a, b, curves)
    (out * torch.randn_like(out)).sum().backward()
    per_param = curves.grad.abs().sum(dim=(0, 1))
    assert torch.isfinite(curves.grad).all()
    zero = [P.PARAM_NAMES[i] for i in torch.nonzero(per_param == 0).flatten().tolist()]
    assert not zero, f"no gradient reaches {zero}"


def test_differentiable_mixer_is_batched_and_follows_the_dtype(differentiable):
    a, b = noise_stems(41, 0.3), noise_stems(42, 0.3)
    frames = np.stack([random_frame(43), random_frame(44)])
    batch = differentiable(torch.from_numpy(np.stack([a, a])), torch.from_numpy(np.stack([b, b])),
                           torch.from_numpy(frames)[:, None])
    for i in range(2):
        single = render_differentiable(differentiable, a, b, frames[i])
        assert rel_db(batch[i].detach().numpy(), single) < -100
    assert differentiable(torch.from_numpy(a)[None].double(), torch.from_numpy(b)[None].double(),
                          torch.from_numpy(frames[:1, None])).dtype == torch.float64


def max_step(x: np.ndarray) -> float:
    return float(np.max(np.abs(np.diff(x, axis=-1))))


def test_a_parameter_jump_does_not_click_in_the_streaming_mixer(streaming):
    stems = tone_stems(100.0, seconds=0.5)
    silent = np.zeros_like(stems)
    before = neutral_frame()
    after = with_values(a_drums_gain=0.0, a_drums_low_eq=1.0, a_drums_highpass=0.9,
                        reverb_wet=1.0)
    n_blocks = stems.shape[-1] // 256 + 1
    frames = np.stack([before if k < n_blocks // 2 else after for k in range(n_blocks)])
    out = render_streaming(streaming, stems, silent, frames)
    # A 100 Hz sine at 0.5 moves at most 0.0071 per sample; a hard gain step would move 0.5.
    assert max_step(out) < 2 * max_step(stems[0])
    frames[n_blocks // 2:] = with_values(a_drums_lowpass=0.0, a_drums_high_eq=0.0)
    assert max_step(render_streaming(streaming, stems, silent, frames)) < 2 * max_step(stems[0])


def test_a_curve_jump_does_not_click_in_the_differentiable_mixer(differentiable):
    stems = torch.from_numpy(tone_stems(100.0, seconds=0.5))[None]
    curves = torch.from_numpy(np.stack([neutral_frame()] * 4 + [with_values(
        a_drums_gain=0.0, a_drums_highpass=0.9)] * 4))[None]
    out = differentiable(stems, torch.zeros_like(stems), curves)[0].numpy()
    assert max_step(out) < 2 * max_step(stems[0, 0].numpy())


def test_reverb_decays_at_the_set_rt60(streaming):
    impulse = np.zeros((4, 2, 3 * SR), dtype=np.float32)
    impulse[0, :, 0] = 1.0
    for decay, rt60 in ((0.284, 1.0), (0.5, 2.0)):
        frame = with_values(reverb_wet=1.0, reverb_decay=decay)
        assert P.spec("reverb_decay").to_physical(decay) == pytest.approx(rt60, rel=0.01)
        wet = render_streaming(streaming, impulse, np.zeros_like(impulse), frame)[0, 1:]
        # Schroeder backward integration; slope between -5 and -25 dB, extrapolated to -60.
        energy = np.cumsum(wet[::-1].astype(np.float64) ** 2)[::-1]
        edc = 10 * np.log10(energy / energy[0] + 1e-300)
        t5, t25 = np.argmax(edc < -5), np.argmax(edc < -25)
        assert 3 * (t25 - t5) / SR == pytest.approx(rt60, rel=0.2)


def test_reverb_tail_rings_on_after_the_send_closes(streaming):
    stems = noise_stems(51, 1.0)
    n_blocks = stems.shape[-1] // 256 + 1
    closed = neutral_frame()
    closed[P.GAINS] = 0.0
    frames = np.stack([with_values(reverb_wet=1.0) if k < n_blocks // 2 else closed
                       for k in range(n_blocks)])
    out = render_streaming(streaming, stems, np.zeros_like(stems), frames)
    tail = out[:, n_blocks // 2 * 256 + 2048:]
    assert np.std(tail[:, :4096]) > 1e-3  # the tail is still there after everything closed


# --- bad input ------------------------------------------------------------------------------

def test_streaming_holds_the_last_good_value_for_nan_and_clamps_the_range():
    mixer = StreamingMixer()
    a = noise_stems(61, 0.1)
    good = with_values(a_bass_gain=0.3)
    bad = good.copy()
    bad[P.PARAM_INDEX["a_bass_gain"]] = np.nan
    bad[P.PARAM_INDEX["master_gain"]] = np.inf
    expected = render_streaming(mixer, a, a, good)
    assert mixer.rejected_frames == 0
    n_blocks = -(-a.shape[-1] // 256)
    frames = np.stack([good] + [bad] * (n_blocks - 1))
    assert rel_db(render_streaming(mixer, a, a, frames), expected) < -100
    assert mixer.rejected_frames == n_blocks - 1
    clamped = with_values(a_bass_gain=5.0, a_drums_low_eq=-3.0)
    np.testing.assert_array_equal(render_streaming(mixer, a, a, clamped),
                                  render_streaming(mixer, a, a, with_values(a_drums_low_eq=0.0)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=52,
                max_size=52))
def test_streaming_never_raises_or_emits_non_finite_samples_for_any_frame(streaming, values):
    a = noise_stems(71, 0.02)
    out = streaming.process(a[..., :512], a[..., :512], np.array(values, dtype=np.float32))
    assert np.all(np.isfinite(out))


def test_streaming_shape_errors_name_the_problem(streaming):
    a = noise_stems(81, 0.01)
    with pytest.raises(ValueError, match=r"stems_b must be \[4 stems, 2 channels"):
        streaming.process(a, a[:3], neutral_frame())
    with pytest.raises(ValueError, match="52 parameters"):
        streaming.process(a, a, neutral_frame()[:51])
    with pytest.raises(ValueError, match="C-contiguous float32"):
        streaming.process(a, a, neutral_frame(), out=np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="trim must be two finite gains"):
        streaming.process(a, a, neutral_frame(), trim=np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="trim must be two finite gains"):
        streaming.process(a, a, neutral_frame(), trim=np.ones(3))


def test_differentiable_errors_name_the_problem(differentiable):
    a = torch.zeros(1, 4, 2, 1000)
    curves = torch.from_numpy(neutral_frame())[None, None]
    with pytest.raises(ValueError, match=r"stems_a must be \[batch, 4 stems, 2 channels"):
        differentiable(a[:, :3], a, curves)
    with pytest.raises(ValueError, match="differ in shape"):
        differentiable(a, a[..., :999], curves)
    with pytest.raises(ValueError, match=r"params must be \[batch=1, frames, 52\]"):
        differentiable(a, a, curves[..., :50])
    bad = curves.clone()
    bad[0, 0, 7] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite values .* frame 0, parameter 7"):
        differentiable(a, a, bad)
    with pytest.raises(ValueError, match="48000 Hz but the mixer runs at 44100 Hz"):
        differentiable(a, a, curves, sample_rate=48000)
    with pytest.raises(ValueError, match=r"trim must broadcast to \[batch=1, 2 decks\]"):
        differentiable(a, a, curves, trim=torch.ones(3))
    with pytest.raises(ValueError, match="finite gains"):
        differentiable(a, a, curves, trim=-1.0)


def test_config_rejects_settings_that_cannot_work():
    with pytest.raises(ValueError, match="Nyquist"):
        MixerConfig(sample_rate=8000, high_shelf_hz=5000)
    with pytest.raises(ValueError, match="power of two"):
        MixerConfig(filter_fft_size=5000)
