"""What a set's recording comes with: a cue sheet (``.cue``: players and CD burners jump to each
track in the one file) and a plain tracklist with each track's start time."""

from __future__ import annotations

from pathlib import Path

FRAMES_PER_SECOND = 75  # a cue sheet's time unit is the CD frame


def cue_time(seconds: float) -> str:
    """mm:ss:ff (minutes may pass 99: players read them)."""
    frames = int(round(seconds * FRAMES_PER_SECOND))
    minutes, frames = divmod(frames, 60 * FRAMES_PER_SECOND)
    secs, frames = divmod(frames, FRAMES_PER_SECOND)
    return f"{minutes:02d}:{secs:02d}:{frames:02d}"


def clock_time(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _quoted(text: str) -> str:
    return '"' + text.replace('"', "'") + '"'


def write_set_files(audio: Path, starts: list[tuple[str, float]],
                    details: list[str] | None = None) -> tuple[Path, Path]:
    """``audio``.cue and ``audio``.txt for the tracks (title, start in seconds of the file);
    ``details`` adds a note to each line of the tracklist (tempo, key). Returns both paths."""
    cue, text = audio.with_suffix(".cue"), audio.with_suffix(".txt")
    kind = "MP3" if audio.suffix.lower() == ".mp3" else "WAVE"
    lines = ['TITLE "automix-live set"', 'PERFORMER "automix-live"',
             f"FILE {_quoted(audio.name)} {kind}"]
    for n, (title, start) in enumerate(starts, 1):
        lines += [f"  TRACK {n:02d} AUDIO", f"    TITLE {_quoted(title)}",
                  f"    INDEX 01 {cue_time(max(start, 0.0))}"]
    cue.write_text("\n".join(lines) + "\n", encoding="utf-8")
    notes = details or [""] * len(starts)
    text.write_text("".join(f"{clock_time(max(start, 0.0))}  {n:2d}. {title}"
                            f"{'  ' + note if note else ''}\n"
                            for n, ((title, start), note) in enumerate(zip(starts, notes), 1)),
                    encoding="utf-8")
    return cue, text
