"""The dashboard: headless Chromium (Debian's
chromium and chromium-driver, through selenium) on a real dashboard process following real monitor processes
that replay real dashcam clips; CURVE and the bearer token against real processes; the state and the clips on
their own. Everything listens on loopback.

``CRASHWATCH_SCREENSHOT=docs/dashboard.png`` makes the browser test save the page it sees there (docs/dashboard.md's
picture); without it nothing is written outside the test's folder.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from crashwatch.bench.process import free_port
from crashwatch.cli import main
from crashwatch.contract.video import probe_clip
from crashwatch.dashboard.server import PAGE_BACKLOG, DashboardSettings, Hub
from crashwatch.dashboard.state import AFTER_ALERT_S, BEFORE_ALERT_S, SILENT_AFTER_S, DashboardState
from crashwatch.demo import DEMO_BUNDLE
from crashwatch.monitor.evidence.lock import SIDECAR, EventState, LockedEvent
from crashwatch.monitor.evidence.segments import BROWSER_COPY
from crashwatch.monitor.messages import Alert, AlertEvent, Message, Risk, Topic, envelope
from crashwatch.monitor.transports.curve import create_keys
from crashwatch.review.events import ClipError, EventClip
from tests.support.collector import Collector
from tests.support.imports import forbid
from tests.support.media import write_video
from tests.support.shared import CLIPS, REPO, need_shared
from tests.support.timing import within

TOKEN = "a-token-of-enough-length-0123456789"


# -- processes ------------------------------------------------------------------------------------------------

def _spawn(log: Path, *arguments: str) -> subprocess.Popen:
    """``crashwatch ARGUMENTS``, its log in ``log`` (read when a test fails)."""
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "crashwatch", *arguments], cwd=REPO, stdout=out, stderr=out)


def _monitor(log: Path, clip: Path, endpoint: str, camera: str, *options: str) -> subprocess.Popen:
    return _spawn(log, "-q", "monitor", "--bundle", str(DEMO_BUNDLE), "--source", str(clip), "--pub", endpoint,
                  "--camera", camera, "--loop", "--preview", *options)


class DashboardProcess:
    """``crashwatch dashboard`` on a free loopback port, ready when it answers."""

    def __init__(self, log: Path, *options: str, token: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = _spawn(log, "dashboard", "--http", f"127.0.0.1:{self.port}", *options)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the dashboard did not start: {log.read_text()}")
                time.sleep(0.1)
        self.token = token

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body); redirects are not followed."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("GET", path, headers=headers or {})
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def state(self) -> dict:
        status, _, body = self.get("/api/state", {"Authorization": f"Bearer {self.token}"} if self.token else None)
        assert status == 200, body
        return json.loads(body)

    def stop(self) -> int | None:
        """SIGTERM, as systemd stops it; its exit code (None if it had to be killed)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return None


def _stop(*processes: subprocess.Popen) -> None:
    for process in processes:
        process.kill()
        process.wait(timeout=10)


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.fixture
def chromium():
    """Headless Chromium driven by selenium (Debian's chromium and chromium-driver)."""
    binary, driver_binary = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver_binary is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium "
                    "chromium-driver; .ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1250",
                     "--autoplay-policy=no-user-gesture-required", "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_binary), options=options)
    yield driver
    driver.quit()


# The page's own elements carry what it shows (data-t on a camera's risk value, data-state on its card,
# data-key on an alert); this records, in the page, the moment each changes.
WATCH = """
window.seen = {risk: [], state: [], alerts: []};
new MutationObserver((records) => {
  const now = Date.now() / 1000;
  for (const r of records) {
    const el = r.target;
    if (r.attributeName === "data-t") seen.risk.push([el.closest(".camera").dataset.camera, +el.dataset.t, now]);
    else if (r.attributeName === "data-state") seen.state.push([el.dataset.camera, el.dataset.state, now]);
    else for (const n of r.addedNodes) if (n.dataset && n.dataset.key) seen.alerts.push([n.dataset.camera, now]);
  }
}).observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ["data-t", "data-state"]});
"""


def _seen(driver, kind: str) -> list:
    return driver.execute_script(f"return window.seen.{kind};")


