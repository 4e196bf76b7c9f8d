"""automix-live: a two-deck DJ engine whose transitions a diffusion model writes.

    python main.py                                    # the demo: two built-in tracks, live
    python main.py --deck-a a.wav --deck-b b.wav      # play A; Enter triggers the transition
    python main.py --deck-a a.wav --deck-b b.wav --render mix.wav   # offline, then exit
    python main.py --warm-up                          # compile ahead (setup.sh runs it)

Live, deck A plays while the worker analyses both tracks and samples candidate transitions;
a trigger (Enter here, or a controller) starts one on the next bar, and deck B takes over.
Without an audio device the demo says so and renders to a file instead. This file parses the
command line and dispatches; the session is assembled in engine/session.py.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import signal
import sys
from pathlib import Path

# numpy asks the kernel for transparent huge pages for its large arrays by default. Where fresh
# memory is costly (a virtual machine returning freed pages to its host), faulting and clearing
# them in the worker and the key-lock child made the audio callback miss deadlines while a track
# loaded: bench/engine.py --load. Set before numpy is imported here, and inherited by the worker
# and the stretch child.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

from engine import progress  # noqa: E402

if __name__ == "__main__":
    # torch, librosa and numba take seconds to import, more from a cold disk: the first line
    # comes before them.
    progress.say("loading libraries (numpy, torch, librosa, numba)")

from analysis.audio import AudioLoadError  # noqa: E402
from analysis.separation import SEPARATORS, get_separator  # noqa: E402
from analysis.synth import demo_tracks  # noqa: E402
from analysis.track import AnalysisError, analyze  # noqa: E402
from controllers.learn import learn  # noqa: E402
from controllers.link import LinkFollower, LinkUnavailable  # noqa: E402
from controllers.mapping import load_mapping, preset_for  # noqa: E402
from controllers.midi import MidiController, MidiInput  # noqa: E402
from controllers.osc import DEFAULT_PORT, FEEDBACK_PORT, OSCServer  # noqa: E402
from controllers.parts import (ableton_part, clock_part, link_part, midi_part,  # noqa: E402
                               osc_part, web_part)
from controllers.web import DEFAULT_PORT as WEB_PORT, WebServer  # noqa: E402
from effects.params import PARAM_NAMES  # noqa: E402
from engine.backends import AudioDeviceError, output_devices, unwritable  # noqa: E402
from engine.config import EngineConfig  # noqa: E402
from effects.levels import LevelsConfig  # noqa: E402
from engine.playlist import PlaylistError, read_playlist  # noqa: E402
from engine.session import LiveOptions, Part, render_mix, render_set, run_live  # noqa: E402
from engine.warmup import warm_up  # noqa: E402

DEMO_TRIGGER_BAR = 9


def latency(text: str) -> str | float:
    """PortAudio's output latency: low, high, or seconds."""
    if text in ("low", "high"):
        return text
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0.0 < seconds < 10.0:
        raise argparse.ArgumentTypeError(f"{text!r}: give low, high or seconds (e.g. 0.01)")
    return seconds


def learn_command(args: argparse.Namespace) -> int:
    """MIDI learn: one message from the controller becomes an entry of --midi-map."""
    if args.midi_map is None:
        print("error: --midi-learn needs --midi-map FILE to write to", file=sys.stderr)
        return 2
    try:
        message, _ = learn(args.midi_map, args.midi or None, args.midi_learn, args.learn_deck,
                           args.learn_target, PARAM_NAMES)
    except (OSError, TimeoutError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"learned {message} -> {args.midi_learn} in {args.midi_map}")
    return 0


def analyze_command(path: Path, separator: str, weights: Path | None) -> int:
    """Print what the analysis finds in a track; one clear line and exit code 1 if it cannot."""
    try:
        sep = get_separator(separator, weights=weights)
        track = analyze(path, separator=sep)
    except (AudioLoadError, AnalysisError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{path}: {track.duration:.1f} s, {track.grid.describe()}, grid confidence "
          f"{track.grid.confidence:.2f}, {track.key_name} "
          f"({track.camelot}), first downbeat {track.grid.first_downbeat:.3f} s")
    for label, start, end in track.sections:
        print(f"  {label:<7} {start:7.2f} - {end:7.2f} s")
    return 0


