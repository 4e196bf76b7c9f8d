"""Does a transition keep the energy? The loudness dip of rendered transitions, and full scale.

    .venv/bin/python bench/transitions.py [TRACK ...] [--real N] [--pairs 12] [--bars 16]
        [--methods model policy crossfade] [--checkpoint FILE]

Every pair of tracks (consecutive pairs of the list: 1>2, 2>3, ...; ``--real N``: N tracks
spread over the real-music corpus, fetched on first use) is rendered through the engine as ``main.py
--render`` renders it (levels, mixer, limiter), from 30 s before the transition to 30 s after
it, with the transition's curves from each method: the model (the shipped checkpoint), the rule
policy, and a plain linear crossfade; pair k is rendered with the engine's seed k, so the policy
plays its different styles. For each render:

- the dip: the median 3 s short-term loudness (BS.1770) of the 30 s before and after the
  transition, minus the lowest short-term loudness while it runs (LU; 0 or less: no dip);
- samples at full scale (|x| >= 1).

Without tracks and ``--real``, two generated tracks. The last line is JSON: per method the
median and maximum dip, and the full-scale samples over all renders.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.beats import BEATS_PER_BAR  # noqa: E402
from analysis.features import FRAMES_PER_BEAT  # noqa: E402
from analysis.synth import render_track  # noqa: E402
from engine.backends import Cue, render_offline  # noqa: E402
from engine.config import EngineConfig  # noqa: E402
from engine.engine import Engine  # noqa: E402
from engine.session import mix_out_bar  # noqa: E402
from engine.transition import Transition  # noqa: E402
from evaluation.critic import short_term_loudness  # noqa: E402
from evaluation.evaluate import linear_crossfade  # noqa: E402

METHODS = ("model", "policy", "crossfade")
CONTEXT_S = 30.0


def loudness_dip(mix: np.ndarray, sample_rate: int, start: float, end: float,
                 context: float = CONTEXT_S) -> float:
    """Median short-term loudness of ``context`` s before ``start`` and after ``end`` minus the
    lowest short-term loudness between them (windows centred inside the transition)."""
    times, loudness = short_term_loudness(mix, sample_rate)
    around = ((times >= start - context) & (times < start)) | (
        (times > end) & (times <= end + context))
    during = (times >= start) & (times <= end)
    return float(np.median(loudness[around]) - loudness[during].min())


def render_pair(path_a: Path, path_b: Path, method: str, bars: int, checkpoint: str | None,
                seed: int = 0) -> tuple[np.ndarray, float, float, str]:
    """The render around the transition [2, N], its start and end (s into the render), and
    what the engine said of the transition; ``seed``: the engine's (the policy's style)."""
    config = EngineConfig(bars=bars, checkpoint="none" if method != "model" else checkpoint,
                          candidates=1, seed=seed, log=False)  # measurements, not performances
    engine = Engine(config)
    engine.load(0, path_a)
    engine.load(1, path_b)
    said = engine.poll()
    a, b = engine.tracks
    if a is None or b is None:
        raise RuntimeError("; ".join(said))
    sr = config.sample_rate
    start_beat = float(mix_out_bar(engine, None) * BEATS_PER_BAR)
    engine.plan_next(a_beat=start_beat)
    if method == "crossfade":
        frames = bars * BEATS_PER_BAR * FRAMES_PER_BEAT
        engine.plan.transitions = (Transition(linear_crossfade(frames), bars, "crossfade"),)
    lead_beats = np.ceil(CONTEXT_S / a.grid.beat_period) + 1
    from_beat = max(start_beat - lead_beats, -a.grid.first_downbeat / a.grid.beat_period)
    start_s = (start_beat - from_beat) * a.grid.beat_period
    total = int((start_s + bars * BEATS_PER_BAR * a.grid.beat_period + CONTEXT_S + 1.0) * sr)
    messages: list[str] = []
    script = [Cue(0, lambda: (engine.seek(0, from_beat), engine.play(0))),
              Cue(int((start_s - a.grid.beat_period) * sr),
                  lambda: messages.append(engine.trigger()))]
    mix = render_offline(engine.core, total, config.block_size, None, script)
    messages += engine.poll()
    engine.close()
    events = dict(engine.core.events)
    if "transition_finished" not in events:
        raise RuntimeError("the transition did not finish: " + " / ".join(messages))
    start, end = events["transition_started"] / sr, events["transition_finished"] / sr
    return mix, start, end, " / ".join(messages)


def generated_tracks(folder: Path) -> list[Path]:
    paths = []
    for seed, bpm, tonic in ((1, 124.0, 9), (2, 126.0, 0)):
        path = folder / f"synth_{seed}.flac"
        track = render_track(seed=seed, bpm=bpm, tonic=tonic, bars=64)
        sf.write(path, track.mix.T, 44100, subtype="PCM_24")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tracks", nargs="*", type=Path)
    parser.add_argument("--real", type=int, metavar="N",
                        help="N tracks of the real-music corpus (bench/real_corpus.py)")
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--checkpoint", help="model weights (default: the shipped ones)")
    args = parser.parse_args(argv)
    work = tempfile.TemporaryDirectory()
    if args.real:
        from real_corpus import fetch

        every = fetch()  # N tracks spread over the corpus: its packages differ in style
        tracks = [every[i].path() for i in np.linspace(0, len(every) - 1, args.real).astype(int)]
    else:
        tracks = args.tracks or generated_tracks(Path(work.name))
    pairs = list(zip(tracks, tracks[1:]))[:args.pairs]
    dips: dict[str, list[float]] = {m: [] for m in args.methods}
    full_scale = {m: 0 for m in args.methods}
    for k, (path_a, path_b) in enumerate(pairs):
        for method in args.methods:
            try:
                mix, start, end, said = render_pair(path_a, path_b, method, args.bars,
                                                    args.checkpoint, seed=k)
            except (RuntimeError, ValueError) as err:
                print(f"{path_a.name} > {path_b.name}: {method}: skipped ({err})")
                continue
            dip = loudness_dip(mix, EngineConfig().sample_rate, start, end)
            clipped = int(np.count_nonzero(np.abs(mix) >= 1.0))
            dips[method].append(dip)
            full_scale[method] += clipped
            print(f"{path_a.name} > {path_b.name}: {method:9s} dip {dip:5.1f} LU, "
                  f"peak {20 * np.log10(max(np.abs(mix).max(), 1e-9)):5.1f} dBFS, "
                  f"{clipped} at full scale  [{said}]", flush=True)
    summary = {"pairs": len(pairs)}
    for method in args.methods:
        values = dips[method] or [float("nan")]
        summary[f"dip_{method}_median"] = round(float(np.median(values)), 2)
        summary[f"dip_{method}_max"] = round(float(np.max(values)), 2)
        summary[f"full_scale_{method}"] = full_scale[method]
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
