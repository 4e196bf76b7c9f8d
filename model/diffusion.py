"""The diffusion process over curves in model units (-1..1), apart from the network.

Notation of DDPM (Ho et al. 2020) and DDIM (Song et al. 2021): alpha_bar_t is the share of the
clean signal's power left at step t, x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.
The network predicts eps or v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0 (Salimans & Ho
2022); DDIM steps deterministically (eta = 0). Like diffusers' ``DDIMScheduler``: the sampler is
``timesteps`` then ``step`` once per timestep; the loop, the network and guidance live in
``TransitionDiffusion``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import DiffusionConfig


def cosine_alpha_bar(steps: int, s: float = 0.008) -> torch.Tensor:
    """alpha_bar_t for t = 0..steps-1 (Nichol & Dhariwal 2021, eq. 17): better than a linear
    schedule for a few smooth dimensions, whose structure a linear one destroys too early."""
    f = torch.cos((torch.arange(steps + 1, dtype=torch.float64) / steps + s) / (1 + s)
                  * math.pi / 2) ** 2
    return (f[1:] / f[0]).clamp(1e-5, 1.0).float()


class Diffusion(nn.Module):
    """Schedule, noising, training target and the DDIM step. A module only so that the schedule
    follows the model's device; it has no parameters and nothing in the state dict."""

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("alpha_bar", cosine_alpha_bar(config.n_steps), persistent=False)

    def _ab(self, t: torch.Tensor | int | None, like: torch.Tensor) -> torch.Tensor:
        """alpha_bar_t broadcastable against ``like`` [B, ...] (t: [B], one step, or None for
        the clean end of the process, where alpha_bar is 1)."""
        if t is None:
            return like.new_tensor(1.0)
        a = self.alpha_bar[t]
        return a.reshape(-1, *([1] * (like.dim() - 1))) if a.dim() else a

    def random_timesteps(self, batch: int, device: torch.device) -> torch.Tensor:
        return torch.randint(0, self.config.n_steps, (batch,), device=device)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor,
                  t: torch.Tensor | int | None) -> torch.Tensor:
        """q(x_t | x_0) (DDPM eq. 4): x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps."""
        a = self._ab(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network learns to predict: eps, or v = sqrt(ab) eps - sqrt(1 - ab) x_0."""
        if self.config.prediction == "epsilon":
            return noise
        a = self._ab(t, x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0

    def timesteps(self, steps: int) -> list[int]:
        """``steps`` evenly spaced training timesteps, noisiest first (DDIM's sub-sequence tau)."""
        if not 1 <= steps <= self.config.n_steps:
            raise ValueError(f"need 1 <= steps <= {self.config.n_steps}, got {steps}")
        return torch.linspace(self.config.n_steps - 1, 0, steps).round().long().tolist()

    def predict(self, x: torch.Tensor, out: torch.Tensor, t: torch.Tensor | int
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The clean curves and the noise that the network's output ``out`` implies at step t
        (one step, or [B] of them).

        x_0 is clamped to the curves' range, and eps recomputed from it (as diffusers' "clip
        sample"), so that a wild x_0 estimate at the noisiest steps cannot push x off the data.
        """
        a = self._ab(t, x)
        if self.config.prediction == "epsilon":
            x0 = (x - (1 - a).sqrt() * out) / a.sqrt()  # DDIM eq. 12's "predicted x_0"
        else:
            x0 = a.sqrt() * x - (1 - a).sqrt() * out  # x_0 from v (Salimans & Ho, eq. 21)
        x0 = x0.clamp(-1.0, 1.0)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt().clamp_min(1e-8)
        return x0, eps

    def step(self, x: torch.Tensor, out: torch.Tensor, t: int, t_prev: int | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One deterministic DDIM step from t to t_prev (None: to the clean curves) (DDIM eq. 12,
        sigma = 0): x_prev = sqrt(ab_prev) x_0 + sqrt(1 - ab_prev) eps. Returns x_prev and eps,
        which the caller needs to noise a known frame to the same level (``generate``'s end)."""
        x0, eps = self.predict(x, out, t)
        return self.add_noise(x0, eps, t_prev), eps
