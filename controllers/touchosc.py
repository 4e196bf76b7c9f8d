"""The TouchOSC layout for the engine (presets/touchosc/automix.tosc), made from the OSC address
table in ``controllers.osc``.

    .venv/bin/python -m controllers.touchosc [OUT]

The format is that of the current TouchOSC (hexler, 2021 and later), learnt from documents its
editor saved: a ``.tosc`` file is zlib-compressed XML. The root ``<lexml version="3">`` holds one
GROUP ``<node ID=... type=...>``; every node has ``<properties>`` (typed ``b`` bool, ``i`` int,
``f`` float, ``s`` string, ``c`` colour, ``r`` rectangle), ``<values>`` (``x``, ``touch``,
``text``, ``page``: what messages and scripts read and write), optional ``<messages>`` and
``<children>``. An ``<osc>`` message has enabled/send/receive/feedback flags, a connection mask
(``00001``: connection 1), the value changes that trigger sending (ANY, RISE, FALL), a path and
arguments made of partials (CONSTANT, VALUE, PROPERTY, INDEX; converted to BOOLEAN, INTEGER,
FLOAT or STRING and scaled from a value's own range to scaleMin..scaleMax). A message that is
received sets the control's value from its VALUE argument, scaled back. The property sets below
are the ones the editor writes for each control type.

Every control sends on connection 1 (the engine's OSC port) and the displays receive the engine's
feedback there (TouchOSC listens on 9000). Faders and knobs start where the engine starts, so the
first touch does not jump.
"""

from __future__ import annotations

import argparse
import functools
import typing
import uuid
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from typing import NamedTuple

from engine.config import EngineConfig, Quantize
from engine.core import neutral_frame
from engine.engine import BEATS_PER_BAR, PARAM_INDEX, PARAM_NAMES

from .commands import routes
from .mapping import BARS_CHOICES
from .osc import FEEDBACK_PORT

LAYOUT = Path(__file__).resolve().parents[1] / "presets" / "touchosc" / "automix.tosc"
WIDTH, HEIGHT = 1024, 768  # points; TouchOSC scales the document to the screen
REGISTER = "/register"  # answered by OSCServer itself: feedback goes to the port given
CONNECTION = "00001"  # connection 1 only: UDP to the engine, receiving on 9000
_IDS = uuid.UUID("5f0c6a52-6d1e-4b8e-9a57-7a6f3c2d1b00")  # namespace of the controls' IDs


class Color(NamedTuple):
    r: float
    g: float
    b: float
    a: float = 1.0


class Rect(NamedTuple):
    x: int
    y: int
    w: int
    h: int


DECK_COLORS = {"a": Color(1.0, 0.55, 0.1), "b": Color(0.15, 0.7, 1.0)}
GREEN, RED, GREY = Color(0.3, 0.85, 0.4), Color(1.0, 0.3, 0.3), Color(0.55, 0.55, 0.6)
WHITE, CLEAR = Color(1.0, 1.0, 1.0), Color(0.0, 0.0, 0.0, 0.0)

_COMMON = dict(background=True, cornerRadius=1.0, grabFocus=True, interactive=True, locked=False,
               orientation=0, outline=True, outlineStyle=1, pointerPriority=0, shape=1,
               visible=True)
_KINDS = {  # properties each type adds, with the editor's defaults; and its values
    "GROUP": (dict(grabFocus=False, interactive=False, outlineStyle=0), ("touch",)),
    "PAGER": (dict(grabFocus=False, outlineStyle=0, tabLabels=True, tabbar=True,
                   tabbarDoubleTap=False, tabbarSize=40, textSizeOff=14, textSizeOn=14),
              ("page", "touch")),
    "LABEL": (dict(interactive=False, font=0, textAlignH=2, textAlignV=2, textClip=True,
                   textColor=WHITE, textLength=0, textSize=14), ("text", "touch")),
    "BUTTON": (dict(buttonType=0, press=True, release=True, valuePosition=False),
               ("touch", "x")),
    "FADER": (dict(bar=True, barDisplay=0, centered=False, cursor=True, cursorDisplay=0,
                   grid=True, gridSteps=13, response=0, responseFactor=100), ("touch", "x")),
    "RADIAL": (dict(centered=False, grid=True, gridSteps=20, inverted=False, outlineStyle=0,
                    response=0, responseFactor=100, shape=2), ("touch", "x")),
    "RADIO": (dict(radioType=0, steps=5), ("touch", "x")),
}
_PROPERTY_TYPES = {bool: "b", int: "i", float: "f", str: "s", Color: "c", Rect: "r"}
MOMENTARY, TOGGLE = 0, 2  # buttonType: 1 would toggle on release, 2 toggles on the press
HORIZONTAL = 1  # orientation (0..3: north, east, south, west): values grow to the right


