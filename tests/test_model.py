"""The transition model's architecture, sampler and training loss (untrained weights): the
seed's API, the parameter budget, the DDIM/CFG sampler and that the loss can be learned.
Training and checkpoints are tested in test_training.py and test_checkpoint.py.
"""

import pytest
import torch
import torch.nn.functional as F

from analysis.features import TrackFeatures as AnalysisFeatures
from analysis.features import phrase_position
from model import TrackFeatures, create_model, get_config


def features(batch: int, frames: int = 128, seed: int = 0) -> TrackFeatures:
    g = torch.Generator().manual_seed(seed)
    return TrackFeatures(
        stem_mels=torch.rand(batch, 4, 128, frames, generator=g),
        structure=F.one_hot(torch.randint(0, 6, (batch, frames), generator=g), 6).float(),
        beats=(torch.arange(frames) % 4 == 0).float().expand(batch, frames).clone(),
        downbeats=(torch.arange(frames) % 16 == 0).float().expand(batch, frames).clone(),
        bpm=torch.full((batch, 1), 126.0),
        key=F.one_hot(torch.randint(0, 24, (batch,), generator=g), 24).float(),
        energy=torch.rand(batch, frames, generator=g) * 0.2)


def randomize_zero_init(model: torch.nn.Module) -> None:
    """adaLN-Zero starts every block as the identity and predicts zero noise; give those layers
    small random weights so the sampler has something to steer (still untrained)."""
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and not module.weight.any():
            torch.nn.init.normal_(module.weight, std=0.02)


@pytest.fixture(scope="module")
def small():
    model = create_model(get_config("small")).eval()
    randomize_zero_init(model)
    return model


def test_base_model_has_the_seed_size_and_component_split(capsys):
    from model.summary import main, parameter_counts

    model = create_model()
    counts = parameter_counts(model)
    total = sum(p.numel() for p in model.parameters())
    assert sum(counts.values()) == total == pytest.approx(12e6, rel=0.15)
    assert counts["MelEncoder"] == pytest.approx(2e6, rel=0.25)
    assert counts["cross-attention"] == pytest.approx(0.5e6, rel=0.1)
    assert counts["denoiser"] > 7e6
    small = create_model(get_config("small"))
    assert sum(parameter_counts(small).values()) < total / 4
    main(["--config", "base"])
    assert f"base: {total / 1e6:.2f}M parameters" in capsys.readouterr().out


def test_generate_returns_curves_in_range_with_the_seed_api(small):
    a, b = features(2, seed=1), features(2, seed=2)
    params = small.generate(a, b, n_frames=64, steps=5, seed=3, n_samples=3)
    assert params.shape == (6, 64, 52)
    assert params.min() >= 0.0 and params.max() <= 1.0
    # Same seed, same transitions; samples of one pair differ from each other.
    assert torch.equal(params, small.generate(a, b, n_frames=64, steps=5, seed=3, n_samples=3))
    assert not torch.allclose(params[0], params[1])


def test_guidance_changes_the_result(small):
    a, b = features(1, seed=4), features(1, seed=5)
    plain = small.generate(a, b, n_frames=32, steps=4, guidance_scale=0.0, seed=0)
    guided = small.generate(a, b, n_frames=32, steps=4, guidance_scale=2.0, seed=0)
    assert (plain - guided).abs().max() > 1e-3


def test_the_conditioning_reaches_the_output(small):
    b = features(1, seed=6)
    one = small.generate(features(1, seed=7), b, n_frames=32, steps=4, seed=0)
    other = small.generate(features(1, seed=8), b, n_frames=32, steps=4, seed=0)
    assert (one - other).abs().max() > 1e-4


def test_one_ddim_step_at_t0_returns_its_input(small):
    x = torch.rand(2, 16, 52) * 2 - 1
    cond = small.condition(features(2), features(2, seed=1))
    out = small.ddim(x, [0], cond, guidance=2.0)
    # alpha_bar[0] is 1 - 4e-5: one step at t = 0 removes only that much noise.
    assert torch.allclose(out, x, atol=0.02)


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_ddim_lands_on_the_curves_an_exact_denoiser_points_to(prediction):
    """The model's sampling loop: a stand-in denoiser that returns the exact noise (or v) for
    known curves must lead DDIM from pure noise to those curves (the algebra on its own:
    test_diffusion.py)."""
    config = get_config("small")
    config = config.model_copy(update={"diffusion": config.diffusion.model_copy(
        update={"prediction": prediction})})
    model = create_model(config)
    target = torch.sin(torch.linspace(0, 6, 128))[None, :, None].expand(1, 128, 52) * 0.9

    class Exact(torch.nn.Module):
        def cross_kv(self, cond):
            return [None]

        def forward(self, x, t, cond, kv=None):
            a = model.diffusion.alpha_bar[t][:, None, None]
            return model.diffusion.target(target, (x - a.sqrt() * target) / (1 - a).sqrt(), t)

    model.denoiser = Exact()
    steps = torch.linspace(999, 0, 25).round().long().tolist()
    out = model.ddim(torch.randn(1, 128, 52), steps, torch.zeros(1, 8, 4), guidance=1.0)
    torch.testing.assert_close(out, target, atol=1e-3, rtol=0)


