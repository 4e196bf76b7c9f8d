"""A playlist's tracks: a folder of audio files (and stem folders), or an ``.m3u``/``.m3u8`` file.

M3U is the format every player writes: one path or ``file://`` URL per line, relative to the
playlist's folder, ``#`` lines for comments and ``#EXTINF`` titles. Entries that do not exist are
reported and left out; a playlist with nothing playable is an error that names the file.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from effects.params import STEMS

# What soundfile (libsndfile) decodes; the analysis reads these and folders of stems.
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"})
M3U_SUFFIXES = frozenset({".m3u", ".m3u8"})


class PlaylistError(ValueError):
    """A playlist that cannot be read or holds nothing playable; the message names it."""


def is_stem_folder(path: Path) -> bool:
    return path.is_dir() and any(p.stem.lower() in STEMS and p.suffix.lower() in AUDIO_SUFFIXES
                                 for p in path.iterdir())


def read_playlist(path: Path | str) -> tuple[list[Path], list[str]]:
    """The playlist's tracks in its order, and a line for each entry left out."""
    path = Path(path)
    if not path.exists():
        raise PlaylistError(f"playlist {path}: no such file or folder")
    if path.is_dir():
        tracks, skipped = _folder(path), []
    elif path.suffix.lower() in M3U_SUFFIXES:
        tracks, skipped = _m3u(path)
    else:
        raise PlaylistError(f"playlist {path}: not a folder or an .m3u/.m3u8 file")
    if not tracks:
        raise PlaylistError(f"playlist {path}: no playable tracks "
                            f"({', '.join(sorted(AUDIO_SUFFIXES))} or stem folders)")
    return tracks, skipped


def _folder(folder: Path) -> list[Path]:
    """Audio files and stem folders in the folder, by name (a stem folder counts as one track;
    the files of a folder of stems alone are that one track)."""
    if is_stem_folder(folder):
        return [folder]
    entries = sorted(folder.iterdir(), key=lambda p: p.name.lower())
    return [p for p in entries if (p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            or is_stem_folder(p)]


def _m3u(playlist: Path) -> tuple[list[Path], list[str]]:
    try:
        # .m3u8 is UTF-8 by definition; a plain .m3u is too in every player of this century,
        # and a stray byte must not lose the whole list.
        lines = playlist.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise PlaylistError(f"playlist {playlist}: {err.strerror or err}") from None
    tracks, skipped = [], []
    for number, line in enumerate(lines, 1):
        entry = line.strip().lstrip("\ufeff")
        if not entry or entry.startswith("#"):
            continue
        if entry.startswith("file://"):
            entry = unquote(urlparse(entry).path)
        elif "://" in entry:
            skipped.append(f"{playlist.name} line {number}: {entry}: not a local file")
            continue
        track = Path(entry).expanduser()
        track = track if track.is_absolute() else playlist.parent / track
        if not (track.is_file() or is_stem_folder(track)):
            skipped.append(f"{playlist.name} line {number}: {entry}: no such track")
            continue
        tracks.append(track)
    return tracks, skipped