class Arg(NamedTuple):
    """One argument partial: a CONSTANT, or a VALUE of the control scaled to lo..hi."""

    kind: str
    conversion: str  # BOOLEAN, INTEGER, FLOAT or STRING
    value: str  # the constant, or the value's key
    lo: float = 0.0
    hi: float = 1.0


class Osc(NamedTuple):
    address: str
    args: tuple[Arg, ...]
    send: bool
    receive: bool
    condition: str = "ANY"  # the change of ``trigger`` that sends: ANY, RISE or FALL
    trigger: str = "x"


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _leaf(parent: ET.Element, tag: str, text: object) -> None:
    ET.SubElement(parent, tag).text = _text(text)


_ACCEPTS = {"FLOAT": "f", "INTEGER": "i", "STRING": "s"}


@functools.cache
def _accepted(address: str) -> tuple[str, ...]:
    """The argument types the engine takes at ``address`` (none: it does not know it)."""
    if address == REGISTER:
        return ("i",)
    route = routes().get(address)
    return tuple(route.types.split("|")) if route else ()


def send(address: str, arg: Arg, condition: str = "ANY", receive: bool = False) -> Osc:
    """A message to the engine; ValueError if the engine would refuse its address or type."""
    if _ACCEPTS.get(arg.conversion) not in _accepted(address):
        raise ValueError(f"TouchOSC layout: the engine takes no {arg.conversion} at {address}")
    return Osc(address, (arg,), True, receive, condition)


def value(conversion: str = "FLOAT", lo: float = 0.0, hi: float = 1.0, key: str = "x") -> Arg:
    return Arg("VALUE", conversion, key, lo, hi)


def constant(conversion: str, text: object) -> Arg:
    return Arg("CONSTANT", conversion, _text(text))


def show(address: str, arg: Arg) -> Osc:
    """The engine's feedback at ``address`` sets the control's value."""
    return Osc(address, (arg,), False, True, trigger=arg.value)


def _osc(parent: ET.Element, message: Osc) -> None:
    osc = ET.SubElement(parent, "osc")
    for tag, flag in (("enabled", True), ("send", message.send), ("receive", message.receive),
                      ("feedback", False)):
        _leaf(osc, tag, flag)
    _leaf(osc, "connections", CONNECTION)
    trigger = ET.SubElement(ET.SubElement(osc, "triggers"), "trigger")
    _leaf(trigger, "var", message.trigger)
    _leaf(trigger, "condition", message.condition)
    path = Arg("CONSTANT", "STRING", message.address)
    for tag, partials in (("path", (path,)), ("arguments", message.args)):
        holder = ET.SubElement(osc, tag)
        for p in partials:
            partial = ET.SubElement(holder, "partial")
            for leaf, text in (("type", p.kind), ("conversion", p.conversion),
                               ("value", p.value), ("scaleMin", p.lo), ("scaleMax", p.hi)):
                _leaf(partial, leaf, text)


