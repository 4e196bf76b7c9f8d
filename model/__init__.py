"""The transition model: conditional diffusion over the 52 parameter curves (the seed's API)."""

from .checkpoint import load_model, save_model
from .conditioning import ConditioningEncoder, MelEncoder, MetadataEncoder, TrackFeatures
from .config import Config, DiffusionConfig, ModelConfig, TrainConfig, get_config
from .device import pick_device
from .diffusion import Diffusion
from .model import Denoiser, TransitionDiffusion
from .training import train


def create_model(config: Config | None = None) -> TransitionDiffusion:
    """A new, untrained model for ``config`` (default: the base config)."""
    return TransitionDiffusion(config or get_config())


__all__ = ["Config", "ConditioningEncoder", "Denoiser", "Diffusion", "DiffusionConfig",
           "MelEncoder", "MetadataEncoder", "ModelConfig", "TrackFeatures", "TrainConfig",
           "TransitionDiffusion", "create_model", "get_config", "load_model", "pick_device",
           "save_model", "train"]
