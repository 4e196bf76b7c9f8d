"""Stem separation: a pluggable ``Separator`` and the built-in offline DSP separator.

A separator turns a stereo track, float32 [2, samples], into the four stems in
``effects.params.STEMS`` order, float32 [4, 2, samples]. ``get_separator(name)`` picks one.

``DSPSeparator`` needs no weights. It works a minute of audio at a time, on one STFT: it computes
soft masks on the centre (mid) downmix and applies them to both channels:

* drums: the percussive part of a median-filter harmonic/percussive split (Fitzgerald 2010,
  ``librosa.decompose.hpss``). Below ``KICK_HZ`` that split cannot see a kick drum: a kick is a
  decaying sine, as tonal as a bass note, and lands in the harmonic part. There the drums also
  take what repeats on the track's own beat period: the median of the spectrum one, two, ...
  periods away (REPET, Rafii & Pardo 2013; the period is read off the low band's beat
  spectrum), less the level it never drops below within a period. The kick rises and decays on
  every beat for bars on end; a bassline changes notes with the chords, so the median leaves it
  out, and a held note does not rise and fall.
* bass: the harmonic part below a crossover (all of it below ``BASS_HZ[0]``, fading out on a log
  frequency scale to nothing at ``BASS_HZ[1]``), plus the harmonics of the bass note above it: a
  comb on the pitch that best explains the low harmonic spectrum (harmonic summation), in frames
  where that pitch's fundamental is really there.
* vocals: the harmonic part of the centre, on the harmonic comb of the predominant pitch in the
  vocal range (after the bass), weighted by how centred each bin is (|mid|^2 / (|mid|^2 +
  |side|^2): lead vocals are mixed dead centre, pads and reverbs are wide), on the mid channel.
* other: the track minus the three others, so the four stems sum back to the input exactly.

All masks are at most one in every bin and drums, bass and vocals never share a bin's mask, so
"other" is the remaining (1 - masks) share, never a negative one. On a 2-core machine it takes
about 0.7 s per minute of 44.1 kHz stereo.

It is tuned on, and measured against, ``analysis.synth`` tracks (see tests/test_separation.py):
on the 8-bar test track the drums come out at 15.3 dB SDR, the bass at 4.1 dB and the vocals at
4.2 dB. Known limits: a bassline that repeats one note on every beat for bars partly goes to
the drums; a kick under a loud held sub-bass note mostly stays in the bass; vocals are told by
pitch and panning, so a centred synth lead counts as vocals and a wide-panned voice does not,
and they come out the same on both channels.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Protocol, runtime_checkable

import librosa
import numpy as np
from scipy.ndimage import median_filter, minimum_filter1d

from effects.params import STEMS

SEPARATORS: tuple[str, ...] = ("dsp", "demucs")

# Tracks are separated a minute at a time, so that the working memory stays at a few hundred MB
# however long the track, with 4 s cross-fades between the blocks.
BLOCK_SECONDS = 60.0
BLOCK_OVERLAP_SECONDS = 4.0

# STFT: 2048 points at 44.1 kHz (46 ms, 21.5 Hz bins: a bass's harmonics from the 4th up are a
# semitone apart by more than a bin) and 50 % overlap. A 75 % overlap doubled the cost and scored
# worse (the median kernels then span half the time). Other rates get the power of two nearest
# the same duration.
FFT_SECONDS = 2048 / 44100
# Median kernels of the harmonic/percussive split, in frames (harmonic, along time: 17 x 23 ms =
# 0.39 s) and bins (percussive, along frequency: 17 x 21.5 Hz = 366 Hz). On the generated tracks
# 13 x 13 scored within 0.1 dB of it, 21 x 17 0.3 dB worse.
HPSS_KERNEL = (17, 17)
# Below this the drums also take what repeats on the beat: a kick's fundamental and its pitch
# drop (40-150 Hz). 120 and 150 scored alike, 200 took too much of the bass.
KICK_HZ = 150.0
# Repetition: the median over this many beat periods either side (6 s at 120 BPM), and the range
# of periods searched (a beat from 240 down to 50 BPM; two beats where they repeat better).
REPEAT_PERIODS = 12
PERIOD_RANGE_S = (0.25, 1.2)
# Below this beat-spectrum score the low band has no loop to follow and the kick step is
# skipped. The generated drums score 0.7 (0.44 under a held bass five times as loud), white
# noise 0.04.
MIN_REPETITION = 0.3
ONSET_FLOOR = 1e-3  # of the band's mean power: rises from below it are not onsets
# Bass crossover: bass fundamentals run from 41 Hz (E1) to about 200 Hz (G3); cellos, low male
# voices, guitars and the left hand of keys start around 100-200 Hz. Everything harmonic below
# 150 Hz is bass; between 150 and 300 Hz the share falls linearly in log frequency, so a bass note
# at 200 Hz keeps 59 % while chords at 250 Hz keep 26 %; above, only the comb on the bass's pitch.
BASS_HZ = (150.0, 300.0)
BASS_F0_HZ = (30.0, 400.0)
# Above this the bass's comb took more from the vocals (1 dB) than it gave the bass (0.1 dB).
BASS_COMB_MAX_HZ = 1000.0
# A frame has a bass note when the comb's fundamental is within 12 dB of the strongest harmonic
# peak below BASS_COMB_MAX_HZ (full weight from within 6 dB).
BASS_PRESENT_DB = (-12.0, -6.0)
# Vocals: pitches from 80 Hz (a low male voice) to 1600 Hz (a synth lead or a soprano's top), on
# harmonics up to 8 kHz, in a band from 150 Hz.
VOCAL_F0_HZ = (80.0, 1600.0)
VOCAL_BAND_HZ = (150.0, 8000.0)
# ... and a frame has a voice when the energy-weighted centre weight of the comb's bins is above
# the first value (full weight from the second). A source panned 1.1 : 0.9 scores 0.99; chords
# widened by a short delay score about 0.5.
VOCAL_CENTRED = (0.8, 0.95)
# Pitch grid and harmonic summation: eighths of a semitone, 8 harmonics weighted h^-0.5 (a
# pitch's own fundamental then outweighs its octave below); the comb's teeth are triangles two
# bins wide on each side of a harmonic, the half-width of a Hann window's main lobe (one bin
# lost a third of the voice to the bass's teeth and to vibrato).
STEPS_PER_SEMITONE = 8
N_HARMONICS = 8
HARMONIC_DECAY = 0.5
COMB_HALF_WIDTH_BINS = 2.0
_TINY = 1e-12


@runtime_checkable
class Separator(Protocol):
    """Splits stereo float32 [2, N] audio into float32 [4, 2, N] stems in ``STEMS`` order."""

    name: str

    def separate(self, audio: np.ndarray, sample_rate: int) -> np.ndarray: ...


def get_separator(name: str = "dsp", weights: Path | str | None = None) -> Separator:
    """The separator called ``name``: "dsp" (built in) or "demucs" (the optional demucs
    package, with HTDemucs weights from ``weights``, a folder; see analysis.demucs_separator)."""
    if name == "dsp":
        return DSPSeparator()
    if name == "demucs":
        from .demucs_separator import DemucsSeparator, default_weights_dir, load_demucs

        return DemucsSeparator(load_demucs(weights or default_weights_dir()))
    raise ValueError(f"unknown separator {name!r}; choose one of {', '.join(SEPARATORS)}")


def sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-distortion ratio 10 log10(|s|^2 / |s - s_hat|^2) in dB, over all samples.

    A perfect estimate is +inf; a silent reference with a non-silent error is -inf.
    """
    s = np.asarray(reference, dtype=np.float64)
    e = np.asarray(estimate, dtype=np.float64)
    if s.shape != e.shape:
        raise ValueError(f"reference {s.shape} and estimate {e.shape} differ in shape")
    signal, error = float(np.sum(s**2)), float(np.sum((s - e) ** 2))
    if error == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / error)


