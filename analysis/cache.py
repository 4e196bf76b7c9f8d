"""On-disk cache of analysis results, keyed by the file's content hash and the analysis version.

A result is a flat mapping of names to numpy arrays (scalars as 0-d arrays, text as unicode
arrays), stored as ``.npz`` and read back with ``allow_pickle=False``: a cache file can never run
code. Writes go to a temporary file in the same directory and are renamed into place, so a crash
or a concurrent reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

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
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.entry(digest)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=path.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, allow_pickle=False,
                         **{name: np.asarray(value) for name, value in result.items()})
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
