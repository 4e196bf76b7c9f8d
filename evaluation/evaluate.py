"""How good are the model's transitions? Rendered, judged by the critic, against baselines.

    python -m evaluation.evaluate [--data DIR] [--checkpoint FILE] [tracks ...] [--pairs 12]
        [--samples 2] [--steps 25] [--guidance 2] [--plot FILE.png] [--write-readme [FILE]]
        [--conditioning]

Held-out pairs: the test split of a dataset (``--data``: tracks the model never saw, one
transition per ordered pair of them), every ordered pair of the tracks (audio files or stem
folders) given on the command line, or, with neither, of ``--generate`` tracks rendered by
analysis.synth; ``--pairs`` of each at most. Every pair's transition is rendered with the
differentiable mixer, deck B played at deck A's tempo vinyl-style as the engine plays it, from:

- model: ``--samples`` samples (``--steps`` DDIM steps, classifier-free guidance ``--guidance``);
- policy: the rule-based policy's transition for the pair (the dataset's target);
- crossfade: a plain linear crossfade, every other parameter neutral;
- random: uniform random curves;

and judged by evaluation.critic. Prints a markdown table of every metric per method (median and
interquartile range), the sample diversity (mean pairwise distance between the curves sampled for
the same pair, next to the same distance between pairs), and the score at each guidance scale
(the same noise for each). ``--write-readme`` puts this between the README's evaluation markers.

``--conditioning`` adds the swap-placement report (``conditioning_report``) on the whole test
split: for each example, sample transitions and find where deck B's bass comes in (the bass swap).
The policy puts it on a downbeat of one of deck B's phrase starts, which move with where B was
cued, so only a model that reads B's structure can hit them. The same model given the features of
a different deck B (same length) is the control. Also: how much the curves change with the pair
versus with the seed.

The last line is JSON: ``score_model``, ``score_policy``, ``score_crossfade``, ``score_random``
(medians of the critic's score, higher is better) and the other figures.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soxr
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from analysis.audio import AudioLoadError
from analysis.beats import BEATS_PER_BAR
from analysis.cache import AnalysisCache
from analysis.features import FRAMES_PER_BEAT
from analysis.track import AnalysisError, TrackAnalysis, analyze
from effects import DifferentiableMixer, MixerConfig
from effects.levels import LevelsConfig, trim_for
from effects.params import CROSSFADER, N_PARAMS, PARAM_INDEX, REVERB_WET, neutral_frame

from model.checkpoint import DEFAULT_CHECKPOINT, load_model
from .critic import Critique, render_and_critique
from model.data import Batch, DatasetError, TransitionDataset, build_dataset, generate_tracks
from model import TransitionDiffusion
from model.policy import END_FRAME, PHRASE_BARS, swap_beat

METHODS = ("model", "policy", "crossfade", "random")
README = Path(__file__).resolve().parents[1] / "README.md"
MARKERS = ("<!-- evaluation:start -->", "<!-- evaluation:end -->")


def markers(section: str = "") -> tuple[str, str]:
    """The README markers of an evaluation table (``section``: a second table, e.g. "real")."""
    if not section:
        return MARKERS
    return f"<!-- evaluation-{section}:start -->", f"<!-- evaluation-{section}:end -->"
_BOOL_METRICS = {f.name for f in fields(Critique) if f.type == "bool"}


class EvaluationError(ValueError):
    """Input the evaluation cannot use; the message names it."""


class EvaluationConfig(BaseModel):
    """What is rendered and how; the defaults keep a run to minutes on a 2-core CPU."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pairs: int = Field(12, ge=0)  # per source of pairs; 0: all
    samples: int = Field(2, ge=1)  # model samples per pair
    steps: int = Field(25, ge=1)
    guidance: float = Field(2.0, ge=0.0)  # the engine's default
    guidance_scales: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)
    # The critic's clicks band (2-8 kHz) and loudness weighting hold at 22.05 kHz; half the
    # samples of 44.1 kHz make rendering, which is most of the time, twice as fast.
    sample_rate: int = Field(22050, ge=16000)
    seed: int = 0
    # The mixer's reverb runs as many small steps; a second torch thread made a render 10 to 70
    # times slower on a loaded 2-core machine (threads waiting on each other), never faster.
    threads: int = Field(1, ge=1)


# --- baselines ---------------------------------------------------------------------------------

