"""The diffusion process on its own (model/diffusion.py): schedule, noising, targets, DDIM steps,
with no network: an oracle that knows the clean curves stands in for it."""

import pytest
import torch

from model.config import DiffusionConfig
from model.diffusion import Diffusion, cosine_alpha_bar


def test_the_cosine_schedule_falls_from_clean_to_noise():
    a = cosine_alpha_bar(1000)
    assert a.shape == (1000,)
    assert bool((a[1:] <= a[:-1]).all())
    assert a[0] > 0.9999 and a[-1] < 1e-3


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_predict_inverts_add_noise_and_target(prediction):
    diffusion = Diffusion(DiffusionConfig(prediction=prediction))
    torch.manual_seed(0)
    x0 = torch.rand(3, 16, 52) * 1.8 - 0.9
    noise = torch.randn_like(x0)
    t = torch.tensor([10, 500, 990])
    xt = diffusion.add_noise(x0, noise, t)
    a = diffusion.alpha_bar[t][:, None, None]
    torch.testing.assert_close(xt, a.sqrt() * x0 + (1 - a).sqrt() * noise)
    out = diffusion.target(x0, noise, t)
    expected = noise if prediction == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * x0
    torch.testing.assert_close(out, expected)
    for row, step in enumerate(t.tolist()):
        got_x0, got_eps = diffusion.predict(xt[row:row + 1], out[row:row + 1], step)
        torch.testing.assert_close(got_x0, x0[row:row + 1], atol=2e-4, rtol=0)
        torch.testing.assert_close(got_eps, noise[row:row + 1], atol=2e-3, rtol=0)


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
@pytest.mark.parametrize("steps", [2, 10, 50])
def test_ddim_steps_with_an_oracle_land_on_the_curves(prediction, steps):
    diffusion = Diffusion(DiffusionConfig(prediction=prediction))
    target = torch.sin(torch.linspace(0, 6, 64))[None, :, None].expand(2, 64, 52) * 0.9
    timesteps = diffusion.timesteps(steps)
    assert timesteps[0] == 999 and timesteps[-1] == 0 and len(timesteps) == steps
    x = torch.randn(2, 64, 52, generator=torch.Generator().manual_seed(1))
    for i, t in enumerate(timesteps):
        a = diffusion.alpha_bar[t]
        oracle = diffusion.target(target, (x - a.sqrt() * target) / (1 - a).sqrt(),
                                  torch.full((2,), t))
        x, _ = diffusion.step(x, oracle, t, timesteps[i + 1] if i + 1 < steps else None)
    torch.testing.assert_close(x, target, atol=1e-3, rtol=0)


def test_a_step_moves_towards_the_estimate_by_the_schedule():
    """DDIM eq. 12 with sigma = 0, by hand: x_prev = sqrt(ab') x0 + sqrt(1 - ab') eps."""
    diffusion = Diffusion(DiffusionConfig(prediction="epsilon"))
    x = torch.randn(1, 8, 52)
    eps = torch.randn_like(x) * 0.1
    t, t_prev = 600, 400
    a, a_prev = diffusion.alpha_bar[t], diffusion.alpha_bar[t_prev]
    x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
    eps_used = (x - a.sqrt() * x0) / (1 - a).sqrt()
    x_prev, _ = diffusion.step(x, eps, t, t_prev)
    torch.testing.assert_close(x_prev, a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps_used)


def test_timesteps_out_of_range_are_refused():
    diffusion = Diffusion(DiffusionConfig(n_steps=100))
    with pytest.raises(ValueError, match="1 <= steps <= 100"):
        diffusion.timesteps(101)
    with pytest.raises(ValueError):
        diffusion.timesteps(0)


def test_the_schedule_is_not_in_the_state_dict():
    assert Diffusion(DiffusionConfig()).state_dict() == {}
