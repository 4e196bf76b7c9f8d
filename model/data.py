"""Transition datasets: both decks' features, the target curves, and how they were made.

A dataset is a directory:

- ``manifest.json``: format version, the builder's settings, one entry per track (name, source,
  split, BPM, key, integrated loudness, bars), the example count and, for examples fitting.fit
  added, ``fitted`` (the mix, alignment and fit error of each); for transitions the engine
  played, ``performed`` (below);
- ``tracks/NNN.npz``: one track's analysis features (the fields of analysis.features.TrackFeatures)
  plus ``vocal_bars``, which bars carry vocals (for the policy's vocal rule), and ``stem_band_db``,
  each stem's level per band and frame (analysis.features.stem_band_db, for model.heard);
- ``examples.npz``: one row per transition: ``a_track``, ``a_frame``, ``b_track``, ``b_frame``,
  ``bars``, ``style`` (-1: fitted from a mix, -2: played by a performer, -3: chosen by the critic,
  evaluation.select), ``swap_bar``,
  ``b_phrase_offset`` and ``curves`` [N, frames, 52] (float16).

The engine's performer log (engine.performer_log, ``append_performed``) writes a dataset of this
format: every transition played, the curves as heard (the hand's takeovers included). Each has an
entry in ``performed`` (when, which candidate, from the model or the policy, whether it was
aborted, how far it got, the parameters the hand took over, the decks' tempos, the checkpoint,
and the file and row of its example). Its tracks are all ``train``. Aborted transitions, and
spans that run past a track's features, go to ``excluded.npz`` (the same fields; curves NaN
where the transition never got), which training never reads.

Deck A's excerpt starts at frame ``a_frame`` of its features, deck B's at ``b_frame``, and both span
the transition's ``bars`` bars (16 frames a bar), which is what the model is conditioned on. No
pickles anywhere: plain npz arrays and JSON.

    python -m model.data --tracks DIR --out DIR           # audio files (or stem folders) in DIR
    python -m model.data --generate 48 --tracks DIR --out DIR   # render 48 synthetic tracks first

Until real DJ mixes are available (fitting.fit fits curves to them and adds them here), the targets
come from the rule-based policy (model.policy), randomized in style, length, timing and where
deck B is cued.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
import torch

from analysis.audio import AUDIO_SUFFIXES, AudioLoadError
from analysis.beats import BEATS_PER_BAR
from analysis.cache import AnalysisCache
from analysis.features import FRAMES_PER_BEAT, frame_times, phrase_position, stem_band_db
from analysis.features import TrackFeatures as AnalysisFeatures
from analysis.synth import render_track
from analysis.track import AnalysisError, TrackAnalysis, analyze, vocal_bars
from effects.levels import LevelsConfig, trim_for

from .conditioning import TrackFeatures
from .policy import PHRASE_BARS, STYLES, choose_bars, choose_style, plan_transition, swap_beat

FORMAT_VERSION = 1
FRAMES_PER_BAR = FRAMES_PER_BEAT * BEATS_PER_BAR
_FEATURE_FIELDS = [f.name for f in fields(AnalysisFeatures)]
EXAMPLE_FIELDS = ("a_track", "a_frame", "b_track", "b_frame", "bars", "style", "swap_bar",
                  "b_phrase_offset")
PERFORMED_STYLE = -2  # the style code of a transition the engine played (the performer log)
EXAMPLES, EXCLUDED = "examples.npz", "excluded.npz"
BANDS = "stem_band_db"  # a track file's band levels [4, bands, T] (dB), if it was built with them


class DatasetError(ValueError):
    """A dataset directory that is missing, from another version, or inconsistent."""


def generate_tracks(out_dir: Path | str, count: int, seed: int = 0, sample_rate: int = 44100,
                    lengths: tuple[int, ...] = (40, 48, 56, 64)) -> list[Path]:
    """Render ``count`` synthetic tracks (varied tempo, key, mode and length) as FLAC files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        bpm = float(rng.uniform(116.0, 136.0))
        track = render_track(seed=seed * 100_003 + i, bpm=bpm, tonic=int(rng.integers(12)),
                             mode=str(rng.choice(["major", "minor"])),
                             bars=int(rng.choice(lengths)), sample_rate=sample_rate)
        path = out_dir / f"synth_{i:03d}.flac"
        sf.write(path, track.mix.T, sample_rate, subtype="PCM_24")
        paths.append(path)
    return paths


