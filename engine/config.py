"""Engine settings as a pydantic model with defaults (what main.py's flags fill in)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from effects.levels import LevelsConfig

Quantize = Literal["off", "beat", "bar", "phrase"]


class EngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sample_rate: int = Field(44100, ge=8000)
    block_size: int = Field(256, ge=64)  # frames per audio callback; a multiple of CONTROL_BLOCK
    latency: float | Literal["low", "high"] = "low"  # PortAudio's suggested output latency
    device: str | int | None = None  # output device (name substring or index); None: default
    quantize: Quantize = "bar"  # where a triggered transition starts
    key_lock: bool = False  # tempo changes keep the pitch (time-stretch) instead of vinyl-style
    bars: int = Field(16, ge=1, le=64)  # transition length
    guidance: float = Field(2.0, ge=0.0, le=10.0)
    candidates: int = Field(3, ge=1, le=8)  # transitions sampled per pair
    steps: int = Field(25, ge=1, le=1000)  # DDIM steps (25: under a second on a 2-core CPU)
    checkpoint: str | None = None  # model weights; None: the shipped ones
    model_device: str | None = None  # torch device for the worker; None: CUDA, MPS, else CPU
    worker: Literal["process", "thread"] = "process"
    worker_threads: int = Field(1, ge=1)  # torch threads in the worker: leave the callback a core
    separator: str = "dsp"
    record_seconds: float = Field(30.0, gt=0)  # ring buffer between callback and recorder
    levels: LevelsConfig = Field(default_factory=LevelsConfig)  # auto gain and the limiter
    log: bool = True  # the performer log: every transition played, kept as a training example
    log_dir: str | None = None  # its folder; None: $XDG_DATA_HOME/automix-live/transitions
    seed: int = 0
