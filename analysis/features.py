"""Conditioning features on the shared time base: frames of a sixteenth note, in beat time.

The time base: frame f covers beats [f / 4, (f + 1) / 4) counted from ``start_beat``, a whole
number of bars before the first downbeat chosen so that frame 0 starts at or before the track's
first sample. So every bar starts on a frame divisible by 16 at any tempo, which is the time base
of the model's parameter curves too (ARCHITECTURE.md: curves live in beat time).
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np

from .beats import BEATS_PER_BAR, PHRASE_BARS, BeatGrid
from .key import key_one_hot

FRAMES_PER_BEAT = 4
N_MELS = 128
N_BANDS = 32  # the level bands of stem_band_db
STRUCTURE_LABELS = ("intro", "verse", "chorus", "drop", "bridge", "outro")
MEL_RATE = 22050
MEL_HOP = 256
# Phrase levels are read relative to each stem's loudest phrase, floored at this (dB).
LEVEL_FLOOR_DB = -20.0
# Drums this far below their loudest phrase are a break (separated drums leak at about -20 dB).
DRUMS_OUT_DB = -10.0
# A phrase is a drop when its stems together are within this many dB of the fullest phrase:
# one judgement over all four stems is steadier than one per stem, whose leakage varies.
FULL_WITHIN_DB = 6.0


@dataclass(frozen=True)
class TrackFeatures:
    """The seed's per-track conditioning, unbatched numpy (T frames of the time base)."""

    stem_mels: np.ndarray  # [4, 128, T] log-mel power per stem, dB / 80 + 1 (about 0..1)
    structure: np.ndarray  # [T, 6] one-hot over STRUCTURE_LABELS
    beats: np.ndarray  # [T] 1 on frames that start a beat
    downbeats: np.ndarray  # [T] 1 on frames that start a bar
    bpm: np.ndarray  # [1]
    key: np.ndarray  # [24] one-hot, 12 major then 12 minor
    energy: np.ndarray  # [T] RMS of the mix per frame
    start_beat: int  # beat (from the first downbeat) where frame 0 starts; a multiple of 4

    @property
    def n_frames(self) -> int:
        return self.energy.shape[0]


def phrase_position(start_beat: float, n_frames: int) -> np.ndarray:
    """Where each frame sits in its phrase, in [0, 1), counting phrases of ``PHRASE_BARS`` bars
    from the track's first downbeat (``start_beat``: the beat of frame 0 from that downbeat).

    A DJ counts phrases along the whole track; an excerpt alone cannot tell which of its
    downbeats starts a phrase when the section label does not change there.
    """
    beats = start_beat + np.arange(n_frames) / FRAMES_PER_BEAT
    return (np.mod(beats, BEATS_PER_BAR * PHRASE_BARS) / (BEATS_PER_BAR * PHRASE_BARS)
            ).astype(np.float32)


def frame_times(grid: BeatGrid) -> tuple[int, np.ndarray]:
    """``start_beat`` and the start times (s) of frames 0..T (T + 1 edges) covering the track."""
    bars_before = int(np.ceil(grid.first_downbeat / (BEATS_PER_BAR * grid.beat_period)))
    start_beat = -BEATS_PER_BAR * bars_before
    n_frames = int(np.ceil((grid.beat_position(grid.duration) - start_beat) * FRAMES_PER_BEAT))
    beats = start_beat + np.arange(n_frames + 1) / FRAMES_PER_BEAT
    return start_beat, grid.first_downbeat + beats * grid.beat_period


def _per_frame(values: np.ndarray, times: np.ndarray, rate: float) -> np.ndarray:
    """Average the columns of values [..., frames at ``rate``] over each time-base frame."""
    edges = np.clip(np.round(times * rate).astype(int), 0, values.shape[-1])
    sums = np.concatenate([np.zeros(values.shape[:-1] + (1,)), np.cumsum(values, axis=-1)],
                          axis=-1)
    counts = np.maximum(np.diff(edges), 1)
    return (sums[..., edges[1:]] - sums[..., edges[:-1]]) / counts


def stem_mels(stems: np.ndarray, sample_rate: int, times: np.ndarray) -> np.ndarray:
    """Log-mel spectra of the four stems (mono), averaged per frame -> [4, 128, T].

    Clipped to [-80, 0] dB of power 1, the model's conditioning: the loudest cells of a
    mastered track (about a tenth of them) read 0 dB. ``stem_band_db`` keeps the level."""
    power = _mel_power(stems, sample_rate, times, N_MELS)
    return (librosa.power_to_db(power, ref=1.0, top_db=None).clip(-80.0, 0.0) / 80.0
            + 1.0).astype(np.float32)


def stem_band_db(stems: np.ndarray, sample_rate: int, times: np.ndarray,
                 n_bands: int = N_BANDS) -> np.ndarray:
    """Power of the four stems (mono) in ``n_bands`` mel bands, averaged per frame, in dB with
    no ceiling -> [4, n_bands, T]: what the mixer's effect on the mix's level is computed from
    (model.heard)."""
    power = _mel_power(stems, sample_rate, times, n_bands)
    return librosa.power_to_db(power, ref=1.0, amin=1e-12, top_db=None).astype(np.float32)


