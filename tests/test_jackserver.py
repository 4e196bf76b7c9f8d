"""The JACK dummy server that tests and benchmarks play through (engine.jackserver)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import sounddevice as sd

from engine.jackserver import dummy_jack

# Plays half a second of silence on the device named by argv[1]; prints how many callbacks ran.
PLAY = """
import sys, time, sounddevice as sd
calls = []
with sd.OutputStream(device=int(sys.argv[1]), channels=2, blocksize=256,
                     callback=lambda out, frames, t, status: (out.fill(0), calls.append(1))):
    time.sleep(0.5)
print(len(calls))
"""


def test_a_server_for_another_process_leaves_this_one_out_of_its_graph():
    """With ``client=False`` this process holds no PortAudio, so no JACK client of its own, while
    another process plays on the device it found; PortAudio is back afterwards."""
    with dummy_jack(client=False) as device:
        with pytest.raises(sd.PortAudioError):
            sd.query_devices()
        played = subprocess.run([sys.executable, "-c", PLAY, str(device)], capture_output=True,
                                text=True, timeout=60)
        assert played.returncode == 0, played.stderr[-2000:]
        # 0.5 s at 256 frames and 44.1 kHz is 86 periods: JACK paced the stream.
        assert 40 <= int(played.stdout) <= 120, played.stdout
    assert sd.query_hostapis()  # PortAudio initialised: this raised inside
