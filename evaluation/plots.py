"""A transition's curves drawn the way a DJ reads a mix: over both decks' bars, phrases and energy.

    plot_transition(path, curves, bars, track_a, track_b, title)

One panel per kind of move, the beats of the transition across: the decks' energy, the stem
faders, the three EQ bands, the highpass and lowpass filters, then the crossfader, master and
reverb. Deck A's stems are solid lines, deck B's dashed, one colour per stem. Thin grey lines
are the bars; bold ones are phrase starts, deck A's solid and deck B's dashed (the two decks'
phrases need not fall together: deck B may be cued mid-phrase). matplotlib is imported only
when a plot is drawn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.beats import BEATS_PER_BAR
from analysis.features import FRAMES_PER_BEAT
from effects.params import DECKS, PARAM_INDEX, STEMS, indices_of

from model.conditioning import TrackFeatures

PANELS = (("fader", "gain"), ("low EQ", "low_eq"), ("mid EQ", "mid_eq"),
          ("high EQ", "high_eq"), ("highpass", "highpass"), ("lowpass", "lowpass"))
GLOBALS = ("crossfader", "master_gain", "reverb_wet", "reverb_decay")
STEM_COLOURS = {"drums": "tab:red", "bass": "tab:blue", "vocals": "tab:green",
                "other": "tab:purple"}
DECK_STYLES = {"a": "-", "b": "--"}
DECK_COLOURS = {"a": "tab:orange", "b": "tab:cyan"}


def plot_transition(path: Path | str, curves: np.ndarray, bars: int, track_a: TrackFeatures,
                    track_b: TrackFeatures, title: str) -> Path:
    """Draw ``curves`` [frames, 52] of a ``bars``-bar transition between the excerpts whose
    features (one example each, as the model saw them) are ``track_a`` and ``track_b``; write
    a PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display here, nor needed
    import matplotlib.pyplot as plt

    curves = np.asarray(curves)
    beat_of_frame = np.arange(curves.shape[0]) * BEATS_PER_BAR * bars / curves.shape[0]
    fig, axes = plt.subplots(len(PANELS) + 2, 1, sharex=True, figsize=(11, 15),
                             constrained_layout=True)
    energy_ax, globals_ax = axes[0], axes[-1]
    for deck, features in zip(DECKS, (track_a, track_b)):
        # Per beat: frame by frame the line only draws the kick pattern.
        energy = features.energy[0].numpy().reshape(-1, FRAMES_PER_BEAT).mean(axis=1)
        energy_ax.step(np.arange(energy.size), energy, where="post", color=DECK_COLOURS[deck],
                       linestyle=DECK_STYLES[deck], label=f"deck {deck.upper()}")
    energy_ax.set_ylabel("energy (RMS per beat)")
    energy_ax.legend(loc="upper right", fontsize=8)
    for ax, (label, param) in zip(axes[1:-1], PANELS):
        for i, (deck, stem) in zip(indices_of(param), [(d, s) for d in DECKS for s in STEMS]):
            ax.plot(beat_of_frame, curves[:, i], color=STEM_COLOURS[stem],
                    linestyle=DECK_STYLES[deck], label=f"{deck.upper()} {stem}")
        ax.set_ylabel(label)
        ax.set_ylim(-0.05, 1.05)
    axes[1].legend(loc="upper right", fontsize=7, ncol=2)
    for name in GLOBALS:
        globals_ax.plot(beat_of_frame, curves[:, PARAM_INDEX[name]], label=name)
    globals_ax.set_ylabel("global")
    globals_ax.set_ylim(-0.05, 1.05)
    globals_ax.legend(loc="upper right", fontsize=7, ncol=2)
    globals_ax.set_xlabel("beats of the transition")
    _grid(axes, track_a, track_b)
    fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _grid(axes, track_a: TrackFeatures, track_b: TrackFeatures) -> None:
    """Bars (both excerpts start on a downbeat, at one tempo once matched) and each deck's
    phrase starts, on every panel."""
    downbeats = np.flatnonzero(track_a.downbeats[0].numpy() > 0.5) / FRAMES_PER_BEAT
    phrases = {deck: np.flatnonzero((f.phrase[0].numpy() == 0.0) & (f.beats[0].numpy() > 0.5))
               / FRAMES_PER_BEAT for deck, f in zip(DECKS, (track_a, track_b))}
    for ax in axes:
        for beat in downbeats:
            ax.axvline(beat, color="0.85", linewidth=0.6, zorder=0)
        for deck, starts in phrases.items():
            for beat in starts:
                ax.axvline(beat, color=DECK_COLOURS[deck], linewidth=2.0,
                           linestyle=DECK_STYLES[deck], zorder=0)