def track_entry(result: TrackAnalysis, path: Path | str, out_dir: Path, index: int) -> dict:
    """Write a track's features to ``out_dir``/tracks/``index``.npz and return its manifest
    entry (with ``vocal_bars``, which the manifest itself leaves out, and no split yet)."""
    f = result.features
    bar0 = -f.start_beat * FRAMES_PER_BEAT  # frame of the first downbeat
    n_bars = (f.n_frames - bar0) // FRAMES_PER_BAR
    voc = vocal_bars(result)[:n_bars]
    # Compressed, mels in float16 (0.1 dB steps): a real track's mels are megabytes, and a
    # dataset travels to a GPU machine. Readers cast to float32.
    arrays = {name: np.asarray(getattr(f, name)) for name in _FEATURE_FIELDS}
    arrays["stem_mels"] = arrays["stem_mels"].astype(np.float16)
    # The stems' level per band, for the audio-domain loss (model.heard): the mels above are
    # clipped at 0 dB and cannot say how loud a stem is.
    arrays[BANDS] = stem_band_db(result.stems, result.sample_rate,
                                 frame_times(result.grid)[1]).astype(np.float16)
    np.savez_compressed(out_dir / "tracks" / f"{index:03d}.npz", vocal_bars=voc, **arrays)
    return {"name": Path(path).name, "source": str(path), "bpm": round(result.bpm, 3),
            "key": result.key_name, "key_index": result.key_index,
            "loudness_lufs": round(float(result.loudness_lufs), 3),
            "n_bars": int(n_bars), "bar0": int(bar0), "vocal_bars": voc}


def _replace(path: Path, write: Callable[[object], None]) -> None:
    """Write ``path`` through ``write(file)`` into a temporary file renamed over it, so that a
    failed write (a full disk) leaves the old file whole."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
    tmp.replace(path)


def write_examples(out_dir: Path, rows: dict[str, list], name: str = EXAMPLES) -> None:
    """``examples.npz`` (or ``name``) from one list per field (curves as float16)."""
    arrays = {field: np.asarray(value, dtype=np.int32) for field, value in rows.items()
              if field != "curves"}
    _replace(out_dir / name, lambda f: np.savez_compressed(
        f, curves=np.asarray(rows["curves"], dtype=np.float16), **arrays))


def read_examples(root: Path, name: str = EXAMPLES) -> dict[str, np.ndarray]:
    """Every example of a dataset directory (of its file ``name``), one array per field."""
    with np.load(root / name, allow_pickle=False) as z:
        return {field: z[field] for field in (*EXAMPLE_FIELDS, "curves")}


def append_examples(out_dir: Path, row: dict[str, int], curves: np.ndarray,
                    name: str = EXAMPLES) -> int:
    """Add one example (its fields and curves [frames, 52]) to ``out_dir``'s examples (or its
    file ``name``); returns its row."""
    old = read_examples(out_dir, name) if (out_dir / name).exists() else {
        field: np.zeros((0, *curves.shape) if field == "curves" else 0) for field in
        (*EXAMPLE_FIELDS, "curves")}
    rows = {field: [*old[field], row[field]] for field in EXAMPLE_FIELDS}
    rows["curves"] = [*old["curves"], curves]
    write_examples(out_dir, rows, name)
    return len(rows["curves"]) - 1


def features_key(f: AnalysisFeatures) -> str:
    """What identifies a track's features: the same music on another grid (a fix by hand) or
    from another separator has other features, and needs its own entry."""
    digest = hashlib.sha256()
    for name in _FEATURE_FIELDS:
        digest.update(np.ascontiguousarray(getattr(f, name)).tobytes())
    return digest.hexdigest()[:32]


def open_manifest(out_dir: Path, n_frames: int, targets: str, command: str = "",
                  separator: str = "dsp") -> dict:
    """The manifest of the dataset in ``out_dir`` that examples are about to be added to (a new
    one, and the folder, when missing); its examples must have ``n_frames`` frames."""
    (out_dir / "tracks").mkdir(parents=True, exist_ok=True)
    path = out_dir / "manifest.json"
    manifest = json.loads(path.read_text()) if path.exists() else {
        "format": FORMAT_VERSION, "command": command, "n_frames": n_frames, "n_examples": 0,
        "targets": targets, "styles": list(STYLES), "separator": separator, "settings": {},
        "tracks": []}
    if manifest["n_frames"] != n_frames:
        raise DatasetError(f"{out_dir}: its examples have {manifest['n_frames']} frames, these "
                           f"{n_frames}")
    return manifest


def save_manifest(out_dir: Path, manifest: dict) -> None:
    _replace(out_dir / "manifest.json", lambda f: f.write(json.dumps(manifest, indent=1).encode()))


def add_track(manifest: dict, result: TrackAnalysis, source: str, out_dir: Path, split: str,
              same: Callable[[dict], bool], **extra: str) -> int:
    """The index of a track in the manifest: the first entry ``same`` accepts, or a new entry
    (features written to ``out_dir``, with ``extra`` fields)."""
    for i, entry in enumerate(manifest["tracks"]):
        if same(entry):
            return i
    entry = track_entry(result, source, out_dir, len(manifest["tracks"]))
    entry.pop("vocal_bars")
    manifest["tracks"].append({**entry, "split": split, **extra})
    return len(manifest["tracks"]) - 1


def swap_bar(curves: np.ndarray, bars: int) -> int:
    """The bar of a transition on which deck B's bass comes in, -1 if it never does."""
    swap = swap_beat(curves, bars)
    return -1 if swap is None else int(round(swap / BEATS_PER_BAR))


