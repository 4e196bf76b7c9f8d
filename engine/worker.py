"""The generation worker: track analysis and transition sampling, away from the audio callback.

The work is plain functions of picklable requests (``handle``), run by a ``GenerationWorker``
in a spawned process (the default: the callback keeps the GIL to itself, see bench/engine.py for
the measurement against a thread) or in a thread, and called directly by the offline renderer.
The model is loaded once per worker; when it is missing or fails, the rule-based policy answers
and the result says why.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analysis.features import FRAMES_PER_BEAT
from analysis.features import TrackFeatures as AnalysisFeatures
from analysis.track import analyze, cached_summary, summarize

from .priority import run_in_background
from .transition import Transition


@dataclass(frozen=True)
class AnalyzeRequest:
    serial: int
    path: str
    sample_rate: int
    separator: str = "dsp"


@dataclass(frozen=True)
class GenerateRequest:
    """Sample ``n_samples`` transitions of ``bars`` bars from ``a`` into ``b``: the transition's
    span on each deck (``between`` cuts them). Only the spans travel to the worker: a whole
    track's features are megabytes, and pickling them held the GIL long enough for the audio
    callback to miss its deadline when a deck loaded (bench/engine.py --load)."""

    serial: int
    a: AnalysisFeatures
    b: AnalysisFeatures
    bars: int
    key_a: int
    key_b: int
    vocals_a: bool = True
    vocals_b: bool = True
    b_phrase_offset: int = 0
    n_samples: int = 3
    guidance: float = 2.0
    steps: int = 25
    seed: int = 0

    @classmethod
    def between(cls, serial: int, a: AnalysisFeatures, a_beat: float, b: AnalysisFeatures,
                b_beat: float, bars: int, **options) -> GenerateRequest:
        """The request for ``bars`` bars from ``a_beat`` on the outgoing track's features ``a``
        into ``b`` from ``b_beat`` (beats from each track's first downbeat)."""
        frames = bars * 4 * FRAMES_PER_BEAT
        return cls(serial, feature_window(a, a_beat, frames), feature_window(b, b_beat, frames),
                   bars, **options)


@dataclass(frozen=True)
class Result:
    serial: int
    transitions: tuple[Transition, ...] = ()
    error: str = ""  # analysis failed, or why the policy answered instead of the model
    extra: dict = field(default_factory=dict)  # an analysis's "summary"; the model's "note"


class Generator:
    """Holds the model (or the reason there is none) and answers requests."""

    def __init__(self, checkpoint: str | None = None, device: str | None = None,
                 threads: int | None = None) -> None:
        self.model = None
        self.device = "cpu"
        self.checkpoint = ""  # the file the model was loaded from
        self.why_not = ""
        if checkpoint == "none":
            self.why_not = "model off (--checkpoint none); the rule-based policy plays"
            return
        try:
            import torch

            from model import load_model, pick_device
            from model.checkpoint import DEFAULT_CHECKPOINT
            if threads:
                torch.set_num_threads(threads)
            self.device = pick_device(device)
            path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
            self.model = load_model(path, device=self.device)
            self.checkpoint = str(path)
        except (FileNotFoundError, ValueError, ImportError, RuntimeError) as err:
            self.why_not = f"no model ({err}); the rule-based policy plays"

    @property
    def note(self) -> str:
        """Where transitions come from: the model's file and device, or why the policy plays."""
        return self.why_not or f"model {self.checkpoint} on {self.device}"

    def handle(self, request: AnalyzeRequest | GenerateRequest) -> Result:
        if isinstance(request, AnalyzeRequest):
            # A track analysed before is answered from its cache entry without decoding its
            # stems: the loop reads them back itself, and a set's tracks need their summary only.
            try:
                summary = cached_summary(request.path, request.sample_rate, request.separator) \
                    or summarize(analyze(request.path, sample_rate=request.sample_rate,
                                         separator=request.separator))
            except Exception as err:  # noqa: BLE001 - reported to the loop, never fatal
                return Result(request.serial, error=str(err))
            return Result(request.serial, extra={"summary": summary})
        transitions, error = (), self.why_not
        if self.model is not None:
            try:
                transitions = self._sample(request)
            except Exception as err:  # noqa: BLE001 - the policy stands in
                error = f"model failed ({type(err).__name__}: {err}); the policy plays"
        if not transitions:
            transitions = policy_transitions(request)
        return Result(request.serial, transitions, error)

    def _sample(self, r: GenerateRequest) -> tuple[Transition, ...]:
        from model.conditioning import TrackFeatures
        from model.policy import END_FRAME

        a = TrackFeatures.from_analysis([r.a])
        b = TrackFeatures.from_analysis([r.b])
        curves = self.model.generate(a.to(self.device), b.to(self.device),
                                     guidance_scale=r.guidance, steps=r.steps, seed=r.seed,
                                     n_samples=r.n_samples,
                                     end=END_FRAME).cpu().numpy()
        return tuple(Transition(c, r.bars, "model", k) for k, c in enumerate(curves))


def policy_transitions(r: GenerateRequest) -> tuple[Transition, ...]:
    from model.policy import plan_transition

    rng = np.random.default_rng(r.seed)
    return tuple(Transition(plan_transition(r.key_a, r.key_b, rng, vocals_a=r.vocals_a,
                                            vocals_b=r.vocals_b, bars=r.bars,
                                            b_phrase_offset=r.b_phrase_offset).curves,
                            r.bars, "policy", k) for k in range(r.n_samples))


def feature_frame(f: AnalysisFeatures, beat: float) -> int:
    """The frame of a track's features at ``beat`` (0 at the first downbeat)."""
    return int(round((beat - f.start_beat) * FRAMES_PER_BEAT))


def feature_window(f: AnalysisFeatures, beat: float, frames: int) -> AnalysisFeatures:
    """``frames`` frames of a track's features from ``beat`` (0 at the first downbeat); frames
    beyond the track are silence on the same grid."""
    start = feature_frame(f, beat)
    idx = np.arange(start, start + frames)
    inside = (idx >= 0) & (idx < f.n_frames)
    safe = np.clip(idx, 0, f.n_frames - 1)
    grid = idx - int(round(-f.start_beat * FRAMES_PER_BEAT))  # frames from the first downbeat
    return AnalysisFeatures(
        stem_mels=np.where(inside, f.stem_mels[..., safe], 0.0).astype(np.float32),
        structure=f.structure[safe],
        beats=(grid % FRAMES_PER_BEAT == 0).astype(np.float32),
        downbeats=(grid % (4 * FRAMES_PER_BEAT) == 0).astype(np.float32),
        bpm=f.bpm, key=f.key,
        energy=np.where(inside, f.energy[safe], 0.0).astype(np.float32),
        start_beat=int(round(beat)))


PARENT_CHECK_SECONDS = 1.0


def _serve(requests, results, checkpoint: str | None, device: str | None,
           threads: int | None) -> None:
    parent = mp.parent_process()  # None in a thread
    if parent is not None:  # a process of its own (a thread shares the engine's priority)
        run_in_background()  # before the model's threads start: they inherit it
    generator = Generator(checkpoint, device, threads)
    results.put(Result(-1, error=generator.why_not,
                       extra={"note": generator.note, "checkpoint": generator.checkpoint}))
    while True:
        try:
            request = requests.get(timeout=PARENT_CHECK_SECONDS)
        except queue.Empty:
            # An engine killed (SIGKILL, OOM) never sends the None: without this check the
            # worker would live on with its model, alone.
            if parent is not None and not parent.is_alive():
                return
            continue
        if request is None:
            return
        results.put(generator.handle(request))


class GenerationWorker:
    """Runs ``Generator.handle`` in a spawned process or a thread; non-blocking submit/poll."""

    def __init__(self, kind: str = "process", checkpoint: str | Path | None = None,
                 device: str | None = None, threads: int | None = 1) -> None:
        args = (str(checkpoint) if checkpoint else None, device, threads)
        if kind == "process":
            ctx = mp.get_context("spawn")  # fork would copy the audio thread's state
            self._requests, self._results = ctx.Queue(), ctx.Queue()
            self._runner = ctx.Process(target=_serve, args=(self._requests, self._results, *args),
                                       daemon=True, name="generation-worker")
        elif kind == "thread":
            self._requests, self._results = queue.Queue(), queue.Queue()
            self._runner = threading.Thread(target=_serve, daemon=True, name="generation-worker",
                                            args=(self._requests, self._results, *args))
        else:
            raise ValueError(f"worker must be 'process' or 'thread', got {kind!r}")
        self.kind = kind
        self._serial = 0

    def start(self) -> None:
        self._runner.start()

    def submit(self, make) -> int:
        """Queue ``make(serial)`` (a request built with its serial); returns the serial."""
        self._serial += 1
        self._requests.put(make(self._serial))
        return self._serial

    def poll(self) -> list[Result]:
        out = []
        while True:
            try:
                out.append(self._results.get_nowait())
            except queue.Empty:
                return out

    def alive(self) -> bool:
        return self._runner.is_alive()

    def __enter__(self) -> GenerationWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._runner.is_alive():
            self._requests.put(None)
            self._runner.join(timeout=5)
        if self.kind == "process" and self._runner.is_alive():
            self._runner.terminate()