def linear_crossfade(n_frames: int) -> np.ndarray:
    """A plain linear crossfade from deck A to deck B, every other parameter neutral."""
    curves = np.tile(neutral_frame(), (n_frames, 1))
    curves[:, CROSSFADER] = np.linspace(0.0, 1.0, n_frames)
    return curves


def random_curves(rng: np.random.Generator, n_frames: int) -> np.ndarray:
    """Every parameter uniformly random in every frame, but the reverb's send kept shut:
    rendering the reverb per stem is what takes long, not judging."""
    curves = rng.uniform(0.0, 1.0, (n_frames, N_PARAMS)).astype(np.float32)
    curves[:, REVERB_WET] = 0.0
    return curves


# --- pairs -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pair:
    """One held-out transition as the mixer plays it and the model sees it."""

    name: str  # "a.flac > b.flac"
    bars: int
    stems_a: np.ndarray  # float32 [4, 2, N] deck A's excerpt at the render rate
    stems_b: np.ndarray  # deck B's, played at deck A's tempo
    beats: np.ndarray  # beat times (s) in the transition: one grid for both decks once matched
    key_a: int
    key_b: int  # as heard at deck A's tempo
    policy: np.ndarray  # [frames, 52] the policy's curves for the pair
    features: Batch  # both excerpts' features (one example), what the model is conditioned on


