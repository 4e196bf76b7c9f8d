"""Effects: the 52-parameter contract and the mixers that turn parameter curves into sound."""

from .config import MixerConfig
from .differentiable import DifferentiableMixer
from .params import N_PARAMS, PARAM_NAMES, PARAM_SPECS, neutral_frame
from .streaming import StreamingMixer

__all__ = ["DifferentiableMixer", "MixerConfig", "N_PARAMS", "PARAM_NAMES", "PARAM_SPECS",
           "StreamingMixer",
           "neutral_frame"]
