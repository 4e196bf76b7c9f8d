"""Optional Demucs separation (Hybrid Transformer Demucs), for machines that have its weights.

Nothing here downloads anything. Weights are read from a folder in the project's own format, a
``<name>.safetensors`` state dict beside a ``<name>.json`` holding the model's class arguments
(sources, channels, depth, ...), so loading never unpickles, i.e. never runs code from a file.
``convert_pretrained`` writes that format from a model the demucs package has already loaded
from the user's own cache (a one-off step the user runs and trusts).

The track is split into overlapping segments by ``demucs.apply.apply_model`` (the package's own
chunking), normalized as Demucs was trained, and the four sources are put in ``STEMS`` order.
Demucs's sources do not sum exactly to the input; the remainder goes to "other", so a neutral
mix still reproduces the track.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soxr
import torch

from effects.params import STEMS


def _demucs():
    try:
        import demucs.apply
        import demucs.htdemucs
    except ImportError:
        raise RuntimeError("the Demucs separator needs the 'demucs' package "
                           "(pip install 'demucs>=4,<5'); use separator 'dsp' instead") from None
    return demucs


def default_weights_dir() -> Path:
    return Path.home() / ".cache" / "automix-live" / "demucs"


def load_demucs(folder: Path | str, name: str = "htdemucs") -> torch.nn.Module:
    """An HTDemucs model from ``folder/name.json`` and ``folder/name.safetensors``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    spec_path, weights_path = folder / f"{name}.json", folder / f"{name}.safetensors"
    for path in (spec_path, weights_path):
        if not path.is_file():
            raise RuntimeError(f"{path}: no such file; Demucs weights are not downloaded at run "
                               f"time (see analysis.demucs_separator.convert_pretrained)")
    try:
        kwargs = json.loads(spec_path.read_text())
        model = _demucs().htdemucs.HTDemucs(**kwargs)
        model.load_state_dict(load_file(weights_path))
    except (SafetensorError, ValueError, TypeError, RuntimeError, OSError) as err:
        raise RuntimeError(f"{weights_path}: not usable Demucs weights ({err})") from None
    return model.eval()


def save_demucs(model: torch.nn.Module, kwargs: dict, folder: Path | str,
                name: str = "htdemucs") -> None:
    """Write an HTDemucs model in the format ``load_demucs`` reads."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(kwargs))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              folder / f"{name}.safetensors")


def convert_pretrained(folder: Path | str, name: str = "htdemucs") -> None:
    """Convert a pretrained model from the demucs package's local cache into our format."""
    from demucs.pretrained import get_model

    bag = get_model(name)
    model = bag.models[0] if hasattr(bag, "models") else bag
    save_demucs(model, dict(model._init_args_kwargs[1]), folder, name)


class DemucsSeparator:
    """Separates with an HTDemucs model, on CUDA, MPS or CPU."""

    name = "demucs"

    def __init__(self, model: torch.nn.Module, device: str | None = None,
                 overlap: float = 0.25) -> None:
        _demucs()
        self.model = model.eval()
        self.device = device or ("cuda" if torch.cuda.is_available() else
                                 "mps" if torch.backends.mps.is_available() else "cpu")
        self.overlap = overlap
        missing = set(STEMS) - set(model.sources)
        if missing:
            raise RuntimeError(f"the Demucs model has no {sorted(missing)} source(s); "
                               f"it separates {list(model.sources)}")

    def separate(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        apply_model = _demucs().apply.apply_model
        x = np.asarray(audio, dtype=np.float32)
        rate = self.model.samplerate
        y = x if sample_rate == rate else soxr.resample(x.T, sample_rate, rate).T
        mix = torch.from_numpy(np.ascontiguousarray(y))[None]
        ref = mix.mean(dim=1)
        mean, std = ref.mean(), ref.std() + 1e-8
        with torch.no_grad():
            # No random shifts (Demucs's test-time augmentation): the analysis is cached, so
            # the same file must give the same stems.
            sources = apply_model(self.model, (mix - mean) / std, shifts=0, split=True,
                                  overlap=self.overlap, device=self.device)[0]
        sources = (sources * std + mean).cpu().numpy()
        order = [list(self.model.sources).index(s) for s in STEMS]
        stems = sources[order]
        if sample_rate != rate:
            stems = np.stack([soxr.resample(s.T, rate, sample_rate).T for s in stems])
        n = x.shape[-1]
        stems = np.pad(stems[..., :n], ((0, 0), (0, 0), (0, max(0, n - stems.shape[-1]))))
        stems = stems.astype(np.float32)
        stems[STEMS.index("other")] += x - stems.sum(axis=0)
        return stems