def node(kind: str, name: str, frame: Rect, color: Color, messages: tuple[Osc, ...] = (),
         children: list[ET.Element] | None = None, defaults: dict[str, object] | None = None,
         **props: object) -> ET.Element:
    """A control: the editor's properties for ``kind`` updated with ``props``; ``defaults``
    gives the values' defaults (``x``: 0, ``text``: empty, ``page``: 0)."""
    extra, keys = _KINDS[kind]
    everything = {**_COMMON, **extra, "name": name, "frame": frame, "color": color, **props}
    element = ET.Element("node", ID=str(uuid.uuid5(_IDS, name)), type=kind)
    properties = ET.SubElement(element, "properties")
    for key in sorted(everything):
        item = everything[key]
        prop = ET.SubElement(properties, "property", type=_PROPERTY_TYPES[type(item)])
        _leaf(prop, "key", key)
        holder = ET.SubElement(prop, "value")
        if isinstance(item, tuple):  # a colour or rectangle: one element per field
            for field, number in zip(item._fields, item):
                _leaf(holder, field, number)
        else:
            holder.text = _text(item)
    values = ET.SubElement(element, "values")
    default = {"touch": "false", "x": 0, "page": 0, "text": ""} | (defaults or {})
    for key in keys:
        entry = ET.SubElement(values, "value")
        for tag, text in (("key", key), ("locked", 0), ("lockedDefaultCurrent", key == "text"),
                          ("default", default[key]), ("defaultPull", 0)):
            _leaf(entry, tag, text)
    if messages:
        holder = ET.SubElement(element, "messages")
        for message in messages:
            _osc(holder, message)
    if children:
        ET.SubElement(element, "children").extend(children)
    return element


def label(name: str, frame: Rect, text: str, color: Color = WHITE, size: int = 14,
          feedback: str | None = None) -> ET.Element:
    """Text on a transparent ground; with ``feedback``, it shows what the engine sends there.
    Labels take no touches, so one on top of a button leaves the button playable."""
    messages = (show(feedback, value("STRING", key="text")),) if feedback else ()
    return node("LABEL", name, frame, CLEAR, messages, defaults={"text": text}, outline=False,
                textColor=color, textSize=size)


def button(name: str, frame: Rect, color: Color, text: str, message: Osc,
           feedback: str | None = None, toggle: bool = False) -> list[ET.Element]:
    """A button with its caption; with ``feedback``, the engine's state there lights it."""
    messages = (message, show(feedback, value())) if feedback else (message,)
    return [node("BUTTON", name, frame, color, messages,
                 buttonType=TOGGLE if toggle else MOMENTARY),
            label(f"{name}_caption", frame, text, size=16)]


def press(name: str, frame: Rect, color: Color, text: str, address: str,
          arg: Arg | None = None) -> list[ET.Element]:
    """A momentary button that sends when pressed, not when released: 1.0, or ``arg`` (a
    constant: a length in bars, a quantize setting)."""
    return button(name, frame, color, text, send(address, arg or value(), "RISE"))


def fader(name: str, frame: Rect, color: Color, address: str, start: float,
          **props: object) -> ET.Element:
    return node("FADER", name, frame, color, (send(address, value()),), defaults={"x": start},
                **props)


def param_fader(frame: Rect, color: Color, param: str, **props: object) -> ET.Element:
    return fader(param, frame, color, f"/param/{param}", _neutral(param), **props)


def knob(frame: Rect, color: Color, param: str) -> ET.Element:
    """A parameter on a knob; EQs draw from the middle (their neutral setting)."""
    return node("RADIAL", param, frame, color, (send(f"/param/{param}", value()),),
                defaults={"x": _neutral(param)}, centered=param.endswith("_eq"))


def _neutral(param: str) -> float:
    return round(float(neutral_frame()[PARAM_INDEX[param]]), 6)


def _stem_params() -> dict[str, dict[str, dict[str, str]]]:
    """deck -> stem -> kind -> parameter name, in the parameter contract's order."""
    decks: dict[str, dict[str, dict[str, str]]] = {}
    for name in PARAM_NAMES:
        parts = name.split("_", 2)
        if len(parts) == 3 and parts[0] in DECK_COLORS:
            decks.setdefault(parts[0], {}).setdefault(parts[1], {})[parts[2]] = name
    return decks


# --- the pages -------------------------------------------------------------------------------

