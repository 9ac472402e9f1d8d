"""A real RTSP camera on loopback (GStreamer's RTSP server, ``rtsp_server.py``), and what an outage of it
costs the monitor: the time from the camera coming back to the first risk message after it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from crashwatch.bench.process import REPO, free_endpoint, free_port
from crashwatch.monitor.messages import Risk, Status
from crashwatch.monitor.transports.subscribe import Subscriber

# Debian's Python sees the `gi` bindings GStreamer's RTSP server needs; a venv's does not.
GST_PYTHON = Path("/usr/bin/python3")
SERVER = Path(__file__).with_name("rtsp_server.py")


def rtsp_server_available() -> bool:
    """Whether GStreamer's RTSP server can run here (Debian: python3-gi, gir1.2-gst-rtsp-server-1.0)."""
    if not GST_PYTHON.is_file():
        return False
    probe = subprocess.run([str(GST_PYTHON), "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"],
                           capture_output=True)
    return probe.returncode == 0


class RtspServer:
    """Serves ``source`` (an H.264 MP4 file, or ``test`` for a live test pattern) at ``url`` until killed, to
    ``credentials`` (``USER:PASSWORD``) alone where given; ``start`` again serves it anew on the same port."""

    def __init__(self, source: str | Path, port: int | None = None, credentials: str | None = None) -> None:
        self.source = str(source)
        self.port = port or free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/live"
        self.credentials = credentials
        self._process: subprocess.Popen | None = None

    def start(self) -> "RtspServer":
        self._process = subprocess.Popen([str(GST_PYTHON), str(SERVER), self.source, str(self.port),
                                          *([self.credentials] if self.credentials else [])],
                                         stdout=subprocess.PIPE, text=True)
        if self._process.stdout.readline().strip() != "ready":
            self.kill()
            raise RuntimeError(f"the RTSP server on port {self.port} did not start")
        return self

    def pause(self, paused: bool = True) -> None:
        """Freeze the server (SIGSTOP: connections stay open, nothing is sent) or let it go on (SIGCONT)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


def reconnect_after_outage(bundle: Path, outage_s: float = 8.0, timeout_s: float = 60.0) -> dict[str, Any]:
    """Run ``crashwatch monitor`` on a live RTSP test pattern, stop the camera for ``outage_s`` and start it
    again; returns how long after its return the first risk message came, the outage as ``status`` counted
    it, and the strides it counted as skipped meanwhile."""
    server = RtspServer("test").start()
    endpoint = free_endpoint()
    subscriber = Subscriber(endpoint)
    monitor = subprocess.Popen([sys.executable, "-m", "crashwatch", "-q", "monitor", "--bundle", str(bundle),
                                "--source", server.url, "--pub", endpoint], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def wait_for(condition, seconds: float) -> Any:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                message = subscriber.receive(timeout=0.1)
                if message is not None and condition(message.body):
                    return message.body
            raise RuntimeError("the monitor did not get there in time")

        wait_for(lambda b: isinstance(b, Risk), timeout_s)
        server.kill()
        before = wait_for(lambda b: isinstance(b, Status) and b.source["state"] == "reconnecting", timeout_s)
        time.sleep(outage_s)
        server.start()
        returned = time.monotonic()
        wait_for(lambda b: isinstance(b, Risk), timeout_s)
        back_after = time.monotonic() - returned
        after = wait_for(lambda b: isinstance(b, Status) and b.source["state"] == "online", timeout_s)
    finally:
        monitor.terminate()
        monitor.wait(10)
        server.kill()
        subscriber.close()
    return {"outage_s": outage_s, "back_after_s": back_after,
            "outages_total_s": after.source["outages_total_s"],
            "strides_skipped": after.strides_skipped - before.strides_skipped}
