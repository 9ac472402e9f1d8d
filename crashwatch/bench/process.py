"""The monitor as a process: capture-to-subscriber latency, lag, peak memory and wall time of a real
``crashwatch monitor`` run on a replayed clip."""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import zmq

from crashwatch.monitor.messages import Risk, Status
from crashwatch.monitor.transports.subscribe import Subscriber

REPO = Path(__file__).resolve().parents[2]  # configs/ and the working folder of the monitor processes


def free_port() -> int:
    """A loopback TCP port nobody holds now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_endpoint() -> str:
    """A tcp:// endpoint on a loopback port nobody holds now."""
    return f"tcp://127.0.0.1:{free_port()}"


def spawn_monitor(options: list[str]) -> subprocess.Popen:
    """``crashwatch -q monitor OPTIONS`` as a process that prints its peak resident memory last on stderr."""
    # VmHWM, not getrusage's ru_maxrss: Linux carries the parent's high-water mark into the child across
    # fork and exec, and this process may have held gigabytes of PyTorch models by then.
    script = ("import runpy, sys\ntry:\n    runpy.run_module('crashwatch', run_name='__main__')\nexcept SystemExit:\n    pass\n"
              "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
              "print('MAXRSS', hwm.split()[1], file=sys.stderr)\n")
    args = ["crashwatch", "-q", "monitor", *options]
    return subprocess.Popen([sys.executable, "-c", f"import sys; sys.argv = {args!r}\n" + script], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def peak_rss_mb(stderr: str) -> float:
    """The peak resident memory a ``spawn_monitor`` process printed."""
    return next((int(line.split()[1]) for line in stderr.splitlines() if line.startswith("MAXRSS")), 0) / 1024


def monitor_process(bundle: Path, clip: Path, replay: str, seconds: float | None = None,
                    stalled_subscriber: bool = False, runtime: str = "onnxruntime") -> dict[str, Any]:
    """Run ``crashwatch monitor`` on ``clip``; a subscriber here takes every risk message (and, if asked, a
    second one connects and never reads). Returns latency (capture -> received) percentiles, lag from status,
    the effective stride and the windows that encoded more frames than were new, the runtime status named,
    the process's peak resident memory and its wall time."""
    endpoint = free_endpoint()
    subscriber = Subscriber(endpoint)
    stalled = None
    if stalled_subscriber:
        stalled = zmq.Context.instance().socket(zmq.SUB)
        stalled.setsockopt(zmq.RCVHWM, 1)
        stalled.setsockopt(zmq.SUBSCRIBE, b"")
        stalled.connect(endpoint)
    process = spawn_monitor(["--bundle", str(bundle), "--source", str(clip), "--replay", replay, "--pub", endpoint,
                             "--runtime", runtime])
    latencies, lags, strides, first, model = [], [], [], None, None
    excess, previous = 0, set()
    started = time.monotonic()
    while process.poll() is None:
        message = subscriber.receive(timeout=0.2)
        body = None if message is None else message.body
        if isinstance(body, Risk):
            latencies.append((time.time() - body.captured_at) * 1000)
            first = first or {"seq": message.seq, "t": body.t, "partial": body.partial, "latency_ms": latencies[-1]}
            ids = set(body.frame_ids)
            excess += body.frames_encoded > len(ids - previous)
            previous = ids
            if body.effective_stride_s is not None:
                strides.append(body.effective_stride_s)
        elif isinstance(body, Status):
            model = body.model
            if body.lag_s is not None:
                lags.append((time.monotonic() - started, body.lag_s))
        if seconds is not None and time.monotonic() - started > seconds:
            process.terminate()
    _, err = process.communicate(timeout=30)
    wall = time.monotonic() - started
    subscriber.close()
    if stalled is not None:
        stalled.close(0)
    result = {"peak_rss_mb": peak_rss_mb(err), "messages": len(latencies), "wall_s": wall, "first_risk": first,
              "model": model, "excess_encodes": excess,
              "effective_stride_s": statistics.median(strides) if strides else None}
    if latencies:
        result["latency_ms"] = {"p50": float(np.percentile(latencies, 50)), "p99": float(np.percentile(latencies, 99))}
    if lags:
        tenth = max(len(lags) // 10, 1)
        first, last = [lag for _, lag in lags[:tenth]], [lag for _, lag in lags[-tenth:]]
        result["lag_s"] = {"p99": float(np.percentile([lag for _, lag in lags], 99)),
                           "first_tenth": statistics.median(first), "last_tenth": statistics.median(last),
                           "first_tenth_p99": float(np.percentile(first, 99)),
                           "last_tenth_p99": float(np.percentile(last, 99))}
    return result


def write_moving_clip(folder: Path, seconds: float, fps: int = 30) -> Path:
    """A 640x360 clip at ``fps`` with moving content, written for the latency and lag runs."""
    path = folder / f"replay_{int(seconds)}s.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (640, 360))
    for i in range(int(seconds * fps)):
        frame = np.full((360, 640, 3), 90, np.uint8)
        x = (i * 7) % 600
        cv2.rectangle(frame, (x, 150), (x + 40, 200), (30, 30, 220), -1)
        writer.write(frame)
    writer.release()
    return path
