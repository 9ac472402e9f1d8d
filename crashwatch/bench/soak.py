"""The soak test (``crashwatch bench --soak CLIP``): the monitor replaying a looped clip in real time for a
long while, as a separate process, with everything it publishes received here and its resident memory
sampled every 10 s. Reports memory growth, lag over time, latency, and every ``seq`` gap."""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from crashwatch.bench.process import free_endpoint
from crashwatch.monitor.messages import Risk, Status
from crashwatch.monitor.serving.fleet import resident_mb
from crashwatch.monitor.transports.subscribe import Subscriber

SAMPLE_EVERY_S = 10.0


def rss_mb(pid: int) -> float:
    memory = resident_mb(pid)
    return float("nan") if memory is None else memory


def soak(bundle: Path, clip: Path, minutes: float, out: Path | None = None) -> str:
    """Run the soak; returns the report as JSON text (also written to ``out``)."""
    endpoint = free_endpoint()
    subscriber = Subscriber(endpoint)
    monitor = subprocess.Popen([sys.executable, "-m", "crashwatch", "-q", "monitor", "--bundle", str(bundle),
                                "--source", str(clip), "--loop", "--pub", endpoint])
    samples, lags, latencies, counts = [], [], [], {}
    end = time.monotonic() + minutes * 60
    next_sample = time.monotonic()
    try:
        while time.monotonic() < end and monitor.poll() is None:
            message = subscriber.receive(timeout=0.5)
            if message is not None:
                counts[message.topic] = counts.get(message.topic, 0) + 1
                if isinstance(message.body, Status) and message.body.lag_s is not None:
                    lags.append((time.monotonic(), message.body.lag_s))
                if isinstance(message.body, Risk):
                    latencies.append(message.body.latency_ms)
            if time.monotonic() >= next_sample:
                samples.append((time.monotonic(), rss_mb(monitor.pid)))
                next_sample += SAMPLE_EVERY_S
    finally:
        monitor.send_signal(signal.SIGTERM)
        monitor.wait(10)
        subscriber.close()

    warmup = min(60.0, 0.1 * minutes * 60)  # models loaded, buffers and caches full
    steady = [m for t, m in samples if t - samples[0][0] >= warmup] or [m for _, m in samples]
    tenth = max(len(lags) // 10, 1)
    report = {
        "minutes": minutes, "bundle": str(bundle), "clip": str(clip), "messages": counts,
        "seq_gaps": subscriber.gaps, "monitor_exit_code": monitor.returncode,
        "rss_mb": {"first": samples[0][1], "after_warmup": steady[0], "last": samples[-1][1],
                   "max": max(m for _, m in samples)},
        "rss_growth_after_warmup_pct": 100 * (steady[-1] - steady[0]) / steady[0],
        "lag_s": {"first_tenth_median": statistics.median(lag for _, lag in lags[:tenth]),
                  "last_tenth_median": statistics.median(lag for _, lag in lags[-tenth:]),
                  "p99": sorted(lag for _, lag in lags)[int(0.99 * (len(lags) - 1))]} if lags else None,
        "latency_ms": {"p50": statistics.median(latencies),
                       "p99": sorted(latencies)[int(0.99 * (len(latencies) - 1))]} if latencies else None,
    }
    text = json.dumps(report, indent=2)
    if out is not None:
        out.write_text(text + "\n", encoding="utf-8")
    return text
