"""The performer's view in a browser, served by the engine on its own asyncio loop (aiohttp).

``GET /`` is the page (``web_static/``: HTML, JavaScript and CSS, nothing from the internet),
``GET /ws`` its WebSocket. Down the socket go the messages of ``controllers.view``: everything
when the page connects, then what changed, at most FEEDBACK_HZ times a second; the page draws on
its canvases in the browser. Up it come commands, ``{"address": "/transition/trigger",
"args": []}``: the addresses, arguments and handlers of ``controllers.commands``, the same as
OSC's, so a click does what the same OSC message does and nothing else.

Like the OSC server: 127.0.0.1 unless told otherwise, any other address only with an allow-list;
at most MAX_CLIENTS pages at once; a message that is not JSON, not a command, or that the engine
refuses is one line in a rate-limited log and changes nothing. A page sends no state of its own
(a hold is a press that toggles the engine's hold, not a button held down), so a closed tab or a
reload leaves the engine as it was. Requests must name this machine by address (a page loaded
through another host name could be a site rebinding its name to 127.0.0.1), and the socket
takes only pages of its own origin (another site's script in the performer's browser could
otherwise drive the engine).

A page that reads slowly holds up nobody: each page has its own writer, and what waits for it
is at most the latest message of each kind (``Page``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from engine.backends import AudioOutput

from .clients import FEEDBACK_HZ, MAX_CLIENTS, allowed, check_listen
from .commands import REFUSED, BadMessage, Route, dispatch, routes, text
from .ratelimit import RateLimitedLog
from .view import Message, View

log = logging.getLogger("automix.web")

DEFAULT_PORT = 8080
STATIC = Path(__file__).with_name("web_static")
MAX_MESSAGE = 16 * 1024  # bytes of one command: a load's path fits, a flood of JSON does not
HEARTBEAT_SECONDS = 10.0  # a page that vanished without closing its socket is noticed
CLOSE_SECONDS = 1.0  # a page that does not answer the closing handshake holds up no exit


@dataclass
class WebStats:
    handled: int = 0
    rejected: int = 0  # messages not understood or refused by the engine
    refused: int = 0  # requests from outside the allow-list, another host name or origin, or
    # beyond MAX_CLIENTS


def _queue(engine: Any, args: tuple) -> None:
    engine.playlist_queue(text(args))


def web_routes() -> dict[str, Route]:
    """The commands of OSC's address space, and the view's own."""
    extra = [Route("/playlist/queue", "s", "add a track to the DJ set's queue", _queue)]
    return {**routes(), **{r.address: r for r in extra}}


def command(data: str) -> tuple[str, tuple]:
    """A page's message as an address and its arguments, or BadMessage naming what is wrong."""
    try:
        message = json.loads(data)
    except (ValueError, RecursionError) as err:  # RecursionError: brackets nested too deep
        raise BadMessage(f"not JSON ({type(err).__name__})") from None
    if not isinstance(message, dict) or not isinstance(message.get("address"), str):
        raise BadMessage("expects an object with an address")
    args = message.get("args", [])
    if not isinstance(args, list) or set(message) - {"address", "args"}:
        raise BadMessage("expects an address and a list of args, nothing else")
    return message["address"], tuple(args)