def _mel_power(stems: np.ndarray, sample_rate: int, times: np.ndarray,
               n_mels: int) -> np.ndarray:
    """Mel power spectra (slaney-normalised filters) of the four stems' mono sum at
    ``MEL_RATE``, averaged over each time-base frame -> [4, n_mels, T]."""
    mono = librosa.resample(stems.mean(axis=1), orig_sr=sample_rate, target_sr=MEL_RATE,
                            res_type="soxr_hq", axis=-1)
    power = librosa.feature.melspectrogram(y=mono, sr=MEL_RATE, hop_length=MEL_HOP,
                                           n_mels=n_mels)
    return _per_frame(power, times, MEL_RATE / MEL_HOP)


# Samples per block of frame_rms: its float64 temporaries stay a few MB.
RMS_BLOCK = 1 << 18


def frame_rms(audio: np.ndarray, sample_rate: int, times: np.ndarray) -> np.ndarray:
    """RMS per frame of [..., channels, samples] audio -> [..., T].

    In blocks: a track's stems squared in float64 at once were gigabytes of fresh memory, whose
    faulting in made the audio callback late where memory is costly (a virtual machine's) while
    a track loaded (bench/engine.py --load)."""
    n = audio.shape[-1]
    edges = np.clip(np.round(times * sample_rate).astype(int), 0, n)
    sums = np.zeros(audio.shape[:-2] + edges.shape)  # power summed up to each edge
    before = np.zeros(audio.shape[:-2])
    for start in range(0, n, RMS_BLOCK):
        stop = min(start + RMS_BLOCK, n)
        running = before[..., None] + np.cumsum(
            np.mean(np.square(audio[..., start:stop], dtype=np.float64), axis=-2), axis=-1)
        inside = (edges > start) & (edges <= stop)
        sums[..., inside] = running[..., edges[inside] - start - 1]
        before = running[..., -1]
    counts = np.maximum(np.diff(edges), 1)
    return np.sqrt((sums[..., 1:] - sums[..., :-1]) / counts).astype(np.float32)


def segment(stems: np.ndarray, sample_rate: int, grid: BeatGrid,
            phrase_bars: int = 8) -> list[tuple[str, float, float]]:
    """Sections as (label, start s, end s) on phrase boundaries, labelled by which stems play.

    A DJ reads a track by its arrangement: phrases with drums, bass and the harmonic parts are
    the drop, phrases without drums are a break (``bridge``), the thinner phrases before the
    first drop and after the last one are intro and outro, and thinner phrases in between verses.
    """
    bar = BEATS_PER_BAR * grid.beat_period
    inner = grid.phrase_times(phrase_bars)
    # A pickup shorter than a bar belongs to the first phrase, a tail to the last.
    inner = inner[(inner >= bar) & (inner <= grid.duration - bar)]
    bounds = np.r_[0.0, inner, grid.duration]
    level = 20 * np.log10(frame_rms(stems, sample_rate, bounds) + 1e-9)  # [4, phrases] dB
    level = np.maximum(level - level.max(axis=1, keepdims=True), LEVEL_FLOOR_DB)
    fullness = level.sum(axis=0)
    full = fullness >= fullness.max() - FULL_WITHIN_DB
    drumless = level[0] < DRUMS_OUT_DB
    labels = np.where(drumless, "bridge", np.where(full, "drop", "verse")).astype(object)
    if full.any():
        first, last = np.flatnonzero(full)[[0, -1]]
        labels[:first][labels[:first] == "verse"] = "intro"
        labels[last + 1:][labels[last + 1:] == "verse"] = "outro"
    sections: list[tuple[str, float, float]] = []
    for label, start, end in zip(labels, bounds[:-1], bounds[1:]):
        if sections and sections[-1][0] == label:
            sections[-1] = (label, sections[-1][1], float(end))
        else:
            sections.append((str(label), float(start), float(end)))
    return sections


def structure_one_hot(sections: list[tuple[str, float, float]], times: np.ndarray) -> np.ndarray:
    """[T, 6] one-hot of the section each frame starts in (frames before the track: its first)."""
    one_hot = np.zeros((times.size - 1, len(STRUCTURE_LABELS)), dtype=np.float32)
    starts = np.array([start for _, start, _ in sections])
    which = np.clip(np.searchsorted(starts, times[:-1], side="right") - 1, 0, len(sections) - 1)
    for f, s in enumerate(which):
        one_hot[f, STRUCTURE_LABELS.index(sections[s][0])] = 1.0
    return one_hot


def track_features(stems: np.ndarray, sample_rate: int, grid: BeatGrid, key_index: int,
                   sections: list[tuple[str, float, float]]) -> TrackFeatures:
    """All conditioning features of one track on the shared time base."""
    start_beat, times = frame_times(grid)
    frames = np.arange(times.size - 1)
    return TrackFeatures(
        stem_mels=stem_mels(stems, sample_rate, times),
        structure=structure_one_hot(sections, times),
        beats=(frames % FRAMES_PER_BEAT == 0).astype(np.float32),
        downbeats=(frames % (FRAMES_PER_BEAT * BEATS_PER_BAR) == 0).astype(np.float32),
        bpm=np.array([grid.bpm], dtype=np.float32),
        key=key_one_hot(key_index),
        energy=frame_rms(stems.sum(axis=0), sample_rate, times),
        start_beat=start_beat,
    )
