"""Targets beyond the teacher: the model's own samples, rendered and judged by ear, the best kept.

    python -m evaluation.select --data DIR --out DIR [--checkpoint FILE] [--pairs 120]
        [--samples 4] [--steps 25] [--guidance 2] [--margin 0.02] [--share 0.5]
        [--styles blend filter echo_out] [--sample-rate 22050] [--seed 0]

Reward-ranked fine-tuning (best-of-n, as in RAFT, Dong et al. 2023) with the critic as the
reward. For training examples of ``--data`` (one per ordered pair of its train tracks, ``--pairs``
at most), the candidates are the example's own target (the rule policy's curves, in a style the
policy drew at random), the policy's transition in each of ``--styles``, and ``--samples`` of the
model's samples; each is rendered with ``DifferentiableMixer`` on the pair's stems, each deck at
the level the engine plays it and deck B at deck A's tempo, and judged by ``evaluation.critic``.
Another candidate replaces the target when it scores ``--margin`` above it. The policy draws its
style blind to the music; the chosen targets teach the model which transition a pair sounds best
with, and where the model's own samples sound better than any rule, those. The new dataset in ``--out`` holds every
example of ``--data`` (the policy's targets keep the curves' musical structure in training) and
the judged examples with their winning curves (style ``SELECTED_STYLE``), repeated so that they
make up ``--share`` of the training examples; its manifest lists every candidate's score
(``selection``). Fine-tune on it with ``python -m model.training --init CHECKPOINT --data OUT``.

Only the critic's score picks; evaluate the result on held-out tracks with measures the score
does not contain (the engine's loudness dip in bench/transitions.py, swap placement, diversity)
and look at its curves (``evaluation.evaluate --plot``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from effects import DifferentiableMixer, MixerConfig
from model.checkpoint import DEFAULT_CHECKPOINT, load_model
from model.data import (EXAMPLE_FIELDS, FRAMES_PER_BAR, DatasetError, TransitionDataset,
                        read_examples, save_manifest, write_examples)
from model.policy import STYLES, plan_transition

from .critic import render_and_critique
from .evaluate import EvaluationConfig, Pair, dataset_pairs, pick_rows, sample_model

SELECTED_STYLE = -3  # model.data's style code of a critic-selected example (-1: fitted from a mix)
# The cut is left out of the candidates by default: it overlaps the decks for a beat, so nothing
# can clash, and the critic preferred it on 22 of the first 33 real pairs judged with it. A
# model taught that would cut almost every time, which is not how a DJ mixes these tracks; the
# policy's own cuts (15 % of its targets) stay in the data.
BLENDS = tuple(s for s in STYLES if s != "cut")


def policy_styles(data: TransitionDataset, row: int, seed: int,
                  styles: tuple[str, ...] = STYLES) -> list[np.ndarray]:
    """The policy's transition in each of ``styles`` for the example ``row`` of ``data``: the
    same length, keys, vocals and deck B phrase offset as the example's own."""
    e = data.examples
    entries = data.manifest["tracks"]
    a, b = int(e["a_track"][row]), int(e["b_track"][row])
    bars = int(e["bars"][row])
    vocals = []
    for track, frame in ((a, e["a_frame"][row]), (b, e["b_frame"][row])):
        with np.load(data.root / "tracks" / f"{track:03d}.npz", allow_pickle=False) as z:
            first = (int(frame) - entries[track]["bar0"]) // FRAMES_PER_BAR
            vocals.append(bool(z["vocal_bars"][max(first, 0):first + bars].any()))
    rng = np.random.default_rng(seed)
    return [plan_transition(entries[a]["key_index"], entries[b]["key_index"], rng,
                            n_frames=e["curves"].shape[1], vocals_a=vocals[0],
                            vocals_b=vocals[1], style=style, bars=bars,
                            b_phrase_offset=int(e["b_phrase_offset"][row])).curves
            for style in styles]


def judge_candidates(model, pair: Pair, styles: list[np.ndarray], config: EvaluationConfig,
                     mixer: DifferentiableMixer, seed: int
                     ) -> tuple[list[np.ndarray], list[float]]:
    """The example's target, the policy in each style and the model's samples for ``pair``,
    with the critic's score of each (in that order)."""
    samples = sample_model(model, pair, config, config.guidance, config.samples, seed)
    candidates = [pair.policy, *styles, *samples]
    scores = [render_and_critique(pair.stems_a, pair.stems_b, c, config.sample_rate, pair.beats,
                                  pair.beats, pair.key_a, pair.key_b, mixer).score
              for c in candidates]
    return candidates, scores