def _names_this_machine(host: str | None) -> bool:
    """Whether a request's Host is an address (or localhost) rather than some site's name."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


class Page:
    """One connected page and what still waits to be sent to it: per kind only the latest
    message (the state's values merged), so a page that reads slowly costs a bounded amount."""

    def __init__(self, socket: web.WebSocketResponse, remote: str) -> None:
        self.socket, self.remote = socket, remote
        self._outbox: dict[str, Message] = {}
        self._ready = asyncio.Event()

    def post(self, kind: str, message: Message) -> None:
        waiting = self._outbox.get(kind)
        if kind == "state" and waiting is not None:  # messages are shared: merge into a new one
            message = {"type": "state", "values": {**waiting["values"], **message["values"]}}
        self._outbox[kind] = message
        self._ready.set()

    async def write(self) -> None:
        """Send what is posted, until the socket closes."""
        while not self.socket.closed:
            await self._ready.wait()
            self._ready.clear()
            while self._outbox and not self.socket.closed:
                message = self._outbox.pop(next(iter(self._outbox)))
                try:
                    await self.socket.send_str(json.dumps(message, allow_nan=False))
                except ConnectionError:  # the page went away meanwhile
                    return


class WebServer:
    """Serves the page and its WebSocket; ``start`` and ``close`` on the engine's loop."""

    def __init__(self, engine: Any, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 allow: tuple[str, ...] = (), output: AudioOutput | None = None) -> None:
        check_listen(host, allow, "the web view")
        self.engine, self.host, self.port, self.allow, self.output = (engine, host, port,
                                                                       allow, output)
        self.routes = web_routes()
        self.stats = WebStats()
        self.pages: set[Page] = set()
        self.view: View | None = None
        self._bad = RateLimitedLog(log, "bad web view messages")
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        self.view = View(self.engine, self.output)
        app = web.Application(middlewares=[self._gate], client_max_size=MAX_MESSAGE)
        app.router.add_get("/", _index)
        app.router.add_get("/ws", self._socket)
        app.router.add_static("/static/", STATIC)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._spawn(self._feedback())

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for page in list(self.pages):
            await page.socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _spawn(self, coroutine: Any) -> asyncio.Task:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _refuse(self, why: str, status: type[web.HTTPException]) -> web.HTTPException:
        self.stats.refused += 1
        self._bad.warn(f"web view: {why}; refused")
        return status()

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        remote = request.remote or ""
        if not allowed(remote, self.allow):
            raise self._refuse(f"{remote} is not in the allow-list", web.HTTPForbidden)
        if not _names_this_machine(request.url.host):
            raise self._refuse(f"a request for host {request.host!r} from {remote}",
                               web.HTTPForbidden)
        return await handler(request)

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            raise self._refuse(f"a page of {origin!r}", web.HTTPForbidden)
        if len(self.pages) >= MAX_CLIENTS:
            raise self._refuse(f"already {MAX_CLIENTS} pages", web.HTTPServiceUnavailable)
        # No compression: it would cost the loop for bytes that travel on this machine or a LAN.
        socket = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=HEARTBEAT_SECONDS,
                                       timeout=CLOSE_SECONDS, compress=False)
        await socket.prepare(request)
        page = Page(socket, request.remote or "")
        self._broadcast(self.view.tick())  # the others' changes first: the newcomer gets all
        for kind, message in self.view.snapshot():
            page.post(kind, message)
        self.pages.add(page)
        writer = self._spawn(page.write())
        try:
            async for message in socket:
                if message.type == WSMsgType.TEXT:
                    self.receive(message.data, page.remote)
                elif message.type == WSMsgType.BINARY:
                    self._reject(page.remote, "a binary message")
                elif message.type == WSMsgType.ERROR:  # too long, not UTF-8: the socket closes
                    self._reject(page.remote, f"{socket.exception()}; the page is disconnected")
        finally:
            self.pages.discard(page)
            writer.cancel()
        return socket

    def receive(self, data: str, remote: str) -> None:
        """One message from a page: the command it names, or one line saying why not."""
        address = "message"
        try:
            address, args = command(data)
            dispatch(self.routes, self.engine, address, args)
        except REFUSED as err:
            self._reject(remote, f"{address[:64]}: {err}")
            return
        self.stats.handled += 1

    def _reject(self, remote: str, why: str) -> None:
        self.stats.rejected += 1
        self._bad.warn(f"web view from {remote}: {why}; ignored")

    def _broadcast(self, messages: list[tuple[str, Message]]) -> None:
        for kind, message in messages:
            for page in self.pages:
                page.post(kind, message)

    async def _feedback(self) -> None:
        """The view's changes to every page, at most FEEDBACK_HZ times a second; nothing is
        made while no page is connected."""
        while True:
            if self.pages:
                try:
                    self._broadcast(self.view.tick())
                except Exception as err:  # noqa: BLE001 - the view must outlive a bad state
                    self._bad.warn(f"web view: feedback failed ({type(err).__name__}: {err})")
            await asyncio.sleep(1.0 / FEEDBACK_HZ)
