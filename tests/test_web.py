"""The web view: main.py on a JACK dummy server with headless Chromium on its page (the decks,
the candidates' curves, a click on TRIGGER, the playhead), and the server with real WebSocket
clients (aiohttp's) for what a page is told, bad and hostile messages, many tabs and who may
connect."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import re

import aiohttp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from controllers.clients import MAX_CLIENTS
from analysis.waveform import stem_envelopes
from controllers.web import MAX_MESSAGE, WebServer, web_routes
from effects.params import PARAM_NAMES
from tests.conftest import loaded_engine, settle, stem_decks
from tests.web_session import LiveMain, chromium

# What share of a canvas is drawn in the drums' and bass's colours (orange and red), and what
# share differs from the background at all.
STEM_PIXELS = """
const canvas = arguments[0], data = canvas.getContext("2d")
    .getImageData(0, 0, canvas.width, canvas.height).data;
let stems = 0, drawn = 0;
for (let i = 0; i < data.length; i += 4) {
  const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
  if (r > 180 && g < 200 && b < 140 && r - b > 80) stems++;
  if (Math.abs(r - 11) + Math.abs(g - 13) + Math.abs(b - 18) > 60) drawn++;
}
return [stems / (data.length / 4), drawn / (data.length / 4)];
"""


def js(expression: str):
    """A WebDriverWait condition: the page's expression is true."""
    return lambda browser: browser.execute_script(f"return {expression}")


