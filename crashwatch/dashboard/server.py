"""The dashboard's web server: Starlette on uvicorn, fed by one ZeroMQ subscriber thread per monitor endpoint.

The subscribers only read, and hand each message to the event loop, which updates the state and queues the
message for every open page. A page that cannot keep up (a stalled or backgrounded browser) has its queue
dropped and gets a fresh snapshot when it drains, and a closed one is forgotten: nothing waits for a browser,
so nothing reaches back to the subscribers, and a monitor never waits for a subscriber anyway (ZeroMQ drops
past its high-water mark). Clips are transcoded in one worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, Sequence

import uvicorn
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from crashwatch.contract.errors import CrashwatchError
from crashwatch.dashboard.access import Access
from crashwatch.dashboard.metrics import DashboardCollector
from crashwatch.dashboard.state import DashboardState
from crashwatch.monitor.messages import Message
from crashwatch.monitor.transports.curve import ClientCurve, load_pair, load_public
from crashwatch.monitor.transports.metrics import serve_registry
from crashwatch.monitor.transports.mqtt_target import MqttTarget
from crashwatch.monitor.transports.subscribe import Subscriber
from crashwatch.monitor.transports.zeromq import is_loopback
from crashwatch.review.events import ClipError, EventClip
from crashwatch.review.feed import ReviewFeed, standing
from crashwatch.review.listing import EventQuery, query
from crashwatch.review.verdicts import ReviewError, VerdictStore

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
TICK_S = 0.25
PAGE_BACKLOG = 500  # messages a page may fall behind by before it is sent a snapshot instead


class DashboardError(CrashwatchError):
    """The dashboard cannot serve where it was asked to; the message names the option."""


@dataclass(frozen=True)
class DashboardSettings:
    endpoints: Sequence[str]
    curves: Sequence[ClientCurve | None]  # one per endpoint
    events_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    metrics: str | None = None  # HOST:PORT to serve Prometheus metrics on
    review_mqtt: MqttTarget | None = None  # where verdicts go (``crashwatch.review.feed``), under ``mqtt_prefix``
    mqtt_prefix: str = "crashwatch"

    @property
    def loopback(self) -> bool:
        return is_loopback(f"tcp://{self.host}:{self.port}")


@dataclass(eq=False)  # each page is itself, in a set
class Page:
    """One open websocket: what it still has to be sent."""

    pending: collections.deque[str] = field(default_factory=collections.deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    behind: bool = False

    def push(self, text: str) -> None:
        if len(self.pending) >= PAGE_BACKLOG:
            self.pending.clear()
            self.behind = True
        else:
            self.pending.append(text)
        self.wake.set()


class Hub:
    """The state, the pages, the subscribers and the transcoder of one dashboard."""

    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self.state = DashboardState(settings.endpoints, settings.events_dir)
        self.pages: set[Page] = set()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._transcoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transcode")
        self._transcoding: dict[str, asyncio.Future] = {}
        self.loop: asyncio.AbstractEventLoop | None = None  # the event loop, once serving
        self._verdicts: VerdictStore | None = None  # opened at the first review call
        self._feed: ReviewFeed | None = None  # with --mqtt: the verdicts' MQTT feed

    # -- lifetime -------------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.loop = asyncio.get_running_loop()
        for endpoint, curve in zip(self.settings.endpoints, self.settings.curves):
            thread = threading.Thread(target=self._listen, args=(endpoint, curve), name=f"subscribe-{endpoint}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        ticker = asyncio.create_task(self._tick())
        if self.settings.review_mqtt is not None and self.settings.events_dir is not None:
            events_dir, store = self.settings.events_dir, self._store()
            self._feed = ReviewFeed(self.settings.review_mqtt, self.settings.mqtt_prefix,
                                    lambda: standing(events_dir, store))
        try:
            yield
        finally:
            if self._feed is not None:
                self._feed.close()
            ticker.cancel()
            self._stop.set()
            for thread in self._threads:
                thread.join(timeout=2)
            self._transcoder.shutdown(wait=False, cancel_futures=True)

    def _listen(self, endpoint: str, curve: ClientCurve | None) -> None:
        """One endpoint's subscriber (its own thread): every message goes to the event loop."""
        subscriber = Subscriber(endpoint, curve=curve)
        try:
            while not self._stop.is_set():
                try:
                    message = subscriber.receive(timeout=0.2)
                except (ValueError, KeyError, UnicodeDecodeError) as err:  # not a monitor's message
                    log.warning("%s: a message that is not a monitor's was skipped (%s)", endpoint, err)
                    continue
                if message is not None:
                    self.loop.call_soon_threadsafe(self._deliver, endpoint, message)
        finally:
            subscriber.close()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            for event in self.state.tick():
                self._send(event)

    # -- the event loop -------------------------------------------------------------------------------------

    def _deliver(self, endpoint: str, message: Message) -> None:
        camera, events = self.state.apply(endpoint, message)
        self._send({"type": "message", "endpoint": endpoint, "camera": camera, "topic": message.topic,
                    "message": message.wire})
        for event in events:
            self._send(event)

    def _send(self, event: dict[str, Any]) -> None:
        text = json.dumps(event)
        for page in self.pages:
            page.push(text)

    def _snapshot(self) -> str:
        return json.dumps({"type": "state", "state": self.state.snapshot()})

    # -- routes ---------------------------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def review(self, request: Request) -> Response:
        return FileResponse(STATIC / "review.html", headers={"Cache-Control": "no-store"})

    async def api_state(self, request: Request) -> Response:
        return JSONResponse(self.state.snapshot())

    async def websocket(self, websocket: WebSocket) -> None:
        await websocket.accept()
        page = Page()
        self.pages.add(page)
        page.pending.append(self._snapshot())
        page.wake.set()
        forward = asyncio.create_task(self._forward(websocket, page))
        listen = asyncio.create_task(self._until_closed(websocket))
        try:
            await asyncio.wait({forward, listen}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.pages.discard(page)
            forward.cancel()
            listen.cancel()

    async def _forward(self, websocket: WebSocket, page: Page) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            while True:
                await page.wake.wait()
                page.wake.clear()
                if page.behind:
                    page.behind = False
                    page.pending.clear()
                    await websocket.send_text(self._snapshot())
                while page.pending and not page.behind:
                    await websocket.send_text(page.pending.popleft())

    async def _until_closed(self, websocket: WebSocket) -> None:
        """A page sends nothing; reading notices it close."""
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass

    async def event_video(self, request: Request) -> Response:
        clip = self._clip(request)
        name = clip.path.name
        if name not in self._transcoding:  # one worker makes each copy once; later requests find it made
            self._transcoding[name] = asyncio.get_running_loop().run_in_executor(
                self._transcoder, clip.ensure_browser_copy)
            self._transcoding[name].add_done_callback(lambda _: self._transcoding.pop(name, None))
        video = await asyncio.shield(self._transcoding[name])
        return FileResponse(video, media_type="video/webm" if video.suffix == ".webm" else "video/mp4")

    async def event_sidecar(self, request: Request) -> Response:
        return FileResponse(self._clip(request).sidecar, media_type="application/json")

    async def event_evidence(self, request: Request) -> Response:
        clip = self._clip(request)
        data = await asyncio.get_running_loop().run_in_executor(self._transcoder, clip.evidence_zip)
        return Response(data, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{clip.path.stem}.zip"'})

    async def api_events(self, request: Request) -> Response:
        """The events folder's events with their verdicts, newest first, filtered and paged
        (``crashwatch.review.listing``), and the dismissal reasons."""
        p = request.query_params
        try:
            q = EventQuery(p.get("camera") or None, p.get("verdict") or None, p.get("level") or None,
                           p.get("since") or None, p.get("until") or None, int(p.get("page", 1)),
                           int(p.get("per_page", 20)))
        except ValueError:
            raise ReviewError("page and per_page are whole numbers") from None
        store = self._store()
        result = await asyncio.get_running_loop().run_in_executor(
            None, query, self.settings.events_dir, store, q)
        return JSONResponse({**result, "reasons": store.reasons()})

    async def api_review(self, request: Request) -> Response:
        """GET: the event's verdicts, oldest first. POST (JSON ``decision``, ``reviewer``, and ``reason`` or
        ``mark_s``): give it a verdict; every page hears it at once. JSON only, so that no other site's form
        can post one."""
        clip = self._clip(request)
        store = self._store()
        if request.method == "GET":
            return JSONResponse([v.to_json() for v in store.history(clip.path.name)])
        if request.headers.get("content-type", "").split(";")[0] != "application/json":
            raise ReviewError("a verdict is posted as JSON (Content-Type: application/json)")
        try:
            body = await request.json()
            verdict = store.give(clip.path.name, body["decision"], str(body["reviewer"]), body.get("reason"),
                                 None if body.get("mark_s") is None else float(body["mark_s"]))
        except (ValueError, KeyError, TypeError) as err:
            raise ReviewError(f"a verdict is JSON with decision and reviewer (and reason or mark_s): {err}") from None
        self._send({"type": "review", "verdict": verdict.to_json()})
        if self._feed is not None:
            self._feed.publish(clip.summary()["camera"], verdict, len(store.history(clip.path.name)))
        return JSONResponse(verdict.to_json())

    def _store(self) -> VerdictStore:
        if self.settings.events_dir is None:
            raise ClipError("this dashboard lists no events: start it with --events DIR")
        if self._verdicts is None:
            self._verdicts = VerdictStore(self.settings.events_dir)
        return self._verdicts

    def _clip(self, request: Request) -> EventClip:
        if self.settings.events_dir is None:
            raise ClipError("this dashboard serves no clips: start it with --events DIR")
        return EventClip.find(self.settings.events_dir, request.path_params["name"])


async def _clip_error(request: Request, err: Exception) -> Response:
    return PlainTextResponse(str(err), status_code=404)


async def _review_error(request: Request, err: Exception) -> Response:
    return PlainTextResponse(str(err), status_code=400)


def create_app(hub: Hub) -> Access:
    """The whole dashboard as one ASGI app, behind its access check."""
    settings = hub.settings
    app = Starlette(routes=[
        Route("/", hub.index),
        Route("/review", hub.review),
        Route("/api/state", hub.api_state),
        WebSocketRoute("/ws", hub.websocket),
        Route("/events/{name}/video", hub.event_video),
        Route("/events/{name}/sidecar", hub.event_sidecar),
        Route("/events/{name}/evidence", hub.event_evidence),
        Route("/api/events", hub.api_events),
        Route("/api/events/{name}/review", hub.api_review, methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ], lifespan=hub.lifespan, exception_handlers={ClipError: _clip_error, ReviewError: _review_error})
    return Access(app, settings.token, settings.loopback)


class Dashboard:
    """The server bound to its address (a clear error now, rather than from inside uvicorn); ``serve`` runs it
    until SIGINT or SIGTERM."""

    def __init__(self, settings: DashboardSettings) -> None:
        if not settings.loopback:
            if settings.token is None:
                raise DashboardError(f"--http {settings.host}:{settings.port} is reachable beyond this machine: "
                                     "give --token-file FILE, whose token every request must then carry")
            log.warning("serving the dashboard on %s:%d, reachable beyond this machine: requests need the token, "
                        "but the traffic is not encrypted (put a TLS proxy in front)", settings.host, settings.port)
        for curve in settings.curves:  # a bad key file is said now, not from a subscriber's thread
            if curve is not None:
                load_pair(curve.secret_file)
                load_public(curve.server_public_file)
        self.settings = settings
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((settings.host, settings.port))
        except OSError as err:
            self.socket.close()
            raise DashboardError(f"--http {settings.host}:{settings.port}: cannot serve there "
                                 f"({err.strerror or err})") from None
        self.hub = Hub(settings)
        self.metrics_url: str | None = None
        self._metrics: Any = None
        if settings.metrics is not None:
            registry = CollectorRegistry()
            registry.register(DashboardCollector(self.hub))
            try:
                self._metrics, self.metrics_url = serve_registry(registry, settings.metrics)
            except CrashwatchError:
                self.socket.close()
                raise

    @property
    def url(self) -> str:
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        return f"http://{host}:{self.settings.port}/"

    def serve(self) -> str | None:
        """Serve until SIGINT or SIGTERM; returns the name of the signal that stopped it."""
        config = uvicorn.Config(create_app(self.hub), log_level="warning", ws="websockets-sansio",
                                timeout_graceful_shutdown=2)
        server = _Server(config)
        try:
            server.run(sockets=[self.socket])
        finally:
            if self._metrics is not None:
                self._metrics.shutdown()
                self._metrics.server_close()
        return server.stopped_by


class _Server(uvicorn.Server):
    """uvicorn's server, except that the signal that ended it is not raised again once it has shut down: uvicorn
    does so, and SIGTERM then killed the command (exit 143) before it could say it stopped."""

    stopped_by: str | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            try:
                yield
            finally:
                captured = getattr(self, "_captured_signals", [])
                if captured:
                    self.stopped_by = signal.Signals(captured[-1]).name
                captured.clear()
