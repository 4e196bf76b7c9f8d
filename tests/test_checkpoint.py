"""Checkpoints round-trip through safetensors and bad files are named clearly."""

import pytest
import torch

from model import create_model, get_config
from model.checkpoint import DEFAULT_CHECKPOINT, load_model, save_model


def test_a_checkpoint_round_trips_exactly_and_in_half_precision(tmp_path):
    torch.manual_seed(0)
    model = create_model(get_config("small"))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    path = save_model(model, tmp_path / "m.safetensors", notes={"steps": "0"})
    loaded = load_model(path)
    assert loaded.config == model.config
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    half = load_model(save_model(model, tmp_path / "h.safetensors", half=True))
    for a, b in zip(model.parameters(), half.parameters()):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)
    assert (tmp_path / "h.safetensors").stat().st_size < 0.6 * path.stat().st_size


def test_bad_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_model(tmp_path / "missing.safetensors")
    if not DEFAULT_CHECKPOINT.exists():
        with pytest.raises(FileNotFoundError, match="no trained model ships yet"):
            load_model()
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(ValueError, match="junk.safetensors: not a safetensors checkpoint"):
        load_model(junk)
    # Weights of the small model under the base model's config do not fit.
    path = save_model(create_model(get_config("small")), tmp_path / "s.safetensors")
    from safetensors.torch import load_file, save_file
    save_file(load_file(path), tmp_path / "wrong.safetensors",
              metadata={"config": get_config("base").model_dump_json()})
    with pytest.raises(ValueError, match="wrong.safetensors: weights do not fit"):
        load_model(tmp_path / "wrong.safetensors")


def test_checkpoints_from_before_v_prediction_still_predict_the_noise(tmp_path):
    """A config written before the prediction setting existed meant epsilon prediction."""
    import json

    from safetensors.torch import load_file, save_file
    path = save_model(create_model(get_config("small")), tmp_path / "m.safetensors")
    config = json.loads(get_config("small").model_dump_json())
    del config["diffusion"]["prediction"]
    save_file(load_file(path), tmp_path / "old.safetensors",
              metadata={"config": json.dumps(config)})
    assert load_model(tmp_path / "old.safetensors").config.diffusion.prediction == "epsilon"
    assert load_model(path).config.diffusion.prediction == "v"


def test_checkpoints_from_before_the_position_settings_keep_their_positions(tmp_path):
    """Older configs lack the position settings (they were Transformer's sinusoids) and the
    local conditioning (their weights have none): they load as what they were trained as."""
    import json
    import math

    from safetensors.torch import load_file, save_file

    from model.conditioning import sinusoidal_positions
    path = save_model(create_model(get_config("small")), tmp_path / "m.safetensors")
    config = json.loads(get_config("small").model_dump_json())
    for name in ("position_min_period", "position_period_ratio", "local_conditioning"):
        del config["model"][name]
    old_weights = {k: v for k, v in load_file(path).items() if not k.startswith("denoiser.local")}
    save_file(old_weights, tmp_path / "old.safetensors",
              metadata={"config": json.dumps(config)})
    old = load_model(tmp_path / "old.safetensors").config.model
    assert (old.position_min_period, old.position_period_ratio) == (2 * math.pi, 10000.0)
    assert not old.local_conditioning
    beats = torch.arange(40, dtype=torch.float32) / 3
    dim = 64
    freqs = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2) / dim)
    legacy = torch.stack([torch.sin(beats[:, None] * freqs), torch.cos(beats[:, None] * freqs)],
                         dim=-1).reshape(40, dim)
    torch.testing.assert_close(sinusoidal_positions(beats, dim, 2 * math.pi, 10000.0), legacy,
                               atol=1e-5, rtol=1e-5)
    # The current default has periods of exactly one beat and one bar.
    table = sinusoidal_positions(torch.tensor([0.0, 1.0, 4.0]), dim)
    period_1 = 2 * 2  # the sine of period 0.5 * 65536 ** (k / 32) = 1 beat: k = 2
    assert abs(float(table[1, period_1])) < 1e-5 and float(table[1, period_1 + 1]) > 0.9999
    period_4 = 2 * 6  # 4 beats: k = 6
    assert float(table[2, period_4 + 1]) > 0.9999 and abs(float(table[1, period_4 + 1])) < 1e-4
