"""automix-live command line.

Until the live engine lands, the main job is an offline render through the streaming mixer: two
built-in generated 48-bar tracks (intro, drop, break, drop, outro) and a 16-bar "blend"
transition from the rule-based policy (model.policy: EQ blend, bass swap on the phrase boundary,
outgoing vocals out before the incoming ones) from deck A's last two phrases into deck B's
intro, written to a WAV file.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from analysis.audio import AudioLoadError
from analysis.key import key_index
from analysis.separation import SEPARATORS, get_separator
from analysis.synth import render_track
from analysis.track import AnalysisError, analyze
from effects import MixerConfig, StreamingMixer
from model.policy import plan_transition

BLOCK = 256


def render_demo(out_path: Path, bars_before: int = 32, bars_transition: int = 16,
                bars_after: int = 32, bpm: float = 124.0) -> None:
    config = MixerConfig()
    sr = config.sample_rate
    deck_a = render_track(seed=1, bpm=bpm, tonic=9, mode="minor",
                          bars=bars_before + bars_transition, sample_rate=sr)
    deck_b = render_track(seed=2, bpm=bpm, tonic=0, mode="major",
                          bars=bars_transition + bars_after, sample_rate=sr)
    samples_per_beat = 60.0 / bpm * sr
    start = int(round(4 * bars_before * samples_per_beat))
    length = start + deck_b.stems.shape[-1]
    # Deck B enters at the transition's first beat: pad both decks onto one timeline.
    a = np.zeros((4, 2, length), dtype=np.float32)
    b = np.zeros_like(a)
    a[..., : deck_a.stems.shape[-1]] = deck_a.stems
    b[..., start:] = deck_b.stems
    # The rule-based policy stands in for the model until trained weights ship.
    plan = plan_transition(key_index(deck_a.tonic, deck_a.mode),
                           key_index(deck_b.tonic, deck_b.mode), np.random.default_rng(7),
                           style="blend", bars=bars_transition)
    curves = plan.curves
    frames_per_beat = len(curves) / (4 * bars_transition)

    mixer = StreamingMixer(config, max_block=BLOCK)
    mix = np.zeros((2, length), dtype=np.float32)
    t0 = time.perf_counter()
    for s in range(0, length, BLOCK):
        e = min(s + BLOCK, length)
        beat = (e - start) / samples_per_beat  # the frame is reached at the block's end
        if beat < 0:
            frame = curves[0]
        else:
            frame = curves[min(int(beat * frames_per_beat), len(curves) - 1)]
        mix[:, s:e] = mixer.process(a[..., s:e], b[..., s:e], frame)
    elapsed = time.perf_counter() - t0
    out_path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(out_path, mix.T, sr, subtype="PCM_16")
    peak = float(np.max(np.abs(mix)))
    print(f"deck A: {deck_a.key_name}, {bpm:g} BPM; deck B: {deck_b.key_name}, {bpm:g} BPM")
    print(f"transition: {plan.style}, {bars_transition} bars from bar {bars_before + 1}, "
          f"bass swap on bar {bars_before + plan.swap_bar + 1}; "
          f"{length / sr:.1f} s rendered in {elapsed:.2f} s "
          f"({length / sr / elapsed:.0f}x real time), peak {20 * np.log10(peak):.1f} dBFS")
    print(f"wrote {out_path}")


def analyze_command(path: Path, separator: str, weights: Path | None) -> int:
    """Print what the analysis finds in a track; one clear line and exit code 1 if it cannot."""
    try:
        sep = get_separator(separator, weights=weights)
        track = analyze(path, separator=sep)
    except (AudioLoadError, AnalysisError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{path}: {track.duration:.1f} s, {track.bpm:.2f} BPM, {track.key_name} "
          f"({track.camelot}), first downbeat {track.grid.first_downbeat:.3f} s")
    for label, start, end in track.sections:
        print(f"  {label:<7} {start:7.2f} - {end:7.2f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render", type=Path, default=Path("out/demo_mix.wav"),
                        help="where to write the demo mix (default: %(default)s)")
    parser.add_argument("--analyze", type=Path, metavar="TRACK",
                        help="analyse an audio file (or a folder of stems), print tempo, key "
                             "and sections, and exit")
    parser.add_argument("--separator", choices=SEPARATORS, default="dsp",
                        help="stem separator for --analyze (default: %(default)s)")
    parser.add_argument("--demucs-weights", type=Path, metavar="DIR",
                        help="folder with htdemucs.json and htdemucs.safetensors")
    args = parser.parse_args(argv)
    if args.analyze is not None:
        return analyze_command(args.analyze, args.separator, args.demucs_weights)
    render_demo(args.render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