# -- the page in a real browser ---------------------------------------------------------------------------------

@pytest.mark.timed
def test_the_page_follows_real_monitors_live(chromium, tmp_path):
    crash, highway = need_shared(CLIPS / "dad_000493.mp4"), need_shared(CLIPS / "highway_640.mp4")
    events = tmp_path / "events"
    front, rear = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    metrics = f"127.0.0.1:{free_port()}"
    dashboard = DashboardProcess(tmp_path / "dashboard.log", "--connect", front, "--connect", rear,
                                 "--events", str(events), "--metrics", metrics)
    collector = Collector(front), Collector(rear)
    monitors = []
    try:
        chromium.get(dashboard.url + "/")
        _wait(lambda: chromium.find_element("id", "connection").text == "live", 10, "the page's websocket")
        chromium.execute_script(WATCH)
        # The crash clip alerts from its 3rd second on (threshold 0: always above), the highway does not.
        monitors = [_monitor(tmp_path / "front.log", crash, front, "front", "--events", str(events), "--events-hold", "memory",
                             "--alert-on", "0", "--alert-min-on", "3"),
                    _monitor(tmp_path / "rear.log", highway, rear, "rear")]

        start = _wait(lambda: [m for m in collector[0].of("alert") if m["event"] == "start"], 40, "an alert start")[0]
        shown = _wait(lambda: [t for camera, t in _seen(chromium, "alerts") if camera == "front"], 5, "the alert listed")
        assert shown[0] - start["sent_at"] < within(1.0), "the alert was listed more than 1 s after its start"
        # Its explanation is drawn under it: the telling frame with its map, and a bar per frame of the window.
        explained = _wait(lambda: [m for m in collector[0].of("explanation") if m["alert_id"] == start["alert_id"]],
                          20, "the alert's explanation")[0]
        drawn = _wait(lambda: chromium.execute_script(
            "const e = document.querySelector('li[data-camera=\"front\"] .explanation[data-state=\"ready\"]');"
            "return e && e.querySelector('canvas[data-drawn]') ? e.querySelectorAll('.share').length : null;"),
            10, "the explanation drawn in the page")
        assert drawn == len(explained["frames"])

        # Its clip plays in the page as the monitor wrote it (H.264), whole, as long as the clip.
        video = _wait(lambda: chromium.execute_script(
            "const v = document.querySelector('li[data-camera=\"front\"] video');"
            "return v && v.readyState >= 3 ? v : null;"), 60, "the alert's clip playable in the page")
        clip = probe_clip(events / Path(start["clip"]).name)
        duration = chromium.execute_script("return arguments[0].duration;", video)
        assert abs(duration - clip.duration) <= 1 / clip.fps + 0.01, (duration, clip.duration)
        played = chromium.execute_async_script(
            "const [v, done] = arguments; v.play().then(() => setTimeout(() => done(v.currentTime), 600));", video)
        assert played > 0.2, "the clip does not play"

        time.sleep(2)
        if os.environ.get("CRASHWATCH_SCREENSHOT"):  # docs/dashboard.md's picture
            chromium.save_screenshot(os.environ["CRASHWATCH_SCREENSHOT"])

        # Both cameras' risk, every value on the page within a second of being published, counted from the first
        # the dashboard heard (a subscriber connects some 0.1 s after a monitor binds: ZeroMQ gives it nothing
        # sent before).
        settled = time.time() - 1.0  # what was published before this must be on the page by now
        shown = {(camera, round(t, 6)): at for camera, t, at in _seen(chromium, "risk")}
        first = {camera: min(t for c, t in shown if c == camera) for camera, _ in shown}
        published = [(name, m) for name, c in (("front", collector[0]), ("rear", collector[1])) for m in c.of("risk")
                     if m["t"] >= first.get(name, 0) and m["sent_at"] < settled]
        delays = [shown.get((name, round(m["t"], 6)), float("inf")) - m["sent_at"] for name, m in published]
        assert len(delays) >= 10 and set(first) == {"front", "rear"}
        assert max(delays) < 1.0, sorted(delays)[-3:]
        assert len({m["probability"] for _, m in published}) > 1  # the value shown changes

        state = dashboard.state()
        assert set(state["cameras"]) == {"front", "rear"}
        assert state["cameras"]["front"]["preview"]["width"] == 320
        assert state["cameras"]["rear"]["status"]["model"]["hash"]
        assert state["alerts"][0]["clip"]["state"] == "ready"
        status, headers, body = dashboard.get(state["alerts"][0]["clip"]["video"], {"Range": "bytes=0-99"})
        assert (status, headers["content-type"], len(body)) == (206, "video/mp4", 100)
        assert json.loads(dashboard.get(state["alerts"][0]["clip"]["sidecar"])[2])["alert"]["event"] == "start"

        # A killed monitor shows as silent within 3 s; the other stays online.
        monitors[1].send_signal(signal.SIGKILL)
        killed = time.time()
        silent = _wait(lambda: [at for camera, value, at in _seen(chromium, "state")
                                if camera == "rear" and value == "silent"], 5, "the killed monitor shown silent")
        assert silent[0] - killed < within(3.0)
        card = chromium.find_element("css selector", '.camera[data-camera="front"]')
        assert card.get_attribute("data-state") == "online"
        assert card.get_attribute("data-level") == "imminent"  # threshold 0: the alert goes on
        assert card.find_element("css selector", ".level").text == "ALERT"
        assert card.find_element("css selector", ".missed").text == "none"

        # Its Prometheus metrics say the same, read with Prometheus' own parser.
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(
            urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5).read().decode()) for s in family.samples}
        assert samples[("crashwatch_dashboard_camera_silent", (("camera", "rear"),))] == 1
        assert samples[("crashwatch_dashboard_camera_silent", (("camera", "front"),))] == 0
        assert samples[("crashwatch_dashboard_alerts_total", (("camera", "front"),))] >= 1
        assert samples[("crashwatch_dashboard_messages_received_total", (("camera", "front"), ("topic", "risk")))] \
            >= len([m for name, m in published if name == "front"])
        assert samples[("crashwatch_dashboard_pages", ())] == 1
        assert samples[("crashwatch_dashboard_endpoint_heard", (("endpoint", rear),))] == 1
    finally:
        _stop(*monitors)
        for c in collector:
            c.stop()
        dashboard.stop()


