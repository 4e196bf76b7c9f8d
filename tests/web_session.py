"""``main.py`` live as a user runs it, in a process of its own, and headless Chromium looking at
its web view (tests/test_web.py, bench/web.py).

Chromium and its driver are Debian's (packages ``chromium`` and ``chromium-driver``, which
setup.sh installs): Selenium drives the system's chromedriver and never downloads a browser.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEB_URL = re.compile(r"web view on (http://\S+)")


class LiveMain:
    """``main.py ARGS`` with a thread collecting what it prints (a status line ends in a
    carriage return, so the output is kept as text, not lines)."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "main.py", *args], cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for chunk in iter(lambda: os.read(self.process.stdout.fileno(), 1 << 16), b""):
            self._chunks.append(chunk)

    @property
    def output(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")

    def tail(self, chars: int = 3000) -> str:
        return self.output[-chars:].replace("\r", "\n")

    def wait_for(self, pattern: str | re.Pattern[str], seconds: float,
                 after: int = 0) -> re.Match[str]:
        """The first match of ``pattern`` in what was printed from character ``after`` on,
        waiting up to ``seconds``; AssertionError (with the output's end) if none came."""
        deadline = time.monotonic() + seconds
        while True:
            found = re.search(pattern, self.output[after:])
            if found:
                return found
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} from main.py "
                                     f"(exit code {self.process.poll()}):\n{self.tail()}")
            time.sleep(0.05)

    def web_url(self, seconds: float = 60.0) -> str:
        return self.wait_for(WEB_URL, seconds).group(1)

    def stop(self, seconds: float = 30.0) -> int:
        """Ctrl-C, as a user stops it; its exit code (TimeoutExpired if it does not exit)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=seconds)
        self.close()
        return self.process.returncode

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)

    def __enter__(self) -> LiveMain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def chromium(width: int = 1440, height: int = 1000) -> Iterator[object]:
    """Headless Chromium under Selenium (a ``selenium.webdriver.Chrome``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        raise RuntimeError("chromium or chromedriver is missing: run ./setup.sh (Debian packages "
                           "chromium and chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    # --no-sandbox: Chromium's sandbox refuses to run as root, as CI and containers run.
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-extensions", f"--window-size={width},{height}"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    try:
        yield chrome
    finally:
        chrome.quit()
