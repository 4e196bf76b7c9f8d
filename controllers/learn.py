"""MIDI learn: the next note or control change from the controller becomes a mapping entry.

The entry is added to a mapping file (created if missing) and the whole file is validated
before it is written, so a learn never leaves a broken mapping. The file is rewritten as plain
YAML: comments in it are not kept, so learn into your own file, not into a shipped preset.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import mido
import yaml
from pydantic import ValidationError

from .mapping import Control, Mapping, MappingError, load_mapping, unknown_target
from .midiports import matching


def control_from(message: mido.Message, command: str, deck: str | None = None,
                 target: str | None = None) -> Control:
    """The mapping entry for ``message`` (a note or a control change)."""
    if message.type in ("note_on", "note_off"):
        kind, number = "note", message.note
    elif message.type == "control_change":
        kind, number = "cc", message.control
    else:
        raise ValueError(f"only notes and control changes can be learned, got {message.type}")
    return Control(message=kind, channel=message.channel + 1, number=number, command=command,
                   deck=deck, target=target)


def add_control(path: Path, control: Control, parameters: tuple[str, ...] = ()) -> Mapping:
    """Add ``control`` to the mapping at ``path``, replacing one for the same message."""
    if path.exists():
        data = load_mapping(path, parameters).model_dump(exclude_defaults=True)
    else:
        data = {"name": path.stem, "controls": []}
    same = (control.message, control.channel, control.number, control.shift)
    data["controls"] = [c for c in data.get("controls", [])
                        if (c["message"], c["channel"], c["number"], c.get("shift")) != same]
    data["controls"].append(control.model_dump(exclude_defaults=True))
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as err:
        raise MappingError(f"{path}: not written: {err.errors()[0]['msg']}") from None
    i = unknown_target(mapping, parameters)
    if i is not None:  # what load_mapping would refuse is never written
        raise MappingError(f"{path}: not written: no parameter {mapping.controls[i].target!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return mapping


async def next_message(port: mido.ports.BaseInput, timeout: float) -> mido.Message:
    """The next note-on or control change arriving on ``port`` (polled, the loop stays free)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        for message in port.iter_pending():
            if message.type in ("note_on", "control_change") and \
                    not (message.type == "note_on" and message.velocity == 0):
                return message
        await asyncio.sleep(0.005)
    raise TimeoutError(f"no MIDI message in {timeout:g} s")


def learn(path: Path, port_name: str | None, command: str, deck: str | None = None,
          target: str | None = None, parameters: tuple[str, ...] = (),
          timeout: float = 30.0) -> tuple[mido.Message, Mapping]:
    """Wait for the next message on the first input port matching ``port_name`` (any without)
    and add it to the mapping at ``path`` as ``command``. Raises OSError (no such port),
    TimeoutError or ValueError (a message or an entry that cannot be learned)."""
    backend = mido.Backend(os.environ.get("MIDO_BACKEND", "mido.backends.rtmidi"))
    names = matching(backend.get_input_names(), port_name)
    if not names:
        raise OSError(f"no MIDI input port matches {port_name or '(any)'}")
    with backend.open_input(names[0]) as port:
        print(f"move the control for {command} on {names[0]} ...", flush=True)
        message = asyncio.run(next_message(port, timeout))
    return message, add_control(path, control_from(message, command, deck, target), parameters)
