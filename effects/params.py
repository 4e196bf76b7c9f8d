"""The 52-parameter contract: order, names, ranges, physical units and the neutral frame.

Every parameter is normalized to [0, 1]. The layout is

    deck A: drums, bass, vocals, other  x  gain, low_eq, mid_eq, high_eq, highpass, lowpass  (24)
    deck B: the same                                                                         (24)
    global: crossfader, master_gain, reverb_wet, reverb_decay                                 (4)

Deck A is the outgoing (playing) deck and deck B the incoming one. This module is the only place
that knows the layout; the model, engine, controllers and presets read it from here.

The mappings to physical units work on numpy arrays and torch tensors alike (they use only
arithmetic and the array-API functions of the argument's own library), so the differentiable and
the streaming mixer share them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace

DECKS: tuple[str, ...] = ("a", "b")
STEMS: tuple[str, ...] = ("drums", "bass", "vocals", "other")
STEM_PARAMS: tuple[str, ...] = ("gain", "low_eq", "mid_eq", "high_eq", "highpass", "lowpass")
GLOBAL_PARAMS: tuple[str, ...] = ("crossfader", "master_gain", "reverb_wet", "reverb_decay")

N_STEM_PARAMS = len(STEM_PARAMS)
N_DECK_PARAMS = len(STEMS) * N_STEM_PARAMS
N_PARAMS = len(DECKS) * N_DECK_PARAMS + len(GLOBAL_PARAMS)
assert N_PARAMS == 52

# Physical ranges (the seed's table).
EQ_RANGE_DB = 12.0
HIGHPASS_HZ = (20.0, 2000.0)
LOWPASS_HZ = (1000.0, 20000.0)
REVERB_RT60_S = (0.4, 10.0)
# Gains follow a cubic fader law: amplitude = x**3, i.e. 60 dB of travel over the top 90 % of the
# fader (0.5 -> -18 dB, 0.1 -> -60 dB), 0 is silence, 1 is unity.
GAIN_LAW_EXPONENT = 3.0
# Over the last 2 % of their travel the filters fade into a bypass, so that the ends of the range
# (highpass fully down, lowpass fully up) pass the signal exactly and without a jump.
FILTER_BYPASS_EDGE = 0.02


def param_name(deck: str, stem: str, param: str) -> str:
    """Name of a per-stem parameter, e.g. ``a_bass_low_eq``."""
    return f"{deck}_{stem}_{param}"


PARAM_NAMES: tuple[str, ...] = tuple(
    param_name(deck, stem, param) for deck in DECKS for stem in STEMS for param in STEM_PARAMS
) + GLOBAL_PARAMS
PARAM_INDEX: dict[str, int] = {name: i for i, name in enumerate(PARAM_NAMES)}


def index(deck: str, stem: str, param: str) -> int:
    """Position of a per-stem parameter in the 52-vector."""
    try:
        return (
            DECKS.index(deck) * N_DECK_PARAMS
            + STEMS.index(stem) * N_STEM_PARAMS
            + STEM_PARAMS.index(param)
        )
    except ValueError:
        raise KeyError(f"no parameter {deck!r}/{stem!r}/{param!r}; decks {DECKS}, stems {STEMS}, "
                       f"params {STEM_PARAMS}") from None


def indices_of(param: str) -> np.ndarray:
    """Positions of one per-stem parameter for all decks and stems, in deck-major stem order [8]."""
    return np.array([index(d, s, param) for d in DECKS for s in STEMS])


CROSSFADER = PARAM_INDEX["crossfader"]
MASTER_GAIN = PARAM_INDEX["master_gain"]
REVERB_WET = PARAM_INDEX["reverb_wet"]
REVERB_DECAY = PARAM_INDEX["reverb_decay"]
GAINS = indices_of("gain")
# The filter parameters of each stem, [8, 5] in the order the mixers cascade them.
FILTER_PARAMS: tuple[str, ...] = ("low_eq", "mid_eq", "high_eq", "highpass", "lowpass")
FILTERS = np.stack([indices_of(p) for p in FILTER_PARAMS], axis=1)

# The same frame seen from the other deck: deck A's parameters in deck B's places and back, the
# crossfader mirrored. The model writes transitions from A to B; a transition from the physical
# deck B back to deck A is its curves through this permutation.
DECK_SWAP = np.r_[np.arange(N_DECK_PARAMS, 2 * N_DECK_PARAMS), np.arange(N_DECK_PARAMS),
                  np.arange(2 * N_DECK_PARAMS, N_PARAMS)]


def swap_decks(frames: np.ndarray) -> np.ndarray:
    """Frames [..., 52] with the decks exchanged (see DECK_SWAP)."""
    out = frames[..., DECK_SWAP].copy()
    out[..., CROSSFADER] = 1.0 - out[..., CROSSFADER]
    return out


_NEUTRAL_BY_PARAM = {"gain": 1.0, "low_eq": 0.5, "mid_eq": 0.5, "high_eq": 0.5,
                     "highpass": 0.0, "lowpass": 1.0}
_NEUTRAL_GLOBAL = {"crossfader": 0.0, "master_gain": 1.0, "reverb_wet": 0.0, "reverb_decay": 0.5}


def neutral_frame(crossfader: float = 0.0) -> np.ndarray:
    """The frame that passes every stem unchanged (float32 [52]).

    With the crossfader at 0 (the default) the output is deck A's stems summed; at 1, deck B's.
    """
    frame = np.empty(N_PARAMS, dtype=np.float32)
    for name, i in PARAM_INDEX.items():
        frame[i] = _NEUTRAL_GLOBAL.get(name, _NEUTRAL_BY_PARAM.get(name.split("_", 2)[-1], 0.0))
    frame[CROSSFADER] = crossfader
    return frame


# --- mappings to physical units (numpy or torch, elementwise) ----------------------------------

def gain_to_amplitude(x: Any) -> Any:
    """Fader law for stem gains and master gain: 0 -> silence, 1 -> 0 dB."""
    return x**GAIN_LAW_EXPONENT


def eq_to_db(x: Any) -> Any:
    """EQ band gain: 0 -> -12 dB, 0.5 -> flat, 1 -> +12 dB."""
    return (x - 0.5) * (2.0 * EQ_RANGE_DB)


def highpass_to_hz(x: Any) -> Any:
    """Highpass cutoff on a log-frequency scale: 0 -> 20 Hz (bypassed), 1 -> 2 kHz."""
    lo, hi = HIGHPASS_HZ
    return lo * (hi / lo) ** x


def lowpass_to_hz(x: Any) -> Any:
    """Lowpass cutoff on a log-frequency scale: 0 -> 1 kHz, 1 -> 20 kHz (bypassed)."""
    lo, hi = LOWPASS_HZ
    return lo * (hi / lo) ** x


def crossfader_gains(x: Any) -> tuple[Any, Any]:
    """Equal-power crossfader law: amplitudes of deck A and deck B (0 = A alone, 1 = B alone)."""
    xp = array_namespace(x)
    angle = x * (math.pi / 2)
    return xp.cos(angle), xp.sin(angle)


def stem_amplitudes(curves: Any) -> Any:
    """Each stem's amplitude from its fader, its deck's side of the crossfader and the master
    [..., 8] (deck A's stems, then deck B's), for frames [..., 52] (numpy or torch); the filters
    and the reverb are left out."""
    xp = array_namespace(curves)
    deck_a, deck_b = crossfader_gains(curves[..., CROSSFADER])
    faders = gain_to_amplitude(curves[..., GAINS])
    per_deck = faders.reshape(*faders.shape[:-1], len(DECKS), len(STEMS))
    sides = xp.stack([deck_a, deck_b], axis=-1)[..., None]
    return ((per_deck * sides).reshape(faders.shape)
            * gain_to_amplitude(curves[..., MASTER_GAIN:MASTER_GAIN + 1]))


def reverb_wet_to_send(x: Any) -> Any:
    """Reverb send level (amplitude) from the mix into the reverb: 0 -> dry, 1 -> full send."""
    return x


def reverb_decay_to_rt60(x: Any) -> Any:
    """Reverb decay time RT60 in seconds on a log scale: 0 -> 0.4 s, 0.5 -> 2 s, 1 -> 10 s."""
    lo, hi = REVERB_RT60_S
    return lo * (hi / lo) ** x


@dataclass(frozen=True)
class ParamSpec:
    """One parameter as a person reads it: its place, unit and neutral value."""

    index: int
    name: str
    deck: str | None
    stem: str | None
    kind: str
    unit: str
    neutral: float

    def to_physical(self, x: float) -> float:
        """The physical value of a normalized setting (dB, Hz, s or a 0..1 position)."""
        x = min(max(float(x), 0.0), 1.0)
        if self.kind in ("gain", "master_gain"):
            amp = gain_to_amplitude(x)
            return -math.inf if amp == 0.0 else 20.0 * math.log10(amp)
        return float(_PHYSICAL[self.kind](x))

    def describe(self, x: float) -> str:
        """A display string, e.g. ``-6.0 dB`` or ``440 Hz``."""
        value = self.to_physical(x)
        if self.unit == "Hz":
            return f"{value:.0f} Hz"
        if self.unit == "dB":
            return f"{value:+.1f} dB"
        if self.unit == "s":
            return f"{value:.2f} s"
        return f"{value:.2f}"


_PHYSICAL = {
    "low_eq": eq_to_db, "mid_eq": eq_to_db, "high_eq": eq_to_db,
    "highpass": highpass_to_hz, "lowpass": lowpass_to_hz,
    "crossfader": lambda x: x, "reverb_wet": reverb_wet_to_send,
    "reverb_decay": reverb_decay_to_rt60,
}
_UNITS = {"gain": "dB", "master_gain": "dB", "low_eq": "dB", "mid_eq": "dB", "high_eq": "dB",
          "highpass": "Hz", "lowpass": "Hz", "crossfader": "", "reverb_wet": "",
          "reverb_decay": "s"}


def _make_specs() -> tuple[ParamSpec, ...]:
    neutral = neutral_frame()
    specs = []
    for i, name in enumerate(PARAM_NAMES):
        if name in GLOBAL_PARAMS:
            deck = stem = None
            kind = name
        else:
            deck, stem, kind = name.split("_", 2)
        specs.append(ParamSpec(i, name, deck, stem, kind, _UNITS[kind], float(neutral[i])))
    return tuple(specs)


PARAM_SPECS: tuple[ParamSpec, ...] = _make_specs()


def spec(name: str) -> ParamSpec:
    """The spec of a parameter by name; a clear KeyError for an unknown one."""
    try:
        return PARAM_SPECS[PARAM_INDEX[name]]
    except KeyError:
        raise KeyError(f"unknown parameter {name!r}; names look like 'a_bass_low_eq' or "
                       f"'crossfader' (see effects.params.PARAM_NAMES)") from None
