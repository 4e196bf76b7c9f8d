"""A small synthetic music generator with exact ground truth: four stems, BPM, beats, key.

It renders 4/4 electronic music from a seed: kick, clap and hats (drums), a root-note bassline
(bass), a vibrato lead on the scale (vocals), and sustained chords (other), arranged in 8-bar
phrases the way DJ tracks are (intro, drop, break, outro). Everything it played is known exactly,
which is what the analysis is measured against and what the built-in demo tracks are made of.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from effects.params import STEMS

from .beats import PHRASE_BARS
from .cache import default_cache_dir
from .key import PITCH_CLASSES


_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
# Which stems play in each section (drums, bass, vocals, other). The break is labelled "bridge",
# one of the six structure labels the model knows.
SECTION_STEMS = {"intro": (1, 1, 0, 0), "drop": (1, 1, 1, 1), "bridge": (0, 0, 1, 1),
                 "outro": (1, 1, 0, 0)}
# Scale degrees of the chord roots, one chord per bar, opening and closing on the tonic so that
# the key is audible: I-IV-V-I (major), i-VI-VII-i (minor). (Rotations of one loop, such as
# I-V-vi-IV against i-VI-III-VII, would hold a key and its relative in equal measure.)
_PROGRESSION = {"major": (0, 3, 4, 0), "minor": (0, 5, 6, 0)}


@dataclass(frozen=True)
class SynthTrack:
    stems: np.ndarray  # float32 [4, 2, samples]
    sample_rate: int
    bpm: float
    tonic: int  # pitch class, 0 = C
    mode: str  # "major" or "minor"
    beat_times: np.ndarray  # seconds of every beat; every fourth is a downbeat, the first is one
    sections: tuple[tuple[str, int, int], ...]  # (label, first bar, bars)

    @property
    def key_name(self) -> str:
        return f"{PITCH_CLASSES[self.tonic]} {self.mode}"

    @property
    def mix(self) -> np.ndarray:
        return self.stems.sum(axis=0)


def _midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69) / 12)


def _decay(n: int, seconds: float, sample_rate: int) -> np.ndarray:
    return np.exp(-np.arange(n) / (seconds * sample_rate))


def arrangement(bars: int) -> tuple[tuple[str, int, int], ...]:
    """Sections as (label, first bar, bars): 8-bar intro and outro around drops with a break in
    the middle for tracks of 24 bars or more; one drop otherwise."""
    if bars < 3 * PHRASE_BARS:
        return (("drop", 0, bars),)
    middle = (bars - 2 * PHRASE_BARS) // PHRASE_BARS
    labels = ["intro"] + ["bridge" if middle >= 3 and i == middle // 2 else "drop"
                          for i in range(middle)] + ["outro"]
    lengths = [PHRASE_BARS] * len(labels)
    lengths[-2] += bars - PHRASE_BARS * len(labels)  # leftover bars extend the last drop
    sections, start = [], 0
    for label, length in zip(labels, lengths):
        if sections and sections[-1][0] == label:
            sections[-1] = (label, sections[-1][1], sections[-1][2] + length)
        else:
            sections.append((label, start, length))
        start += length
    return tuple(sections)


def render_track(seed: int, bpm: float = 124.0, tonic: int = 9, mode: str = "minor",
                 bars: int = 16, sample_rate: int = 44100) -> SynthTrack:
    """Render ``bars`` bars of 4/4 at ``bpm`` in the given key, reproducibly from ``seed``."""
    if mode not in _PROGRESSION:
        raise ValueError(f"mode must be 'major' or 'minor', got {mode!r}")
    rng = np.random.default_rng(seed)
    beat = 60.0 / bpm
    n_beats = 4 * bars
    n = int(round(n_beats * beat * sample_rate))
    stems = np.zeros((4, n), dtype=np.float64)
    scale = _MAJOR if mode == "major" else _MINOR
    t_beat = int(beat * sample_rate)
    sections = arrangement(bars)
    plays = np.zeros((bars, 4), dtype=bool)
    for label, first, length in sections:
        plays[first:first + length] = SECTION_STEMS[label]

    def place(stem: int, start_s: float, sound: np.ndarray) -> None:
        i = int(round(start_s * sample_rate))
        j = min(n, i + sound.size)
        if i < n:
            stems[stem, i:j] += sound[: j - i]

    hit = np.arange(int(0.35 * sample_rate)) / sample_rate
    kick = np.sin(2 * np.pi * (50 * hit + 60 * (1 - np.exp(-hit * 30)) / 30)) * _decay(
        hit.size, 0.12, sample_rate)
    noise = rng.standard_normal(int(0.2 * sample_rate))
    clap = np.diff(noise, prepend=0.0) * _decay(noise.size, 0.05, sample_rate) * 0.35
    hat = np.diff(np.diff(noise[: int(0.05 * sample_rate)], prepend=0.0), prepend=0.0)
    hat *= _decay(hat.size, 0.012, sample_rate) * 0.12
    for b in range(n_beats):
        if not plays[b // 4, 0]:
            continue
        place(0, b * beat, kick * 0.9)
        place(0, (b + 0.5) * beat, hat)
        if b % 4 in (1, 3):
            place(0, b * beat, clap)

    octave_root = 36 + tonic  # bass register
    lead_notes = rng.integers(0, 7, size=n_beats * 2)
    for bar in range(bars):
        degree = _PROGRESSION[mode][bar % 4]
        root = octave_root + scale[degree]
        # bass: eighth notes on the chord root, octave jump on the offbeats
        for e in range(8 if plays[bar, 1] else 0):
            note = root + (12 if e % 2 else 0)
            dur = int(beat / 2 * sample_rate)
            t = np.arange(dur) / sample_rate
            f = _midi_hz(note)
            saw = 2 * ((f * t) % 1.0) - 1
            place(1, (bar * 4 + e / 2) * beat, 0.25 * np.tanh(2 * saw) * _decay(dur, 0.15,
                                                                                 sample_rate))
        # chords: the triad on the degree, a bar long, soft attack
        dur = 4 * t_beat
        t = np.arange(dur) / sample_rate
        env = np.minimum(1.0, t / 0.08) * _decay(dur, 2.0, sample_rate)
        chord = sum(np.sin(2 * np.pi * _midi_hz(60 + tonic + scale[(degree + k) % 7]
                                                 + 12 * ((degree + k) // 7)) * t)
                    for k in (0, 2, 4))
        if plays[bar, 3]:
            place(3, bar * 4 * beat, 0.07 * chord * env)
    # lead: a vibrato voice on eighth notes through the second half of every 8-bar phrase
    for e, degree in enumerate(lead_notes):
        if (e // 16) % 2 == 0 or e % 3 == 2 or not plays[e // 8, 2]:
            continue
        dur = int(beat / 2 * sample_rate)
        t = np.arange(dur) / sample_rate
        f = _midi_hz(72 + tonic + scale[degree]) * (1 + 0.006 * np.sin(2 * np.pi * 5.5 * t))
        phase = 2 * np.pi * np.cumsum(f) / sample_rate
        voice = np.sin(phase) + 0.4 * np.sin(2 * phase) + 0.2 * np.sin(3 * phase)
        env = np.minimum(1.0, t / 0.02) * np.minimum(1.0, (t[-1] - t) / 0.03 + 1e-3)
        place(2, e * beat / 2, 0.08 * voice * env)

    # Stereo: drums and bass centred, lead slightly left, chords widened by a 12 ms delay.
    stereo = np.repeat(stems[:, None, :], 2, axis=1)
    stereo[2, 0] *= 1.1
    stereo[2, 1] *= 0.9
    shift = int(0.012 * sample_rate)
    stereo[3, 1, shift:] = stems[3, :-shift]
    # Leave DJ headroom: the mix peaks at -6 dBFS (one factor for all stems keeps their sum exact).
    stereo *= 0.5 / np.max(np.abs(stereo.sum(axis=0)))
    beat_times = np.arange(n_beats) * beat
    return SynthTrack(stereo.astype(np.float32), sample_rate, float(bpm), tonic, mode, beat_times,
                      sections)


# The demo's two tracks: A minor into C major, two BPM apart, 48 bars each.
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