def test_the_page_needs_its_token_and_opens_with_it(chromium, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    dashboard = DashboardProcess(tmp_path / "dashboard.log", "--connect", f"127.0.0.1:{free_port()}",
                                 "--token-file", str(token_file), token=TOKEN)
    try:
        chromium.get(dashboard.url + "/")
        assert "a bearer token is required" in chromium.find_element("tag name", "body").text
        chromium.get(f"{dashboard.url}/?token={TOKEN}")  # sets the cookie, and takes the token off the address
        _wait(lambda: chromium.find_element("id", "connection").text == "live", 10, "the page's websocket")
        assert chromium.current_url == dashboard.url + "/"
        assert "nothing heard yet" in chromium.find_element("id", "endpoints").text
    finally:
        code = dashboard.stop()
    # SIGTERM (as systemd stops it) ends it like Ctrl-C: exit 0 and a closing line (uvicorn's re-raise gave 143).
    assert code == 0 and "dashboard stopped (SIGTERM)" in (tmp_path / "dashboard.log").read_text()


# -- access: token and CURVE -------------------------------------------------------------------------------

async def _websocket(url: str, headers: dict[str, str] | None = None) -> dict:
    import websockets

    async with websockets.connect(url, additional_headers=headers, open_timeout=10) as ws:
        return json.loads(await ws.recv())


def test_a_token_dashboard_refuses_the_page_the_api_and_the_websocket_without_it(tmp_path):
    import websockets

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    dashboard = DashboardProcess(tmp_path / "dashboard.log", "--connect", f"127.0.0.1:{free_port()}",
                                 "--token-file", str(token_file), token=TOKEN)
    ws = dashboard.url.replace("http", "ws") + "/ws"
    try:
        for path in ("/", "/api/state", "/static/dashboard.js", "/events/x.mp4/video"):
            for headers in (None, {"Authorization": "Bearer wrong-token-wrong-token"}):
                status, response_headers, _ = dashboard.get(path, headers)
                assert status == 401 and response_headers["www-authenticate"] == "Bearer", (path, headers)
        with pytest.raises(websockets.InvalidStatus) as refused:
            asyncio.run(_websocket(ws))
        assert refused.value.response.status_code == 403
        with pytest.raises(websockets.InvalidStatus):
            asyncio.run(_websocket(ws + "?token=wrong-token-wrong-token"))

        assert dashboard.state()["cameras"] == {}  # with the token
        assert asyncio.run(_websocket(ws, {"Authorization": f"Bearer {TOKEN}"}))["type"] == "state"
        assert asyncio.run(_websocket(f"{ws}?token={TOKEN}"))["type"] == "state"
        status, headers, _ = dashboard.get(f"/?token={TOKEN}")  # the page: a cookie, and the address without it
        assert (status, headers["location"]) == (303, "/")
        cookie = headers["set-cookie"].split(";")[0]
        assert cookie == f"crashwatch_token={TOKEN}" and "HttpOnly" in headers["set-cookie"]
        assert dashboard.get("/", {"Cookie": cookie})[0] == 200
        assert dashboard.get("/api/state", {"Host": "evil.example:80", "Cookie": cookie})[0] == 403  # DNS rebinding
    finally:
        dashboard.stop()


def test_a_websocket_from_another_origin_is_refused(tmp_path):
    import websockets

    dashboard = DashboardProcess(tmp_path / "dashboard.log", "--connect", f"127.0.0.1:{free_port()}")
    try:
        ws = dashboard.url.replace("http", "ws") + "/ws"
        assert asyncio.run(_websocket(ws, {"Origin": dashboard.url}))["type"] == "state"
        with pytest.raises(websockets.InvalidStatus):
            asyncio.run(_websocket(ws, {"Origin": "http://evil.example"}))
    finally:
        dashboard.stop()


def test_a_dashboard_holding_an_unlisted_curve_key_gets_nothing(tmp_path):
    highway = need_shared(CLIPS / "highway_640.mp4")
    keys = tmp_path / "keys"
    server_public, server_secret = create_keys(keys, "monitor")
    listed_public, listed_secret = create_keys(keys, "listed")
    _, unlisted_secret = create_keys(keys, "unlisted")
    (keys / "allowed").mkdir()
    shutil.copy(listed_public, keys / "allowed")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    monitor = _monitor(tmp_path / "monitor.log", highway, endpoint, "front", "--curve-secret", str(server_secret),
                       "--curve-allow", str(keys / "allowed"))
    listed, unlisted = (DashboardProcess(tmp_path / f"{secret.stem}.log", "--connect", endpoint, "--curve-server-key",
                                         str(server_public), "--curve-secret", str(secret))
                        for secret in (listed_secret, unlisted_secret))
    try:
        _wait(lambda: listed.state()["cameras"].get("front", {}).get("risk"), 30, "the listed dashboard's camera")
        time.sleep(2)
        state = unlisted.state()
        assert state["cameras"] == {} and state["endpoints"][endpoint]["heard"] is False
    finally:
        _stop(monitor)
        listed.stop()
        unlisted.stop()


def test_bad_dashboard_options_are_clear(tmp_path):
    def run(*args: str):
        return CliRunner().invoke(main, ["dashboard", *args])

    result = run("--http", f"0.0.0.0:{free_port()}")
    assert result.exit_code == 1 and "reachable beyond this machine: give --token-file" in result.output
    for bad in ("8080", "host:0", "host:99999", ":8080"):
        result = run("--http", bad)
        assert result.exit_code == 2 and "Invalid value for '--http'" in result.output, (bad, result.output)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run("--http", f"127.0.0.1:{taken.getsockname()[1]}")
    assert result.exit_code == 1 and "cannot serve there" in result.output, result.output
    short = tmp_path / "short"
    short.write_text("abc\n")
    result = run("--token-file", str(short))
    assert result.exit_code == 1 and f"{short}: the token must be one line of at least 16" in result.output
    key = tmp_path / "k.key"
    key.write_text("not a key")
    assert "go together" in run("--curve-server-key", str(key)).output
    result = run("--connect", "a:1", "--connect", "b:2", "--connect", "c:3", "--curve-server-key", str(key),
                 "--curve-server-key", str(key), "--curve-secret", str(key))
    assert result.exit_code == 2 and "2 --curve-server-key for 3 --connect" in result.output
    result = run("--curve-server-key", str(key), "--curve-secret", str(key), "--http", f"127.0.0.1:{free_port()}")
    assert result.exit_code == 1 and f"{key}: not a readable ZeroMQ certificate" in result.output, result.output
    assert "Invalid value for '--connect'" in run("--connect", "ftp://x").output


def test_without_the_dashboard_extra_the_command_says_what_to_install():
    script = forbid("starlette", "uvicorn", "websockets") + \
        "sys.argv = ['crashwatch', 'dashboard']\nimport runpy\nrunpy.run_module('crashwatch', run_name='__main__')\n"
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "needs the dashboard extra" in result.stderr and "crashwatch[cpu,dashboard]" in result.stderr


# -- the state and the clips on their own ---------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _message(topic: Topic, seq: int, camera: str, body) -> Message:
    return Message.decode(topic.value.encode(), json.dumps(envelope(topic, seq, camera, body.to_wire())).encode())


def _risk(seq: int, t: float, probability: float, active: bool = False, camera: str = "front") -> Message:
    return _message(Topic.RISK, seq, camera, Risk(
        t=t, window_start=t - 2, frame_ids=[], frame_times=[], probability=probability, threshold=0.5,
        alert_active=active, encode_ms=1, score_ms=1, frames_encoded=1, partial=False, captured_at=0, latency_ms=5))


def _alert(event: AlertEvent, t: float, start: float, **fields) -> Message:
    return _message(Topic.ALERT, 1, "front", Alert(event=event, alert_id=1, start=start, t=t, probability=0.9,
                                                   peak=0.9, peak_at=start, threshold=0.5, **fields))


def test_the_state_keeps_a_minute_of_risk_the_risk_around_each_alert_and_says_silence(tmp_path):
    clock = Clock()
    state = DashboardState(["tcp://a:1", "tcp://b:2"], tmp_path, clock)
    t, seq = 0.0, 0
    for seq in range(1, 200):  # 99.5 s of strides
        t = seq * 0.5
        active = 80 <= t <= 90
        state.apply("tcp://a:1", _risk(seq, t, 0.9 if active else 0.1, active))
        if t == 80:
            camera, events = state.apply("tcp://a:1", _alert(AlertEvent.START, t, 80.0,
                                                             clip="/elsewhere/front-alert0001.mp4"))
            assert camera == "front" and events[0]["alert"]["clip"]["state"] == "pending"
        if t == 90:
            state.apply("tcp://a:1", _alert(AlertEvent.END, t, 80.0, duration=10.0, reason="risk subsided"))
    snapshot = state.snapshot()
    history = snapshot["cameras"]["front"]["history"]
    assert history[0][0] >= t - 60 and history[-1][0] == t
    (alert,) = snapshot["alerts"]
    times = [p[0] for p in alert["risk"]]
    assert times[0] == 80 - BEFORE_ALERT_S and times[-1] == 90 + AFTER_ALERT_S
    assert (alert["duration"], alert["active"], alert["clip"]["name"]) == (10.0, False, "front-alert0001.mp4")

    write_video(tmp_path / "front-alert0001.mp4", 5)
    assert state.tick() == []  # the clip without its sidecar is being written
    (tmp_path / "front-alert0001.json").write_text("{}")
    assert state.tick()[0]["alert"]["clip"]["state"] == "ready"

    clock.now += SILENT_AFTER_S + 0.1
    assert state.tick() == [{"type": "camera", "camera": "front", "silent": True,
                             "heard_at": snapshot["cameras"]["front"]["heard_at"], "missed": {}}]
    assert state.tick() == []
    _, events = state.apply("tcp://a:1", _risk(seq + 1, 0.5, 0.2))  # the monitor restarted
    assert events[0]["silent"] is False
    assert state.snapshot()["cameras"]["front"]["history"] == [[0.5, 0.2, False]]

    camera, _ = state.apply("tcp://b:2", _risk(1, 0.5, 0.3))  # the same name at another endpoint
    assert camera == "front@tcp://b:2"
    assert state.snapshot()["endpoints"]["tcp://b:2"]["cameras"] == ["front@tcp://b:2"]


class Browser:
    """A page's websocket as the server sees it; a stalled one never finishes a send until ``gate`` opens."""

    def __init__(self, stalled: bool) -> None:
        self.received: list[dict] = []
        self.gate, self.gone = asyncio.Event(), asyncio.Event()
        if not stalled:
            self.gate.set()

    async def accept(self) -> None:
        pass

    async def send_text(self, text: str) -> None:
        await self.gate.wait()
        self.received.append(json.loads(text))

    async def receive(self) -> dict:
        await self.gone.wait()
        return {"type": "websocket.disconnect"}


def test_a_stalled_page_holds_up_no_other_and_gets_a_snapshot_when_it_drains():
    async def scenario() -> None:
        hub = Hub(DashboardSettings(["tcp://a:1"], [None]))
        stalled, healthy = Browser(stalled=True), Browser(stalled=False)
        pages = [asyncio.create_task(hub.websocket(browser)) for browser in (stalled, healthy)]
        await asyncio.sleep(0.05)
        count = PAGE_BACKLOG + 100
        for seq in range(1, count + 1):
            hub._deliver("tcp://a:1", _risk(seq, seq * 0.5, 0.1))
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        assert [m["message"]["seq"] for m in healthy.received[1:]] == list(range(1, count + 1))
        assert stalled.received == [] and all(len(page.pending) <= PAGE_BACKLOG for page in hub.pages)
        stalled.gate.set()  # it drains: the state it missed comes whole, not hundreds of stale messages
        await asyncio.sleep(0.05)
        assert [m["type"] for m in stalled.received] == ["state", "state"]
        assert stalled.received[1]["state"]["cameras"]["front"]["risk"]["seq"] == count
        stalled.gone.set()  # a closed page is forgotten
        await asyncio.sleep(0.05)
        assert len(hub.pages) == 1
        healthy.gone.set()
        await asyncio.gather(*pages)
        assert not hub.pages

    asyncio.run(scenario())


def test_event_clips_are_served_from_the_events_folder_only_and_transcoded_once(tmp_path):
    for name in ("../etc", "a/b", ".hidden", "x..y", ""):
        with pytest.raises(ClipError):
            EventClip.find(tmp_path, name)
    with pytest.raises(ClipError, match="not in"):
        EventClip.find(tmp_path, "front-alert0001.mp4")

    write_video(tmp_path / "front-alert0001.mp4", 30, fps=10)
    clip = EventClip.find(tmp_path, "front-alert0001.mp4")
    with pytest.raises(ClipError, match="still writing"):
        clip.ensure_browser_copy()
    clip.sidecar.write_text("{}")
    copy = clip.ensure_browser_copy()
    assert copy.suffix == ".webm" and probe_clip(copy).duration == pytest.approx(3.0)
    made = copy.stat().st_mtime_ns
    assert clip.ensure_browser_copy().stat().st_mtime_ns == made

    folder = tmp_path / "front-20260101T000000-alert0002"  # an event of a recording: its segments in order
    write_video(folder / "s1.mp4", 20, fps=10, size=(640, 360))
    write_video(folder / "s2.mp4", 40, fps=20, size=(640, 360))
    locked = LockedEvent("front", "run", {"alert_id": 2}, 0.0, 2.0, segments=[{"name": "s1.mp4"}, {"name": "s2.mp4"}])
    (folder / SIDECAR).write_text(json.dumps(locked.to_json()))  # as the event locker writes it
    event = EventClip.find(tmp_path, folder.name)
    assert not event.complete()
    locked.state = EventState.COMPLETE
    (folder / SIDECAR).write_text(json.dumps(locked.to_json()))
    info = probe_clip(event.ensure_browser_copy())
    assert event.browser_copy == folder / BROWSER_COPY
    assert info.duration == pytest.approx(4.0) and (info.width, info.height) == (480, 270)
    assert not list(tmp_path.rglob(".*partial*"))
