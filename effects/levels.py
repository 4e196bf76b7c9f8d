"""Levels: the gain trim that brings every track to one loudness, and the settings of the output
limiter (engine.limiter) that keeps the sum of two trimmed decks off full scale."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field


class LevelsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    auto_gain: bool = True  # trim each track from its integrated loudness to the target
    target_lufs: float = Field(-14.0, ge=-40.0, le=0.0)  # what streaming services play at
    # A quiet master is raised at most this much: beyond it the boost would mostly lift noise
    # and long quiet intros (integrated loudness gates those out, so it over-reads the need),
    # and push the limiter into pumping. 12 dB brings a -26 LUFS master to -14.
    max_boost_db: float = Field(12.0, ge=0.0, le=24.0)
    # Output ceiling in dBTP. Below 0, so that no sample and no inter-sample peak reaches full
    # scale; -1 leaves the headroom lossy encoders need (EBU R128 s1, AES TD1004).
    ceiling_dbtp: float = Field(-1.0, ge=-20.0, lt=0.0)
    release_ms: float = Field(100.0, ge=10.0, le=2000.0)  # limiter gain recovery time constant


def trim_for(loudness_lufs: float, config: LevelsConfig) -> float:
    """The linear gain that takes a track of ``loudness_lufs`` to the target: 1 with auto gain
    off, and for silence or audio too short to measure (-inf, NaN); boosts capped."""
    if not config.auto_gain or not math.isfinite(loudness_lufs):
        return 1.0
    return 10.0 ** (min(config.target_lufs - loudness_lufs, config.max_boost_db) / 20.0)
