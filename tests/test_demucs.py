"""The optional Demucs separator: real loading and chunking code on weights made here.

Pretrained Demucs weights cannot be downloaded on these machines, so the model is a small
randomly initialised HTDemucs that the test saves in the project's format and loads back; its
stems are meaningless as music, but every code path a user's real weights take is the same.
"""

import json

import numpy as np
import pytest
import torch

pytest.importorskip("demucs")

from demucs.apply import apply_model  # noqa: E402
from demucs.htdemucs import HTDemucs  # noqa: E402

from analysis.demucs_separator import DemucsSeparator, load_demucs, save_demucs  # noqa: E402
from analysis.separation import Separator, get_separator  # noqa: E402

SR = 44100
TINY = dict(sources=["vocals", "drums", "other", "bass"], channels=8, depth=2, t_layers=1,
            nfft=1024, segment=1, t_heads=2, dconv_comp=4)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("demucs")
    save_demucs(HTDemucs(**TINY), TINY, folder)
    return folder


def test_saved_weights_load_back_into_the_same_model(weights):
    model = load_demucs(weights)
    torch.manual_seed(0)
    original = HTDemucs(**TINY)
    for (name, a), b in zip(original.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name
    assert list(model.sources) == TINY["sources"]


def test_separation_runs_chunked_in_stem_order_and_sums_to_the_input(weights):
    separator = get_separator("demucs", weights=weights)
    assert isinstance(separator, Separator) and separator.device == "cpu"
    audio = (np.random.default_rng(1).standard_normal((2, int(2.5 * SR))) * 0.1).astype(
        np.float32)
    stems = separator.separate(audio, SR)
    assert stems.shape == (4, 2, audio.shape[1]) and stems.dtype == np.float32
    assert np.max(np.abs(stems.sum(axis=0) - audio)) < 1e-5
    # Drums and bass come from the model's own "drums" and "bass" outputs, whatever its order.
    mix = torch.from_numpy(audio)[None]
    ref = mix.mean(dim=1)
    with torch.no_grad():
        direct = apply_model(separator.model, (mix - ref.mean()) / (ref.std() + 1e-8),
                             shifts=0, split=True, overlap=0.25, device="cpu")[0]
    direct = (direct * (ref.std() + 1e-8) + ref.mean()).numpy()
    np.testing.assert_allclose(stems[0], direct[1], atol=1e-5)  # drums
    np.testing.assert_allclose(stems[1], direct[3], atol=1e-5)  # bass
    # Another rate is resampled in and out.
    assert separator.separate(audio, 48000).shape == (4,) + audio.shape


def test_broken_or_unsuitable_weights_are_clear_errors(weights, tmp_path):
    (tmp_path / "htdemucs.json").write_text(json.dumps(TINY))
    (tmp_path / "htdemucs.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(RuntimeError, match="htdemucs.safetensors: not usable Demucs weights"):
        load_demucs(tmp_path)
    two = dict(TINY, sources=["drums", "bass"])
    save_demucs(HTDemucs(**two), two, tmp_path, name="two")
    with pytest.raises(RuntimeError, match=r"no \['other', 'vocals'\] source"):
        DemucsSeparator(load_demucs(tmp_path, name="two"))


def test_analyze_uses_a_given_separator_and_keys_the_cache_by_it(weights, tmp_path):
    import soundfile as sf

    from analysis.cache import AnalysisCache
    from analysis.synth import render_track
    from analysis.track import analyze

    track = render_track(seed=3, bpm=128.0, bars=6)
    path = tmp_path / "t.wav"
    sf.write(path, track.mix.T, SR, subtype="FLOAT")
    cache = AnalysisCache(tmp_path / "cache")
    demucs = analyze(path, SR, separator=get_separator("demucs", weights=weights), cache=cache)
    dsp = analyze(path, SR, separator="dsp", cache=cache)
    assert len(list(cache.root.glob("*.npz"))) == 2  # one entry per separator
    assert not np.allclose(demucs.stems, dsp.stems)
    np.testing.assert_allclose(demucs.stems.sum(axis=0), dsp.stems.sum(axis=0), atol=1e-5)