def play_set(args: argparse.Namespace, config: EngineConfig) -> int:
    """``--playlist``: the set rendered (``--render``) or live."""
    if args.deck_a is not None or args.deck_b is not None:
        print("error: give --playlist or --deck-a/--deck-b, not both", file=sys.stderr)
        return 2
    try:
        tracks, skipped = read_playlist(args.playlist)
    except PlaylistError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for line in skipped:
        print(f"playlist: left out {line}")
    if args.render is not None:
        if (problem := unwritable(args.render, config.sample_rate)) is not None:
            print(f"error: --render {args.render}: {problem}", file=sys.stderr)
            return 2
        return render_set(config, tracks, args.render, args.order)
    if not output_devices():
        print("no audio output device found (see --list-devices); use --render FILE to write "
              "the set to a file", file=sys.stderr)
        return 2
    options = LiveOptions(record=args.record, seconds=args.seconds, playlist=tuple(tracks),
                          order=args.order, auto_mix=args.auto)
    return run_session(config, None, None, options, args)


def listen_flags(p: argparse.ArgumentParser, name: str, port: int, what: str) -> None:
    """--NAME [PORT], --NAME-host and --NAME-allow: a server for controllers on this machine,
    or beyond it for the clients of an allow-list."""
    p.add_argument(f"--{name}", type=int, nargs="?", const=port, metavar="PORT",
                   help=f"{what} on PORT (default {port})")
    p.add_argument(f"--{name}-host", default="127.0.0.1",
                   help=f"address to listen on; anything but loopback needs --{name}-allow")
    p.add_argument(f"--{name}-allow", nargs="*", default=[], metavar="IP",
                   help="client addresses allowed to control the engine")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--deck-a", type=Path, help="track for deck A (a file or a stem folder)")
    p.add_argument("--deck-b", type=Path, help="track for deck B (without both decks: the "
                   "demo's two built-in tracks, with a transition triggered by itself)")
    p.add_argument("--playlist", type=Path, metavar="PATH",
                   help="a DJ set: a folder of tracks or an .m3u/.m3u8, mixed track after track "
                        "(instead of --deck-a/--deck-b)")
    p.add_argument("--order", choices=("given", "smart"), default="given",
                   help="the set's order: the playlist's, or smart: keys that mix, small tempo "
                        "steps and an energy arc, searched over the whole list")
    p.add_argument("--auto", action="store_true",
                   help="auto-mix the set live: every transition triggers by itself where a DJ "
                        "would mix (offline renders always do)")
    p.add_argument("--render", type=Path, metavar="FILE",
                   help="render offline (A, the transition, B's continuation; or the whole "
                        "--playlist set, with a .cue and a tracklist beside it) and exit")
    p.add_argument("--transition-at", type=int, metavar="BAR",
                   help="bar of deck A where the rendered transition starts (default: where a DJ "
                        "would mix out)")
    p.add_argument("--auto-trigger", type=int, metavar="BAR",
                   help="trigger the transition by itself when deck A reaches BAR (the demo: 9)")
    p.add_argument("--record", type=Path, metavar="FILE", help="record what is played (live)")
    p.add_argument("--log-dir", type=Path, metavar="DIR",
                   help="the performer log's folder: every transition played, as a training "
                        "example (default: $XDG_DATA_HOME/automix-live/transitions)")
    p.add_argument("--no-log", action="store_true", help="keep no performer log")
    p.add_argument("--seconds", type=float, help="stop the live engine after this long")
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("--device", help="output device: index or part of its name")
    p.add_argument("--block-size", type=int, default=256, help="frames per audio callback")
    p.add_argument("--latency", default="low", type=latency,
                   help="output latency: low, high or seconds")
    p.add_argument("--bars", type=int, default=16, help="transition length in bars")
    p.add_argument("--quantize", default="bar", choices=("off", "beat", "bar", "phrase"))
    p.add_argument("--key-lock", action="store_true",
                   help="a deck's tempo change keeps its pitch (time-stretched copies made in the "
                        "background; vinyl-style until ready) instead of moving it like vinyl")
    p.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance")
    p.add_argument("--candidates", type=int, default=3, help="transitions sampled per pair")
    p.add_argument("--steps", type=int, default=25, help="DDIM steps")
    p.add_argument("--checkpoint", help="model weights (default: the shipped ones; none: the "
                                        "rule-based policy writes the transitions)")
    p.add_argument("--model-device", help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--worker", choices=("process", "thread"), default="process")
    p.add_argument("--separator", choices=SEPARATORS, default="dsp",
                   help="stem separator for tracks given as one file")
    p.add_argument("--auto-gain", choices=("on", "off"), default="on",
                   help="trim each track from its loudness to --loudness-target")
    p.add_argument("--loudness-target", type=float, default=-14.0, metavar="LUFS")
    listen_flags(p, "osc", DEFAULT_PORT, "listen for OSC")
    p.add_argument("--osc-feedback", nargs="*", default=[], metavar="HOST:PORT",
                   help=f"send state to these clients (TouchOSC listens on {FEEDBACK_PORT})")
    listen_flags(p, "web", WEB_PORT, "serve the performer's view to browsers")
    p.add_argument("--midi", nargs="?", const="", metavar="NAME",
                   help="take MIDI from input ports whose name contains NAME (all without)")
    p.add_argument("--midi-map", type=Path, metavar="FILE",
                   help="mapping file (default: the preset for the port's name, else "
                        "presets/generic.yaml)")
    p.add_argument("--midi-clock-in", action="store_true",
                   help="the deck on air follows MIDI clock from the --midi ports")
    p.add_argument("--midi-clock-out", metavar="PORT",
                   help="send MIDI clock at the live tempo to the output port matching PORT")
    p.add_argument("--ableton", nargs="?", const="127.0.0.1", metavar="HOST",
                   help="follow Ableton Live's tempo through AbletonOSC (ports 11000/11001)")
    p.add_argument("--link", action="store_true",
                   help="follow an Ableton Link session's tempo and bar phase (needs the "
                        "optional aalink package)")
    p.add_argument("--midi-learn", metavar="COMMAND",
                   help="MIDI learn: map the next message from --midi to COMMAND (play, trigger, "
                        "param, ...) in --midi-map, then exit")
    p.add_argument("--learn-deck", choices=("a", "b"), help="the deck of a learned command")
    p.add_argument("--learn-target", metavar="PARAM", help="the parameter of a learned param")
    p.add_argument("--analyze", type=Path, metavar="TRACK",
                   help="analyse a track, print tempo, key and sections, and exit")
    p.add_argument("--demucs-weights", type=Path, metavar="DIR",
                   help="folder with htdemucs.json and htdemucs.safetensors")
    p.add_argument("--warm-up", action="store_true",
                   help="compile every numba kernel into numba's on-disk cache and make and "
                        "analyse the demo's tracks, then exit (setup.sh runs it)")
    return p.parse_args(argv)


def controller_parts(args: argparse.Namespace) -> tuple[Part, ...]:
    """The optional parts the command line asks for, in the order they start. Raises
    ValueError or OSError for a bad mapping or address, before any music."""
    parts: list[Part] = []
    if args.osc is not None:
        feedback = [(h, int(p)) for h, p in (x.rsplit(":", 1) for x in args.osc_feedback)]
        server = OSCServer(None, args.osc_host, args.osc, tuple(args.osc_allow), feedback)
        parts.append(functools.partial(osc_part, server))
    if args.web is not None:
        parts.append(functools.partial(web_part, WebServer(None, args.web_host, args.web,
                                                           tuple(args.web_allow))))
    if args.midi is not None:
        mapping = load_mapping(args.midi_map or preset_for(args.midi), PARAM_NAMES)
        midi = MidiInput(MidiController(None, mapping, follow_clock=args.midi_clock_in),
                         args.midi or None)
        parts.append(functools.partial(midi_part, midi))
    if args.ableton is not None:
        parts.append(functools.partial(ableton_part, args.ableton))
    if args.link:
        parts.append(functools.partial(link_part, LinkFollower(None)))
    if args.midi_clock_out is not None:
        parts.append(functools.partial(clock_part, args.midi_clock_out))
    return tuple(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.analyze is not None:
        return analyze_command(args.analyze, args.separator, args.demucs_weights)
    if args.midi_learn is not None:
        return learn_command(args)
    if args.warm_up:
        return warm_up()
    if args.list_devices:
        import sounddevice as sd

        print(sd.query_devices())
        return 0
    device = int(args.device) if args.device and args.device.isdigit() else args.device
    try:
        config = EngineConfig(block_size=args.block_size, latency=args.latency, device=device,
                              quantize=args.quantize, key_lock=args.key_lock,
                              bars=args.bars, guidance=args.guidance,
                              candidates=args.candidates, steps=args.steps,
                              checkpoint=args.checkpoint, model_device=args.model_device,
                              worker=args.worker, separator=args.separator,
                              log=not args.no_log,
                              log_dir=str(args.log_dir) if args.log_dir else None,
                              levels=LevelsConfig(auto_gain=args.auto_gain == "on",
                                                  target_lufs=args.loudness_target))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.checkpoint not in (None, "none"):
        # A checkpoint the user names must load; only the default, missing, falls back.
        from model.checkpoint import load_model

        try:
            load_model(args.checkpoint)
        except (FileNotFoundError, ValueError) as err:
            print(f"error: --checkpoint: {err}", file=sys.stderr)
            return 2
    if args.playlist is not None:
        return play_set(args, config)
    if (args.deck_a is None) != (args.deck_b is None):
        print("error: give both --deck-a and --deck-b (or neither, for the demo)",
              file=sys.stderr)
        return 2
    demo = args.deck_a is None
    if demo:
        progress.say("demo: two generated tracks (made on the first run, then kept)")
    deck_a, deck_b = (args.deck_a, args.deck_b) if not demo else demo_tracks(config.sample_rate)
    if args.render is None and not output_devices():
        print("no audio output device found (see --list-devices); use --render FILE to write "
              "the mix to a file", file=sys.stderr)
        if not demo:
            return 2
        args.render = Path("out/demo_mix.wav")
        args.render.parent.mkdir(exist_ok=True)
        print(f"rendering the demo to {args.render} instead", file=sys.stderr)
    if args.render is not None:
        if (problem := unwritable(args.render, config.sample_rate)) is not None:
            print(f"error: --render {args.render}: {problem}", file=sys.stderr)
            return 2
        return render_mix(config, deck_a, deck_b, args.render, args.transition_at)
    auto = args.auto_trigger if args.auto_trigger is not None else (
        DEMO_TRIGGER_BAR if demo else None)
    options = LiveOptions(record=args.record, auto_trigger=auto, seconds=args.seconds)
    return run_session(config, deck_a, deck_b, options, args)


def run_session(config: EngineConfig, deck_a: Path | None, deck_b: Path | None,
                options: LiveOptions, args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run_live(config, deck_a, deck_b, options, controller_parts(args)))
    except (ValueError, OSError, LinkUnavailable, AudioDeviceError) as err:
        print(f"error: {err}", file=sys.stderr)  # a mapping, an address, a port, the device
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    # A shell starts background jobs with SIGINT ignored, and Python keeps that; SIGINT (Ctrl-C)
    # is how a live session stops with its recording and log closed, whoever started it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