class DSPSeparator:
    """Offline separation by spectral masks: HPSS, beat repetition, pitch combs and panning."""

    name = "dsp"

    def separate(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        x = _check_input(audio, sample_rate)
        sr, n = int(sample_rate), x.shape[-1]
        stems = np.zeros((len(STEMS), 2, n), dtype=np.float32)
        if n == 0:
            return stems
        masked = [STEMS.index(stem) for stem in ("drums", "bass", "vocals")]
        # Blocks of at most a minute, cross-faded over their overlaps (the fades sum to one), so
        # that memory does not grow with the track; each block finds its own beat period.
        for start, stop, fade_in, fade_out in _blocks(n, round(BLOCK_SECONDS * sr),
                                                      round(BLOCK_OVERLAP_SECONDS * sr)):
            weight = np.ones(stop - start, dtype=np.float32)
            weight[:fade_in.size] = fade_in
            weight[weight.size - fade_out.size:] *= fade_out
            for index, part in zip(masked, _separate(x[:, start:stop], sr)):
                stems[index, :, start:stop] += weight * part
        # "other" is the rest, in float64 and rounded once, so that the four float32 stems sum
        # back to x to within float32 rounding; in pieces, to keep float64 copies small.
        other = STEMS.index("other")
        for start in range(0, n, 1 << 20):
            piece = slice(start, start + (1 << 20))
            rest = x[:, piece].astype(np.float64)
            for index in masked:
                rest -= stems[index, :, piece]
            stems[other, :, piece] = rest
        return stems


def _blocks(n: int, block: int,
            overlap: int) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """(start, stop, fade-in, fade-out) of equal blocks of at most ``block`` samples covering
    ``n``, each overlapping the next by ``overlap`` samples; the fades are raised cosines over
    the overlaps, the next block's fade-in and this one's fade-out summing to one."""
    if n <= block:
        return [(0, n, np.ones(0, np.float32), np.ones(0, np.float32))]
    count = math.ceil((n - overlap) / (block - overlap))
    step = (n - overlap) / count
    ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)).astype(np.float32)
    blocks = []
    for i in range(count):
        start, stop = round(i * step), round((i + 1) * step) + overlap
        blocks.append((start, stop, ramp if i > 0 else ramp[:0],
                       1.0 - ramp if i < count - 1 else ramp[:0]))
    return blocks


