"""A JACK server with its dummy driver: real-time pacing with no sound card (tests, benchmarks,
headless machines). PortAudio lists its JACK host API only while a server runs, so it is
re-initialised after the server starts and before it stops."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def dummy_jack(sample_rate: int = 44100, period: int = 256, *,
               client: bool = True) -> Iterator[int]:
    """Run ``jackd -d dummy`` under a private name; yields PortAudio's JACK output device.

    While PortAudio is initialised with the server up, its JACK host API holds an active client
    that JACK wakes every period, streams or not. ``client=False`` closes it once the device is
    found, for a caller whose audio runs in another process (``main.py`` in a benchmark): a user's
    session has no such client, and each one more is one more real-time thread that must be
    scheduled in every period."""
    import sounddevice as sd

    if shutil.which("jackd") is None:
        raise RuntimeError("jackd is missing: run ./setup.sh (Debian package jackd2)")
    name = f"automix-{os.getpid()}"
    env = {**os.environ, "JACK_NO_AUDIO_RESERVATION": "1"}
    proc = subprocess.Popen(["jackd", "-n", name, "-d", "dummy", "-r", str(sample_rate),
                             "-p", str(period)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    previous = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    attached = True  # this process's PortAudio, initialised again below with the server up
    try:
        for _ in range(50):
            time.sleep(0.1)
            sd._terminate()
            sd._initialize()
            jack = [i for i, api in enumerate(sd.query_hostapis()) if "JACK" in api["name"]]
            if jack and sd.query_hostapis(jack[0])["devices"]:
                device = sd.query_hostapis(jack[0])["default_output_device"]
                break
        else:
            proc.kill()
            raise RuntimeError(f"jackd did not come up: {proc.stderr.read().decode()[-500:]}")
        if not client:
            sd._terminate()
            attached = False
        yield device
    finally:
        if attached:
            sd._terminate()  # PortAudio's JACK client must close before the server goes
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a client still attached can hold it: no audio is lost
            proc.kill()
            proc.wait()
        if previous is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = previous
        sd._initialize()