def heard_key(key: int, rate: float) -> int:
    """The key of a track played ``rate`` times faster vinyl-style (the pitch follows the
    speed), to the nearest semitone."""
    shift = int(round(12 * np.log2(rate)))
    return (key % 12 + shift) % 12 + 12 * (key // 12)


def excerpt(track: TrackAnalysis, start: float, seconds: float, rate: float,
            sample_rate: int) -> np.ndarray:
    """A track's stems from ``start`` (s of the track) played ``rate`` times faster for
    ``seconds``, at ``sample_rate``: float32 [4, 2, N]; silence beyond the track."""
    n = int(round(seconds * sample_rate))
    src = track.stems.reshape(-1, track.stems.shape[-1])
    first = int(round(start * track.sample_rate))
    span = int(np.ceil(seconds * rate * track.sample_rate)) + 256  # the resampler's edge
    piece = np.zeros((src.shape[0], span), dtype=np.float32)
    lo, hi = max(first, 0), min(first + span, src.shape[1])
    if hi > lo:
        piece[:, lo - first:hi - first] = src[:, lo:hi]
    played = soxr.resample(piece.T, track.sample_rate * rate, sample_rate).T[:, :n]
    out = np.zeros((src.shape[0], n), dtype=np.float32)
    out[:, :played.shape[1]] = played
    return out.reshape(*track.stems.shape[:2], n)


def pick_rows(data: TransitionDataset, count: int, seed: int = 0) -> np.ndarray:
    """One example per ordered pair of tracks (a random one), ``count`` pairs at random (0: all),
    in track order so that each track is loaded once."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    a, b = data.examples["a_track"], data.examples["b_track"]
    _, first = np.unique(np.stack([a[order], b[order]], axis=1), axis=0, return_index=True)
    rows = order[first]
    if count:
        rows = rng.choice(rows, min(count, rows.size), replace=False)
    return rows[np.lexsort((b[rows], a[rows]))]


def dataset_pairs(data: TransitionDataset, rows: np.ndarray, sample_rate: int,
                  cache: AnalysisCache | None = None) -> Iterator[Pair]:
    """The transitions ``rows`` of a dataset, their tracks analysed again from the sources its
    manifest names (read from the analysis cache when it holds them), each deck at the level the
    engine plays it (its loudness trim to the default target)."""
    entries = data.manifest["tracks"]
    separator = data.manifest.get("separator", "dsp")
    levels = LevelsConfig()

    @functools.lru_cache(maxsize=2)  # rows come in track order; a track is ~200 MB of stems
    def track(i: int) -> TrackAnalysis:
        try:
            return analyze(entries[i]["source"], separator=separator, cache=cache)
        except (AudioLoadError, AnalysisError) as err:
            raise EvaluationError(f"{data.root}: track {entries[i]['name']}: {err}") from None

    e = data.examples
    for row in rows:
        a, b = track(int(e["a_track"][row])), track(int(e["b_track"][row]))
        bars = int(e["bars"][row])
        period = a.grid.beat_period
        seconds = bars * BEATS_PER_BAR * period
        starts = [t.grid.first_downbeat + t.grid.beat_period
                  * (t.features.start_beat + int(e[f"{deck}_frame"][row]) / FRAMES_PER_BEAT)
                  for t, deck in ((a, "a"), (b, "b"))]
        rate = a.bpm / b.bpm  # deck B's speed at deck A's tempo
        yield Pair(f"{entries[e['a_track'][row]]['name']} > {entries[e['b_track'][row]]['name']}",
                   bars, trim_for(a.loudness_lufs, levels) * excerpt(a, starts[0], seconds, 1.0,
                                                                       sample_rate),
                   trim_for(b.loudness_lufs, levels) * excerpt(b, starts[1], seconds, rate,
                                                               sample_rate),
                   np.arange(bars * BEATS_PER_BAR) * period, a.key_index,
                   heard_key(b.key_index, rate), e["curves"][row].astype(np.float32),
                   data.batch(np.array([row])))


def tracks_dataset(tracks: list[Path], out_dir: Path, seed: int = 0,
                   cache: AnalysisCache | None = None,
                   log: Callable[[str], None] = print) -> TransitionDataset:
    """A dataset of one policy transition per ordered pair of ``tracks`` (all of them held out
    from the model), written to ``out_dir``; a track that cannot be used is an error."""
    for path in tracks:
        try:
            analyze(path, cache=cache)  # the builder skips bad tracks; here they are errors
        except (AudioLoadError, AnalysisError) as err:
            raise EvaluationError(str(err)) from None
    if len(tracks) < 2:
        raise EvaluationError(f"need at least two tracks to pair, got {len(tracks)}")
    build_dataset(tracks, out_dir, partners=len(tracks) - 1, transitions_per_pair=1,
                  holdout=0.0, seed=seed, cache=cache, log=log)
    data = TransitionDataset(out_dir, "train")
    if len(data) == 0:
        raise EvaluationError(f"tracks {[Path(t).name for t in tracks]}: too short for a "
                              f"transition of the policy's length")
    return data


# --- judging -----------------------------------------------------------------------------------

@dataclass
class Results:
    """Critic metrics per method (one row per transition) and the model's sampling figures."""

    metrics: dict[str, list[dict[str, float]]] = field(
        default_factory=lambda: {m: [] for m in METHODS})
    guidance: dict[float, list[float]] = field(default_factory=dict)  # first sample's score
    diversity: list[float] = field(default_factory=list)  # per pair, among its samples
    first_samples: list[np.ndarray] = field(default_factory=list)
    pairs: list[str] = field(default_factory=list)


def mean_pairwise_distance(curves: np.ndarray) -> float:
    """Mean |difference| between every two of ``curves`` [k, frames, 52] (0 for one)."""
    k = len(curves)
    if k < 2:
        return 0.0
    return float(np.mean([np.abs(curves[i] - curves[j]).mean()
                          for i in range(k) for j in range(i + 1, k)]))


def sample_model(model: TransitionDiffusion, pair: Pair, config: EvaluationConfig,
                 guidance: float, n_samples: int, seed: int) -> np.ndarray:
    f = pair.features
    return model.generate(f.track_a, f.track_b, steps=config.steps, guidance_scale=guidance,
                          seed=seed, n_samples=n_samples,
                          end=END_FRAME).numpy()


@torch.no_grad()
def evaluate(model: TransitionDiffusion, pairs: Iterator[Pair], config: EvaluationConfig,
             log: Callable[[str], None] = print,
             on_pair: Callable[[Pair, dict[str, list[np.ndarray]]], None] | None = None
             ) -> Results:
    """Render and judge every method on every pair; ``on_pair`` sees each pair's curves."""
    mixer = DifferentiableMixer(MixerConfig(sample_rate=config.sample_rate))
    rng = np.random.default_rng(config.seed)
    results = Results(guidance={g: [] for g in config.guidance_scales})

    def judge(pair: Pair, curves: np.ndarray) -> Critique:
        return render_and_critique(pair.stems_a, pair.stems_b, curves, config.sample_rate,
                                   pair.beats, pair.beats, pair.key_a, pair.key_b, mixer)

    for k, pair in enumerate(pairs):
        seed = config.seed + k
        samples = sample_model(model, pair, config, config.guidance, config.samples, seed)
        frames = pair.policy.shape[0]
        curves = {"model": list(samples), "policy": [pair.policy],
                  "crossfade": [linear_crossfade(frames)],
                  "random": [random_curves(rng, frames)]}
        judged = {m: [judge(pair, c) for c in cs] for m, cs in curves.items()}
        for method, critiques in judged.items():
            results.metrics[method] += [c.metrics() for c in critiques]
        for scale in config.guidance_scales:  # the first sample's noise at every scale
            score = judged["model"][0].score if scale == config.guidance else judge(
                pair, sample_model(model, pair, config, scale, 1, seed)[0]).score
            results.guidance[scale].append(score)
        results.diversity.append(mean_pairwise_distance(samples))
        results.first_samples.append(samples[0])
        results.pairs.append(pair.name)
        log(f"{pair.name} ({pair.bars} bars): " + ", ".join(
            f"{m} {' '.join(f'{c.score:.2f}' for c in cs)}" for m, cs in judged.items()))
        if on_pair is not None:
            on_pair(pair, curves)
    if not results.pairs:
        raise EvaluationError("no pairs to evaluate")
    return results


# --- reporting ---------------------------------------------------------------------------------

def _quartiles(values: list[float]) -> tuple[float, float, float]:
    p25, p50, p75 = np.percentile(values, [25, 50, 75])
    return float(p50), float(p25), float(p75)


def _cell(values: list[float], boolean: bool) -> str:
    if boolean:
        return f"{np.mean(values):.0%}"
    median, p25, p75 = _quartiles(values)
    return f"{median:.3g} ({p25:.3g}–{p75:.3g})"


def summary(results: Results) -> dict[str, float]:
    """The figures of the JSON line: median scores per method and per guidance scale, sample
    diversity, and counts."""
    out: dict[str, float] = {f"score_{m}": round(_quartiles(
        [row["score"] for row in results.metrics[m]])[0], 4) for m in METHODS}
    for scale, scores in results.guidance.items():
        out[f"score_guidance_{scale:g}"] = round(_quartiles(scores)[0], 4)
    out["sample_diversity"] = round(float(np.mean(results.diversity)), 4)
    out["curve_distance_between_pairs"] = round(
        mean_pairwise_distance(np.stack(results.first_samples)), 4)
    out["pairs"] = len(results.pairs)
    out["model_transitions"] = len(results.metrics["model"])
    return out


def markdown(results: Results, heading: str) -> str:
    """The report: ``heading``, the metrics table, guidance and diversity."""
    names = list(results.metrics["model"][0])
    names = ["score"] + [n for n in names if n.startswith("score_")] + [
        n for n in names if n != "score" and not n.startswith("score_")]
    lines = [heading, "", "| metric | " + " | ".join(METHODS) + " |",
             "| --- |" + " --- |" * len(METHODS)]
    for name in names:
        cells = [_cell([row[name] for row in results.metrics[m]], name in _BOOL_METRICS)
                 for m in METHODS]
        label = f"**{name}**" if name == "score" else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    scales = list(results.guidance)
    lines += ["", "| model, guidance scale | " + " | ".join(f"{g:g}" for g in scales) + " |",
              "| --- |" + " --- |" * len(scales),
              "| score (first sample of each pair) | "
              + " | ".join(_cell(results.guidance[g], False) for g in scales) + " |"]
    s = summary(results)
    lines += ["", f"Sample diversity: the model's samples for the same pair differ by "
              f"{s['sample_diversity']:.3f} on average (mean |Δ| over frames and parameters, "
              f"every two samples), its first samples for different pairs by "
              f"{s['curve_distance_between_pairs']:.3f}."]
    return "\n".join(lines)


def write_readme(path: Path, text: str, section: str = "") -> None:
    """Replace what lies between the evaluation markers in ``path`` with ``text``."""
    try:
        readme = path.read_text()
    except OSError as err:
        raise EvaluationError(f"{path}: cannot read it ({err.strerror})") from None
    marks = markers(section)
    start, end = (readme.find(m) for m in marks)
    if start < 0 or end < start:
        raise EvaluationError(f"{path}: no {marks[0]} ... {marks[1]} markers to write "
                              f"between")
    path.write_text(readme[:start + len(marks[0])] + "\n" + text + "\n" + readme[end:])


# --- swap placement (does the model read its conditioning?) ------------------------------------

def swap_hits(curves: np.ndarray, bars: int, offset: int) -> tuple[bool, bool]:
    """Whether the swap is on a downbeat, and on one of deck B's phrase starts."""
    beat = swap_beat(curves, bars)
    if beat is None:
        return False, False
    tolerance = 0.5 + BEATS_PER_BAR * bars / curves.shape[0] / 2  # half a beat and half a frame
    bar = round(beat / BEATS_PER_BAR)
    on_downbeat = abs(beat - bar * BEATS_PER_BAR) <= tolerance
    return on_downbeat, on_downbeat and (bar - offset) % PHRASE_BARS == 0


@torch.no_grad()
def conditioning_report(model: TransitionDiffusion, data: TransitionDataset, samples: int = 4,
                        steps: int = 50, seed: int = 0) -> dict[str, float]:
    """Swap placement of model samples, the policy's targets, and the shuffled-B control."""
    rng = np.random.default_rng(seed)
    hits = {name: [] for name in ("model", "policy", "control")}
    pair_gap, seed_gap = [], []
    for batch in data.batches(16):
        bars = int(data.examples["bars"][batch.rows[0]])
        offsets = data.examples["b_phrase_offset"][batch.rows]
        shuffled = data.batch(rng.permutation(batch.rows))
        runs = {"model": model.generate(batch.track_a, batch.track_b, steps=steps, seed=seed,
                                        n_samples=samples, end=END_FRAME),
                "control": model.generate(batch.track_a, shuffled.track_b, steps=steps,
                                          seed=seed, n_samples=samples,
                                          end=END_FRAME)}
        for name, out in runs.items():
            out = out.numpy().reshape(len(batch.rows), samples, *out.shape[1:])
            for curves_of_pair, offset in zip(out, offsets):
                hits[name] += [swap_hits(c, bars, int(offset)) for c in curves_of_pair]
        hits["policy"] += [swap_hits(c, bars, int(o)) for c, o in
                           zip(batch.curves.numpy(), offsets)]
        out = runs["model"].numpy().reshape(len(batch.rows), samples, -1)
        if len(batch.rows) > 1:  # same seed, different pairs vs same pair, different seeds
            pair_gap.append(np.abs(out[1:, 0] - out[:-1, 0]).mean())
        if samples > 1:
            seed_gap.append(np.abs(out[:, 1:] - out[:, :-1]).mean())
    report = {}
    for name, values in hits.items():
        arr = np.array(values, dtype=bool).reshape(-1, 2)
        report[f"{name}_swap_on_downbeat"] = round(float(arr[:, 0].mean()), 3)
        report[f"{name}_swap_on_b_phrase"] = round(float(arr[:, 1].mean()), 3)
    report["curve_change_between_pairs"] = round(float(np.mean(pair_gap)), 4)
    report["curve_change_between_seeds"] = round(float(np.mean(seed_gap)), 4) if seed_gap else 0.0
    report["examples"] = len(data)
    return report


def print_conditioning(report: dict[str, float]) -> None:
    for name in ("policy", "model", "control"):
        print(f"{name:8} swap on a downbeat {report[f'{name}_swap_on_downbeat']:.0%}, "
              f"on a phrase start of deck B {report[f'{name}_swap_on_b_phrase']:.0%}")
    print(f"mean |change| of the curves: between pairs {report['curve_change_between_pairs']}, "
          f"between seeds {report['curve_change_between_seeds']}")


# --- command line ------------------------------------------------------------------------------

def _sources(args: argparse.Namespace, work: Path, config: EvaluationConfig
             ) -> list[tuple[str, TransitionDataset]]:
    """The datasets whose pairs are evaluated, each with a line saying where it comes from."""
    def progress(message: str) -> None:
        print(message, file=sys.stderr)

    sources = []
    if args.data is not None:
        data = TransitionDataset(args.data, "test")
        if len(data) == 0:
            raise EvaluationError(f"{args.data}: the test split has no examples")
        sources.append((f"the test split of `{args.data}` ({data.track_count} held-out "
                        f"tracks)", data))
    tracks = list(args.tracks)
    what = "the tracks given"
    if not tracks and args.data is None:
        progress(f"no dataset and no tracks: generating {args.generate} tracks")
        tracks = generate_tracks(work / "generated", args.generate, seed=args.generate_seed)
        what = f"{args.generate} generated tracks (seed {args.generate_seed})"
    if tracks:
        sources.append((what, tracks_dataset(tracks, work / "tracks", config.seed,
                                             log=progress)))
    return sources


def _config(args: argparse.Namespace) -> EvaluationConfig:
    """The settings from the command line; a bad value is an error naming its option."""
    try:
        return EvaluationConfig(
            pairs=args.pairs, samples=args.samples, steps=args.steps, guidance=args.guidance,
            guidance_scales=tuple(args.guidance_scales), sample_rate=args.sample_rate,
            seed=args.seed, threads=args.threads)
    except ValidationError as err:
        first = err.errors()[0]
        option = "--" + str(first["loc"][0]).replace("_", "-")
        raise EvaluationError(f"{option}: {first['msg']}, got {first['input']!r}") from None


def main(argv: list[str] | None = None) -> int:
    threads = torch.get_num_threads()
    try:
        return _run(argv)
    finally:  # main() also runs inside other processes (the tests): leave torch as it was
        torch.set_num_threads(threads)


def _run(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tracks", nargs="*", type=Path,
                        help="audio files or stem folders; every ordered pair is evaluated")
    parser.add_argument("--data", type=Path, help="dataset (its test split)")
    parser.add_argument("--checkpoint", type=Path, help="default: the shipped model")
    defaults = EvaluationConfig()
    parser.add_argument("--pairs", type=int, default=defaults.pairs,
                        help="pairs per source at most (0: all)")
    parser.add_argument("--samples", type=int, default=defaults.samples)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--guidance", type=float, default=defaults.guidance)
    parser.add_argument("--guidance-scales", type=float, nargs="*",
                        default=list(defaults.guidance_scales))
    parser.add_argument("--sample-rate", type=int, default=defaults.sample_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch threads")
    parser.add_argument("--generate", type=int, default=4,
                        help="tracks to generate when neither --data nor tracks are given")
    parser.add_argument("--generate-seed", type=int, default=7)
    parser.add_argument("--plot", type=Path, help="PNG of the first pair's model transition")
    parser.add_argument("--plot-pairs", type=int, default=1, metavar="N",
                        help="plot the first N pairs: FILE.png, FILE-2.png, ...")
    parser.add_argument("--write-readme", type=Path, nargs="?", const=README, metavar="FILE",
                        help=f"write the table between the evaluation markers of FILE "
                             f"(default {README.name})")
    parser.add_argument("--section", default="", metavar="NAME",
                        help="write between <!-- evaluation-NAME:start/end --> instead")
    parser.add_argument("--conditioning", action="store_true",
                        help="also the swap-placement report on the whole test split of --data")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    checkpoint = args.checkpoint or DEFAULT_CHECKPOINT
    try:
        config = _config(args)
        if args.plot is not None and not args.plot.parent.is_dir():
            raise EvaluationError(f"{args.plot}: no folder {args.plot.parent} to write into")
        if args.conditioning and args.data is None:
            raise EvaluationError("--conditioning reads the test split of --data; none given")
        model = load_model(checkpoint)
        torch.set_num_threads(config.threads)
        with tempfile.TemporaryDirectory(prefix="evaluate-") as work:
            sources = _sources(args, Path(work), config)
            pairs = (pair for _, data in sources for pair in dataset_pairs(
                data, pick_rows(data, config.pairs, config.seed), config.sample_rate))
            plotted: list = []

            def plot_first(pair: Pair, curves: dict[str, list[np.ndarray]]) -> None:
                if args.plot is not None and len(plotted) < args.plot_pairs:
                    from .plots import plot_transition

                    f = pair.features
                    path = args.plot if not plotted else args.plot.with_name(
                        f"{args.plot.stem}-{len(plotted) + 1}{args.plot.suffix}")
                    plotted.append(plot_transition(
                        path, curves["model"][0], pair.bars, f.track_a, f.track_b,
                        f"{pair.name}: the model's first sample, {pair.bars} bars"))

            results = evaluate(model, pairs, config,
                               log=lambda m: print(m, file=sys.stderr), on_pair=plot_first)
    except (DatasetError, EvaluationError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    shown = checkpoint.resolve()
    shown = shown.relative_to(README.parent) if shown.is_relative_to(README.parent) else shown
    heading = (f"{len(results.pairs)} held-out pairs from {' and '.join(s for s, _ in sources)}; "
               f"model `{shown}`, {config.samples} samples per pair, {config.steps} DDIM "
               f"steps, guidance {config.guidance:g}; rendered at {config.sample_rate} Hz; "
               f"cells: median (interquartile range), shares for yes/no metrics.")
    text = markdown(results, heading)
    print(text)
    report = summary(results)
    if args.conditioning:
        swaps = conditioning_report(model, sources[0][1], config.samples, config.steps,
                                    config.seed)
        print_conditioning(swaps)
        report.update(swaps)
    for path in plotted:
        print(f"wrote {path}")
    if args.write_readme is not None:
        try:
            write_readme(args.write_readme, text, args.section)
        except EvaluationError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(f"wrote the table into {args.write_readme}")
    report.update(samples=config.samples, steps=config.steps, guidance=config.guidance,
                  sample_rate=config.sample_rate, seconds=round(time.perf_counter() - started))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
