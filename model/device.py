"""Which torch device runs the model: CUDA, then Apple MPS, then the CPU, unless told."""

from __future__ import annotations

import torch


def pick_device(name: str | None = None) -> torch.device:
    """``name`` ("cuda", "cuda:1", "mps", "cpu") if it is available, else the best there is."""
    if name is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: this torch build or machine has no CUDA")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r}: Apple MPS is not available here")
    return device


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision type for ``device``: bfloat16 where the hardware has it, else none
    (CPU autocast is slower than float32 for a model this size)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "mps":
        return torch.float16
    return None