def _performed_track(manifest: dict, result: TrackAnalysis, out_dir: Path) -> int:
    """A played track's index: keyed by its features, so that a grid fixed by hand (other
    features, other frame positions) is a new entry."""
    key = features_key(result.features)
    return add_track(manifest, result, result.source, out_dir, "train",
                     lambda entry: entry.get("features_sha256") == key, features_sha256=key)


def _excluded(a: TrackAnalysis, b: TrackAnalysis, row: dict[str, int], aborted: bool) -> str:
    """Why an example stays out of training ("" when it goes in)."""
    if aborted:
        return "aborted"
    frames = row["bars"] * FRAMES_PER_BAR
    for deck, track in (("a", a), ("b", b)):
        first = row[f"{deck}_frame"]
        if first < 0 or first + frames > track.features.n_frames:  # batches cut whole spans
            return f"deck {deck.upper()}'s span runs outside its track's features"
    return ""


def append_performed(out_dir: Path | str, a: TrackAnalysis, b: TrackAnalysis,
                     row: dict[str, int], curves: np.ndarray, performed: dict) -> tuple[str, int]:
    """Add a transition the engine played from ``a`` into ``b`` to the dataset in ``out_dir``
    (made when missing; each track written once). ``row``: the example's ``a_frame``,
    ``b_frame``, ``bars`` and ``b_phrase_offset``; ``curves`` [frames, 52] deck A into deck B;
    ``performed``: what the engine knows of it (``aborted`` decides where it goes). Returns the
    file the example went to (examples.npz, or excluded.npz: not for training) and its row."""
    out_dir = Path(out_dir)
    manifest = open_manifest(out_dir, int(curves.shape[0]), "engine performer log")
    row = {**row, "a_track": _performed_track(manifest, a, out_dir),
           "b_track": _performed_track(manifest, b, out_dir), "style": PERFORMED_STYLE,
           "swap_bar": swap_bar(curves, row["bars"])}
    excluded = _excluded(a, b, row, performed["aborted"])
    name = EXCLUDED if excluded else EXAMPLES
    k = append_examples(out_dir, row, curves, name)
    if not excluded:
        manifest["n_examples"] = k + 1
    manifest.setdefault("performed", []).append(
        {**performed, "file": name, "row": k, "excluded": excluded})
    save_manifest(out_dir, manifest)
    return name, k


