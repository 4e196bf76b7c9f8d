"""The 52-parameter contract."""

import math

import numpy as np
import pytest
import torch

from effects import params as P


def test_layout_is_52_unique_names_in_deck_stem_param_order():
    assert len(P.PARAM_NAMES) == P.N_PARAMS == 52
    assert len(set(P.PARAM_NAMES)) == 52
    assert P.PARAM_NAMES[0] == "a_drums_gain"
    assert P.PARAM_NAMES[P.index("b", "other", "lowpass")] == "b_other_lowpass"
    assert P.index("b", "drums", "gain") == 24
    assert P.PARAM_NAMES[48:] == ("crossfader", "master_gain", "reverb_wet", "reverb_decay")
    assert [P.PARAM_NAMES[i] for i in P.FILTERS[5]] == [
        f"b_bass_{p}" for p in ("low_eq", "mid_eq", "high_eq", "highpass", "lowpass")]


def test_neutral_frame_values_mean_unity_and_flat():
    frame = P.neutral_frame()
    assert frame.dtype == np.float32 and frame.shape == (52,)
    for spec in P.PARAM_SPECS:
        value = spec.to_physical(frame[spec.index])
        if spec.kind in ("gain", "master_gain"):
            assert value == 0.0  # dB
        elif spec.kind.endswith("_eq"):
            assert value == 0.0
        elif spec.kind == "highpass":
            assert value == pytest.approx(20.0)
        elif spec.kind == "lowpass":
            assert value == pytest.approx(20000.0)
    assert frame[P.CROSSFADER] == 0.0 and frame[P.REVERB_WET] == 0.0
    assert P.neutral_frame(crossfader=1.0)[P.CROSSFADER] == 1.0


def test_physical_ranges_match_the_seed_table():
    assert P.spec("a_drums_gain").to_physical(0.0) == -math.inf
    assert P.spec("a_drums_low_eq").to_physical(0.0) == pytest.approx(-12.0)
    assert P.spec("a_drums_low_eq").to_physical(1.0) == pytest.approx(12.0)
    assert P.spec("b_vocals_highpass").to_physical(1.0) == pytest.approx(2000.0)
    assert P.spec("b_vocals_lowpass").to_physical(0.0) == pytest.approx(1000.0)
    # log-frequency: the midpoint is the geometric mean
    assert P.spec("a_bass_highpass").to_physical(0.5) == pytest.approx(200.0)
    assert P.spec("reverb_decay").to_physical(0.5) == pytest.approx(2.0)
    # out-of-range settings are clamped for display
    assert P.spec("a_bass_low_eq").to_physical(7.0) == pytest.approx(12.0)
    assert P.spec("a_bass_low_eq").describe(1.0) == "+12.0 dB"
    assert P.spec("a_bass_highpass").describe(0.5) == "200 Hz"


def test_gain_law_is_monotonic_and_db_sensible():
    x = np.linspace(0.1, 1.0, 91)
    db = 20 * np.log10(P.gain_to_amplitude(x))
    assert np.all(np.diff(db) > 0)
    assert db[0] == pytest.approx(-60.0)
    assert 20 * np.log10(P.gain_to_amplitude(0.5)) == pytest.approx(-18.06, abs=0.01)


def test_crossfader_is_equal_power_on_numpy_and_torch():
    x = np.linspace(0, 1, 11)
    a, b = P.crossfader_gains(x)
    np.testing.assert_allclose(a**2 + b**2, 1.0, atol=1e-12)
    assert a[0] == 1.0 and b[0] == 0.0 and abs(a[-1]) < 1e-7 and b[-1] == 1.0
    ta, tb = P.crossfader_gains(torch.tensor(x))
    np.testing.assert_allclose(ta.numpy(), a)


def test_unknown_names_are_clear_errors():
    with pytest.raises(KeyError, match="unknown parameter 'a_kick_gain'"):
        P.spec("a_kick_gain")
    with pytest.raises(KeyError, match="no parameter"):
        P.index("c", "drums", "gain")
