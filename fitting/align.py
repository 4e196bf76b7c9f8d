"""Where a track sits in a recorded mix: its start in the mix and the rate it was played at.

A deck plays vinyl-style (engine.deck): at rate r, track time tau is heard at mix time
``offset + tau / r``. Two passes find ``offset`` and ``r``:

1. coarse: the onset envelope of the track, stretched by each candidate rate, is
   cross-correlated with the mix's (FFT); the best rate and lag win. The envelopes' frames are
   11.6 ms and the rate steps 0.2 %, so this is good to a few tens of ms over a minute.
2. fine: in windows of a couple of seconds along the track, the lag between the track (played
   at the coarse rate) and the mix is read off a phase-transform cross-correlation (GCC-PHAT,
   which keeps only the phases, so that the other deck, the EQs and the level do not move its
   peak); a line through the lags of the windows where the track is clearly heard gives the
   offset to a fraction of a millisecond and the rate to a few parts per million.
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np
import soxr
from scipy.signal import find_peaks

from analysis.audio import ANALYSIS_RATE, analysis_mono

# Coarse pass: 48 log-mel bands in 23 ms frames, over lags that overlap the track with the mix
# by at least this long.
FEATURE_HOP = 512
FEATURE_BANDS = 48
MIN_OVERLAP_S = 8.0
CANDIDATES = 4  # coarse alignments handed to the fine pass
MIN_BEAT_S = 0.3  # candidates closer than this (a beat at 200 BPM) are one
RATE_STEP = 0.002
# Fine pass: windows this long, one every FINE_HOP_S, searched this far either side of the coarse
# lag; a window counts where its correlation peak stands this many times above the window's
# median (noise and a deck that is not heard peak at 3-6; a heard deck at tens or hundreds).
FINE_WINDOW_S = 2.0
FINE_HOP_S = 1.0
FINE_REACH_S = 0.15
# Phases are compared in this band: below it a window holds few periods, above it a resampler's
# anti-aliasing filter (a deck played off its rate) leaves noise.
FINE_BAND_HZ = (50.0, 8000.0)
MIN_PEAK_RATIO = 12.0
# Lags further than this from the line are outliers; it is refitted without them.
OUTLIER_S = 0.002


class AlignmentError(ValueError):
    """A track that could not be found in the mix; the message says which and why."""


@dataclass(frozen=True)
class Alignment:
    offset: float  # mix time (s) of the track's first sample
    rate: float  # track seconds per mix second (1: as recorded; 1.02: 2 % faster)
    score: float  # correlation of the coarse pass (0: none, 1: the same envelope)
    windows: int  # fine-pass windows the line went through

    def mix_time(self, track_time: np.ndarray | float) -> np.ndarray | float:
        return self.offset + np.asarray(track_time) / self.rate

    def track_time(self, mix_time: np.ndarray | float) -> np.ndarray | float:
        return (np.asarray(mix_time) - self.offset) * self.rate


def spectral_features(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Log-mel spectrogram of stereo or mono audio, each band z-normalized -> [bands, frames].

    Onsets alone know only the rhythm, which two beat-matched four-to-the-floor tracks share
    and repeat bar after bar; the spectrum holds the bass notes, chords and melody, which tell
    the true alignment from one a few bars off.
    """
    y = analysis_mono(audio, sample_rate)
    mel = librosa.power_to_db(librosa.feature.melspectrogram(
        y=y, sr=ANALYSIS_RATE, hop_length=FEATURE_HOP, n_mels=FEATURE_BANDS), top_db=80.0)
    mel = mel - mel.mean(axis=1, keepdims=True)
    return mel / (mel.std(axis=1, keepdims=True) + 1e-9)