def test_the_loss_can_be_learned_on_a_small_dataset():
    torch.manual_seed(0)
    model = create_model(get_config("small"))
    a, b = features(8, seed=10), features(8, seed=11)
    # Targets that depend on the tracks: a crossfade whose speed follows deck A's key.
    ramp = torch.linspace(0, 1, 32)[None, :, None]
    speed = 1 + a.key.argmax(dim=1)[:, None, None] / 24
    targets = (ramp * speed).clamp(0, 1).expand(8, 32, 52).contiguous()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(80):
        loss = model.loss(targets, a, b)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-15:]) / 15 < 0.5 * sum(losses[:15]) / 15


def test_analysis_features_batch_into_model_features():
    import numpy as np

    one = AnalysisFeatures(
        stem_mels=np.zeros((4, 128, 64), np.float32), structure=np.eye(6, dtype=np.float32)[
            np.zeros(64, int)], beats=np.zeros(64, np.float32), downbeats=np.zeros(64, np.float32),
        bpm=np.array([128.0], np.float32), key=np.eye(24, dtype=np.float32)[3],
        energy=np.zeros(64, np.float32), start_beat=-4)
    batch = TrackFeatures.from_analysis([one, one])
    assert batch.stem_mels.shape == (2, 4, 128, 64) and batch.bpm.shape == (2, 1)
    batch.validate("track", 128)
    # Frame 0 is a bar before the first downbeat: the last bar of a phrase (7 of 8), and the
    # phrase starts again on frame 16 (the first downbeat).
    assert batch.phrase[0, 0] == pytest.approx(28 / 32)
    assert batch.phrase[0, 16] == 0 and batch.phrase[0, 17] == pytest.approx(1 / 128)


def test_where_deck_b_starts_a_phrase_reaches_the_conditioning(small):
    """Two excerpts alike in everything but where their phrases start must condition apart:
    the bass swap belongs on B's phrase start, which the section labels often do not show."""
    a, b = features(1), features(1, seed=1)
    b.phrase = torch.from_numpy(phrase_position(0, 128))[None]
    shifted = features(1, seed=1)
    shifted.phrase = torch.from_numpy(phrase_position(4 * 4, 128))[None]
    seed_api = features(1, seed=1)  # no phrase given: the excerpt is read as starting one
    with torch.no_grad():
        assert not torch.allclose(small.condition(a, b), small.condition(a, shifted))
        torch.testing.assert_close(small.condition(a, b), small.condition(a, seed_api))


def test_bad_features_are_clear_errors(small):
    good = features(1)
    bad_shape = features(1)
    bad_shape.energy = torch.rand(1, 100)
    with pytest.raises(ValueError, match=r"track_a.energy must be \[1, 128\]"):
        small.generate(bad_shape, good, steps=1)
    nan = features(1)
    nan.bpm = torch.tensor([[float("nan")]])
    with pytest.raises(ValueError, match="track_b.bpm holds NaN"):
        small.generate(good, nan, steps=1)
    odd = features(1, frames=130)
    with pytest.raises(ValueError, match="multiple of it"):
        small.generate(odd, good, steps=1)
    with pytest.raises(ValueError, match="NaN"):
        small.loss(torch.full((1, 16, 52), float("nan")), good, good)
    with pytest.raises(ValueError, match="unknown config 'huge'"):
        get_config("huge")


def test_cached_cross_attention_is_multihead_attention(small):
    """Sampling reuses the cross-attention's keys and values; it must compute what
    nn.MultiheadAttention computes with the same parameters."""
    model = create_model(get_config("small"))
    randomize_zero_init(model)
    block = model.denoiser.blocks[0]
    x = torch.randn(2, 64, block.norm1.normalized_shape[0])
    cond = torch.randn(2, 40, model.config.model.condition_dim)
    reference = block.cross(x, cond, cond, need_weights=False)[0]
    cached = block._cross(x, block.cross_keys_values(cond))
    torch.testing.assert_close(cached, reference, atol=1e-5, rtol=1e-4)


def test_generate_holds_a_given_end_frame(small):
    """The engine samples with its hand-over state as the last frame: the transition must land
    on it exactly, and the frames before it are sampled towards it."""
    from model.policy import END_FRAME

    a, b = features(1, seed=1), features(1, seed=2)
    free = small.generate(a, b, n_frames=32, steps=8, seed=0, n_samples=2)
    held = small.generate(a, b, n_frames=32, steps=8, seed=0, n_samples=2,
                          end=torch.from_numpy(END_FRAME))
    assert torch.allclose(held[:, -1], torch.from_numpy(END_FRAME).expand(2, -1), atol=1e-6)
    assert not torch.allclose(free[:, -1], held[:, -1], atol=1e-2)
    assert not torch.allclose(free[:, -2], held[:, -2])  # the end reaches back
    with pytest.raises(ValueError, match="end must be 52 values"):
        small.generate(a, b, n_frames=32, steps=2, end=torch.full((52,), 2.0))