def write_selected(data: TransitionDataset, out: Path, rows: list[int], curves: list[np.ndarray],
                   share: float, selection: list[dict], command: str) -> None:
    """The examples and tracks of ``data``'s dataset (its train split) plus its examples.npz rows
    ``rows`` with ``curves``, repeated to ``share`` of the training examples, in ``out``."""
    source = data.root
    shutil.copytree(source / "tracks", out / "tracks", dirs_exist_ok=True)
    manifest = dict(data.manifest)
    old = read_examples(source)
    repeat = max(1, round(share / (1.0 - share) * len(data) / max(len(rows), 1))) if rows else 0
    merged = {name: [*old[name], *np.repeat(old[name][rows], repeat, axis=0)]
              for name in EXAMPLE_FIELDS}
    merged["style"][len(old["style"]):] = [SELECTED_STYLE] * (len(rows) * repeat)
    merged["curves"] = [*old["curves"], *np.repeat(np.stack(curves), repeat, axis=0)] \
        if rows else list(old["curves"])
    write_examples(out, merged)
    manifest.update(n_examples=len(merged["curves"]), command=command,
                    targets=f"{manifest.get('targets', '')} + critic-selected",
                    selection={"source": str(source), "repeat": repeat, "rows": selection})
    save_manifest(out, manifest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset (its train split)")
    parser.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--pairs", type=int, default=120, help="train pairs to judge (0: all)")
    parser.add_argument("--samples", type=int, default=4, help="model samples per pair")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--margin", type=float, default=0.02,
                        help="how far a sample must score above the policy to replace it")
    parser.add_argument("--share", type=float, default=0.5,
                        help="share of the training examples the judged ones make up")
    parser.add_argument("--sample-rate", type=int, default=EvaluationConfig().sample_rate,
                        help="rate the candidates are rendered and judged at")
    parser.add_argument("--styles", nargs="*", choices=STYLES, default=list(BLENDS),
                        help=f"the policy's styles among the candidates (default: "
                             f"{' '.join(BLENDS)})")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    styles = tuple(args.styles)
    if not 0.0 < args.share < 1.0:
        print(f"error: --share must be between 0 and 1, got {args.share}", file=sys.stderr)
        return 2
    command = "python -m evaluation.select " + shlex.join(argv or sys.argv[1:])
    try:
        config = EvaluationConfig(samples=args.samples, steps=args.steps,
                                  guidance=args.guidance, seed=args.seed,
                                  sample_rate=args.sample_rate)
        model = load_model(args.checkpoint)
        torch.set_num_threads(config.threads)
        data = TransitionDataset(args.data, "train")
        rows = pick_rows(data, args.pairs, args.seed)
        mixer = DifferentiableMixer(MixerConfig(sample_rate=config.sample_rate))
        chosen_rows, chosen, selection = [], [], []
        started = time.perf_counter()
        for k, (row, pair) in enumerate(zip(rows, dataset_pairs(data, rows,
                                                                config.sample_rate))):
            candidates, scores = judge_candidates(
                model, pair, policy_styles(data, int(row), args.seed + k, styles), config, mixer,
                args.seed + k)
            best = int(np.argmax(scores))
            if best and scores[best] < scores[0] + args.margin:
                best = 0
            chosen_rows.append(int(data.file_rows[row]))
            chosen.append(np.asarray(candidates[best], dtype=np.float32))
            selection.append({"row": int(data.file_rows[row]), "pair": pair.name,
                              "scores": [round(s, 4) for s in scores], "chosen": best,
                              "chosen_from": _source(best, styles)})
            print(f"[{time.perf_counter() - started:6.0f} s] {k + 1}/{len(rows)} {pair.name}: "
                  f"target {scores[0]:.3f}, styles "
                  f"{' '.join(f'{s:.3f}' for s in scores[1:1 + len(styles)])}, samples "
                  f"{' '.join(f'{s:.3f}' for s in scores[1 + len(styles):])} -> "
                  f"{_source(best, styles)}", file=sys.stderr)
        write_selected(data, args.out, chosen_rows, chosen, args.share, selection, command)
    except (DatasetError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    won = [s for s in selection if s["chosen"] > len(styles)]
    restyled = [s for s in selection if 0 < s["chosen"] <= len(styles)]
    print(json.dumps({"pairs": len(selection), "samples_chosen": len(won),
                      "styles_chosen": len(restyled),
                      "score_policy": round(float(np.median([s["scores"][0] for s in selection])),
                                            4),
                      "score_chosen": round(float(np.median(
                          [s["scores"][s["chosen"]] for s in selection])), 4),
                      "out": str(args.out)}))
    return 0


def _source(candidate: int, styles: tuple[str, ...]) -> str:
    """What candidate ``candidate`` of ``judge_candidates`` is."""
    if candidate == 0:
        return "target"
    if candidate <= len(styles):
        return f"policy {styles[candidate - 1]}"
    return f"model sample {candidate - len(styles)}"


if __name__ == "__main__":
    sys.exit(main())