def deck_strip(deck: str, x0: int) -> list[ET.Element]:
    """Title, grid confidence, bar counter, play/cue/sync, the four stems' gains and the tempo
    fader."""
    color = DECK_COLORS[deck]
    top = f"/deck/{deck}"
    items = [label(f"deck_{deck}_title", Rect(x0 + 8, 8, 88, 36), f"DECK {deck.upper()}",
                   color, 20),
             # The beat grid's confidence (0..1): below 0.5 the grid wants checking by ear.
             label(f"deck_{deck}_grid", Rect(x0 + 96, 8, 48, 36), "GRID", GREY, 12,
                   feedback=f"{top}/grid/confidence"),
             label(f"deck_{deck}_bar_caption", Rect(x0 + 146, 8, 50, 36), "BAR", GREY),
             label(f"deck_{deck}_bar", Rect(x0 + 196, 8, 96, 36), "-", WHITE, 20,
                   feedback=f"{top}/bar")]
    # The engine's play state lights the toggle; should TouchOSC echo that change as
    # /deck/x/play, it repeats the state the deck is already in.
    items += button(f"deck_{deck}_play", Rect(x0 + 8, 52, 90, 64), color, "PLAY",
                    send(f"{top}/play", value()), feedback=f"{top}/playing", toggle=True)
    items += press(f"deck_{deck}_cue", Rect(x0 + 104, 52, 90, 64), color, "CUE", f"{top}/cue")
    items += press(f"deck_{deck}_sync", Rect(x0 + 200, 52, 90, 64), color, "SYNC",
                   f"{top}/sync")
    stems = _stem_params()[deck]
    for k, (stem, kinds) in enumerate(stems.items()):
        x = x0 + 8 + 58 * k
        items += [param_fader(Rect(x, 124, 50, 390), color, kinds["gain"]),
                  label(f"{kinds['gain']}_caption", Rect(x - 4, 520, 58, 30), stem.upper(),
                        GREY, 11)]
    x = x0 + 8 + 58 * len(stems)
    items += [fader(f"deck_{deck}_tempo", Rect(x, 124, 50, 390), GREY, f"{top}/tempo", 0.5,
                    centered=True),
              label(f"deck_{deck}_tempo_caption", Rect(x - 4, 520, 58, 30), "TEMPO", GREY, 11)]
    return items


def _row(y: int, name: str, caption: str) -> ET.Element:
    return label(f"{name}_caption", Rect(318, y, 80, 56), caption, GREY)


def transition_panel() -> list[ET.Element]:
    """The next transition: candidates, length, quantize, guidance; master gain; feedback;
    key lock."""
    n = EngineConfig().candidates
    items = [label("next_title", Rect(318, 8, 250, 36), "NEXT TRANSITION", GREEN, 18),
             label("ready_caption", Rect(568, 8, 80, 36), "READY", GREY),
             label("ready", Rect(648, 8, 58, 36), "0", WHITE, 20,
                   feedback="/transition/ready")]
    items += press("regenerate", Rect(318, 52, 120, 64), GREEN, "NEW", "/transition/regenerate")
    # Candidates 1..n: the radio's step index 0..n-1 scaled by 1..2 is the number itself, and
    # the engine's feedback moves it back when the selection changes elsewhere.
    pick = Rect(446, 52, 260, 64)
    items.append(node("RADIO", "candidate", pick, GREEN, (
        send("/transition/candidate", value("INTEGER", 1.0, 2.0), receive=True),),
        orientation=HORIZONTAL, steps=n))
    items += [label(f"candidate_{k + 1}", Rect(pick.x + k * pick.w // n, pick.y, pick.w // n,
                                               pick.h), str(k + 1), WHITE, 18)
              for k in range(n)]
    items += [label("bars_caption", Rect(318, 124, 80, 28), "BARS", GREY),
              label("bars", Rect(318, 152, 80, 28), "-", WHITE, 18, feedback="/transition/bars")]
    for k, bars in enumerate(BARS_CHOICES):
        items += press(f"bars_{bars}", Rect(404 + 76 * k, 124, 70, 56), GREEN, str(bars),
                       "/transition/bars", constant("INTEGER", bars))
    items.append(_row(188, "quantize", "QUANT"))
    for k, where in enumerate(typing.get_args(Quantize)):
        items += press(f"quantize_{where}", Rect(404 + 76 * k, 188, 70, 56), GREEN,
                       where.upper(), "/transition/quantize", constant("STRING", where))
    # Guidance 0..1 on the fader is 0..4 in the engine: the engine's default 2 is the middle.
    items += [_row(252, "guidance", "GUIDE"),
              fader("guidance", Rect(404, 252, 302, 56), GREEN, "/transition/guidance", 0.5,
                    orientation=HORIZONTAL),
              _row(316, "master", "MASTER"),
              fader("master", Rect(404, 316, 302, 56), WHITE, "/mixer/master",
                    _neutral("master_gain"), orientation=HORIZONTAL)]
    # TouchOSC cannot say hello by itself: this button asks the engine for feedback on its port.
    items += press("register", Rect(318, 388, 388, 56), GREY, "CONNECT FEEDBACK", REGISTER,
                   constant("INTEGER", FEEDBACK_PORT))
    items += button("keylock", Rect(318, 452, 388, 56), WHITE, "KEY LOCK",
                    send("/mixer/keylock", value()), feedback="/mixer/keylock", toggle=True)
    return items


