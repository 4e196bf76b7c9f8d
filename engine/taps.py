"""Tap tempo: a performer's taps on the loop's clock become a tempo.

The median of the intervals between the last taps rides out one early or late tap; a pause
starts a new series, so taps for another song or a second try do not mix.
"""

from __future__ import annotations

import numpy as np

MIN_TAPS = 4  # three intervals before a tempo is believed
WINDOW = 8  # the tempo comes from the last this many taps
RESET_SECONDS = 2.0  # a longer pause starts a new series (a beat at 30 BPM)


class TapTempo:
    def __init__(self) -> None:
        self.times: list[float] = []

    def tap(self, now: float) -> float | None:
        """Add a tap at ``now`` (seconds); the tempo in BPM once there are MIN_TAPS in the
        series, else None."""
        if self.times and not 0.0 < now - self.times[-1] <= RESET_SECONDS:
            self.times.clear()
        self.times.append(now)
        del self.times[:-WINDOW]
        if len(self.times) < MIN_TAPS:
            return None
        return 60.0 / float(np.median(np.diff(self.times)))
