"""The conditioning encoder: both tracks' features -> one conditioning sequence.

Each track's stem mels go through a ``MelEncoder`` shared by all stems and both tracks, its beat
grid, structure, energy, BPM and key through a ``MetadataEncoder``; the two tracks then attend to
each other (A to B and B to A), so that what deck A offers is read against deck B. Time is
downsampled to one token per beat (the features come at four frames per beat, see
analysis.features), and the output is the A tokens followed by the B tokens,
[batch, condition_dim, 2 * beats]. Both excerpts cover the transition's span, which is how the
model knows its length in beats.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import nn

from analysis.features import FRAMES_PER_BEAT, phrase_position
from analysis.features import TrackFeatures as AnalysisFeatures
from effects.params import STEMS

from .config import ModelConfig

N_STRUCTURE = 6
N_KEYS = 24
BPM_RANGE = (40.0, 200.0)
# Cycles per phrase of the phrase-position features: the phrase, its halves and its bars.
PHRASE_HARMONICS = (1.0, 2.0, 8.0)


@dataclass
class TrackFeatures:
    """One batch of tracks' features (the seed's API), torch tensors with a batch axis."""

    stem_mels: torch.Tensor  # [B, 4, n_mels, T]
    structure: torch.Tensor  # [B, T, 6]
    beats: torch.Tensor  # [B, T]
    downbeats: torch.Tensor  # [B, T]
    bpm: torch.Tensor  # [B, 1]
    key: torch.Tensor  # [B, 24]
    energy: torch.Tensor  # [B, T]
    # [B, T] position of each frame in its track's phrase, [0, 1) (analysis.features
    # .phrase_position); beyond the seed's fields. None: the excerpts start on a phrase.
    phrase: torch.Tensor | None = None

    @classmethod
    def from_analysis(cls, tracks: list[AnalysisFeatures]) -> "TrackFeatures":
        """Stack the analysis's per-track features (equal lengths) into a batch."""
        arrays = {f.name: np.stack([getattr(t, f.name) for t in tracks]) for f in fields(cls)
                  if f.name != "phrase"}
        arrays["phrase"] = np.stack([phrase_position(t.start_beat, t.n_frames) for t in tracks])
        return cls(**{name: torch.from_numpy(value) for name, value in arrays.items()})

    def to(self, device: torch.device | str) -> "TrackFeatures":
        return TrackFeatures(**{f.name: None if getattr(self, f.name) is None
                                else getattr(self, f.name).to(device) for f in fields(self)})

    def validate(self, name: str, n_mels: int) -> None:
        """Clear errors for wrong shapes and non-finite values."""
        mels = self.stem_mels
        if mels.ndim != 4 or mels.shape[1] != len(STEMS) or mels.shape[2] != n_mels:
            raise ValueError(f"{name}.stem_mels must be [batch, 4, {n_mels}, frames], "
                             f"got {list(mels.shape)}")
        batch, frames = mels.shape[0], mels.shape[3]
        if frames % FRAMES_PER_BEAT:
            raise ValueError(f"{name} has {frames} frames; features come at {FRAMES_PER_BEAT} "
                             f"frames per beat, so the count must be a multiple of it")
        expected = {"structure": (batch, frames, N_STRUCTURE), "beats": (batch, frames),
                    "downbeats": (batch, frames), "bpm": (batch, 1), "key": (batch, N_KEYS),
                    "energy": (batch, frames), "phrase": (batch, frames)}
        for field, shape in expected.items():
            value = getattr(self, field)
            if value is not None and tuple(value.shape) != shape:
                raise ValueError(f"{name}.{field} must be {list(shape)}, got {list(value.shape)}")
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and not bool(torch.isfinite(value).all()):
                raise ValueError(f"{name}.{f.name} holds NaN or infinite values")


