"""Parameter counts per component of the model, next to the seed's figures.

    python -m model.summary [--config base|small]
"""

from __future__ import annotations

import argparse

from torch import nn

from .config import get_config
from .model import TransitionDiffusion

# The seed's design document, for the base config (approximate).
SEED_COUNTS = {"MelEncoder": 2.0e6, "MetadataEncoder": 0.2e6, "cross-attention": 0.5e6,
               "denoiser": 8.0e6}


def _count(*modules: nn.Module | nn.Parameter) -> int:
    return sum(m.numel() if isinstance(m, nn.Parameter) else
               sum(p.numel() for p in m.parameters()) for m in modules)


def parameter_counts(model: TransitionDiffusion) -> dict[str, int]:
    """Parameters per component; the values add up to the model's total."""
    e = model.encoder
    return {"MelEncoder": _count(e.mel), "MetadataEncoder": _count(e.metadata),
            "cross-attention": _count(e.a_from_b, e.b_from_a),  # A attends to B, B to A
            # Its norm, the projection to condition_dim, the deck and null embeddings.
            "conditioning out": _count(e.norm, e.out, e.deck_embedding, model.null_condition),
            "denoiser": _count(model.denoiser)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=("base", "small"), nargs="*",
                        default=["base", "small"])
    for name in parser.parse_args(argv).config:
        counts = parameter_counts(TransitionDiffusion(get_config(name)))
        print(f"{name}: {sum(counts.values()) / 1e6:.2f}M parameters")
        for part, n in counts.items():
            seed = f"  (seed: ~{SEED_COUNTS[part] / 1e6:g}M)" if name == "base" and (
                part in SEED_COUNTS) else ""
            print(f"  {part:16} {n / 1e6:7.3f}M{seed}")


if __name__ == "__main__":
    main()