def _check_input(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    x = np.asarray(audio)
    if x.ndim != 2 or x.shape[0] != 2:
        raise ValueError(f"expected stereo audio shaped [2, samples], got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"expected floating-point audio, got {x.dtype}")
    if not (isinstance(sample_rate, (int, np.integer)) and sample_rate > 0):
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError("audio contains NaN or infinite samples")
    return x


def _separate(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drums, bass (float32 [2, N]) and vocals (the same on both channels) from float32 x."""
    n = x.shape[-1]
    n_fft = 2 ** max(6, round(math.log2(FFT_SECONDS * sr)))
    hop = n_fft // 2
    # Zeros after the end, so that the last samples sit under full windows: with the track
    # ending between frame centres, the inverse STFT would divide the masked (no longer
    # consistent) last frame by a window overlap near zero there, and blow it up.
    spec = librosa.stft(np.pad(x, ((0, 0), (0, n_fft))), n_fft=n_fft, hop_length=hop)
    mid = 0.5 * (spec[0] + spec[1])
    mag = np.abs(mid)
    freqs = librosa.fft_frequencies(sr=sr, n_fft=n_fft)

    harm, perc = _hpss_masks(mag)
    low = freqs < KICK_HZ
    loop = _repetition_period(mag[low], sr / hop)
    if loop is not None and loop[1] >= MIN_REPETITION:
        repeating = _repeating_part(mag[low], loop[0], REPEAT_PERIODS)
        perc[low] = np.maximum(perc[low], repeating / np.maximum(mag[low], _TINY))
        harm[low] = 1.0 - perc[low]
    harm_mag = harm * mag
    # Bass and vocals only ever take bins below the top of the vocal band.
    kv = _bins_below(VOCAL_BAND_HZ[1], sr, n_fft)
    kb = _bins_below(max(BASS_HZ[1], BASS_COMB_MAX_HZ), sr, n_fft)

    # Bass: the crossover band, and the comb of the bass note above it. The comb runs up the
    # whole vocal band to keep the bass's overtones out of the voice's pitch, but the bass takes
    # only the teeth below BASS_COMB_MAX_HZ.
    lo, hi = BASS_HZ
    crossover = np.log(hi / np.maximum(freqs[:kv], 1.0)) / np.log(hi / lo)
    crossover = np.clip(crossover, 0.0, 1.0).astype(np.float32)[:, None]
    bass_harmonics = _pitch_comb(harm_mag[:kv], sr, n_fft, BASS_F0_HZ, VOCAL_BAND_HZ[1],
                                 BASS_PRESENT_DB, BASS_COMB_MAX_HZ)
    bass_w = np.maximum(crossover, bass_harmonics * (freqs[:kv] <= BASS_COMB_MAX_HZ)[:, None])

    # Vocals: centred harmonic energy on the comb of the leading pitch, outside the bass.
    side_pow = np.abs(0.5 * (spec[0, :kv] - spec[1, :kv])) ** 2
    mid_pow = mag[:kv] ** 2
    centre = mid_pow / np.maximum(mid_pow + side_pow, _TINY)
    del side_pow, mid_pow
    not_bass = 1.0 - bass_w
    vocal_w = not_bass * centre
    # The voice's pitch is looked for away from all the bass's harmonics: a bass line an octave
    # up sits in the vocal range, and its overtones would make it the most salient pitch there.
    vocal_comb = _pitch_comb(harm_mag[:kv] * vocal_w * (1.0 - bass_harmonics), sr, n_fft,
                             VOCAL_F0_HZ, VOCAL_BAND_HZ[1])
    # A frame's pitch is a voice only if its harmonics are centred, on average over their energy.
    comb_energy = vocal_comb * harm_mag[:kv] * not_bass
    centred = (comb_energy * centre).sum(axis=0) / np.maximum(comb_energy.sum(axis=0), _TINY)
    a, b = VOCAL_CENTRED
    vocal_comb *= np.clip((centred - a) / (b - a), 0.0, 1.0).astype(np.float32)[None, :]
    vocal_comb[freqs[:kv] < VOCAL_BAND_HZ[0]] = 0.0
    vocal_mask = harm[:kv] * vocal_w * vocal_comb
    del harm_mag, comb_energy, bass_harmonics, not_bass, centre, vocal_w, vocal_comb

    # One inverse STFT for all five signals: drums and bass per channel, vocals on the mid.
    masked = np.zeros((5, *mid.shape), dtype=spec.dtype)
    np.multiply(perc, spec, out=masked[0:2])
    np.multiply(harm[:kb] * bass_w[:kb], spec[:, :kb], out=masked[2:4, :kb])
    np.multiply(vocal_mask, mid[:kv], out=masked[4, :kv])
    del spec, mid, perc, harm, bass_w, vocal_mask
    out = librosa.istft(masked, hop_length=hop, n_fft=n_fft, length=n)
    return out[0:2], out[2:4], np.stack([out[4], out[4]])


def _bins_below(hz: float, sr: int, n_fft: int) -> int:
    """How many STFT bins from 0 Hz it takes to cover ``hz`` (with a bin to spare)."""
    return min(n_fft // 2 + 1, int(hz * n_fft / sr) + 2)


def _hpss_masks(mag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic and percussive soft masks, the same as ``librosa.decompose.hpss(mag, mask=True,
    kernel_size=HPSS_KERNEL)`` gives, five times faster."""
    kh, kp = HPSS_KERNEL
    harm = _median_along_rows(mag, kh)
    perc = _median_along_rows(np.ascontiguousarray(mag.T), kp).T
    return (librosa.util.softmask(harm, perc, power=2.0, split_zeros=True),
            librosa.util.softmask(perc, harm, power=2.0, split_zeros=True))


def _median_along_rows(a: np.ndarray, size: int) -> np.ndarray:
    """``scipy.ndimage.median_filter(a, size=(1, size), mode="reflect")`` for a 2-D ``a``.

    scipy's n-dimensional rank filter costs O(size) per sample; its one-dimensional one keeps a
    sorted window, O(log size). So the rows, each padded as "reflect" would, go end to end
    through the one-dimensional filter; the padding keeps every window inside its own row.
    """
    half = size // 2
    padded = np.pad(a, ((0, 0), (half, half)), mode="symmetric")  # ndimage's "reflect"
    filtered = median_filter(padded.ravel(), size=size, mode="nearest").reshape(padded.shape)
    return filtered[:, half:half + a.shape[1]]


def _repetition_period(low_mag: np.ndarray, frame_rate: float) -> tuple[float, float] | None:
    """The low band's repetition period in frames (fractional) and its score (1 for a loop that
    repeats exactly, about 0 for noise), or None where the band holds still or is too short.

    The beat spectrum is the autocorrelation of the band's onset curve (the rises in log power,
    summed over its bins), 1 at lag 0; a period's score is its mean over every multiple of the
    period that fits in half the track, so a beat scores high only if the pattern repeats on
    every beat and not just every other one, and a third of a beat or a beat and a half score
    low. The best period is then refined on its own multiples with parabolic peaks.
    """
    t = low_mag.shape[1]
    lo, hi = PERIOD_RANGE_S[0] * frame_rate, min(PERIOD_RANGE_S[1] * frame_rate, t / 4)
    if t < 16 or hi <= lo + 1:
        return None
    # Onsets: the rise in log power in each bin, so that loudness does not decide (a held sub
    # bass outweighs a kick's tail by far, but changes note only every bar or two).
    level = np.log(low_mag.astype(np.float64) ** 2 + ONSET_FLOOR * np.mean(low_mag**2) + _TINY)
    onsets = np.maximum(np.diff(level, axis=1, prepend=level[:, :1]), 0.0).sum(axis=0)
    onsets -= onsets.mean()
    spectrum = np.fft.rfft(onsets, 2 * t)
    ac = np.fft.irfft(np.abs(spectrum) ** 2)[:t]
    if ac[0] <= 0.0:
        return None
    ac = ac / (t - np.arange(t)) / (ac[0] / t)  # unbiased, 1 at lag 0
    candidates = np.arange(lo, hi, 0.02)
    multiples = np.arange(1, int(t / 2 / lo) + 1)
    lags = candidates[:, None] * multiples[None, :]
    inside = lags < t / 2
    values = np.where(inside, np.interp(lags, np.arange(t), ac), 0.0)
    score = values.sum(axis=1) / np.maximum(inside.sum(axis=1), 1)
    best = int(np.argmax(score))
    period, m = float(candidates[best]), 1
    while m * period < t / 2 - 3:
        c = int(round(m * period))
        j = c - 2 + int(np.argmax(ac[c - 2:c + 3]))
        a, b, d = ac[j - 1], ac[j], ac[j + 1]
        curve = a - 2 * b + d
        period = (j + (0.5 * (a - d) / curve if curve < 0 else 0.0)) / m
        m *= 2
    return period, float(score[best])


def _repeating_part(mag: np.ndarray, period: float, count: int) -> np.ndarray:
    """The rhythm that repeats on ``period`` (frames): each frame's median over the frames
    ``1..count`` periods either side, less the lowest that median gets within a period, capped at
    ``mag``. What never drops within a period (a held bass note, a drone) repeats trivially and
    is not rhythm; a kick rises and decays on every beat."""
    t = mag.shape[1]
    offsets = np.arange(-count, count + 1) * period
    idx = np.rint(np.arange(t)[:, None] + offsets[None, :]).astype(np.int64)  # [T, 2K+1]
    inside = (idx >= 0) & (idx < t)
    # Neighbours past either end of the track are left out of the median.
    stack = np.where(inside[None], mag[:, np.clip(idx, 0, t - 1)], np.nan)  # [F, T, 2K+1]
    with np.errstate(all="ignore"):
        model = np.nanmedian(stack, axis=-1).astype(np.float32)
    floor = minimum_filter1d(model, size=int(round(period)) + 1, axis=1, mode="nearest")
    return np.minimum(model - floor, mag)


@functools.lru_cache(maxsize=16)
def _comb_tables(sr: int, n_fft: int, f0_range: tuple[float, float],
                 comb_hz: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pitch grid [C], harmonic summation weights [C, bins up to the top pitch's last summed
    harmonic] and comb masks [C, bins up to ``comb_hz``]."""
    bin_hz = sr / n_fft
    fmin, fmax = f0_range
    steps = 12 * STEPS_PER_SEMITONE
    f0 = fmin * 2.0 ** (np.arange(int(steps * math.log2(fmax / fmin)) + 1) / steps)
    rows = np.arange(f0.size)
    n_sum = _bins_below(N_HARMONICS * fmax, sr, n_fft)
    weights = np.zeros((f0.size, n_sum))
    for h in range(1, N_HARMONICS + 1):
        pos = h * f0 / bin_hz
        k = np.floor(pos).astype(np.int64)
        frac = pos - k
        ok = k + 1 < n_sum
        np.add.at(weights, (rows[ok], k[ok]), h**-HARMONIC_DECAY * (1 - frac[ok]))
        np.add.at(weights, (rows[ok], k[ok] + 1), h**-HARMONIC_DECAY * frac[ok])
    n_comb = _bins_below(comb_hz, sr, n_fft)
    comb = np.zeros((f0.size, n_comb))
    bins = np.arange(n_comb)
    for h in range(1, int(comb_hz / fmin) + 1):
        centre = h * f0 / bin_hz
        tooth = np.clip(1 - np.abs(bins[None, :] - centre[:, None]) / COMB_HALF_WIDTH_BINS, 0, 1)
        tooth[h * f0 > comb_hz] = 0.0
        np.maximum(comb, tooth, out=comb)
    return f0, weights.astype(np.float32), comb.astype(np.float32)


def _pitch_comb(harm_mag: np.ndarray, sr: int, n_fft: int, f0_range: tuple[float, float],
                comb_hz: float, present_db: tuple[float, float] | None = None,
                present_hz: float = 0.0) -> np.ndarray:
    """A mask on the harmonics (up to ``comb_hz``) of each frame's most salient pitch, over the
    bins up to ``comb_hz`` ([B, T]); ``harm_mag`` must reach that far.

    With ``present_db``, a frame's comb is weighted by how strong the pitch's fundamental is
    against the strongest peak under ``present_hz``: from 0 at the first level to 1 at the
    second, so that a pitch made up of other sounds' partials gets no comb.
    """
    f0, weights, comb = _comb_tables(sr, n_fft, f0_range, float(comb_hz))
    rows = min(weights.shape[1], harm_mag.shape[0])
    best = np.argmax(weights[:, :rows] @ harm_mag[:rows], axis=0)  # [T]
    mask = np.ascontiguousarray(comb[best].T)  # [bins up to comb_hz, T]
    if present_db is not None:
        pos = f0[best] * n_fft / sr
        k = np.floor(pos).astype(np.int64)
        frames = np.arange(harm_mag.shape[1])
        fundamental = np.maximum(harm_mag[k, frames], harm_mag[k + 1, frames])
        top = harm_mag[:int(present_hz * n_fft / sr) + 1].max(axis=0)
        level = 20 * np.log10(np.maximum(fundamental, _TINY) / np.maximum(top, _TINY))
        a, b = present_db
        mask *= np.clip((level - a) / (b - a), 0.0, 1.0).astype(np.float32)[None, :]
    return mask
