"""Model checkpoints as safetensors: tensors plus the config as JSON metadata, never pickle."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import torch
from pydantic import ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import Config
from .model import TransitionDiffusion

# Where load_model() looks by default: the checkpoint the repository ships once trained.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "transition.safetensors"
# Model settings added since the first checkpoints, with the values those checkpoints meant
# (Transformer's sinusoids, cross-attention only). A fine-tune may change them.
LEGACY_SETTINGS = {"position_min_period": 2 * math.pi, "position_period_ratio": 10000.0,
                   "local_conditioning": False}


def save_model(model: TransitionDiffusion, path: Path | str, half: bool = False,
               notes: dict[str, str] | None = None) -> Path:
    """Write the model's weights (fp16 with ``half``, to keep shipped files small) and config."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: (t.half() if half and t.is_floating_point() else t).contiguous().cpu()
               for name, t in model.state_dict().items()}
    metadata = {"config": model.config.model_dump_json(), **(notes or {})}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: Path | str | None = None) -> tuple[Config, dict[str, torch.Tensor]]:
    """The config and fp32 weights of a checkpoint written by ``save_model``; errors name the
    file and the problem."""
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint"
                                + (" (no trained model ships yet)" if path == DEFAULT_CHECKPOINT
                                   else ""))
    try:
        with safe_open(str(path), framework="pt") as f:
            config = json.loads((f.metadata() or {})["config"])
            # Checkpoints from before the prediction setting predicted the noise.
            config.get("diffusion", {}).setdefault("prediction", "epsilon")
            # ...and lacked the model settings added since.
            for name, value in LEGACY_SETTINGS.items():
                config.get("model", {}).setdefault(name, value)
            config = Config.model_validate(config)
            state = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path}: not a safetensors checkpoint ({err})") from None
    except (KeyError, ValidationError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: checkpoint without a usable config ({err})") from None
    return config, {name: t.float() if t.is_floating_point() else t for name, t in state.items()}


def load_weights(model: TransitionDiffusion, path: Path | str | None, strict: bool = True
                 ) -> list[str]:
    """Load a checkpoint's weights into ``model``; returns the model's parameters the file
    lacks, which only ``strict=False`` allows (fine-tuning a model that gained an input)."""
    config, state = read_checkpoint(path)
    # A fine-tune may change the settings added since (and learn what depends on them).
    if (config.model.model_dump(exclude=set(LEGACY_SETTINGS))
            != model.config.model.model_dump(exclude=set(LEGACY_SETTINGS))):
        raise ValueError(f"{path}: checkpoint of another model shape ({config.model}), "
                         f"not {model.config.model}")
    return _load_state(model, state, path, strict)


def _load_state(model: TransitionDiffusion, state: dict[str, torch.Tensor], path, strict: bool
                ) -> list[str]:
    try:
        missing, unexpected = model.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise ValueError(f"{path}: weights do not fit the model ({first})") from None
    if unexpected:
        raise ValueError(f"{path}: weights the model does not have: {unexpected}")
    return list(missing)


def load_model(path: Path | str | None = None, device: str | torch.device = "cpu"
               ) -> TransitionDiffusion:
    """A model from a checkpoint written by ``save_model``; errors name the file and problem."""
    config, state = read_checkpoint(path)
    model = TransitionDiffusion(config)
    _load_state(model, state, path, strict=True)
    return model.to(device).eval()
