"""Model, diffusion and training settings (the seed's defaults), as pydantic models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from effects.params import N_PARAMS


class ModelConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    audio_embed_dim: int = Field(256, ge=8)  # MelEncoder width
    condition_dim: int = Field(512, ge=8)  # width of the conditioning sequence
    hidden_dim: int = Field(256, ge=8)  # denoiser width
    n_layers: int = Field(6, ge=1)
    n_heads: int = Field(8, ge=1)
    n_frames: int = Field(128, ge=4)  # curve frames of a transition (beat time)
    n_params: int = Field(N_PARAMS, frozen=True)
    n_mels: int = 128
    mel_layers: int = Field(6, ge=1)  # residual conv blocks of the MelEncoder
    metadata_dim: int = Field(128, ge=8)
    ff_mult: int = Field(4, ge=1)
    # Sinusoidal positions, in beats, of curve frames and conditioning tokens: periods from
    # position_min_period beats up, growing by position_period_ratio over the embedding. With
    # 2^16 and power-of-two widths the periods include 1, 2, 4 (a bar), 8... beats exactly, so a
    # frame's place in its beat and bar is a fixed direction; half a beat tells frames of
    # neighbouring beats apart (docs/model.md: why not Transformer's periods).
    position_min_period: float = Field(0.5, gt=0)
    position_period_ratio: float = Field(65536.0, gt=1)
    # Each curve frame also gets both decks' conditioning tokens of its own beat, added to its
    # input (time-aligned conditioning, besides the cross-attention), so that what happens at a
    # beat of the transition can depend on that beat of each deck (docs/model.md: why
    # cross-attention alone was not enough).
    local_conditioning: bool = True


class DiffusionConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    n_steps: int = Field(1000, ge=2)  # training diffusion steps
    n_inference_steps: int = Field(50, ge=1)  # DDIM steps
    guidance_scale: float = Field(2.0, ge=0.0)
    # Share of training examples whose conditioning is replaced by the learned null sequence,
    # which is what classifier-free guidance steers away from.
    condition_dropout: float = Field(0.1, ge=0.0, le=1.0)
    # What the denoiser predicts: "v" (Salimans & Ho 2022) keeps the clean-curve estimate well
    # conditioned at the noisiest steps, where an epsilon model divides its error by
    # sqrt(alpha_bar) ~ 0.003 and DDIM drifts to flat, off-data curves (docs/model.md).
    prediction: Literal["epsilon", "v"] = "v"


class HeardConfig(BaseModel):
    """The audio-domain loss's terms, each a squared shortfall scaled so that 1 is what the
    critic calls a failed transition (``evaluation.critic``'s ramps)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    short_term_s: float = Field(3.0, gt=0.0)  # EBU R128 short-term loudness windows
    # Loudness: deviation from the line between the decks' levels, free up to
    # ``loudness_free_lu``, 1 at ``loudness_bad_lu``.
    loudness_free_lu: float = Field(1.0, ge=0.0)
    loudness_bad_lu: float = Field(10.0, gt=0.0)
    # Clash: the quieter deck's bass (or vocals) within ``audible_db`` of the mix is heard
    # fighting the other's; 1 when it is level with the mix.
    audible_db: float = Field(-20.0, lt=0.0)
    # Unfinished: deck A in the last beat, free below ``end_db`` against the mix, 1 at 20 dB
    # above that (the critic's end ramp).
    end_db: float = Field(-40.0, lt=0.0)
    loudness_weight: float = Field(1.0, ge=0.0)
    # Hole: the mix under the path between the decks' own levels as they play, free up to
    # ``hole_free_lu``, 1 at ``loudness_bad_lu``. Its weight is the shipped model's: at 10 the
    # engine's loudness dip fell half as far (README, "Beyond imitation").
    hole_free_lu: float = Field(0.5, ge=0.0)
    hole_weight: float = Field(40.0, ge=0.0)
    clash_weight: float = Field(1.0, ge=0.0)
    end_weight: float = Field(1.0, ge=0.0)


class TrainConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    steps: int = Field(20000, ge=1)
    warmup_steps: int = Field(500, ge=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    checkpoint_every: int = Field(1000, ge=1)
    seed: int = 0
    # The audio-domain loss (model.heard) beside the diffusion loss, weighted by this; 0: off.
    audio_weight: float = Field(0.0, ge=0.0)
    heard: HeardConfig = HeardConfig()


class Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model: ModelConfig = ModelConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    train: TrainConfig = TrainConfig()


_NAMED = {
    "base": ModelConfig(),
    # For CPU-only use: a quarter of the width, about a fifth of the parameters.
    "small": ModelConfig(audio_embed_dim=128, condition_dim=256, hidden_dim=128, n_layers=4,
                         n_heads=4, mel_layers=4, metadata_dim=64),
}


def get_config(name: str = "base") -> Config:
    """The named configuration: "base" (the seed's, ~12M parameters) or "small"."""
    try:
        return Config(model=_NAMED[name])
    except KeyError:
        raise ValueError(f"unknown config {name!r}; choose one of {sorted(_NAMED)}") from None