def coarse_alignment(mix_feat: np.ndarray, track_feat: np.ndarray, rates: np.ndarray,
                     min_overlap_s: float = MIN_OVERLAP_S,
                     count: int = CANDIDATES) -> list[tuple[float, float, float]]:
    """The ``count`` best (rate, offset s, score) of the cross-correlation of features
    [bands, frames] over ``rates`` and every lag that overlaps the two by ``min_overlap_s``,
    best first, their offsets at least a beat apart.

    Lags are ranked by the plain correlation, which counts the frames that match, not by the
    normalized one (the score): a repeated section, such as an outro that is the intro again,
    matches perfectly over a short overlap but explains fewer frames than the true alignment.
    Loops that repeat bar after bar still leave lags a bar or two off close behind, which is
    why there are several candidates (the fine pass tells them apart).
    """
    frame_s = FEATURE_HOP / ANALYSIS_RATE
    n_mix = mix_feat.shape[1]
    n_min = int(min_overlap_s / frame_s)
    size = 1 << int(n_mix + track_feat.shape[1] * 1.2).bit_length()
    mix_spec = np.fft.rfft(mix_feat, size)
    mix_energy = np.r_[0.0, np.cumsum((mix_feat**2).sum(axis=0))]
    found = []
    for rate in rates:
        # Frame n of the track played at this rate is its frame n * rate.
        at = np.arange(track_feat.shape[1] / rate) * rate
        played = np.stack([np.interp(at, np.arange(track_feat.shape[1]), band)
                           for band in track_feat])
        n_track = played.shape[1]
        if n_track < n_min or n_mix < n_min:
            continue
        corr = np.fft.irfft((mix_spec * np.conj(np.fft.rfft(played, size))).sum(axis=0), size)
        # The track starting k frames into the mix (k may be negative) overlaps it on track
        # frames [max(0, -k), min(n_track, n_mix - k)).
        lags = np.arange(n_min - n_track, n_mix - n_min + 1)
        first = np.maximum(0, -lags)
        last = np.minimum(n_track, n_mix - lags)
        track_energy = np.r_[0.0, np.cumsum((played**2).sum(axis=0))]
        denom = np.sqrt((track_energy[last] - track_energy[first])
                        * (mix_energy[last + lags] - mix_energy[first + lags])) + 1e-9
        matched = corr[lags % size]
        peaks, _ = find_peaks(matched, distance=max(1, int(MIN_BEAT_S / frame_s)))
        for i in peaks[np.argsort(matched[peaks])[-count:]]:
            found.append((float(matched[i]), float(rate), float(lags[i] * frame_s),
                          float(matched[i] / denom[i])))
    best: list[tuple[float, float, float, float]] = []
    for candidate in sorted(found, reverse=True):
        if all(abs(candidate[2] - kept[2]) >= MIN_BEAT_S for kept in best):
            best.append(candidate)
        if len(best) == count:
            break
    return [(rate, offset, score) for _, rate, offset, score in best]


def _played(track: np.ndarray, sample_rate: int, rate: float) -> np.ndarray:
    """A track [channels, N] as heard at ``rate`` (vinyl-style resampling), same sample rate."""
    if rate == 1.0:
        return track
    return soxr.resample(track.T, sample_rate * rate, sample_rate).T


def fine_lags(mix: np.ndarray, track: np.ndarray, sample_rate: int, rate: float,
              offset: float) -> np.ndarray:
    """Per window: (track time s, mix time s where it is heard, peak ratio, peak) ->
    [windows, 4]; the peak is the phase coherence at the lag (1: the same signal)."""
    mix_mono = mix.mean(axis=0) if mix.ndim == 2 else mix
    played = _played(track.mean(axis=0) if track.ndim == 2 else track, sample_rate, rate)
    win, hop = int(FINE_WINDOW_S * sample_rate), int(FINE_HOP_S * sample_rate)
    reach = int(FINE_REACH_S * sample_rate)
    size = 1 << int(win + 2 * reach).bit_length()
    start = int(round(offset * sample_rate))  # mix sample of the played track's sample 0
    taper = np.hanning(win)
    freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
    band = (freqs >= FINE_BAND_HZ[0]) & (freqs <= FINE_BAND_HZ[1])
    rows = []
    # Windows sit on the mix's time line, the same for every candidate alignment, so that
    # candidates are compared window by window.
    for m0 in range(0, mix_mono.size - win - 2 * reach, hop):
        p = m0 + reach - start
        if p < 0 or p + win > played.size:
            continue
        seg_t = played[p:p + win] * taper
        if not np.any(seg_t):
            continue
        seg_m = mix_mono[m0:m0 + win + 2 * reach]
        cross = np.fft.rfft(seg_m, size) * np.conj(np.fft.rfft(seg_t, size))
        phase = np.where(band, cross / (np.abs(cross) + 1e-12), 0.0)
        corr = np.fft.irfft(phase, size)[:2 * reach + 1] * (size / 2 / band.sum())
        k = int(np.argmax(corr))
        ratio = corr[k] / (np.median(np.abs(corr)) + 1e-12)
        if 0 < k < 2 * reach:  # parabolic peak: sub-sample lag
            a, b, c = corr[k - 1:k + 2]
            curve = a - 2 * b + c
            k = k + (0.5 * (a - c) / curve if curve < 0 else 0.0)
        centre = p + win / 2
        rows.append((centre / sample_rate * rate, (start + centre + k - reach) / sample_rate,
                     ratio, corr.max()))
    return np.array(rows).reshape(-1, 4)