def knob_page(kinds: tuple[str, ...], captions: tuple[str, ...]) -> list[ET.Element]:
    """Both decks' stems in columns, one row of knobs per kind of parameter."""
    items = []
    for d, (deck, stems) in enumerate(_stem_params().items()):
        x0, color = 512 * d, DECK_COLORS[deck]
        items.append(label(f"{'_'.join(kinds)}_{deck}_title", Rect(x0 + 8, 8, 496, 32),
                           f"DECK {deck.upper()}", color, 18))
        for k, (stem, names) in enumerate(stems.items()):
            x = x0 + 8 + 124 * k
            items.append(label(f"{'_'.join(kinds)}_{deck}_{stem}", Rect(x, 44, 116, 28),
                               stem.upper(), color))
            for row, (kind, caption) in enumerate(zip(kinds, captions)):
                y = 80 + 150 * row
                items += [knob(Rect(x + 3, y, 110, 110), color, names[kind]),
                          label(f"{names[kind]}_caption", Rect(x, y + 112, 116, 24), caption,
                                GREY, 12)]
    return items


def effects_row() -> list[ET.Element]:
    items = []
    for k, (param, caption) in enumerate((("reverb_wet", "REVERB"), ("reverb_decay", "DECAY"))):
        frame = Rect(384 + 146 * k, 380, 110, 110)
        items += [knob(frame, WHITE, param),
                  label(f"{param}_caption", Rect(frame.x - 3, 492, 116, 24), caption, GREY, 12)]
    return items


def grid_page() -> list[ET.Element]:
    """Beat-grid editing per deck: the grid's BPM, moves by a 16th and a 64th of a beat,
    downbeat here, half and double tempo, and a big TAP pad."""
    items = []
    for d, (deck, color) in enumerate(DECK_COLORS.items()):
        x0, top = 512 * d, f"/deck/{deck}/grid"
        items += [label(f"grid_{deck}_title", Rect(x0 + 8, 8, 200, 40), f"DECK {deck.upper()}",
                        color, 20),
                  label(f"grid_{deck}_bpm_caption", Rect(x0 + 216, 8, 60, 40), "BPM", GREY),
                  label(f"grid_{deck}_bpm", Rect(x0 + 276, 8, 120, 40), "-", WHITE, 20,
                        feedback=f"/deck/{deck}/bpm")]
        for k, (text, beats) in enumerate((("<< 1/16", -1 / 16), ("< 1/64", -1 / 64),
                                           ("1/64 >", 1 / 64), ("1/16 >>", 1 / 16))):
            items += press(f"grid_{deck}_shift_{k}", Rect(x0 + 8 + 124 * k, 64, 118, 80), color,
                           text, f"{top}/shift", constant("FLOAT", beats))
        for k, (what, text) in enumerate((("downbeat", "DOWNBEAT HERE"), ("half", "BPM / 2"),
                                          ("double", "BPM x 2"))):
            items += press(f"grid_{deck}_{what}", Rect(x0 + 8 + 166 * k, 160, 160, 80), color,
                           text, f"{top}/{what}")
        items += press(f"grid_{deck}_tap", Rect(x0 + 8, 256, 496, 200), color, "TAP",
                       f"{top}/tap")
    return items


