"""A start that is neither slow nor silent: the project's numba kernels load from numba's on-disk
cache in a new process (what ``main.py --warm-up`` fills), and main.py says what it is doing
before it imports the heavy libraries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Every project kernel, loaded as a process does: at import (explicit signatures) or when the
# core is made (the filter design, the decks' reader).
KERNELS = """
import json
from effects import filters, kernels
from engine import core, deck, limiter

core.EngineCore(44100)
dispatchers = {"mix_stems": kernels.mix_stems, "reverb_and_master": kernels.reverb_and_master,
               "limit": limiter.limit, "read_stems": deck.read_stems,
               "filter design": filters._design_for("numpy")}
print(json.dumps({name: [sum(d.stats.cache_hits.values()), sum(d.stats.cache_misses.values())]
                  for name, d in dispatchers.items()}))
"""


def run_python(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_the_kernels_load_from_numba_cache_in_a_new_process(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    first = run_python(["-c", KERNELS], env)
    assert first.returncode == 0, first.stderr
    second = run_python(["-c", KERNELS], env)
    assert second.returncode == 0, second.stderr
    stats = json.loads(second.stdout.strip().splitlines()[-1])
    # The filter design is a closure: numba had keyed its entry on a random id and compiled it
    # again in every process.
    assert {name for name, (hits, misses) in stats.items() if hits == 0 or misses} == set()


def test_main_says_what_it_does_before_importing_the_heavy_libraries(tmp_path):
    """-X importtime writes each import to stderr as it ends, the progress line goes to stdout
    flushed: in one pipe they come in the order they happened."""
    nowhere = tmp_path / "nowhere" / "mix.wav"  # refused after the imports, before any work
    run = subprocess.run([sys.executable, "-X", "importtime", "main.py", "--render",
                          str(nowhere)], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=600)
    assert run.returncode == 2, run.stdout
    lines = run.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if not line.startswith("import time:"))
    assert lines[first].endswith("s] loading libraries (numpy, torch, librosa, numba)")
    heavy = [i for i, line in enumerate(lines) if line.startswith("import time:")
             and line.rsplit("|", 1)[1].strip().split(".")[0] in ("torch", "librosa", "numba")]
    assert heavy and first < heavy[0]
