"""A start that does not compile: the project's numba kernels load from numba's on-disk cache in
a new process."""

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

