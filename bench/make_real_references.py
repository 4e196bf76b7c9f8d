"""Reference tempo, beats and key of the real-music corpus, from two estimators outside the project.

Not part of the project's environment: each estimator runs in a throwaway virtual environment of
its own, because essentia's wheel wants numpy 2 and madmom 0.16.1 (the last release) builds
only against numpy < 1.24 with Cython < 3:

    python3 -m venv /work/refvenv && /work/refvenv/bin/pip install essentia soundfile soxr tqdm
    python3 -m venv /work/refvenv-madmom
    /work/refvenv-madmom/bin/pip install 'numpy<1.24' 'cython<3' 'scipy<1.12' 'setuptools<70' \
        wheel mido soundfile soxr tqdm
    # madmom 0.16.1's sdist: delete its pre-generated madmom/**/*.c (made by a Cython too old for
    # Python 3.11), change 'from collections import MutableSequence' to collections.abc in
    # madmom/processors.py, then from the unpacked folder:
    /work/refvenv-madmom/bin/pip install --no-build-isolation .

    /work/refvenv/bin/python bench/make_real_references.py essentia
    /work/refvenv-madmom/bin/python bench/make_real_references.py madmom
    .venv/bin/python bench/make_real_references.py merge     # writes bench/real_references.json

The first two write their raw estimates to <corpus>/references/<estimator>.json and skip tracks
already there (about 0.04x and 0.15x real time on the 2-core machine). ``merge`` keeps a tempo
where the two agree within 2 %, beats where they also agree (F-measure >= 0.9 at +-70 ms), a key
where both name the same one; the rest is marked unknown and left out of that accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_corpus import REFERENCES, Track, corpus_dir, fetch  # noqa: E402

RATE = 44100  # both estimators' models were trained at this rate
TEMPO_TOLERANCE = 0.02
MIN_BEAT_AGREEMENT = 0.9
BEAT_WINDOW = 0.07  # seconds, mir_eval's default F-measure window
REFERENCE_BEATS_SECONDS = 60.0  # reference beats kept per track: enough for a beat F-measure
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLATS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#"}
# essentia's key profile: 'edma' was derived from electronic dance music, like most of the corpus.
ESSENTIA_KEY_PROFILE = "edma"


def _raw_path(estimator: str) -> Path:
    return corpus_dir() / "references" / f"{estimator}.json"


def _mono(path: Path) -> np.ndarray:
    """The track as mono float32 at RATE, decoded with soundfile as the project decodes it."""
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    return mono if rate == RATE else soxr.resample(mono, rate, RATE).astype(np.float32)


def _tonic(name: str) -> str:
    return _FLATS.get(name, name)


def _essentia() -> Callable[[np.ndarray], dict]:
    import essentia
    import essentia.standard as es

    essentia.log.infoActive = False
    rhythm = es.RhythmExtractor2013(method="multifeature")
    key = es.KeyExtractor(profileType=ESSENTIA_KEY_PROFILE)

    def estimate(y: np.ndarray) -> dict:
        bpm, ticks, *_ = rhythm(y)
        tonic, mode, strength = key(y)
        return {"bpm": float(bpm), "beats": [round(float(t), 3) for t in ticks],
                "tonic": _tonic(tonic), "mode": mode, "key_strength": float(strength)}
    return estimate


def _madmom() -> Callable[[np.ndarray], dict]:
    warnings.simplefilter("ignore")  # madmom 0.16.1 uses numpy aliases deprecated since 1.20
    from madmom.audio.signal import Signal
    from madmom.features.beats import DBNBeatTrackingProcessor, RNNBeatProcessor
    from madmom.features.key import CNNKeyRecognitionProcessor, key_prediction_to_label
    from madmom.models import BEATS_BLSTM

    # One of the eight BLSTMs of the ensemble: 6x faster on this CPU, and the DBN does the rest.
    activation = RNNBeatProcessor(nn_files=[BEATS_BLSTM[0]])
    tracker = DBNBeatTrackingProcessor(fps=100)
    key = CNNKeyRecognitionProcessor()

    def estimate(y: np.ndarray) -> dict:
        signal = Signal(y, sample_rate=RATE, num_channels=1)
        beats = tracker(activation(signal))
        tonic, mode = key_prediction_to_label(key(signal)).split()
        return {"beats": [round(float(t), 3) for t in beats], "tonic": _tonic(tonic),
                "mode": mode}
    return estimate


def run_estimator(name: str, limit: int | None) -> None:
    """Estimate every track not yet in <corpus>/references/<name>.json, saving after each."""
    estimate = {"essentia": _essentia, "madmom": _madmom}[name]()
    out = _raw_path(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = json.loads(out.read_text()) if out.exists() else {}
    todo = [t for t in fetch()[:limit] if t.id not in done]
    for track in tqdm(todo, desc=name, unit="track"):
        y = _mono(track.path())
        t0 = time.perf_counter()
        done[track.id] = {**estimate(y), "seconds": time.perf_counter() - t0,
                          "duration": y.size / RATE}
        out.write_text(json.dumps(done))


def beat_tempo(beats: list[float]) -> float:
    """BPM from tracked beats: the mean of the steady beat intervals (within 10 % of the median).

    The DBN tracker's beats lie on 10 ms frames, so one interval (or their median) is off by up
    to 2 % at 140 BPM; the mean over a run of beats is not.
    """
    intervals = np.diff(beats)
    median = np.median(intervals)
    return float(60.0 / intervals[np.abs(intervals - median) <= 0.1 * median].mean())


def _f_measure(reference: np.ndarray, estimated: np.ndarray) -> float:
    import mir_eval

    return float(mir_eval.beat.f_measure(reference, estimated, f_measure_threshold=BEAT_WINDOW))


def merge_track(track: Track, ess: dict, mad: dict) -> dict:
    """One track's reference: what the two estimators agree on, unknown (None) elsewhere."""
    mad = {**mad, "bpm": beat_tempo(mad["beats"])}
    tempo_ok = abs(ess["bpm"] - mad["bpm"]) <= TEMPO_TOLERANCE * mad["bpm"]
    agreement = _f_measure(np.array(mad["beats"]), np.array(ess["beats"]))
    beats_ok = tempo_ok and agreement >= MIN_BEAT_AGREEMENT
    key_ok = (ess["tonic"], ess["mode"]) == (mad["tonic"], mad["mode"])
    beats = [b for b in mad["beats"] if b < REFERENCE_BEATS_SECONDS]
    return {
        "bpm": round((ess["bpm"] + mad["bpm"]) / 2, 2) if tempo_ok else None,
        # The DBN tracker's beats: the two agree on them where beats is not None.
        "beats": beats if beats_ok else None,
        "beats_until": REFERENCE_BEATS_SECONDS if beats_ok else None,
        "key": {"tonic": mad["tonic"], "mode": mad["mode"]} if key_ok else None,
        "duration": round(mad["duration"], 2),
        "style": track.style,
        "estimates": {
            "essentia": {"bpm": round(ess["bpm"], 2), "key": f"{ess['tonic']} {ess['mode']}"},
            "madmom": {"bpm": round(mad["bpm"], 2), "key": f"{mad['tonic']} {mad['mode']}"},
            "beat_f_between": round(agreement, 3),
        },
    }


