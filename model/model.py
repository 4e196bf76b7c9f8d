"""The transition model: a DiT denoiser over 52 parameter curves, conditioned on both tracks.

Noisy curves [B, F, 52] -> input projection + positions; timestep embedding; blocks of
self-attention, cross-attention to the conditioning sequence and a feed-forward layer, with
DiT's adaLN-Zero time modulation; output projection predicting v (or the noise). Training is DDPM
(v or epsilon prediction, MSE) with condition dropout; sampling is DDIM with classifier-free
guidance; the process itself (schedule, noising, targets, the DDIM step) is model/diffusion.py.
Curves are modelled in [-1, 1] (2 * params - 1) and returned in [0, 1].
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .conditioning import ConditioningEncoder, TrackFeatures, sinusoidal_positions
from .config import Config
from .diffusion import Diffusion


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (float) diffusion timesteps [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class DiTBlock(nn.Module):
    """Self-attention and feed-forward under adaLN-Zero, cross-attention to the conditioning."""

    def __init__(self, dim: int, heads: int, cond_dim: int, ff_mult: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_cross = nn.LayerNorm(dim)
        self.cross = nn.MultiheadAttention(dim, heads, kdim=cond_dim, vdim=cond_dim,
                                           batch_first=True)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ff = nn.Sequential(nn.Linear(dim, ff_mult * dim), nn.GELU(approximate="tanh"),
                                nn.Linear(ff_mult * dim, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)  # adaLN-Zero: every block starts as the identity
        nn.init.zeros_(self.ada[1].bias)

    def _projections(self) -> tuple[torch.Tensor, ...]:
        a = self.cross
        if a._qkv_same_embed_dim:
            wq, wk, wv = a.in_proj_weight.chunk(3)
        else:
            wq, wk, wv = a.q_proj_weight, a.k_proj_weight, a.v_proj_weight
        bq, bk, bv = a.in_proj_bias.chunk(3)
        return wq, wk, wv, bq, bk, bv

    def cross_keys_values(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The cross-attention's keys and values [B, heads, L, d_head]: they depend on the
        conditioning only, so a sampling run computes them once instead of at every step."""
        _, wk, wv, _, bk, bv = self._projections()
        heads = self.cross.num_heads
        batch, length, _ = cond.shape
        k = F.linear(cond, wk, bk).view(batch, length, heads, -1).transpose(1, 2)
        v = F.linear(cond, wv, bv).view(batch, length, heads, -1).transpose(1, 2)
        return k, v

    def _cross(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        # nn.MultiheadAttention's computation, written out so that the keys and values can be
        # reused (same parameters, so checkpoints are unaffected).
        wq, _, _, bq, _, _ = self._projections()
        k, v = kv
        batch, frames, _ = x.shape
        q = F.linear(x, wq, bq).view(batch, frames, k.shape[1], -1).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, frames, -1)
        return self.cross.out_proj(out)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(t).chunk(6, dim=-1)
        h = modulate(self.norm1(x), shift1, scale1)
        x = x + gate1[:, None] * self.attn(h, h, h, need_weights=False)[0]
        x = x + self._cross(self.norm_cross(x), kv or self.cross_keys_values(cond))
        h = modulate(self.norm2(x), shift2, scale2)
        return x + gate2[:, None] * self.ff(h)