def test_the_page_shows_the_decks_and_candidates_and_its_trigger_plays_the_transition(
        tmp_path, jack_server):
    """main.py --web as a user runs it; Chromium loads the page: both decks' waveforms and the
    candidates' curves are drawn, the playhead follows the engine, a click on a candidate and on
    TRIGGER starts the transition the engine plays, a reload mid-transition and a closed tab
    leave the engine as it was."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    decks = stem_decks(tmp_path, bars=24)
    with LiveMain(["--deck-a", str(decks[0]), "--deck-b", str(decks[1]), "--device",
                   str(jack_server), "--checkpoint", "none", "--bars", "2", "--web", "0",
                   "--seconds", "120"], {"XDG_CACHE_HOME": str(tmp_path / "cache")}) as live:
        url = live.web_url()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url), url
        with chromium() as browser:
            browser.get(url)
            # A canvas redrawn as a new element between two looks is looked at again.
            wait = WebDriverWait(browser, 60, poll_frequency=0.1,
                                 ignored_exceptions=(StaleElementReferenceException,))
            seen: list[dict] = [{}]

            def drawn(browser) -> bool:
                """Each zoomed view and overview in the stems' colours and three candidates'
                curves (a page draws what it is sent at its next frame)."""
                waves = browser.find_elements(By.CSS_SELECTOR, "canvas.zoom, canvas.overview")
                curves = browser.find_elements(By.CSS_SELECTOR, "#candidates canvas")
                seen[0] = {"waves": [browser.execute_script(STEM_PIXELS, c)[0] for c in waves],
                           "curves": [browser.execute_script(STEM_PIXELS, c)[1] for c in curves]}
                return (len(seen[0]["curves"]) == 3 and min(seen[0]["waves"]) > 0.05
                        and min(seen[0]["curves"]) > 0.02)

            try:
                wait.until(drawn)
            except TimeoutException:
                raise AssertionError(f"not drawn: {seen[0]}") from None
            heads = [browser.find_element(By.CSS_SELECTOR, f'.deck-head[data-deck="{d}"]').text
                     for d in (0, 1)]
            assert "128.00 BPM" in heads[0] and "8A A minor" in heads[0], heads
            assert "ON AIR" in heads[0] and "playing" in heads[0], heads
            assert "5A C minor" in heads[1] and "stopped" in heads[1], heads

            # The engine's feedback moves the playhead (beyond what the page guesses between
            # messages, a quarter of a second at most).
            x, seconds = browser.execute_script(
                "return [automix.overviewPlayheads[0], automix.state['/deck/a/position']]")
            wait.until(js(f"automix.state['/deck/a/position'] > {seconds + 1.0} "
                          f"&& automix.overviewPlayheads[0] > {x + 10}"))

            browser.find_element(By.CSS_SELECTOR, '.candidate[data-candidate="2"]').click()
            wait.until(js("automix.state['/transition/candidate'] === 2 && document"
                          ".querySelector('.candidate[data-candidate=\"2\"].chosen') !== null"))
            browser.find_element(By.ID, "trigger").click()
            live.wait_for("transition started", 20)
            wait.until(js("!document.getElementById('running').hidden "
                          "&& automix.state['/transition/beats'][0] > 1"))
            # It plays the candidate chosen on the page: the same curves.
            assert browser.execute_script(
                "return automix.running.curves === automix.plan.candidates[1].curves")
            browser.refresh()  # a reload mid-transition: the page comes back, the engine plays on
            wait.until(js("automix.running !== null && automix.waves.every(Boolean)"))
            live.wait_for("transition finished", 20)
            wait.until(js("automix.state['/transition/outgoing'] === 1 "
                          "&& automix.state['/transition/phase'] === 'idle'"))
            assert "ON AIR" in browser.find_element(
                By.CSS_SELECTOR, '.deck-head[data-deck="1"]').text
        closed = len(live.output)  # the tab is closed: deck B plays on
        live.wait_for(r"B: play bar\s+\d+\.\d", 10, after=closed)
        assert "aborted" not in live.output
        assert live.stop() == 0, live.tail()


def test_listening_beyond_this_machine_without_an_allow_list_fails_before_any_music(
        tmp_path, capsys, jack_server):
    import main

    assert main.main(["--deck-a", str(tmp_path / "a"), "--deck-b", str(tmp_path / "b"),
                      "--device", str(jack_server), "--web", "--web-host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("error: the web view on 0.0.0.0: listening beyond this machine "
                           "needs an allow-list of client addresses"), err


# --- the server, with WebSocket clients of our own ---------------------------------------------

async def serve(engine, **kw) -> WebServer:
    server = WebServer(engine, port=0, **kw)
    await server.start()
    return server


async def until(done, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not done():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def gather(socket, done, seconds: float = 10.0) -> dict[str, list[dict]]:
    """Messages by kind ("deck0", "state", ...) until ``done(messages)``."""
    got: dict[str, list[dict]] = {}
    deadline = asyncio.get_running_loop().time() + seconds
    while not done(got):
        message = await asyncio.wait_for(socket.receive_json(),
                                         deadline - asyncio.get_running_loop().time())
        kind = message["type"] + (str(message["deck"]) if "deck" in message else "")
        got.setdefault(kind, []).append(message)
    return got


def unbytes(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), np.uint8)


def test_waveforms_are_peaks_and_rms_per_stem_on_a_square_root_scale():
    sr = 44100
    stems = np.zeros((4, 2, sr + 300), np.float32)  # a second and a bit: a last, short window
    stems[1] = 0.5 * np.sin(2 * np.pi * 100 * np.arange(stems.shape[-1]) / sr)
    wave = stem_envelopes(stems, sr)
    peak, rms, rate = wave.peak, wave.rms, wave.points_per_second
    assert rate == 50 and peak.shape == rms.shape == (4, 51) and peak.dtype == np.uint8
    assert not peak[[0, 2, 3]].any() and not rms[[0, 2, 3]].any()
    np.testing.assert_allclose(peak[1, :50], 255 * math.sqrt(0.5), atol=1)
    np.testing.assert_allclose(rms[1, :50], 255 * math.sqrt(0.5 / math.sqrt(2)), atol=1)


def test_a_page_gets_everything_then_only_what_changed(two_tracks):
    engine = loaded_engine(two_tracks)
    settle(engine)  # the decks hold their tracks

    async def scenario():
        server = await serve(engine)
        async with aiohttp.ClientSession() as session, \
                session.ws_connect(f"{server.url}ws") as socket:
            first = await gather(socket, lambda got: all(
                got.get(f"wave{d}") and got[f"wave{d}"][-1]["wave"] for d in (0, 1)))
            await asyncio.sleep(0.3)  # several feedback ticks, and nothing changed
            engine.set_param("crossfader", 0.5)
            settle(engine)
            changed = await gather(socket, lambda got: "state" in got)
            await socket.send_json({"address": "/transition/trigger", "args": []})
            running = await gather(socket, lambda got: "running" in got)
        await server.close()
        return first, changed, running

    first, changed, running = asyncio.run(scenario())
    hello = first["hello"][0]
    assert hello["params"] == list(PARAM_NAMES)
    assert sorted(p["index"] for lane in hello["lanes"] for p in lane["params"]) == list(
        range(len(PARAM_NAMES)))
    assert hello["stems"] == ["drums", "bass", "vocals", "other"]
    for d, track in enumerate(two_tracks):
        deck = first[f"deck{d}"][-1]["track"]
        assert deck["bpm"] == track.analysis.bpm and deck["camelot"] == track.analysis.camelot
        wave = first[f"wave{d}"][-1]["wave"]
        points = math.ceil(track.samples / (44100 // 50))
        assert [unbytes(row).size for row in wave["peak"] + wave["rms"]] == [points] * 8
        assert unbytes(wave["rms"][0]).max() > 0  # drums play
    plan = first["plan"][-1]["plan"]
    curves = engine.plan.transitions[0].curves
    assert len(plan["candidates"]) == 1 and plan["candidates"][0]["frames"] == curves.shape[0]
    np.testing.assert_array_equal(unbytes(plan["candidates"][0]["curves"]),
                                  np.round(255 * curves).astype(np.uint8).ravel())
    state = first["state"][0]["values"]
    assert state["/deck/a/playing"] == 0 and state["/transition/phase"] == "idle"
    assert len(first["state"]) == 1  # nothing moved: no second state message
    # A change is sent alone: the frame, nothing that did not move (in the ticks before it,
    # nothing was sent).
    values = changed["state"][0]["values"]
    assert list(values) == ["/mixer/frame"]
    assert values["/mixer/frame"][PARAM_NAMES.index("crossfader")] == 0.5
    assert running["running"][0]["running"]["curves"] == plan["candidates"][0]["curves"]
    assert engine.scheduled is not None


# A page's messages that are not commands: each one line in the log, and nothing changes.
BAD = [
    "not json", "[1, 2]", '{"args": []}', '{"address": 5}', '"/transition/trigger"',
    '{"address": "/transition/bars", "args": 8}',
    '{"address": "/transition/bars", "args": [8], "also": 1}',
    '{"address": "/no/such/address", "args": []}', '{"address": "/deck/c/play", "args": [1]}',
    '{"address": "/mixer/crossfader", "args": [NaN]}',
    '{"address": "/mixer/crossfader", "args": [1e999]}',
    '{"address": "/mixer/crossfader", "args": [2]}',
    '{"address": "/mixer/crossfader", "args": ["loud"]}',
    '{"address": "/mixer/crossfader", "args": [true]}',
    '{"address": "/mixer/crossfader", "args": [0.1, 0.2]}',
    '{"address": "/transition/bars", "args": [999]}',
    '{"address": "/transition/bars", "args": [' + "9" * 5000 + "]}",  # past int()'s digit limit
    '{"address": "/transition/quantize", "args": ["always"]}',
    '{"address": "/transition/candidate", "args": [7]}',
    '{"address": "/deck/a/grid/shift", "args": [100]}',
    '{"address": "/playlist/queue", "args": ["a.wav"]}',  # no DJ set in this engine
    "[" * 5000 + "]" * 5000,  # nested past Python's recursion limit
]
SUMMARY = re.compile(r"^(\d+) more bad web view messages suppressed$")


def engine_settings(engine) -> dict:
    """What a message could change: commands for the core, the hand's frame, the settings, and
    the plan (compared by identity)."""
    return {"commands": list(engine.core.commands), "manual": engine.core._manual.tolist(),
            "bars": engine.bars, "quantize": engine.quantize, "guidance": engine.guidance,
            "candidate": engine.candidate, "key_lock": engine.key_lock, "plan": id(engine.plan)}


def reported(records: list[logging.LogRecord], server: WebServer) -> int:
    """Rejections reported: warning lines, plus those the rate limit counted instead."""
    lines = [r.getMessage() for r in records if r.name == "automix.web"]
    summaries = [int(m.group(1)) for m in map(SUMMARY.match, lines) if m]
    return len(lines) - len(summaries) + sum(summaries) + server._bad.suppressed


def test_bad_and_hostile_messages_are_logged_and_change_nothing(two_tracks, caplog):
    engine = loaded_engine(two_tracks)
    before = engine_settings(engine)
    caplog.set_level(logging.WARNING, "automix.web")

    async def scenario():
        server = await serve(engine)
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{server.url}ws") as socket:
                for text in BAD:
                    await socket.send_str(text)
                await socket.send_bytes(b"\x00\x01binary")
                await until(lambda: server.stats.rejected == len(BAD) + 1)
                unchanged = engine_settings(engine) == before
                await socket.send_json({"address": "/transition/bars", "args": [8]})
                await until(lambda: server.stats.handled == 1)
            async with session.ws_connect(f"{server.url}ws") as socket:
                await socket.send_str("x" * (MAX_MESSAGE + 1))  # too long: the socket closes
                closed = await socket.receive()
                while closed.type == aiohttp.WSMsgType.TEXT:  # what was sent before it
                    closed = await socket.receive()
            await until(lambda: not server.pages)
        await server.close()
        return server, unchanged, closed

    server, unchanged, closed = asyncio.run(scenario())
    assert unchanged
    assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert (server.stats.handled, server.stats.rejected) == (1, len(BAD) + 2)
    assert reported(caplog.records, server) == server.stats.rejected
    after = engine_settings(engine)
    assert after["bars"] == 8  # the one good message, which planned again for 8 bars
    assert {**after, "bars": before["bars"], "plan": before["plan"]} == before


def test_tabs_are_capped_and_a_closed_or_reloaded_tab_leaves_the_engine_alone(two_tracks):
    engine = loaded_engine(two_tracks)
    before = engine_settings(engine)

    async def scenario():
        server = await serve(engine)
        session = aiohttp.ClientSession()
        tabs = [await session.ws_connect(f"{server.url}ws") for _ in range(MAX_CLIENTS)]
        for tab in tabs:
            assert (await tab.receive_json())["type"] == "hello"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{server.url}ws")
        await tabs[0].close()  # a tab closed: room for a reload
        await until(lambda: len(server.pages) == MAX_CLIENTS - 1)
        reloaded = await session.ws_connect(f"{server.url}ws")
        assert (await reloaded.receive_json())["type"] == "hello"
        await session.close()  # every tab gone at once, without a word
        await until(lambda: not server.pages)
        await server.close()
        return refused.value.status

    assert asyncio.run(scenario()) == 503
    assert engine_settings(engine) == before


def test_only_this_machine_by_default_and_only_the_pages_own_origin(two_tracks):
    with pytest.raises(ValueError, match="needs an allow-list"):
        WebServer(None, host="0.0.0.0")
    engine = loaded_engine(two_tracks)

    async def scenario():
        open_, listed = await serve(engine), await serve(engine, allow=("10.9.8.7",))
        base, statuses = open_.url, {}
        async with aiohttp.ClientSession() as session:
            for name, url, headers in (
                    ("page", base, {}), ("script", f"{base}static/view.js", {}),
                    ("style", f"{base}static/view.css", {}),
                    ("outside static", URL(f"{base}static/../web.py", encoded=True), {}),
                    ("other host name", base, {"Host": f"dj.example:{open_.port}"}),
                    ("not in the allow-list", listed.url, {})):
                async with session.get(url, headers=headers) as response:
                    statuses[name] = response.status
                    if name == "page":
                        assert "<canvas" in await response.text()
            for name, origin in (("own origin", base.rstrip("/")),
                                 ("other origin", "http://dj.example")):
                try:
                    async with session.ws_connect(f"{base}ws", headers={"Origin": origin}) as ws:
                        statuses[name] = (await ws.receive_json())["type"]
                except aiohttp.WSServerHandshakeError as err:
                    statuses[name] = err.status
        for server in (open_, listed):
            await server.close()
        return statuses, open_.stats.refused + listed.stats.refused

    statuses, refused = asyncio.run(scenario())
    assert statuses == {"page": 200, "script": 200, "style": 200, "outside static": 404,
                        "other host name": 403, "not in the allow-list": 403,
                        "own origin": "hello", "other origin": 403}, statuses
    assert refused == 3


# --- any text at all ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                               max_size=3), max_leaves=8)
page_messages = st.one_of(
    st.text(max_size=40), json_values.map(json.dumps),
    st.fixed_dictionaries({"address": st.sampled_from(sorted(web_routes())) | st.text(max_size=16),
                           "args": st.lists(json_values, max_size=3)}).map(json.dumps))


@pytest.fixture(scope="module")
def fuzzed(two_tracks):
    engine = loaded_engine(two_tracks)
    return engine, WebServer(engine)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=page_messages)
def test_any_text_from_a_page_is_one_outcome_and_a_rejection_changes_nothing(fuzzed, text):
    engine, server = fuzzed
    handled, rejected = server.stats.handled, server.stats.rejected
    before = engine_settings(engine)
    server.receive(text, "fuzz")
    assert (server.stats.handled - handled) + (server.stats.rejected - rejected) == 1
    if server.stats.rejected > rejected:
        assert engine_settings(engine) == before
    engine.core.commands.clear()  # what a handled message sent is not the next one's
