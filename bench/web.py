"""What the web view costs the audio: main.py as a user runs it, with a page open and without.

    .venv/bin/python bench/web.py [--rounds 3] [--seconds 60] [--screenshot docs/web-view.png]

``main.py`` plays the demo (its two generated tracks, the rule-based policy, the transition it
triggers by itself at bar 9) through a PortAudio stream on a JACK server with the dummy driver
at 256 frames: without ``--web``; with it and a WebSocket client that reads every message and
draws nothing (the server's cost alone); with it and headless Chromium open on a blank page,
nobody connected (the browser's cost alone); with it and headless Chromium showing the page. Each
round runs all four. main.py is the JACK server's only client: this process leaves the graph
once the device is found. xruns are counted over ``--seconds`` of music from a second after deck A
starts (as bench/controllers.py counts them: starting, which loads the decks and opens the
stream, is left out); the page is connected before the count starts and stays to its end,
drawing both decks, the candidates and, from bar 10, the running transition. Reported per case:
xruns (median of the rounds, and each round's), the callback's load (median and p99 of its last
4,096 calls, from main.py's status line), the CPU time of main.py with its worker and of
Chromium with its driver (seconds of CPU per second), and what the page received (kB/s).
``--screenshot`` saves the page while the transition runs (first round). The last line is JSON.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.jackserver import dummy_jack  # noqa: E402
from tests.flood_client import STATUS_XRUNS  # noqa: E402
from tests.web_session import LiveMain, chromium  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
STATUS_LOAD = re.compile(r"\| load (\d+)%/(\d+)% p99")


def tree_cpu_seconds(root: int) -> float:
    """CPU time (user + system) of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        times[pid] = (int(fields[11]) + int(fields[12])) / TICK
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo += children.get(pid, [])
    return total


def xruns_so_far(live: LiveMain) -> int:
    return int(STATUS_XRUNS.findall(live.output)[-1])


def save_page(browser, path: Path) -> None:
    """A PNG of the whole page, below the window's fold too (Chromium's DevTools protocol)."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    width = browser.execute_script("return document.documentElement.scrollWidth")
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))


def stop(live: LiveMain) -> None:
    """Ctrl-C; a main.py that does not exit has its threads' tracebacks printed (faulthandler),
    then is killed: its figures were read before."""
    try:
        live.stop()
    except subprocess.TimeoutExpired:
        live.process.send_signal(signal.SIGABRT)
        time.sleep(2.0)
        print(f"main.py did not exit on Ctrl-C:\n{live.tail(8000)}", file=sys.stderr)


# The server's side alone: a WebSocket client in a process of its own that reads every message
# and draws nothing.
READER = """
import asyncio, sys, aiohttp
async def read():
    async with aiohttp.ClientSession() as session, session.ws_connect(sys.argv[1] + "ws") as ws:
        async for _ in ws:
            pass
asyncio.run(read())
"""
CASES = ("without", "reader", "blank browser", "with page")


def session(device: int, seconds: float, case: str, screenshot: Path | None) -> dict:
    """One run of main.py: without --web, with a reader of its feedback, with Chromium open on
    a blank page beside it (what the browser costs by being there), or with Chromium showing
    its web view throughout."""
    # --no-log: a benchmark's transitions are no performer's examples.
    args = ["--checkpoint", "none", "--no-log", "--device", str(device)] + (
        ["--web", "0"] if case != "without" else [])
    with LiveMain(args, {"PYTHONFAULTHANDLER": "1"}) as live:
        if case in ("with page", "blank browser"):
            with chromium() as browser:
                browser.get(live.web_url(120) if case == "with page" else "about:blank")
                return _count(live, seconds, browser, screenshot)
        if case == "reader":
            reader = subprocess.Popen([sys.executable, "-c", READER, live.web_url(120)])
            try:
                return _count(live, seconds, None, None)
            finally:
                reader.kill()
                reader.wait()
        return _count(live, seconds, None, None)


def _count(live: LiveMain, seconds: float, browser, screenshot: Path | None) -> dict:
    live.wait_for("A: play", 120)
    time.sleep(1.0)
    start_xruns, t0 = xruns_so_far(live), time.monotonic()
    cpu0 = tree_cpu_seconds(live.process.pid)
    chrome = browser.service.process.pid if browser is not None else None
    chrome0 = tree_cpu_seconds(chrome) if chrome else 0.0
    page = browser is not None and browser.execute_script("return 'automix' in window")
    bytes0 = browser.execute_script("return automix.bytesReceived") if page else 0
    shot = screenshot
    while time.monotonic() - t0 < seconds:
        if shot is not None and browser.execute_script(
                "const [p, n] = automix.state['/transition/beats'] ?? [0, 0];"
                "return automix.state['/transition/phase'] === 'running' && p > 0.3 * n"):
            save_page(browser, shot)
            print(f"screenshot: {shot}", flush=True)
            shot = None
        time.sleep(0.2)
    elapsed = time.monotonic() - t0
    # The callback's load over its last 4,096 calls (24 s at 256 frames), from the status line.
    median, p99 = STATUS_LOAD.findall(live.output)[-1]
    result = {"xruns": xruns_so_far(live) - start_xruns, "seconds": round(elapsed, 1),
              "load_median": int(median), "load_p99": int(p99),
              "main_cpu": round((tree_cpu_seconds(live.process.pid) - cpu0) / elapsed, 3)}
    if browser is not None:
        result["chromium_cpu"] = round((tree_cpu_seconds(chrome) - chrome0) / elapsed, 3)
    if page:
        received = browser.execute_script("return automix.bytesReceived") - bytes0
        result["page_kb_per_s"] = round(received / elapsed / 1000, 2)
    stop(live)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0, help="music counted per run")
    parser.add_argument("--screenshot", type=Path, help="PNG of the page mid-transition")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {case: [] for case in CASES}
    with dummy_jack(44100, 256, client=False) as device:
        for k in range(args.rounds):
            for case in runs:
                result = session(device, args.seconds, case,
                                 args.screenshot if case == "with page" and k == 0 else None)
                runs[case].append(result)
                print(f"round {k + 1}, {case}: {result}", flush=True)
    summary = {}
    for case, results in runs.items():
        median = {key: float(np.median([r[key] for r in results])) for key in results[0]}
        xruns = [r["xruns"] for r in results]
        print(f"main.py, {args.seconds:g} s counted, {case}: median {np.median(xruns):g} xruns "
              f"{xruns}, callback load median {median['load_median']:g} %, p99 "
              f"{median['load_p99']:g} %, main.py CPU {median['main_cpu']:.2f}"
              + (f", Chromium CPU {median['chromium_cpu']:.2f}" if "chromium_cpu" in median
                 else "")
              + (f", page {median['page_kb_per_s']:.1f} kB/s" if "page_kb_per_s" in median
                 else ""))
        summary[case] = results
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