class Denoiser(nn.Module):
    """Predicts the noise (or v) in curves [B, F, P] at timesteps t [B] given cond
    [B, 2 * beats, C]."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        m = config.model
        d = m.hidden_dim
        self.positions = (m.position_min_period, m.position_period_ratio)
        self.input = nn.Linear(m.n_params, d)
        # Zero-initialised, so that a checkpoint without it fine-tunes from its own function.
        self.local = nn.Linear(2 * m.condition_dim, d) if m.local_conditioning else None
        if self.local is not None:
            nn.init.zeros_(self.local.weight)
            nn.init.zeros_(self.local.bias)
        self.time = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(DiTBlock(d, m.n_heads, m.condition_dim, m.ff_mult)
                                    for _ in range(m.n_layers))
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.output = nn.Linear(d, m.n_params)
        for layer in (self.final_ada[1], self.output):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
        """``kv``: every block's cross-attention keys and values for ``cond`` (cross_kv)."""
        # The conditioning holds one token per beat of each deck: frame i sits at beat
        # i * beats / frames, whatever the transition's length.
        beats = torch.arange(x.shape[1], device=x.device) * (cond.shape[1] / 2 / x.shape[1])
        h = self.input(x) + sinusoidal_positions(beats, self.input.out_features, *self.positions)
        if self.local is not None:  # deck A's and deck B's token of each frame's beat
            per_deck = cond.shape[1] // 2
            at = beats.long().clamp(max=per_deck - 1)
            h = h + self.local(torch.cat([cond[:, at], cond[:, per_deck + at]], dim=-1))
        temb = self.time(timestep_embedding(t, self.input.out_features))
        for i, block in enumerate(self.blocks):
            h = block(h, temb, cond, kv[i] if kv is not None else None)
        shift, scale = self.final_ada(temb).chunk(2, dim=-1)
        return self.output(modulate(self.final_norm(h), shift, scale))

    def cross_kv(self, cond: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [block.cross_keys_values(cond) for block in self.blocks]


class TransitionDiffusion(nn.Module):
    """The whole model: conditioning encoder, denoiser, DDPM training loss, DDIM + CFG."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.encoder = ConditioningEncoder(config.model)
        self.denoiser = Denoiser(config)
        # The "no conditioning" sequence for classifier-free guidance: one learned token.
        self.null_condition = nn.Parameter(torch.zeros(1, 1, config.model.condition_dim))
        self.diffusion = Diffusion(config.diffusion)

    def condition(self, track_a: TrackFeatures, track_b: TrackFeatures) -> torch.Tensor:
        """The conditioning sequence [B, L, condition_dim] (computed once per sampling run)."""
        return self.encoder(track_a, track_b).transpose(1, 2)

    def loss(self, params: torch.Tensor, track_a: TrackFeatures, track_b: TrackFeatures,
             condition_dropout: float | None = None) -> torch.Tensor:
        """DDPM training loss: MSE between the noise and its prediction, for curves [B, F, 52].

        ``condition_dropout`` overrides the config's share (0 for validation).
        """
        return self.losses(params, track_a, track_b, condition_dropout)["diffusion"]

    def losses(self, params: torch.Tensor, track_a: TrackFeatures, track_b: TrackFeatures,
               condition_dropout: float | None = None,
               audio: Callable[[torch.Tensor], torch.Tensor] | None = None
               ) -> dict[str, torch.Tensor]:
        """The diffusion loss (``loss``) and, given ``audio``, an audio-domain loss.

        ``audio`` maps the clean curves the network's output implies [B, F, 52] in [0, 1] to a
        penalty per example [B] (model.heard.audio_loss). Its "audio" term is that penalty's
        mean weighted by alpha_bar_t (the clean estimate means little at the noisiest steps) over
        the examples that kept their conditioning (the unconditional model cannot know what the
        pair sounds like).
        """
        if not bool(torch.isfinite(params).all()):
            raise ValueError("target curves hold NaN or infinite values")
        x0 = params.clamp(0.0, 1.0) * 2.0 - 1.0
        batch = x0.shape[0]
        t = self.diffusion.random_timesteps(batch, x0.device)
        noise = torch.randn_like(x0)
        xt = self.diffusion.add_noise(x0, noise, t)
        cond = self.condition(track_a, track_b)
        if condition_dropout is None:
            condition_dropout = self.config.diffusion.condition_dropout
        drop = torch.rand(batch, device=x0.device) < condition_dropout
        cond = torch.where(drop[:, None, None], self.null_condition.expand_as(cond), cond)
        target = self.diffusion.target(x0, noise, t)
        out = self.denoiser(xt, t, cond)
        terms = {"diffusion": torch.mean((out - target) ** 2)}
        if audio is not None:
            clean, _ = self.diffusion.predict(xt, out, t)
            weight = self.diffusion.alpha_bar[t] * (~drop)
            penalty = audio((clean.float() + 1.0) / 2.0)
            terms["audio"] = (weight * penalty).sum() / batch
        return terms

    @torch.no_grad()
    def generate(self, track_a: TrackFeatures, track_b: TrackFeatures,
                 n_frames: int | None = None, steps: int | None = None,
                 guidance_scale: float | None = None, seed: int | None = None,
                 n_samples: int = 1, end: torch.Tensor | np.ndarray | None = None
                 ) -> torch.Tensor:
        """Sample transitions: [batch * n_samples, n_frames, 52] in [0, 1].

        Each pair in the batch gets ``n_samples`` different transitions (consecutive rows).
        ``end`` [52] in [0, 1]: the frame every transition must end on (the engine's hand-over
        state: deck B alone, neutral), held through sampling by replacement: at each step the
        last frame is set to ``end`` noised to the step's level, so the frames before it are
        denoised towards it, and the last step leaves it exact.
        """
        d = self.config.diffusion
        n_frames = n_frames or self.config.model.n_frames
        steps = steps or d.n_inference_steps
        guidance = d.guidance_scale if guidance_scale is None else guidance_scale
        if n_samples < 1 or n_frames < 1:
            raise ValueError("need n_samples >= 1 and n_frames >= 1")
        timesteps = self.diffusion.timesteps(steps)
        cond = self.condition(track_a, track_b).repeat_interleave(n_samples, dim=0)
        device = cond.device
        generator = torch.Generator(device="cpu")
        if seed is not None:
            generator.manual_seed(seed)
        else:
            generator.seed()
        x = torch.randn(cond.shape[0], n_frames, self.config.model.n_params,
                        generator=generator).to(device)
        if end is not None:
            end = torch.as_tensor(end, dtype=torch.float32, device=device)
            if end.shape != (self.config.model.n_params,) or not bool(
                    ((end >= 0) & (end <= 1)).all()):
                raise ValueError(f"end must be {self.config.model.n_params} values in [0, 1]")
            end = end * 2.0 - 1.0
        x = self.ddim(x, timesteps, cond, guidance, end)
        return ((x.clamp(-1.0, 1.0) + 1.0) / 2.0).float()

    def ddim(self, x: torch.Tensor, timesteps: list[int], cond: torch.Tensor,
             guidance: float, end: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministic DDIM (eta = 0) from x at timesteps[0] down through ``timesteps``;
        ``end`` [P] (model units, -1..1): the last frame's known value (see ``generate``)."""
        if end is not None:
            x[:, -1] = self.diffusion.add_noise(end, x[:, -1], timesteps[0])
        if guidance != 1.0:  # conditional and unconditional in one batch
            cond = torch.cat([cond, self.null_condition.expand_as(cond)])
        kv = self.denoiser.cross_kv(cond)
        for i, t in enumerate(timesteps):
            tt = torch.full((x.shape[0],), t, device=x.device)
            if guidance == 1.0:
                out = self.denoiser(x, tt, cond, kv)
            else:
                both = self.denoiser(torch.cat([x, x]), torch.cat([tt, tt]), cond, kv)
                out_cond, out_null = both.chunk(2)
                out = out_null + guidance * (out_cond - out_null)  # CFG (Ho & Salimans 2022)
            t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else None
            x, eps = self.diffusion.step(x, out, t, t_prev)
            if end is not None:  # the known frame, noised with the step's own noise estimate
                x[:, -1] = self.diffusion.add_noise(end, eps[:, -1], t_prev)
        return x
