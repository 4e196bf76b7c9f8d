"""The rule-based transition policy: DJ conventions that can be checked on its curves."""

import numpy as np
import pytest

from analysis.key import key_index
from effects.params import GAINS, PARAM_INDEX, crossfader_gains, neutral_frame
from evaluation.evaluate import swap_hits
from model.policy import PHRASE_BARS, STYLES, plan_transition

A_MINOR, C_MAJOR = key_index(9, "minor"), key_index(0, "major")
F_SHARP_MAJOR = key_index(6, "major")


def column(plan, name):
    return plan.curves[:, PARAM_INDEX[name]]


def heard(plan, name):
    """A stem's gain as heard: its fader times its deck's side of the crossfader."""
    deck_a, deck_b = crossfader_gains(column(plan, "crossfader").astype(np.float64))
    return column(plan, name) * (deck_a if name.startswith("a_") else deck_b)


@pytest.mark.parametrize("style", STYLES)
def test_every_style_starts_on_a_and_ends_on_b_neutral(style):
    for seed in range(5):
        plan = plan_transition(A_MINOR, C_MAJOR, np.random.default_rng(seed), style=style)
        assert plan.curves.shape == (128, 52) and plan.curves.dtype == np.float32
        assert plan.curves.min() >= 0 and plan.curves.max() <= 1
        first, last = plan.curves[0], plan.curves[-1]
        assert first[PARAM_INDEX["crossfader"]] == 0.0
        np.testing.assert_array_equal(last, neutral_frame(crossfader=1.0))
        # Deck A is whole at the start: every A stem at full gain.
        assert np.all(first[GAINS[:4]] == 1.0)


def test_the_bass_swap_lands_on_a_downbeat_and_never_doubles_the_bass():
    for seed in range(20):
        plan = plan_transition(A_MINOR, C_MAJOR, np.random.default_rng(seed), style="blend")
        b_fader = column(plan, "b_bass_gain")
        frames_per_bar = 128 / plan.bars
        first_b = int(np.argmax(b_fader >= 1.0))  # B's bass fully in
        assert first_b == pytest.approx(plan.swap_bar * frames_per_bar, abs=0.5), seed
        # At no frame do both basses play at more than a crossing's level.
        a, b = heard(plan, "a_bass_gain"), heard(plan, "b_bass_gain")
        assert np.all(a + b <= 1.0 + 1e-6) and np.all(np.minimum(a, b) <= 0.5)


def test_vocals_never_overlap_when_both_tracks_sing():
    for seed in range(20):
        plan = plan_transition(A_MINOR, C_MAJOR, np.random.default_rng(seed))
        if plan.style == "cut":
            continue
        assert np.all(np.minimum(heard(plan, "a_vocals_gain"), heard(plan, "b_vocals_gain"))
                      < 1e-6)


def test_compatible_keys_blend_longer_and_seeds_vary_the_result():
    def mean_bars(key_b):
        return np.mean([plan_transition(A_MINOR, key_b, np.random.default_rng(s),
                                        style="blend").bars for s in range(30)])
    assert mean_bars(C_MAJOR) > mean_bars(F_SHARP_MAJOR)  # 8A->8B vs 8A->2B
    one, two = (plan_transition(A_MINOR, C_MAJOR, np.random.default_rng(s)) for s in (1, 2))
    assert not np.array_equal(one.curves, two.curves)
    with pytest.raises(ValueError, match="unknown style"):
        plan_transition(A_MINOR, C_MAJOR, np.random.default_rng(0), style="scratch")


def test_the_swap_detector_finds_the_policy_swap_on_deck_b_phrases():
    rng = np.random.default_rng(5)
    for offset in range(8):
        for style in ("blend", "filter", "echo_out"):
            plan = plan_transition(0, 7, rng, style=style, bars=16, b_phrase_offset=offset)
            assert (plan.swap_bar - offset) % PHRASE_BARS == 0
            assert swap_hits(plan.curves, 16, offset) == (True, True)
            # Told another phrase grid, the same curves miss it.
            assert swap_hits(plan.curves, 16, offset + 4) == (True, False)
