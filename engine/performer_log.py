"""The performer log: every transition the engine plays, kept as a training example.

The core records what the mixer played into the transition's ``Take`` (engine.transition); when
the transition ends the loop hands it here, and a writer thread appends it to a dataset folder
in model.data's format (``model.data.append_performed``), which ``python -m model.training
--init CHECKPOINT --data FOLDER`` fine-tunes on. The folder is per user,
``$XDG_DATA_HOME/automix-live/transitions`` (``~/.local/share/...``) unless ``--log-dir`` names
another; ``--no-log`` turns the log off. The dataset is always deck A (outgoing) into deck B
(incoming): a transition out of the engine's deck B is stored with the decks exchanged.

A write that fails (a read-only folder, a full disk, an unreadable dataset) costs that example
and one line for the loop to show; the music never waits for the log. Offline (``--render``,
tests) the example is written in line, like everything else there.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from analysis.beats import BEATS_PER_BAR, PHRASE_BARS
from effects.params import DECK_SWAP, PARAM_NAMES, swap_decks

from .transition import Scheduled
from .worker import feature_frame


def default_log_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "automix-live" / "transitions"


def example(s: Scheduled) -> dict:
    """The keyword arguments of ``model.data.append_performed`` for a transition that ended."""
    take, out = s.take, s.outgoing
    a, b = take.tracks[out].analysis, take.tracks[1 - out].analysis
    # In the dataset's orientation: deck A is the outgoing deck, whichever the engine's it was.
    curves, taken = (take.curves, take.taken) if out == 0 else (swap_decks(take.curves),
                                                                take.taken[DECK_SWAP])
    row = {"a_frame": feature_frame(a.features, take.start_beat),
           "b_frame": feature_frame(b.features, s.cue_beat), "bars": s.transition.bars,
           "b_phrase_offset": int(-(s.cue_beat // BEATS_PER_BAR)) % PHRASE_BARS}
    performed = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "decks": "AB"[out] + "->" + "AB"[1 - out],
        "candidate": s.transition.candidate, "source": s.transition.source,
        "aborted": take.aborted, "progress_beats": round(take.progress, 4),
        "frames_reached": take.frames, "start_beat": round(take.start_beat, 4),
        "cue_beat": s.cue_beat,
        "taken_over": [PARAM_NAMES[j] for j in np.flatnonzero(taken)],
        "tempos_bpm": [round(a.bpm * take.rates[out], 3), round(b.bpm * take.rates[1 - out], 3)],
        "checkpoint": take.checkpoint}
    return {"a": a, "b": b, "row": row, "curves": curves, "performed": performed}


class PerformerLog:
    """Appends each transition that ended to the dataset in ``folder``, in a writer thread (or
    in line when ``synchronous``); ``drain()`` returns what it has to say."""

    def __init__(self, folder: Path, synchronous: bool = False) -> None:
        # Imported here, before the music starts: the model's dataset code brings torch along,
        # which the engine otherwise loads only in the worker.
        from model.data import append_performed

        self.folder = Path(folder)
        self._append = append_performed
        self._said: deque[str] = deque()  # appended by the writer, drained by the loop
        self._queue: queue.Queue[Scheduled | None] | None = None
        self._thread: threading.Thread | None = None
        if not synchronous:
            self._queue = queue.Queue()
            self._thread = threading.Thread(target=self._serve, name="performer-log",
                                            daemon=True)
            self._thread.start()

    def submit(self, s: Scheduled) -> None:
        """Log a transition that ended (its take filled in by the core)."""
        if self._queue is None:
            self._write(s)
        else:
            self._queue.put(s)

    def drain(self) -> list[str]:
        out = []
        while self._said:
            out.append(self._said.popleft())
        return out

    def close(self) -> None:
        """Write what is queued, then stop the writer."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _serve(self) -> None:
        while (s := self._queue.get()) is not None:
            self._write(s)

    def _write(self, s: Scheduled) -> None:
        try:
            name, row = self._append(self.folder, **example(s))
        except Exception as err:  # noqa: BLE001 - one line for the loop; the music plays on
            self._said.append(f"performer log: transition not saved in {self.folder} "
                              f"({type(err).__name__}: {err})")
            return
        what = "example" if name == "examples.npz" else f"{name} row"
        self._said.append(f"performer log: {'aborted ' if s.take.aborted else ''}transition "
                          f"saved in {self.folder} ({what} {row})")
