#!/usr/bin/env bash
# One-step, idempotent setup on Debian/Ubuntu with Python >= 3.10:
# system packages (PortAudio, JACK, liblo tools, headless Chromium for the web view's tests), a
# virtual environment in .venv/, the project.
set -euo pipefail
cd "$(dirname "$0")"

SYSTEM_PACKAGES=(libportaudio2 jackd2 liblo-tools chromium chromium-driver)
missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
    echo "setup: installing system packages: ${missing[*]}"
    # jackd2 asks about real-time priority through debconf; answer it without a prompt.
    echo "jackd2 jackd/tweak_rt_limits boolean false" | "${SUDO[@]}" debconf-set-selections
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
VENV_PY=.venv/bin/python
"$VENV_PY" -m pip install -q --upgrade pip

# torch first: 2.13.0 is a local CPU wheel on the project's machines. Elsewhere, a torch already
# in the environment (CUDA or Apple build) is kept; otherwise this installs 2.13.0 from the index.
if ! "$VENV_PY" -c "import torch" 2>/dev/null; then
    "$VENV_PY" -m pip install -q "torch==2.13.0"
fi
"$VENV_PY" -m pip install -q -e ".[dev]"
# numba compiles librosa's kernels and the project's on their first use: a minute of a first
# start on a 2-core machine. Compiled here into numba's on-disk cache (with the demo's tracks made
# and analysed), the first `main.py` loads them instead; a second setup finds them and is quick.
"$VENV_PY" main.py --warm-up
echo "setup: ready ($("$VENV_PY" -c 'import torch, numpy; print(f"torch {torch.__version__}, numpy {numpy.__version__}")'))"