def _windows(a: dict, b: dict, bars: int, rng: np.random.Generator) -> tuple[int, int, int] | None:
    """Where the transition sits: deck A leaves from one of its last phrase starts that leave room
    for ``bars`` bars, deck B is cued on one of its first eight bars. Returns deck A's start bar,
    deck B's start bar and B's phrase offset in the transition, or None if a track is too short."""
    room_a, room_b = a["n_bars"] - bars, b["n_bars"] - bars
    if room_a < 0 or room_b < 0:
        return None
    starts = [s for s in range(PHRASE_BARS, room_a + 1, PHRASE_BARS)] or [room_a]
    a_bar = int(rng.choice(starts[-2:]))
    b_bar = int(rng.integers(0, min(PHRASE_BARS, room_b + 1)))
    return a_bar, b_bar, (-b_bar) % PHRASE_BARS


def build_dataset(tracks: list[Path], out_dir: Path | str, partners: int = 8,
                  transitions_per_pair: int = 2, holdout: float = 0.15, seed: int = 0,
                  n_frames: int = 128, separator: str = "dsp",
                  cache: AnalysisCache | None = None, command: str = "",
                  log: Callable[[str], None] = print) -> Path:
    """Analyse ``tracks`` and write a dataset of policy transitions between them to ``out_dir``.

    Tracks are split into train and test (``holdout`` share) before pairing, so test pairs are
    made of tracks the model never saw. Tracks that fail to load or analyse are reported and
    skipped; the rest go on.
    """
    out_dir = Path(out_dir)
    (out_dir / "tracks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    entries: list[dict] = []
    for path in tracks:
        try:
            result = analyze(path, separator=separator, cache=cache)
        except (AudioLoadError, AnalysisError) as err:
            log(f"skipping {path}: {err}")
            continue
        entries.append(track_entry(result, path, out_dir, len(entries)))
        log(f"analysed {Path(path).name}: {result.bpm:.1f} BPM, {result.key_name}, "
            f"{entries[-1]['n_bars']} bars")
    if len(entries) < 2:
        raise DatasetError(f"{out_dir}: need at least two usable tracks, got {len(entries)}")
    order = rng.permutation(len(entries))
    n_test = int(round(holdout * len(entries))) if len(entries) >= 4 else 0
    for rank, i in enumerate(order):
        entries[i]["split"] = "test" if rank < n_test else "train"

    rows: dict[str, list] = {name: [] for name in (*EXAMPLE_FIELDS, "curves")}
    for ia, a in enumerate(entries):
        others = [ib for ib, b in enumerate(entries) if ib != ia and b["split"] == a["split"]]
        for ib in rng.permutation(others)[:partners]:
            b = entries[ib]
            for _ in range(transitions_per_pair):
                style = choose_style(rng)
                bars = choose_bars(style, a["key_index"], b["key_index"], rng)
                where = _windows(a, b, bars, rng)
                if where is None:
                    continue
                a_bar, b_bar, offset = where
                plan = plan_transition(
                    a["key_index"], b["key_index"], rng, n_frames=n_frames,
                    vocals_a=bool(a["vocal_bars"][a_bar:a_bar + bars].any()),
                    vocals_b=bool(b["vocal_bars"][b_bar:b_bar + bars].any()),
                    style=style, bars=bars, b_phrase_offset=offset)
                for name, value in (("a_track", ia), ("b_track", ib), ("bars", bars),
                                    ("a_frame", a["bar0"] + a_bar * FRAMES_PER_BAR),
                                    ("b_frame", b["bar0"] + b_bar * FRAMES_PER_BAR),
                                    ("style", STYLES.index(style)), ("swap_bar", plan.swap_bar),
                                    ("b_phrase_offset", offset), ("curves", plan.curves)):
                    rows[name].append(value)
    write_examples(out_dir, rows)
    manifest = {
        "format": FORMAT_VERSION, "command": command, "n_frames": n_frames,
        "n_examples": len(rows["curves"]),
        "targets": "model.policy", "styles": list(STYLES), "separator": separator,
        "settings": {"partners": partners, "transitions_per_pair": transitions_per_pair,
                     "holdout": holdout, "seed": seed},
        "tracks": [{k: v for k, v in e.items() if k != "vocal_bars"} for e in entries],
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    log(f"{out_dir}: {len(entries)} tracks ({n_test} held out), {len(rows['curves'])} transitions")
    return out_dir


@dataclass(frozen=True)
class Batch:
    curves: torch.Tensor  # [B, frames, 52] in [0, 1]
    track_a: TrackFeatures
    track_b: TrackFeatures
    rows: np.ndarray  # example indices of the dataset
    # What the audio-domain loss (model.heard) hears, None for a dataset built before it was
    # recorded: each deck's band levels [B, 2, 4, bands, frames] (dB) and its gain trim to the
    # engine's loudness target [B, 2] (dB).
    band_db: torch.Tensor | None
    trim_db: torch.Tensor | None


class TransitionDataset:
    """A dataset directory's examples of one split, as batches for training and evaluation."""

    def __init__(self, root: Path | str, split: str = "train") -> None:
        self.root = Path(root)
        try:
            self.manifest = json.loads((self.root / "manifest.json").read_text())
            if self.manifest.get("format") != FORMAT_VERSION:
                raise DatasetError(f"{self.root}: dataset format {self.manifest.get('format')}, "
                                   f"this version reads {FORMAT_VERSION}; rebuild it")
            examples = read_examples(self.root)
            tracks, start_beats, bands = [], [], []
            for i in range(len(self.manifest["tracks"])):
                with np.load(self.root / "tracks" / f"{i:03d}.npz", allow_pickle=False) as z:
                    tracks.append({name: torch.from_numpy(z[name].astype(np.float32))
                                   for name in _FEATURE_FIELDS if name != "start_beat"})
                    start_beats.append(int(z["start_beat"]))
                    bands.append(torch.from_numpy(z[BANDS].astype(np.float32))
                                 if BANDS in z.files else None)
        except (OSError, KeyError, ValueError) as err:
            if isinstance(err, DatasetError):
                raise
            raise DatasetError(f"{self.root}: not a readable transition dataset ({err}); build "
                               f"one with python -m model.data") from None
        splits = np.array([t["split"] for t in self.manifest["tracks"]])
        keep = splits[examples["a_track"]] == split
        self.examples = {name: value[keep] for name, value in examples.items()}
        self.file_rows = np.flatnonzero(keep)  # each example's row in examples.npz
        self.tracks = tracks
        self.start_beats = start_beats
        self.bands = bands
        levels = LevelsConfig()
        self.trim_db = np.array([20.0 * np.log10(trim_for(t["loudness_lufs"], levels))
                                 if "loudness_lufs" in t else np.nan
                                 for t in self.manifest["tracks"]])
        self.split = split

    def __len__(self) -> int:
        return int(self.examples["bars"].shape[0])

    @property
    def track_count(self) -> int:
        return len({*self.examples["a_track"].tolist(), *self.examples["b_track"].tolist()})

    def _excerpts(self, tracks: np.ndarray, starts: np.ndarray, frames: int) -> TrackFeatures:
        parts: dict[str, list[torch.Tensor]] = {f.name: [] for f in fields(TrackFeatures)}
        for track, start in zip(tracks, starts):
            t = self.tracks[track]
            first_beat = self.start_beats[track] + start / FRAMES_PER_BEAT
            parts["phrase"].append(torch.from_numpy(phrase_position(first_beat, frames)))
            for name, value in t.items():
                if name in ("bpm", "key"):
                    parts[name].append(value)
                elif name == "stem_mels":
                    parts[name].append(value[..., start:start + frames])
                else:
                    parts[name].append(value[start:start + frames])
        return TrackFeatures(**{name: torch.stack(v) for name, v in parts.items()})

    def batch(self, rows: np.ndarray) -> Batch:
        """The examples ``rows``, which must share one transition length."""
        bars = np.unique(self.examples["bars"][rows])
        if bars.size != 1:
            raise ValueError(f"a batch holds one transition length, got {bars.tolist()} bars")
        frames = int(bars[0]) * FRAMES_PER_BAR
        e = self.examples
        decks = [(e["a_track"][rows], e["a_frame"][rows]), (e["b_track"][rows], e["b_frame"][rows])]
        band_db = trim_db = None
        if all(self.bands[t] is not None and np.isfinite(self.trim_db[t])
               for tracks, _ in decks for t in tracks):
            band_db = torch.stack([torch.stack([self.bands[t][..., s:s + frames]
                                                for t, s in zip(tracks, starts)])
                                   for tracks, starts in decks], dim=1)
            trim_db = torch.from_numpy(np.stack([self.trim_db[t] for t, _ in decks], axis=1))
        return Batch(torch.from_numpy(e["curves"][rows].astype(np.float32)),
                     self._excerpts(*decks[0], frames), self._excerpts(*decks[1], frames), rows,
                     band_db, trim_db)

    def sample(self, rng: np.random.Generator, batch_size: int) -> Batch:
        """A random batch: a transition length drawn by its share of the data, then examples."""
        if len(self) == 0:
            raise DatasetError(f"{self.root}: no {self.split} examples")
        lengths, counts = np.unique(self.examples["bars"], return_counts=True)
        bars = rng.choice(lengths, p=counts / counts.sum())
        pool = np.flatnonzero(self.examples["bars"] == bars)
        return self.batch(rng.choice(pool, size=batch_size, replace=pool.size < batch_size))

    def batches(self, batch_size: int) -> list[Batch]:
        """Every example once, grouped by transition length (for evaluation)."""
        out = []
        for bars in np.unique(self.examples["bars"]):
            pool = np.flatnonzero(self.examples["bars"] == bars)
            out += [self.batch(pool[i:i + batch_size]) for i in range(0, pool.size, batch_size)]
        return out


def _is_stem_folder(path: Path) -> bool:
    return path.is_dir() and any(q.stem.lower() == "drums" for q in path.iterdir())


def audio_inputs(folder: Path) -> list[Path]:
    """Audio files and stem folders directly inside ``folder``, sorted."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in AUDIO_SUFFIXES or _is_stem_folder(p))


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Audio files and stem folders as given, other folders replaced by what they hold."""
    out: list[Path] = []
    for path in paths:
        if not path.exists():
            raise DatasetError(f"{path}: no such file or folder")
        out += audio_inputs(path) if path.is_dir() and not _is_stem_folder(path) else [path]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a transition dataset from audio.")
    parser.add_argument("--tracks", type=Path, nargs="+", required=True,
                        help="audio files, stem folders (drums/bass/vocals/other) or folders "
                             "of either")
    parser.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    parser.add_argument("--generate", type=int, default=0, metavar="N",
                        help="first render N synthetic tracks into --tracks")
    parser.add_argument("--partners", type=int, default=8, help="decks B per deck A")
    parser.add_argument("--per-pair", type=int, default=2, help="transitions per pair")
    parser.add_argument("--holdout", type=float, default=0.15, help="share of test tracks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--separator", default="dsp")
    args = parser.parse_args(argv)
    if args.generate:
        if len(args.tracks) != 1:
            print("error: --generate renders into one --tracks folder", file=sys.stderr)
            return 2
        generate_tracks(args.tracks[0], args.generate, seed=args.seed)
    try:
        build_dataset(expand_inputs(args.tracks), args.out, partners=args.partners,
                      transitions_per_pair=args.per_pair, holdout=args.holdout, seed=args.seed,
                      separator=args.separator,
                      command="python -m model.data " + shlex.join(argv or sys.argv[1:]))
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
