"""The real-music corpus: freely licensed game music from Debian packages, fetched on demand.

    .venv/bin/python bench/real_corpus.py          # fetch (idempotent) and list the tracks

``bench/real_corpus.json`` lists each package with its version, SHA-256, licence (from the
package's copyright file) and the tracks chosen in it (paths inside the package). Fetching runs
``apt-get download`` (needs ``apt-get update`` once) and ``dpkg-deb -x`` into
``$AUTOMIX_CORPUS`` (default ``~/.cache/automix-live/corpus``), one folder per package; packages
already extracted there are skipped. Nothing of the corpus is kept in the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

MANIFEST = Path(__file__).with_name("real_corpus.json")
REFERENCES = Path(__file__).with_name("real_references.json")
# Reserved for checks independent of this corpus: never fetched or listed here.
FORBIDDEN_PACKAGES = ("nexuiz-music", "xmoto-data", "extremetuxracer-data")
FORBIDDEN_PREFIXES = ("fretsonfire-songs-",)


@dataclass(frozen=True)
class Track:
    id: str  # "package/file name": stable, used as the key of the references
    package: str
    member: str  # path inside the package
    style: str

    def path(self, root: Path | None = None) -> Path:
        return (root or corpus_dir()) / self.package / self.member


def corpus_dir() -> Path:
    """Where the corpus is extracted: $AUTOMIX_CORPUS or ~/.cache/automix-live/corpus."""
    default = Path.home() / ".cache" / "automix-live" / "corpus"
    return Path(os.environ.get("AUTOMIX_CORPUS", default)).expanduser()


def is_forbidden(package: str) -> bool:
    return package in FORBIDDEN_PACKAGES or package.startswith(FORBIDDEN_PREFIXES)


def load_manifest(path: Path = MANIFEST) -> list[dict]:
    """The packages of the corpus, as listed in real_corpus.json."""
    packages = json.loads(path.read_text())["packages"]
    for entry in packages:
        if is_forbidden(entry["package"]):
            raise ValueError(f"{entry['package']} is reserved and may not be in the corpus")
    return packages


def corpus_tracks(path: Path = MANIFEST) -> list[Track]:
    """Every track of the corpus, in the manifest's order."""
    return [Track(f"{entry['package']}/{Path(member).name}", entry["package"], member,
                  entry["style"])
            for entry in load_manifest(path) for member in entry["tracks"]]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_package(entry: dict, root: Path) -> None:
    """Download one pinned .deb, check its hash and extract it to root/<package>."""
    name, version = entry["package"], entry["version"]
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        run = subprocess.run(["apt-get", "download", f"{name}={version}"], cwd=tmp,
                             capture_output=True, text=True)
        debs = list(Path(tmp).glob("*.deb"))
        if run.returncode != 0 or len(debs) != 1:
            raise RuntimeError(f"apt-get download {name}={version} failed (run 'apt-get update' "
                               f"first?): {run.stderr.strip()}")
        if _sha256(debs[0]) != entry["sha256"]:
            raise RuntimeError(f"{debs[0].name}: SHA-256 differs from real_corpus.json")
        # Extract beside the target and rename, so an interrupted run leaves no half package.
        staging = Path(tmp) / "root"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(staging)], check=True)
        target = root / name
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)


def fetch(root: Path | None = None) -> list[Track]:
    """Fetch and extract every package whose tracks are not all there yet; return the tracks."""
    root = root or corpus_dir()
    root.mkdir(parents=True, exist_ok=True)
    missing = [entry for entry in load_manifest()
               if not all((root / entry["package"] / m).is_file() for m in entry["tracks"])]
    for entry in tqdm(missing, desc="corpus packages", unit="pkg", disable=not missing):
        _fetch_package(entry, root)
    return corpus_tracks()


def main() -> None:
    parser = argparse.ArgumentParser(description="Fetch the real-music corpus and list it.")
    parser.add_argument("--paths", action="store_true",
                        help="print each track's file path alone (for python -m model.data "
                             "--tracks)")
    args = parser.parse_args()
    tracks = fetch()
    root = corpus_dir()
    size = sum(entry["size"] for entry in load_manifest())
    for track in tracks:
        print(track.path(root) if args.paths else f"{track.id:55s} {track.style}")
    print(f"{len(tracks)} tracks from {len(load_manifest())} packages "
          f"({size / 1e6:.0f} MB of .debs) in {root}", file=sys.stderr)


if __name__ == "__main__":
    main()
