"""MIDI mapping files: YAML validated by pydantic, with errors that name the file, line and field.

A mapping lists ``controls`` (a MIDI message -> an engine command) and ``feedback`` (an engine
state -> a MIDI message lighting an LED). Channels are 1-based, as printed on controllers and in
their manuals (status byte 0xB0 is channel 1). See presets/ for real controllers.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engine.engine import GRID_ACTIONS

Command = Literal["param", "filter", "play", "cue", "sync", "tempo", "jog", "trigger", "abort",
                  "hold", "regenerate", "bars", "candidate", "shift", "keylock", "grid",
                  "browse", "load", "skip"]
# Commands that act on a deck.
DECK_COMMANDS = {"filter", "play", "cue", "sync", "tempo", "jog", "grid"}
BARS_CHOICES = (4, 8, 16, 32)


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the file, line and field."""


class _Loader(yaml.SafeLoader):
    """YAML 1.2's booleans (true/false only): PyYAML follows YAML 1.1, where on/off/yes/no are
    booleans too, and ``on``/``off`` are fields of a feedback entry."""


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


class Control(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    message: Literal["cc", "note"]
    channel: int = Field(ge=1, le=16)
    number: int = Field(ge=0, le=127)  # CC or note number (the MSB's for a 14-bit pair)
    lsb: int | None = Field(None, ge=0, le=127)  # the LSB's CC number of a 14-bit pair
    # Relative encoders send steps, not positions: offset-64 (65 = +1, 63 = -1) or two's
    # complement (1 = +1, 127 = -1).
    encoding: Literal["absolute", "offset64", "twos_complement"] = "absolute"
    shift: bool | None = None  # True: only with Shift held, False: only without, None: both
    command: Command
    deck: Literal["a", "b"] | None = None
    # The parameter(s) of a "param" command: a name, or a pattern such as "a_*_low_eq" (a
    # deck's EQ knob turns the EQ of all its stems); what a "grid" button does (GRID_ACTIONS).
    target: str | None = None
    invert: bool = False
    soft_takeover: bool = True  # continuous controls: act only once they reach the value
    step: float = Field(0.01, gt=0)  # relative encoders: change per step

    @model_validator(mode="after")
    def _consistent(self) -> "Control":
        if self.command in DECK_COMMANDS and self.deck is None:
            raise ValueError(f"command {self.command!r} needs a deck (a or b)")
        if self.command == "param" and not self.target:
            raise ValueError("command 'param' needs a target parameter name")
        if self.command == "grid" and self.target not in GRID_ACTIONS:
            raise ValueError(f"command 'grid' needs a target: {', '.join(GRID_ACTIONS)}")
        if self.lsb is not None and self.message != "cc":
            raise ValueError("only control changes (cc) come as 14-bit pairs")
        return self


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state: str  # a key of the engine's feedback state, e.g. /deck/a/playing
    equals: str | int | None = None  # lit when the state equals this (default: when truthy)
    message: Literal["cc", "note"]
    channel: int = Field(ge=1, le=16)
    number: int = Field(ge=0, le=127)
    on: int = Field(127, ge=0, le=127)
    off: int = Field(0, ge=0, le=127)


class Mapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    port: str = ""  # part of the input port's name this mapping is for
    controls: list[Control]
    feedback: list[Feedback] = []


def _line_of(node: yaml.Node, loc: tuple) -> int:
    """The 1-based line of the YAML key (or list item) at a pydantic error location."""
    line = node.start_mark.line
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            found = [(k, v) for k, v in node.value if k.value == key]
            if not found:
                break
            key_node, node = found[0]
            line = key_node.start_mark.line  # a nested value starts on the line after its key
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and \
                key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line
        else:
            break
    return line + 1


def load_mapping(path: Path | str, parameters: tuple[str, ...] = ()) -> Mapping:
    """Read and validate a mapping; ``parameters`` (names) checks the targets of "param"."""
    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8")
        node = yaml.compose(source, Loader=_Loader)
        data = yaml.load(source, Loader=_Loader)
    except OSError as err:
        raise MappingError(f"{path}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError as err:
        line = err.object[:err.start].count(b"\n") + 1
        raise MappingError(f"{path}, line {line}: not UTF-8 text") from None
    except RecursionError:
        raise MappingError(f"{path}: not valid YAML (nested too deeply)") from None
    except yaml.reader.ReaderError as err:  # a control character: no mark, a two-line message
        line = source[:err.position].count("\n") + 1
        code = err.character if isinstance(err.character, int) else ord(err.character)
        raise MappingError(f"{path}, line {line}: not valid YAML (character #x{code:04x} is "
                           f"not allowed)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark else ""
        raise MappingError(f"{path}{line}: not valid YAML ({getattr(err, 'problem', err)})") \
            from None
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = tuple(first["loc"])
        field = ".".join(str(x) for x in loc) or "(top)"
        line = _line_of(node, loc) if node is not None else 1
        raise MappingError(f"{path}, line {line}, field {field}: {first['msg']}") from None
    i = unknown_target(mapping, parameters)
    if i is not None:
        line = _line_of(node, ("controls", i, "target"))
        raise MappingError(f"{path}, line {line}, field controls.{i}.target: no parameter "
                           f"{mapping.controls[i].target!r}")
    return mapping


def unknown_target(mapping: Mapping, parameters: tuple[str, ...]) -> int | None:
    """The index of the first "param" control whose target matches none of ``parameters``
    (names; none given: nothing is checked)."""
    for i, control in enumerate(mapping.controls):
        if parameters and control.command == "param" and \
                not fnmatch.filter(parameters, control.target):
            return i
    return None


PRESETS = Path(__file__).resolve().parents[1] / "presets"


def preset_for(port: str) -> Path:
    """The shipped preset whose ``port`` occurs in the given port name, else the generic one."""
    for path in sorted(PRESETS.glob("*.yaml")):
        mapping = load_mapping(path)
        if mapping.port and port and mapping.port.lower() in port.lower():
            return path
    return PRESETS / "generic.yaml"
