"""A live stream whose server sends a burst on connection (the seconds it buffered, at once, then the rest in
real time, as cameras and RTSP relays do): the frames' stream times, the windows built on them and the recorded
segments follow the stream's own clock, not the arrival of its packets. The server is real (HTTP on loopback,
MPEG-TS written with FFmpeg's muxer, each frame's index painted into it)."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from pathlib import Path

import av

from crashwatch.monitor.evidence.ring import LoopRecorder
from crashwatch.monitor.evidence.segments import KeepPolicy
from crashwatch.monitor.pipeline.buffer import FrameBuffer
from crashwatch.monitor.pipeline.source import Capture, parse_source
from tests.support.media import draw_frame, frame_index
from tests.support.timing import within

FPS = 10
BURST_S = 3.0
SECONDS = 8


def _stream() -> tuple[bytes, list[tuple[float, int]]]:
    """An H.264 MPEG-TS of ``SECONDS`` and, per frame, (its stream time, the bytes that carry it)."""
    out = io.BytesIO()
    ends = []
    with av.open(out, "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"preset": "ultrafast", "tune": "zerolatency"})
        stream.width, stream.height, stream.pix_fmt = 256, 128, "yuv420p"
        for i in range(SECONDS * FPS):
            frame = av.VideoFrame.from_ndarray(draw_frame(i, SECONDS * FPS, (256, 128)), format="bgr24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
            ends.append((i / FPS, out.tell()))
    return out.getvalue(), ends


class BurstServer(threading.Thread):
    """Serves the stream over HTTP to one client: ``BURST_S`` of it at once, the rest at the stream's pace."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.data, self.ends = _stream()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/live.ts"

    def run(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            connection.recv(4096)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nConnection: close\r\n\r\n")
            start, sent = time.monotonic(), 0
            for t, end in self.ends:
                time.sleep(max(0.0, start + t - BURST_S - time.monotonic()))
                try:
                    connection.sendall(self.data[sent:end])
                except OSError:
                    return
                sent = end
            connection.sendall(self.data[sent:])


def test_frames_and_recordings_follow_the_stream_clock_through_a_burst_on_connection(tmp_path: Path):
    server = BurstServer()
    server.start()
    stop = threading.Event()
    recorder = LoopRecorder(tmp_path / "rec", "cab", KeepPolicy(max_bytes=2**30), segment_seconds=2.0)
    frames = []
    capture = Capture(parse_source(server.url), FrameBuffer(30.0), stop, on_frame=[frames.append, recorder.feed])
    capture.start()
    deadline = time.monotonic() + within(30)
    while time.monotonic() < deadline and len(frames) < SECONDS * FPS - 5:
        time.sleep(0.05)
    stop.set()
    capture.join(within(10))
    recorder.close()
    assert len(frames) >= SECONDS * FPS - 5, len(frames)

    index = [frame_index(f.image) for f in frames]
    assert index == list(range(index[0], index[0] + len(index)))  # every frame, in order
    burst = [f for f, i in zip(frames, index) if i / FPS < BURST_S - 0.5]
    assert burst[-1].wall - burst[0].wall < 0.5  # the burst did arrive at once ...
    spacing = [b.t - a.t for a, b in zip(frames, frames[1:])]
    assert all(abs(s - 1 / FPS) < 1 / FPS for s in spacing), spacing  # ... yet is spaced as the stream was
    assert abs((frames[-1].t - frames[0].t) - (index[-1] - index[0]) / FPS) < 1 / FPS

    # The recording: each segment holds the stream time it says, its frames at their stream times.
    segments = [json.loads(p.read_text()) for p in sorted((tmp_path / "rec" / "cab").glob("*.json"))]
    assert segments
    for segment in segments:
        first = segment["frames"][0]
        for frame in segment["frames"]:
            assert abs((frame["t"] - first["t"]) - frame["clip_t"]) < 1 / FPS
        with av.open(str(tmp_path / "rec" / "cab" / segment["name"])) as video:
            played = float(video.duration / av.time_base)
        held = segment["frames"][-1]["t"] - first["t"] + 1 / segment["fps"]
        assert abs(played - held) < 1.5 / FPS, (segment["name"], played, held)
    burst_segment = segments[0]
    assert burst_segment["frames"][-1]["t"] - burst_segment["frames"][0]["t"] > 1.0  # not squeezed to the burst
