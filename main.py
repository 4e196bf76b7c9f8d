"""automix-live: a two-deck DJ engine whose transitions a diffusion model writes.

    python main.py                                    # the demo: two built-in tracks, live
    python main.py --deck-a a.wav --deck-b b.wav      # play A; Enter triggers the transition
    python main.py --deck-a a.wav --deck-b b.wav --render mix.wav   # offline, then exit

Live, deck A plays while the worker analyses both tracks and samples candidate transitions;
a trigger (Enter here, or a controller) starts one on the next bar, and deck B takes over.
Without an audio device the demo says so and renders to a file instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import mido
import numpy as np
import soundfile as sf

from analysis.audio import AudioLoadError
from analysis.beats import BEATS_PER_BAR, PHRASE_BARS
from analysis.cache import default_cache_dir
from analysis.separation import SEPARATORS, get_separator
from analysis.synth import render_track
from analysis.track import AnalysisError, analyze
from controllers.mapping import load_mapping
from controllers.ableton import AbletonTempo
from controllers.learn import add_control, control_from, next_message
from controllers.link import LinkFollower, LinkUnavailable
from controllers.midi import MidiClockOut, MidiController, MidiInput, open_ports
from controllers.osc import DEFAULT_PORT, FEEDBACK_PORT, OSCServer
from effects.params import PARAM_NAMES, STEMS
from engine.backends import (AudioDeviceError, AudioOutput, Cue, output_devices,
                             render_offline)
from engine.config import EngineConfig
from engine.engine import Engine
from engine.levels import LevelsConfig
from engine.recorder import Recorder
from engine.worker import GenerationWorker

PRESETS = Path(__file__).resolve().parent / "presets"
DEMO = ({"seed": 1, "bpm": 124.0, "tonic": 9, "mode": "minor", "bars": 48},
        {"seed": 2, "bpm": 126.0, "tonic": 0, "mode": "major", "bars": 48})


def demo_tracks(sample_rate: int) -> tuple[Path, Path]:
    """The two built-in generated tracks as stem folders in the cache (made once)."""
    paths = []
    for name, spec in zip("ab", DEMO):
        folder = default_cache_dir().parent / "demo" / f"{name}-{spec['seed']}-{sample_rate}"
        if not (folder / "other.flac").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            track = render_track(sample_rate=sample_rate, **spec)
            for stem, audio in zip(STEMS, track.stems):
                sf.write(folder / f"{stem}.flac", audio.T, sample_rate, subtype="PCM_24")
        paths.append(folder)
    return paths[0], paths[1]


def preset_for(port: str) -> Path:
    """The preset whose ``port`` occurs in the given port name, else the generic mapping."""
    for path in sorted(PRESETS.glob("*.yaml")):
        mapping = load_mapping(path)
        if mapping.port and port and mapping.port.lower() in port.lower():
            return path
    return PRESETS / "generic.yaml"


def mix_out_bar(engine: Engine, transition_at: int | None) -> int:
    """Where the transition starts (a bar of deck A from 0): the given bar, or where a DJ would
    mix out: the last phrase start that leaves the transition's length before A ends."""
    if transition_at is not None:
        return max(0, transition_at - 1)
    bars_a = engine.tracks[0].bars
    return max(0, (bars_a - engine.bars) // PHRASE_BARS * PHRASE_BARS)


def render_mix(config: EngineConfig, deck_a: Path, deck_b: Path, out: Path,
               transition_at: int | None, block_size: int) -> int:
    engine = Engine(config)
    for deck, path in ((0, deck_a), (1, deck_b)):
        engine.load(deck, path)
    for message in engine.poll():
        print(message)
    if engine.tracks[0] is None or engine.tracks[1] is None:
        print("error: both decks need a track that loads", file=sys.stderr)
        return 1
    a, b = engine.tracks
    start_bar = mix_out_bar(engine, transition_at)
    start_beat = float(start_bar * BEATS_PER_BAR)
    engine.plan_next(a_beat=start_beat)
    sr = config.sample_rate
    trigger_at = int(a.position_of(start_beat - 1.0, sr))
    rate_b = b.grid.beat_period / a.grid.beat_period
    total = int(a.position_of(start_beat, sr) + (b.samples - b.position_of(0.0, sr)) / rate_b)
    said: list[str] = []
    script = [Cue(0, lambda: engine.play(0)),
              Cue(max(trigger_at, 0), lambda: said.append(engine.trigger()))]
    t0 = time.perf_counter()
    mix = render_offline(engine.core, total, block_size, out, script)
    elapsed = time.perf_counter() - t0
    print(*said, *engine.poll(), sep="\n")
    if engine.plan and engine.plan.note:
        print(f"note: {engine.plan.note}")
    if config.key_lock:
        print(f"deck B: {engine.keylock.mode(1)}")
    peak = float(np.max(np.abs(mix))) if mix.size else 0.0
    print(f"transition from bar {start_bar + 1} of {a.name}; {mix.shape[1] / sr:.1f} s rendered "
          f"in {elapsed:.1f} s ({mix.shape[1] / sr / elapsed:.0f}x real time), "
          f"peak {20 * np.log10(max(peak, 1e-9)):.1f} dBFS")
    print(f"wrote {out}")
    return 0


async def run_live(config: EngineConfig, deck_a: Path, deck_b: Path, record: Path | None,
                   auto_trigger: int | None, seconds: float | None,
                   osc: OSCServer | None = None, midi: MidiInput | None = None,
                   clock_port: str | None = None, ableton: str | None = None,
                   link: LinkFollower | None = None) -> int:
    worker = GenerationWorker(config.worker, config.checkpoint, config.model_device,
                              config.worker_threads)
    worker.start()
    engine = Engine(config, worker=worker)
    recorder = Recorder(record, config.sample_rate, config.record_seconds) if record else None
    try:
        output = AudioOutput(engine.core, config.sample_rate, config.block_size, config.device,
                             config.latency, recorder)
    except AudioDeviceError as err:
        print(f"error: {err}", file=sys.stderr)
        worker.stop()
        if recorder:
            recorder.close()
        return 2
    engine.load(0, deck_a)
    engine.load(1, deck_b)
    loop = asyncio.get_running_loop()
    if osc is not None:
        osc.engine = engine
        await osc.start()
        feedback = asyncio.create_task(osc.feedback_loop(engine.feedback_state))
        print(f"OSC on {osc.host}:{osc.port}")
    if midi is not None:
        midi.controller.engine = engine
        next_scan = 0.0
    live = None
    if ableton is not None:
        live = AbletonTempo(engine, ableton)
        await live.start()
    if link is not None:
        link.engine, link.latency = engine, output.output_latency
        await link.start()
        following = asyncio.create_task(link.run())
    clock = None
    if clock_port is not None:
        backend = mido.Backend(os.environ.get("MIDO_BACKEND", "mido.backends.rtmidi"))
        names = [n for n in backend.get_output_names() if clock_port.lower() in n.lower()]
        if not names:
            print(f"error: no MIDI output port matches {clock_port}", file=sys.stderr)
        else:
            clock = MidiClockOut(backend.open_output(names[0]), engine.live_bpm)
            clock.start()
    triggers: asyncio.Queue[str] = asyncio.Queue()
    if sys.stdin.isatty():
        loop.add_reader(sys.stdin, lambda: triggers.put_nowait(sys.stdin.readline().strip()))
    print("Enter: transition  |  a: abort  |  h: hold/release  |  r: regenerate  |  "
          "1-8: candidate  |  q: quit")
    output.start()
    started, auto_done, held, playing_a = time.monotonic(), False, False, False
    try:
        while True:
            for message in engine.poll():
                print(f"\r{message:<120}")
            while not triggers.empty():
                key = triggers.get_nowait()
                if key == "q":
                    return 0
                if key == "a":
                    engine.abort()
                elif key == "h":
                    held = not held
                    engine.hold(held)
                elif key == "r":
                    engine.regenerate()
                elif key.isdigit() and engine.plan and 0 < int(key) <= len(
                        engine.plan.transitions):
                    engine.select(int(key) - 1)
                else:
                    print(f"\r{engine.trigger():<120}")
            if midi is not None:
                if time.monotonic() >= next_scan:  # hot-plug: look for the controller again
                    for name in midi.scan(loop):
                        print(f"\rMIDI: {name} ({midi.controller.mapping.name})")
                    if midi.error:
                        print(f"\r{midi.error}", file=sys.stderr)
                        midi = None
                        continue
                    next_scan = time.monotonic() + 2.0
                midi.send_feedback(engine.feedback_state())
            status = engine.core.status
            if not playing_a and engine.tracks[0] is not None:
                engine.play(0)  # deck A starts as soon as it is loaded
                playing_a = True
            # Like a performer's trigger, it does not wait for the model: the policy stands in.
            if auto_trigger is not None and not auto_done and engine.tracks[1] is not None \
                    and status.beats[0] >= (auto_trigger - 1) * BEATS_PER_BAR:
                print(f"\r{engine.trigger():<120}")
                auto_done = True
            sys.stdout.write("\r" + engine.status_line(output.load_percentiles(),
                                                       output.xruns)[:160])
            sys.stdout.flush()
            if output.finished:
                print("\nerror: the audio device stopped", file=sys.stderr)
                return 2
            if seconds is not None and time.monotonic() - started >= seconds:
                return 0
            await asyncio.sleep(0.1)
    finally:
        if osc is not None:
            feedback.cancel()
            osc.close()
        if midi is not None:
            midi.close()
        if clock is not None:
            clock.stop()
        if live is not None:
            live.close()
        if link is not None:
            following.cancel()
            link.close()
        output.stop()
        engine.close()
        worker.stop()
        print()
        if recorder:
            recorder.close()
            played = output.frames_played
            print(f"recorded {played - recorder.dropped_frames} of {played} frames played to "
                  f"{recorder.path}"
                  + (f"; {recorder.dropped_frames} dropped" if recorder.dropped_frames else "")
                  + (f"; {recorder.error}" if recorder.error else ""))


def learn_command(args: argparse.Namespace) -> int:
    """MIDI learn: one message from the controller becomes an entry of --midi-map."""
    if args.midi_map is None:
        print("error: --midi-learn needs --midi-map FILE to write to", file=sys.stderr)
        return 2
    backend = mido.Backend(os.environ.get("MIDO_BACKEND", "mido.backends.rtmidi"))
    try:
        names = open_ports(backend, args.midi or None)
        if not names:
            raise OSError(f"no MIDI input port matches {args.midi or '(any)'}")
        with backend.open_input(names[0]) as port:
            print(f"move the control for {args.midi_learn} on {names[0]} ...", flush=True)
            message = asyncio.run(next_message(port, 30.0))
        control = control_from(message, args.midi_learn, args.learn_deck, args.learn_target)
        add_control(args.midi_map, control, PARAM_NAMES)
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
    print(f"{path}: {track.duration:.1f} s, {track.bpm:.2f} BPM, {track.key_name} "
          f"({track.camelot}), first downbeat {track.grid.first_downbeat:.3f} s")
    for label, start, end in track.sections:
        print(f"  {label:<7} {start:7.2f} - {end:7.2f} s")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--deck-a", type=Path, help="track for deck A (a file or a stem folder)")
    p.add_argument("--deck-b", type=Path, help="track for deck B")
    p.add_argument("--demo", action="store_true", help="the two built-in generated tracks, "
                   "with a transition triggered by itself (the default without decks)")
    p.add_argument("--render", type=Path, metavar="FILE",
                   help="render offline (A, the transition, B's continuation) and exit")
    p.add_argument("--transition-at", type=int, metavar="BAR",
                   help="bar of deck A where the rendered transition starts (default: where a DJ "
                        "would mix out)")
    p.add_argument("--auto-trigger", type=int, metavar="BAR",
                   help="trigger the transition by itself when deck A reaches BAR (the demo: 9)")
    p.add_argument("--record", type=Path, metavar="FILE", help="record what is played (live)")
    p.add_argument("--seconds", type=float, help="stop the live engine after this long")
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("--device", help="output device: index or part of its name")
    p.add_argument("--block-size", type=int, default=256, help="frames per audio callback")
    p.add_argument("--latency", default="low", help="output latency: low, high or seconds")
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
    p.add_argument("--osc", type=int, nargs="?", const=DEFAULT_PORT, metavar="PORT",
                   help=f"listen for OSC on PORT (default {DEFAULT_PORT})")
    p.add_argument("--osc-host", default="127.0.0.1",
                   help="address to listen on; anything but loopback needs --osc-allow")
    p.add_argument("--osc-allow", nargs="*", default=[], metavar="IP",
                   help="client addresses allowed to control the engine")
    p.add_argument("--osc-feedback", nargs="*", default=[], metavar="HOST:PORT",
                   help=f"send state to these clients (TouchOSC listens on {FEEDBACK_PORT})")
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
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.analyze is not None:
        return analyze_command(args.analyze, args.separator, args.demucs_weights)
    if args.midi_learn is not None:
        return learn_command(args)
    if args.list_devices:
        import sounddevice as sd

        print(sd.query_devices())
        return 0
    latency = args.latency if args.latency in ("low", "high") else float(args.latency)
    device = int(args.device) if args.device and args.device.isdigit() else args.device
    try:
        config = EngineConfig(block_size=args.block_size, latency=latency, device=device,
                              quantize=args.quantize, key_lock=args.key_lock,
                              bars=args.bars, guidance=args.guidance,
                              candidates=args.candidates, steps=args.steps,
                              checkpoint=args.checkpoint, model_device=args.model_device,
                              worker=args.worker, separator=args.separator,
                              levels=LevelsConfig(auto_gain=args.auto_gain == "on",
                                                  target_lufs=args.loudness_target))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if (args.deck_a is None) != (args.deck_b is None):
        print("error: give both --deck-a and --deck-b (or neither, for the demo)",
              file=sys.stderr)
        return 2
    demo = args.deck_a is None
    deck_a, deck_b = (args.deck_a, args.deck_b) if not demo else demo_tracks(config.sample_rate)
    if args.render is None and not output_devices():
        print("no audio output device found (see --list-devices); use --render FILE to write "
              "the mix to a file", file=sys.stderr)
        if not demo:
            return 2
        args.render = Path("out/demo_mix.wav")
        print(f"rendering the demo to {args.render} instead", file=sys.stderr)
    if args.render is not None:
        return render_mix(config, deck_a, deck_b, args.render, args.transition_at,
                          args.block_size)
    try:
        auto = args.auto_trigger if args.auto_trigger is not None else (9 if demo else None)
        osc = None
        if args.osc is not None:
            feedback = [(h, int(p)) for h, p in (x.rsplit(":", 1) for x in args.osc_feedback)]
            osc = OSCServer(None, args.osc_host, args.osc, tuple(args.osc_allow), feedback)
        midi = None
        if args.midi is not None:
            mapping = load_mapping(args.midi_map or preset_for(args.midi), PARAM_NAMES)
            midi = MidiInput(MidiController(None, mapping, follow_clock=args.midi_clock_in),
                             args.midi or None)
        link = LinkFollower(None) if args.link else None
        return asyncio.run(run_live(config, deck_a, deck_b, args.record, auto, args.seconds,
                                    osc, midi, args.midi_clock_out, args.ableton, link))
    except (ValueError, OSError, LinkUnavailable) as err:  # a mapping, an address, a port
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
