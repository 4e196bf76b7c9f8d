"""The transition model: conditional diffusion over the 52 parameter curves (the seed's API).

Training, the dataset builder and shipped weights are still to come (issue 4).
"""

from .checkpoint import load_model, save_model
from .conditioning import ConditioningEncoder, MelEncoder, MetadataEncoder, TrackFeatures
from .config import Config, DiffusionConfig, ModelConfig, TrainConfig, get_config
from .model import Denoiser, TransitionDiffusion


def create_model(config: Config | None = None) -> TransitionDiffusion:
    """A new, untrained model for ``config`` (default: the base config)."""
    return TransitionDiffusion(config or get_config())


__all__ = ["Config", "ConditioningEncoder", "Denoiser", "DiffusionConfig", "MelEncoder",
           "MetadataEncoder", "ModelConfig", "TrackFeatures", "TrainConfig", "TransitionDiffusion",
           "create_model", "get_config", "load_model", "save_model"]
