"""On-disk cache of analysis results, keyed by the file's content hash and the analysis version.

A result is a flat mapping of names to numpy arrays (scalars as 0-d arrays, text as unicode
arrays), stored as ``.npz`` and read back with ``allow_pickle=False``: a cache file can never run
code. Audio that goes with it (the stems) is stored beside it as a 16-bit multichannel FLAC,
about half the size of raw samples. Writes go to a temporary file in the same directory and are
renamed into place, so a crash or a concurrent reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf

_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "automix-live" / "analysis"


def content_hash(path: Path | str) -> str:
    """SHA-256 of the file's bytes (its name and date do not matter)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class AnalysisCache:
    """Results by (content hash, analysis version); a new version never reads an old entry."""

    def __init__(self, root: Path | str | None = None, version: int = 1) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.version = version

    def entry(self, digest: str) -> Path:
        return self.root / f"{digest[:40]}-v{self.version}.npz"

    def load(self, digest: str) -> dict[str, np.ndarray] | None:
        """The stored result, or None when there is none or it cannot be read (then it is
        removed, to be recomputed)."""
        path = self.entry(digest)
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)
            return None

    def save(self, digest: str, result: dict[str, np.ndarray]) -> Path:
        """Store a result atomically; returns its path."""
        arrays = {name: np.asarray(value) for name, value in result.items()}
        return self._write(self.entry(digest),
                           lambda f: np.savez(f, allow_pickle=False, **arrays))

    def audio_entry(self, digest: str) -> Path:
        return self.entry(digest).with_suffix(".flac")

    def save_audio(self, digest: str, audio: np.ndarray, sample_rate: int) -> Path:
        """Store audio [channels, samples] (FLAC holds up to 8 channels), scaled to fit 16 bits;
        the scale is kept in the file's comment."""
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        scale = max(peak / 0.999, 1.0)

        def write(f) -> None:
            with sf.SoundFile(f, "w", sample_rate, audio.shape[0], "PCM_16", format="FLAC") as out:
                out.comment = repr(scale)
                out.write((audio / scale).T)

        return self._write(self.audio_entry(digest), write)

    def load_audio(self, digest: str) -> np.ndarray | None:
        """Stored audio as float32 [channels, samples], or None (unreadable entries removed)."""
        path = self.audio_entry(digest)
        try:
            with sf.SoundFile(path) as f:
                return _read_planar(f, float(f.comment or 1.0))
        except FileNotFoundError:
            return None
        except (sf.LibsndfileError, RuntimeError, ValueError):
            path.unlink(missing_ok=True)
            return None

    def _write(self, path: Path, write) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=path.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def _read_planar(f: sf.SoundFile, scale: float) -> np.ndarray:
    """``f`` as float32 [channels, samples] times ``scale``, decoded in blocks into the one
    array: a track's stems are 400 MB or more, and reading them whole, transposing and scaling
    made three such arrays (fresh memory, costly where a virtual machine returns freed pages to
    its host, where it made the audio late while a deck loaded: bench/engine.py --load)."""
    out = np.empty((f.channels, f.frames), dtype=np.float32)
    block = np.empty((1 << 16, f.channels), dtype=np.float32)
    done = 0
    while done < f.frames:
        n = len(f.read(out=block))
        if n == 0:
            break
        out[:, done:done + n] = block[:n].T
        done += n
    if done < f.frames:
        raise ValueError(f"{f.name}: {done} of {f.frames} frames decoded")
    if scale != 1.0:
        out *= np.float32(scale)
    return out
