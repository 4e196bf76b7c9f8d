"""What the controllers that serve clients over the network (OSC, the web view) do alike: who may
connect, how many clients get feedback, and how often and how much they hear."""

from __future__ import annotations

import ipaddress
from typing import Any

FEEDBACK_HZ = 20.0
MAX_CLIENTS = 16  # a flood of clients must not grow the feedback list without end
_UNSENT = object()


def check_listen(host: str, allow: tuple[str, ...], what: str) -> None:
    """Listening beyond this machine needs an allow-list: ValueError otherwise."""
    if not ipaddress.ip_address(host).is_loopback and not allow:
        raise ValueError(f"{what} on {host}: listening beyond this machine needs an allow-list "
                         f"of client addresses")


def allowed(address: str, allow: tuple[str, ...]) -> bool:
    """Whether a client at ``address`` may talk to the engine (no allow-list: anyone who can
    reach a loopback address, i.e. this machine)."""
    return not allow or address in allow


class Changes:
    """The values of a state that changed since the last call: feedback sends changes only."""

    def __init__(self) -> None:
        self._last: dict[str, Any] = {}

    def __call__(self, state: dict[str, Any]) -> dict[str, Any]:
        changed = {key: value for key, value in state.items()
                   if self._last.get(key, _UNSENT) != value}
        self._last.update(changed)
        return changed

    def forget(self) -> None:
        """The next call returns everything (a client that has heard nothing yet)."""
        self._last.clear()