class MelEncoder(nn.Module):
    """Stem mel spectra [B, 4, n_mels, T] -> [B, audio_embed_dim, T / 4], shared by all stems."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.audio_embed_dim
        self.stem_embedding = nn.Parameter(torch.zeros(len(STEMS), d, 1))
        self.input = nn.Conv1d(config.n_mels, d, kernel_size=3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.GroupNorm(8, d), nn.GELU(), nn.Conv1d(d, d, 3, padding=1))
            for _ in range(config.mel_layers))
        # Four frames per beat in, one token per beat out.
        self.pool = nn.Conv1d(d, d, kernel_size=FRAMES_PER_BEAT, stride=FRAMES_PER_BEAT)
        self.mix = nn.Linear(len(STEMS) * d, d)

    def forward(self, stem_mels: torch.Tensor) -> torch.Tensor:
        batch, stems, mels, frames = stem_mels.shape
        x = self.input(stem_mels.reshape(batch * stems, mels, frames))
        x = x + self.stem_embedding.repeat(batch, 1, 1)
        for block in self.blocks:
            x = x + block(x)
        x = self.pool(x)  # [B * 4, d, T / 4]
        x = x.reshape(batch, stems * x.shape[1], -1).transpose(1, 2)
        return self.mix(x).transpose(1, 2)


class MetadataEncoder(nn.Module):
    """Structure, beats, downbeats, energy, phrase position per frame and BPM, key per track
    -> [B, d, T / 4]."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.metadata_dim
        per_frame = (N_STRUCTURE + 3) * FRAMES_PER_BEAT  # a beat's four frames side by side
        self.frames = nn.Sequential(nn.Linear(per_frame, d), nn.GELU(), nn.Linear(d, d))
        self.track = nn.Sequential(nn.Linear(N_KEYS + 1, d), nn.GELU(), nn.Linear(d, d))
        self.phrase = nn.Linear(2 * len(PHRASE_HARMONICS), d)
        # Zero at first, so that weights trained before this input existed fine-tune from
        # exactly the function they computed (training --init).
        nn.init.zeros_(self.phrase.weight)
        nn.init.zeros_(self.phrase.bias)
        self.out = nn.Linear(2 * d, config.audio_embed_dim)

    def forward(self, f: TrackFeatures) -> torch.Tensor:
        batch, frames = f.beats.shape
        # Energy on a log scale: RMS spans orders of magnitude between a break and a drop.
        energy = torch.log10(f.energy.clamp_min(1e-5)) / 5.0 + 1.0
        per_frame = torch.cat([f.structure, f.beats[..., None], f.downbeats[..., None],
                               energy[..., None]], dim=-1)
        beats = per_frame.reshape(batch, frames // FRAMES_PER_BEAT, -1)
        lo, hi = BPM_RANGE
        bpm = (f.bpm.clamp(lo, hi) - lo) / (hi - lo)
        track = self.track(torch.cat([f.key, bpm], dim=-1))[:, None, :]
        tokens = self.frames(beats) + self.phrase(self._phrase_features(f.phrase, batch, frames))
        return self.out(torch.cat([tokens, track.expand_as(tokens)], dim=-1)).transpose(1, 2)


    def _phrase_features(self, phrase: torch.Tensor | None, batch: int, frames: int
                         ) -> torch.Tensor:
        """Sines and cosines of each beat's place in its phrase [B, T / 4, 6]: a bar's start
        and a phrase's start are then a fixed direction the model can attend to."""
        device = self.phrase.weight.device
        if phrase is None:
            phrase = torch.from_numpy(phrase_position(0, frames)).to(device).expand(batch, -1)
        harmonics = torch.tensor(PHRASE_HARMONICS, device=device)
        angles = 2 * np.pi * phrase[:, ::FRAMES_PER_BEAT, None] * harmonics
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class ConditioningEncoder(nn.Module):
    """Both tracks -> conditioning sequence [B, condition_dim, beats_a + beats_b]."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.audio_embed_dim
        self.config = config
        self.mel = MelEncoder(config)
        self.metadata = MetadataEncoder(config)
        self.deck_embedding = nn.Parameter(torch.zeros(2, d))
        heads = max(1, config.n_heads // 2)
        self.a_from_b = nn.MultiheadAttention(d, heads, batch_first=True)
        self.b_from_a = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, config.condition_dim)

    def encode_track(self, f: TrackFeatures, deck: int) -> torch.Tensor:
        x = (self.mel(f.stem_mels) + self.metadata(f)).transpose(1, 2)  # [B, beats, d]
        beats = torch.arange(x.shape[1], device=x.device, dtype=torch.float32)
        positions = sinusoidal_positions(beats, x.shape[2], self.config.position_min_period,
                                         self.config.position_period_ratio)
        return x + positions.to(x.dtype) + self.deck_embedding[deck]

    def forward(self, track_a: TrackFeatures, track_b: TrackFeatures) -> torch.Tensor:
        track_a.validate("track_a", self.config.n_mels)
        track_b.validate("track_b", self.config.n_mels)
        if track_a.beats.shape[0] != track_b.beats.shape[0]:
            raise ValueError("track_a and track_b hold different batch sizes")
        if track_a.beats.shape[1] != track_b.beats.shape[1]:
            # Both decks play through the whole transition: their excerpts span the same beats.
            raise ValueError(f"track_a and track_b must cover the transition's span alike, got "
                             f"{track_a.beats.shape[1]} and {track_b.beats.shape[1]} frames")
        a, b = self.encode_track(track_a, 0), self.encode_track(track_b, 1)
        na, nb = self.norm(a), self.norm(b)
        a = a + self.a_from_b(na, nb, nb, need_weights=False)[0]
        b = b + self.b_from_a(nb, na, na, need_weights=False)[0]
        return self.out(torch.cat([a, b], dim=1)).transpose(1, 2)


def sinusoidal_positions(beats: torch.Tensor, dim: int, min_period: float = 0.5,
                         period_ratio: float = 65536.0) -> torch.Tensor:
    """Sinusoidal embeddings [len, dim] of positions in beats from the transition's start, at
    periods ``min_period * period_ratio ** (2k / dim)`` beats.

    The conditioning tokens and the curve frames are both placed by their beat, so a curve frame
    and the conditioning token of the same beat share a position at any transition length.
    """
    device = beats.device
    position = beats.float()[:, None]
    exponents = torch.arange(0, dim, 2, device=device, dtype=torch.float64) / dim
    freqs = (2 * np.pi / (min_period * period_ratio ** exponents)).float()
    table = torch.zeros(beats.shape[0], dim, device=device)
    table[:, 0::2] = torch.sin(position * freqs)
    table[:, 1::2] = torch.cos(position * freqs[: dim // 2])
    return table
