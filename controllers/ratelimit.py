"""A warning log that a flood of bad input cannot flood: at most ``per_second`` lines a second,
the rest counted and summarized in one line when the next second starts."""

from __future__ import annotations

import logging
import time


class RateLimitedLog:
    def __init__(self, log: logging.Logger, what: str, per_second: float = 5.0) -> None:
        self.log, self.what, self.per_second = log, what, per_second
        self.suppressed = 0
        self._window = 0.0
        self._count = 0

    def warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._window >= 1.0:
            if self.suppressed:
                self.log.warning("%d more %s suppressed", self.suppressed, self.what)
            self._window, self._count, self.suppressed = now, 0, 0
        if self._count < self.per_second:
            self._count += 1
            self.log.warning(message)
        else:
            self.suppressed += 1
