"""Mixer settings: EQ bands, filter slope, reverb shape, the differentiable mixer's frames."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class MixerConfig(BaseModel):
    """Settings shared by the differentiable and the streaming mixer.

    Both mixers built from one config make the same sound; they differ only in how they are
    computed (whole signals on any torch device vs. block by block in real time).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    sample_rate: int = Field(44100, ge=8000, le=192000)
    # Three-band DJ EQ: shelves around an isolator-like split, a broad mid bell.
    low_shelf_hz: float = Field(250.0, gt=0)
    mid_peak_hz: float = Field(1000.0, gt=0)
    mid_peak_q: float = Field(0.7, gt=0)
    high_shelf_hz: float = Field(4000.0, gt=0)
    # Highpass/lowpass resonance; 1/sqrt(2) is Butterworth (12 dB/octave, no bump).
    filter_q: float = Field(0.7071, gt=0.1, le=10.0)
    # Feedback-delay-network reverb: delay lengths spread geometrically over this span. The
    # shortest delay bounds the chunk the network can be computed in at once (see effects.reverb).
    reverb_min_delay_ms: float = Field(25.0, ge=5.0)
    reverb_max_delay_ms: float = Field(80.0, le=500.0)
    # Share of the older sample in the loop's two-tap lowpass: highs die faster than lows.
    reverb_damping: float = Field(0.25, ge=0.0, lt=0.5)
    # The differentiable mixer filters frames of fft_size/2 samples with hop fft_size/4, so
    # impulse responses up to fft_size/2 samples (93 ms at 44.1 kHz) are reproduced exactly.
    filter_fft_size: int = Field(8192, ge=256)

    @model_validator(mode="after")
    def _check(self) -> "MixerConfig":
        nyquist = self.sample_rate / 2
        for name in ("low_shelf_hz", "mid_peak_hz", "high_shelf_hz"):
            if getattr(self, name) >= nyquist:
                raise ValueError(f"{name}={getattr(self, name)} is not below Nyquist "
                                 f"({nyquist} Hz)")
        if self.reverb_max_delay_ms <= self.reverb_min_delay_ms:
            raise ValueError("reverb_max_delay_ms must be greater than reverb_min_delay_ms")
        if self.filter_fft_size & (self.filter_fft_size - 1):
            raise ValueError(f"filter_fft_size={self.filter_fft_size} must be a power of two")
        return self
