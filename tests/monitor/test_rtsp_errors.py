"""A stream that will not open says why, in one line, without the password: GStreamer's RTSP server asking for
a user and password, a wrong password, a wrong path, a refused port and a host that does not exist. Where
retrying soon cannot help (the password, the path, the host), the retries wait the longest."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from crashwatch.bench.process import free_port
from crashwatch.bench.rtsp import RtspServer, rtsp_server_available
from crashwatch.monitor.pipeline.buffer import FrameBuffer
from crashwatch.monitor.pipeline.source import Capture, parse_source
from tests.support.timing import within

PASSWORD = "s3cret-pw"


def _capture(url: str, seconds: float) -> Capture:
    """A capture of ``url`` run until it has said something or ``seconds`` passed."""
    stop = threading.Event()
    capture = Capture(parse_source(url), FrameBuffer(10.0), stop, backoff_initial=0.5, backoff_max=10.0)
    capture.start()
    deadline = time.monotonic() + within(seconds)
    while time.monotonic() < deadline and capture.stats.last_error is None and capture.stats.frames == 0:
        time.sleep(0.05)
    stop.set()
    capture.join(within(15))
    return capture


def test_a_stream_that_will_not_open_says_why_in_one_line_without_the_password(caplog):
    if not rtsp_server_available():
        pytest.skip("GStreamer's RTSP server (python3-gi, gir1.2-gst-rtsp-server-1.0) is not installed")
    server = RtspServer("test", credentials=f"cam:{PASSWORD}").start()
    port = server.port
    cases = {  # url -> (what is said, whether the retries wait the longest)
        f"rtsp://cam:not-{PASSWORD}@127.0.0.1:{port}/live": ("wrong user or password", True),
        f"rtsp://127.0.0.1:{port}/live": ("the camera wants a user and password", True),
        f"rtsp://cam:{PASSWORD}@127.0.0.1:{port}/nope": ("no such stream (/nope)", True),
        f"rtsp://cam:{PASSWORD}@127.0.0.1:{free_port()}/live": ("connection refused", False),
        f"rtsp://cam:{PASSWORD}@no-such-host.invalid/live": ("host not found (no-such-host.invalid)", True),
    }
    try:
        with caplog.at_level(logging.WARNING):
            for url, (reason, longest) in cases.items():
                capture = _capture(url, 20)
                said = capture.stats.last_error or ""
                assert reason in said and PASSWORD not in said, (url, said)
                assert capture.stats.backoff_s == (10.0 if longest else 0.5), (url, capture.stats.backoff_s)
            right = _capture(f"rtsp://cam:{PASSWORD}@127.0.0.1:{port}/live", 30)
            assert right.stats.frames > 0 and right.stats.outages == 0  # the right password streams
    finally:
        server.kill()
    lines = [r.getMessage() for r in caplog.records if "cannot open" in r.getMessage()]
    assert len(lines) == len(cases)  # one line each
    assert not any(PASSWORD in line for line in caplog.messages)
