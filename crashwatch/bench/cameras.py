"""Many cameras: N cameras in one process on one model (``monitor --config``) against N separate monitor
processes on the same replayed clip: strides scored per second, capture-to-subscriber latency, memory. Both
run on the runtime ``auto`` picks here, as a user's monitor would."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from crashwatch.bench.process import free_endpoint, peak_rss_mb, spawn_monitor, write_moving_clip
from crashwatch.bench.report import Table
from crashwatch.monitor.messages import Message, Risk


def _collect(endpoints: list[str], processes: list, seconds: float) -> list[tuple[float, str, Risk]]:
    """Every risk message of ``processes`` (publishing on ``endpoints``) for ``seconds``, then stop them."""
    socket = zmq.Context.instance().socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, b"risk")
    for endpoint in endpoints:
        socket.connect(endpoint)
    risks: list[tuple[float, str, Risk]] = []
    started = time.monotonic()
    while time.monotonic() - started < seconds and any(p.poll() is None for p in processes):
        if socket.poll(200):
            topic, payload = socket.recv_multipart()
            message = Message.decode(topic, payload)
            if isinstance(message.body, Risk):
                risks.append((time.time(), message.camera, message.body))
    for process in processes:
        process.terminate()
    socket.close(0)
    return risks


def _figures(risks: list[tuple[float, str, Risk]], memory_mb: float, cameras: int) -> dict[str, Any]:
    """Strides scored per second and latency from the moment every camera has scored one (past the model
    loads), to the end."""
    first: dict[str, float] = {}
    for at, camera, _ in risks:
        first.setdefault(camera, at)
    warm_from = max(first.values()) if len(first) == cameras else None
    warm = [(at, r) for at, _, r in risks if warm_from is not None and at > warm_from]
    latencies = [(at - r.captured_at) * 1000 for at, r in warm]
    span = risks[-1][0] - warm_from if warm and warm_from is not None else 0.0
    return {"cameras": cameras, "scoring": len(first), "strides_per_s": len(warm) / span if span else None,
            "latency_p99_ms": float(np.percentile(latencies, 99)) if latencies else None,
            "memory_mb": memory_mb, "messages": len(risks)}


def one_process(bundle: Path, clip: Path, cameras: int, seconds: float, work: Path) -> dict[str, Any]:
    """``cameras`` cameras replaying ``clip`` in real time in one ``monitor --config`` process."""
    endpoint = free_endpoint()
    config = work / f"cameras-{cameras}.yaml"
    config.write_text(json.dumps({"bundle": str(bundle), "pub": endpoint, "runtime": "auto",
                                  "cameras": [{"name": f"cam{i}", "source": str(clip), "loop": True}
                                              for i in range(cameras)]}))  # JSON is YAML
    process = spawn_monitor(["--config", str(config)])
    risks = _collect([endpoint], [process], seconds)
    _, err = process.communicate(timeout=60)
    return _figures(risks, peak_rss_mb(err), cameras)


def separate_processes(bundle: Path, clip: Path, cameras: int, seconds: float) -> dict[str, Any]:
    """``cameras`` single-camera monitor processes replaying ``clip`` in real time; memory is their sum."""
    endpoints = [free_endpoint() for _ in range(cameras)]
    processes = [spawn_monitor(["--bundle", str(bundle), "--source", str(clip), "--loop", "--pub", endpoint,
                                "--runtime", "auto", "--camera", f"cam{i}"])
                 for i, endpoint in enumerate(endpoints)]
    risks = _collect(endpoints, processes, seconds)
    memory = sum(peak_rss_mb(p.communicate(timeout=60)[1]) for p in processes)
    return _figures(risks, memory, cameras)


def add_camera_rows(table: Table, bundle: Path, counts: tuple[int, ...], seconds: float, work: Path) -> None:
    """One row per camera count: in one process against as many processes, side by side in one run."""
    clip = write_moving_clip(work, 10)
    single = None
    for n in counts:
        together = one_process(bundle, clip, n, seconds, work)
        apart = separate_processes(bundle, clip, n, seconds)
        single = single or together["memory_mb"]
        table.add(f"{bundle.name}: {n} camera(s), one process vs {n} process(es) (30 fps, {seconds:.0f} s)",
                  f"strides/s {_rate(together)} vs {_rate(apart)}; latency p99 "
                  f"{_ms(together['latency_p99_ms'])} vs {_ms(apart['latency_p99_ms'])}; memory "
                  f"{together['memory_mb']:.0f} vs {apart['memory_mb']:.0f} MB",
                  f"one process holds {together['memory_mb'] / single:.2f}x the memory of one camera")


def _rate(figures: dict[str, Any]) -> str:
    if figures["strides_per_s"] is None:
        return f"n/a ({figures['scoring']} of {figures['cameras']} cameras scored a window)"
    return f"{figures['strides_per_s']:.2f}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"