def merge() -> None:
    ess, mad = (json.loads(_raw_path(n).read_text()) for n in ("essentia", "madmom"))
    tracks = [t for t in fetch() if t.id in ess and t.id in mad]
    references = {t.id: merge_track(t, ess[t.id], mad[t.id]) for t in tracks}
    about = ("Reference tempo, beats and key of the real-music corpus (bench/real_corpus.json) "
             "where two estimators outside the project agree: essentia "
             "RhythmExtractor2013(multifeature) + KeyExtractor(edma) and madmom 0.16.1 RNN+DBN "
             "beats + CNN key. bpm: within 2 %, the mean of the two; beats: madmom's beats before "
             "beats_until seconds, kept where the two trackers' beats agree (F >= 0.9); key: both "
             "name it. null: they disagree (see estimates).")
    # One line per track: small diffs when references change, and the file stays readable.
    lines = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in references.items())
    REFERENCES.write_text(f'{{\n "about": {json.dumps(about)},\n "tracks": {{\n{lines}\n }}\n}}\n')
    agreed = {k: sum(r[k] is not None for r in references.values())
              for k in ("bpm", "beats", "key")}
    print(f"{len(references)} tracks; agreed: {agreed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("essentia", "madmom", "merge"))
    parser.add_argument("--limit", type=int, default=None, help="only the first N tracks")
    args = parser.parse_args()
    if args.step == "merge":
        merge()
    else:
        run_estimator(args.step, args.limit)


if __name__ == "__main__":
    main()
