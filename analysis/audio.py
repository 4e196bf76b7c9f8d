"""Audio file loading: any format soundfile decodes, at the engine's rate, as stereo float32.

Every failure is one ``AudioLoadError`` naming the file and the reason, raised before anything is
returned, so a bad file never reaches a deck half-loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from effects.params import STEMS

# Shorter than this is not a track a DJ could mix: four bars at 120 BPM.
MIN_SECONDS = 8.0
# Beat and key analysis run on mono at this rate: what they look at lies well below 11 kHz.
ANALYSIS_RATE = 22050


class AudioLoadError(ValueError):
    """A file that cannot be played; the message names the file and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def load_audio(path: Path | str, sample_rate: int = 44100,
               min_seconds: float = MIN_SECONDS) -> np.ndarray:
    """Decode ``path`` (WAV, FLAC, OGG/Vorbis/Opus, MP3, ...) to float32 [2, samples].

    Mono is duplicated to both channels; other rates are converted with libsoxr's very-high
    quality filter (what librosa uses; scipy's default polyphase filter left a 23 kHz tone at
    -11 dB when going from 48 to 44.1 kHz); more than two channels are refused rather than
    guessed at.
    """
    path = Path(path)
    if not path.exists():
        raise AudioLoadError(path, "no such file")
    if not path.is_file():
        raise AudioLoadError(path, "not a file")
    if path.stat().st_size == 0:
        raise AudioLoadError(path, "the file is empty")
    try:
        with sf.SoundFile(path) as f:
            rate, channels = f.samplerate, f.channels
            data = f.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioLoadError(path, f"not a readable audio file ({err})") from None
    if channels > 2:
        raise AudioLoadError(path, f"{channels} channels; only mono and stereo tracks are "
                                   f"supported (mix it down to stereo first)")
    seconds = data.shape[0] / rate
    if seconds < min_seconds:
        raise AudioLoadError(path, f"only {seconds:.1f} s of audio; a track needs at least "
                                   f"{min_seconds:g} s (a few bars)")
    if not np.all(np.isfinite(data)):
        raise AudioLoadError(path, "the audio holds NaN or infinite samples")
    if rate != sample_rate:
        data = soxr.resample(data, rate, sample_rate, quality="VHQ").astype(np.float32)
    audio = np.ascontiguousarray(data.T)
    if channels == 1:
        audio = np.repeat(audio, 2, axis=0)
    return audio


def analysis_mono(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """float32 [channels, samples] or [samples] -> mono float32 at ``ANALYSIS_RATE``."""
    y = np.asarray(audio, dtype=np.float32)
    if y.ndim == 2:
        y = y.mean(axis=0)
    elif y.ndim != 1:
        raise ValueError(f"audio must be [samples] or [channels, samples], got {list(y.shape)}")
    if sample_rate != ANALYSIS_RATE:
        y = soxr.resample(y, sample_rate, ANALYSIS_RATE, quality="HQ").astype(np.float32)
    return y


AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aif", ".aiff")


def load_stem_folder(folder: Path | str, sample_rate: int = 44100,
                     min_seconds: float = MIN_SECONDS) -> np.ndarray:
    """Pre-separated stems: a folder holding drums, bass, vocals and other (any format each,
    e.g. ``drums.wav``, ``bass.flac``) -> float32 [4, 2, samples].

    Stems of slightly different lengths (encoder padding) are padded with silence to the
    longest; a missing, doubled or unreadable stem is an ``AudioLoadError`` naming it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise AudioLoadError(folder, "not a folder of stems")
    stems = []
    for name in STEMS:
        found = [p for p in folder.iterdir()
                 if p.stem.lower() == name and p.suffix.lower() in AUDIO_SUFFIXES]
        if not found:
            raise AudioLoadError(folder, f"no '{name}' stem (expected a file such as "
                                         f"{name}.wav or {name}.flac)")
        if len(found) > 1:
            raise AudioLoadError(folder, f"more than one '{name}' stem: "
                                         f"{', '.join(sorted(p.name for p in found))}")
        stems.append(load_audio(found[0], sample_rate, min_seconds))
    longest = max(s.shape[1] for s in stems)
    out = np.zeros((len(STEMS), 2, longest), dtype=np.float32)
    for i, stem in enumerate(stems):
        out[i, :, : stem.shape[1]] = stem
    return out