def page(name: str, tab: str, children: list[ET.Element]) -> ET.Element:
    return node("GROUP", name, Rect(0, 40, WIDTH, 560), CLEAR, children=children, outline=False,
                tabColorOff=Color(0.2, 0.2, 0.22), tabColorOn=CLEAR, tabLabel=tab,
                textColorOff=WHITE, textColorOn=WHITE)


def live_strip() -> list[ET.Element]:
    """Always on screen, under the pages: trigger, progress, phase, beat, crossfader, hold,
    abort."""
    items = press("trigger", Rect(8, 608, 150, 152), GREEN, "TRIGGER", "/transition/trigger")
    items += [node("FADER", "progress", Rect(166, 608, 560, 28), GREEN,
                   (show("/transition/progress", value()),), interactive=False, grabFocus=False,
                   orientation=HORIZONTAL, cursor=False, grid=False),
              label("phase", Rect(732, 608, 126, 28), "idle", WHITE, 14,
                    feedback="/transition/phase"),
              # The beat in the bar (1..4): the step index scaled by 1..2 is the beat itself.
              node("RADIO", "beat", Rect(166, 642, 692, 28), WHITE,
                   (show("/beat", value("INTEGER", 1.0, 2.0)),), interactive=False,
                   grabFocus=False, orientation=HORIZONTAL, steps=BEATS_PER_BAR),
              fader("crossfader", Rect(166, 676, 692, 84), WHITE, "/mixer/crossfader",
                    _neutral("crossfader"), orientation=HORIZONTAL),
              label("crossfader_a", Rect(172, 676, 40, 84), "A", DECK_COLORS["a"], 22),
              label("crossfader_b", Rect(812, 676, 40, 84), "B", DECK_COLORS["b"], 22)]
    items += button("hold", Rect(866, 608, 150, 72), GREEN, "HOLD",
                    send("/transition/hold", value()), toggle=True)
    items += press("abort", Rect(866, 688, 150, 72), RED, "ABORT", "/transition/abort")
    return items


def build() -> ET.Element:
    """The whole document: four pages (mix, EQ, filters and reverb, beat grid) over the live
    strip."""
    mix = deck_strip("a", 0) + transition_panel() + deck_strip("b", 724)
    eq = knob_page(("high_eq", "mid_eq", "low_eq"), ("HIGH", "MID", "LOW"))
    filters = knob_page(("highpass", "lowpass"), ("HIGHPASS", "LOWPASS")) + effects_row()
    pager = node("PAGER", "pages", Rect(0, 0, WIDTH, 600), Color(0.12, 0.12, 0.14),
                 children=[page("mix", "MIX", mix), page("eq", "EQ", eq),
                           page("filters", "FILTERS + REVERB", filters),
                           page("grid", "BEAT GRID", grid_page())])
    root = node("GROUP", "automix", Rect(0, 0, WIDTH, HEIGHT), Color(0.05, 0.05, 0.06),
                children=[pager, *live_strip()])
    ids = [n.get("ID") for n in root.iter("node")]
    if len(ids) != len(set(ids)):
        raise ValueError("TouchOSC layout: two controls share a name")
    document = ET.Element("lexml", version="3")
    document.append(root)
    return document


def to_bytes(document: ET.Element) -> bytes:
    """The .tosc file's bytes: the XML, zlib-compressed."""
    return zlib.compress(ET.tostring(document, encoding="UTF-8", xml_declaration=True), 9)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=LAYOUT)
    out = parser.parse_args(argv).out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(to_bytes(build()))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