def align(mix: np.ndarray, track: np.ndarray, sample_rate: int,
          rate_range: tuple[float, float] = (0.92, 1.08), name: str = "track") -> Alignment:
    """Find ``track`` [2, N] in ``mix`` [2, M] (both at ``sample_rate``).

    Raises ``AlignmentError`` naming ``name`` when the track is not clearly heard in the mix.
    """
    lo, hi = rate_range
    if not 0 < lo <= hi:
        raise ValueError(f"rate range {rate_range} must be positive and in order")
    # Steps of RATE_STEP (finer in a narrow range), and 1 itself: a track as recorded.
    rates = np.linspace(lo, hi, max(2, int(np.ceil((hi - lo) / RATE_STEP)) + 1, 9))
    rates = np.unique(np.r_[rates, [1.0] if lo <= 1.0 <= hi else []])
    candidates = coarse_alignment(spectral_features(mix, sample_rate),
                                  spectral_features(track, sample_rate), rates)
    best, failure = None, f"{name}: not clearly heard in the mix (no alignment to try)"
    for rate, offset, score in candidates:
        try:
            found, quality = _refine(mix, track, sample_rate, rate, offset, score, name)
        except AlignmentError as err:
            failure = str(err)
            continue
        if best is None or quality > best[1]:
            best = (found, quality)
    if best is None:
        raise AlignmentError(failure)
    return best[0]


def _refine(mix: np.ndarray, track: np.ndarray, sample_rate: int, rate: float, offset: float,
            score: float, name: str) -> tuple[Alignment, float]:
    """The fine pass from a coarse (rate, offset): the alignment and how well it holds, the
    summed squared coherence of the windows on its line. Squared, so that many windows where
    only something the two tracks share matches (a kick drum under the other deck) do not
    outweigh the windows where everything does."""
    for _ in range(2):  # the second pass at the refined rate sharpens every window's peak
        lags = fine_lags(mix, track, sample_rate, rate, offset)
        good = lags[lags[:, 2] >= MIN_PEAK_RATIO]
        if good.shape[0] < 2:
            raise AlignmentError(f"{name}: not clearly heard in the mix (coarse score "
                                 f"{score:.2f}, {good.shape[0]} of {lags.shape[0]} windows "
                                 f"found it)")
        tau, mix_t = good[:, 0], good[:, 1]
        keep = np.ones(tau.size, dtype=bool)
        for _ in range(3):
            if keep.sum() < 2:
                raise AlignmentError(f"{name}: the mix does not hold it at one steady rate "
                                     f"(its windows disagree by more than {OUTLIER_S * 1e3:g} ms)")
            slope, intercept = np.polyfit(tau[keep], mix_t[keep], 1, w=good[keep, 3])
            keep = np.abs(mix_t - (intercept + slope * tau)) < OUTLIER_S
        rate, offset = 1.0 / slope, float(intercept)
    return Alignment(offset, rate, score, int(keep.sum())), float((good[keep, 3] ** 2).sum())
