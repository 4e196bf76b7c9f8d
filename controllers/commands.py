"""The engine's command API as addresses: what a controller that speaks in messages (OSC, the
web view) may ask, with each message's arguments checked before the engine sees them.

Every handler is a plain function of the engine and the message's arguments; an argument that is
not what the address takes raises ``BadMessage``, and the engine's own refusals raise
``ValueError`` or ``KeyError``, so a controller reports all three the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from engine.engine import PARAM_NAMES


class BadMessage(ValueError):
    pass


def unit(args: tuple) -> float:
    """One finite number in [0, 1] (TouchOSC's continuous controls)."""
    value = number(args)
    if not 0.0 <= value <= 1.0:
        raise BadMessage(f"value {value} is outside 0..1")
    return value


def number(args: tuple) -> float:
    if len(args) != 1 or isinstance(args[0], bool) or not isinstance(args[0], (int, float)):
        raise BadMessage(f"expects one number, got {list(args)!r}")
    value = float(args[0])
    if not math.isfinite(value):
        raise BadMessage(f"value {value} is not finite")
    return value


def switch(args: tuple) -> bool:
    """Buttons: no argument (a press), or 1/0 (TouchOSC sends 1.0 on press, 0.0 on release)."""
    if not args:
        return True
    return number(args) >= 0.5


def text(args: tuple) -> str:
    if len(args) != 1 or not isinstance(args[0], str):
        raise BadMessage(f"expects one string, got {list(args)!r}")
    return args[0]


@dataclass(frozen=True)
class Route:
    address: str
    types: str  # for the documentation: f float, i int, s string, - none
    meaning: str
    handle: Callable[[Any, tuple], None]


def _press(action: Callable[[Any], Any]) -> Callable[[Any, tuple], None]:
    def handle(engine: Any, args: tuple) -> None:
        if switch(args):  # act on press, ignore the release
            action(engine)
    return handle


def routes() -> dict[str, Route]:
    """The address space (the README's table is made from it: ``address_table``)."""
    table = [
        Route("/transition/trigger", "-|f", "start the transition (on press)",
              _press(lambda e: e.trigger())),
        Route("/transition/bars", "i|f", "length in bars, 1..64",
              lambda e, a: e.set_bars(int(number(a)))),
        Route("/transition/quantize", "s", "off, beat, bar or phrase",
              lambda e, a: e.set_quantize(text(a))),
        Route("/transition/guidance", "f", "guidance scale, 0..1 maps to 0..4",
              lambda e, a: e.set_guidance(4.0 * unit(a))),
        Route("/transition/candidate", "i|f", "candidate number from 1",
              lambda e, a: e.select(int(number(a)) - 1)),
        Route("/transition/hold", "i|f", "1 holds the curves, 0 releases",
              lambda e, a: e.hold(switch(a))),
        Route("/transition/abort", "-|f", "run back to the outgoing deck (on press)",
              _press(lambda e: e.abort())),
        Route("/transition/regenerate", "-|f", "sample new candidates (on press)",
              _press(lambda e: e.regenerate())),
        Route("/mixer/crossfader", "f", "crossfader 0 (A) .. 1 (B)",
              lambda e, a: e.set_param("crossfader", unit(a))),
        Route("/mixer/master", "f", "master gain 0..1",
              lambda e, a: e.set_param("master_gain", unit(a))),
        Route("/mixer/keylock", "i|f", "1: the decks keep their pitch at any tempo, 0: vinyl",
              lambda e, a: e.set_key_lock(switch(a))),
        Route("/playlist/next", "-|f", "a set: skip the next track (on press)",
              _press(lambda e: e.playlist_skip())),
        Route("/playlist/load", "i|f", "a set: track N of the playlist (from 1) comes next",
              lambda e, a: e.playlist_choose(int(number(a)))),
    ]
    for deck in ("a", "b"):
        table += [
            Route(f"/deck/{deck}/play", "i|f", "1 plays, 0 pauses",
                  lambda e, a, d=deck: e.play(d, switch(a))),
            Route(f"/deck/{deck}/cue", "-|f", "back to the first downbeat, stopped",
                  _press(lambda e, d=deck: e.cue(d))),
            Route(f"/deck/{deck}/sync", "-|f", "match the other deck's tempo and bar phase",
                  _press(lambda e, d=deck: e.sync(d))),
            Route(f"/deck/{deck}/seek", "f", "position in beats from the first downbeat",
                  lambda e, a, d=deck: e.seek(d, number(a))),
            Route(f"/deck/{deck}/tempo", "f", "tempo fader 0..1 = -8 %..+8 % (0.5: the track's)",
                  lambda e, a, d=deck: e.tempo(d, 1.0 + 0.16 * (unit(a) - 0.5))),
            Route(f"/deck/{deck}/load", "s", "load a track (file or stem folder path)",
                  lambda e, a, d=deck: e.load(d, text(a))),
            Route(f"/deck/{deck}/grid/shift", "f", "move the beat grid by beats (+: later), "
                  "within ±4", lambda e, a, d=deck: e.grid_shift(d, number(a))),
            Route(f"/deck/{deck}/grid/downbeat", "-|f", "the play position becomes a downbeat",
                  _press(lambda e, d=deck: e.grid_downbeat(d))),
            Route(f"/deck/{deck}/grid/half", "-|f", "half the grid's BPM (same anchor)",
                  _press(lambda e, d=deck: e.grid_half(d))),
            Route(f"/deck/{deck}/grid/double", "-|f", "double the grid's BPM (same anchor)",
                  _press(lambda e, d=deck: e.grid_double(d))),
            Route(f"/deck/{deck}/grid/tap", "-|f", "tap tempo: from the 4th tap the BPM of the "
                  "taps, the last one a beat", _press(lambda e, d=deck: e.grid_tap(d))),
        ]
    table += [Route(f"/param/{name}", "f", "any of the 52 parameters, 0..1",
                    lambda e, a, n=name: e.set_param(n, unit(a))) for name in PARAM_NAMES]
    return {r.address: r for r in table}


def address_table() -> str:
    """The README's table of addresses (a test checks the README holds it): one row for both
    decks' addresses and one for the parameters'."""
    rows = ["| address | arguments | meaning |", "| --- | --- | --- |"]
    seen = set()
    for route in routes().values():
        address = route.address.replace("/deck/a/", "/deck/{a,b}/")
        if address.startswith("/deck/b/"):
            continue
        if address.startswith("/param/"):
            address = "/param/<name>"
        if address not in seen:
            seen.add(address)
            rows.append(f"| `{address}` | {route.types} | {route.meaning} |")
    return "\n".join(rows)


# What a command raises when it refuses a message: its arguments (BadMessage) or the engine.
REFUSED = (ValueError, KeyError)


def dispatch(table: dict[str, Route], engine: Any, address: str, args: tuple) -> None:
    """Run the command at ``address`` on the engine; one of REFUSED when it is refused."""
    route = table.get(address)
    if route is None:
        raise BadMessage("unknown address")
    route.handle(engine, args)
