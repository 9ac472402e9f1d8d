"""Soak test: the monitor replaying a looped clip in real time for a long while (default 30 minutes).

Runs `crashwatch monitor --loop` as a separate process, subscribes to everything it publishes, samples its
resident memory every 10 s, and prints a report: memory growth, lag over time, latency, and every `seq` gap.
Not part of `make test`; run it by hand:

    .venv/bin/python benchmarks/soak.py --bundle BUNDLE --clip CLIP.mp4 [--minutes 30] [--out SOAK.json]
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monitor.subscribe import Subscriber  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--clip", required=True)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    subscriber = Subscriber(endpoint)
    monitor = subprocess.Popen([sys.executable, "-m", "crashwatch", "-q", "monitor", "--bundle", args.bundle,
                                "--source", args.clip, "--loop", "--pub", endpoint], cwd=REPO)
    samples, lags, latencies, counts, first_seq = [], [], [], {}, {}
    end = time.monotonic() + args.minutes * 60
    next_sample = time.monotonic()
    try:
        while time.monotonic() < end and monitor.poll() is None:
            item = subscriber.receive(timeout=0.5)
            if item is not None:
                topic, message = item
                counts[topic] = counts.get(topic, 0) + 1
                first_seq.setdefault(topic, message["seq"])
                if topic == "status" and message.get("lag_s") is not None:
                    lags.append((time.monotonic(), message["lag_s"]))
                if topic == "risk":
                    latencies.append(message["latency_ms"])
            if time.monotonic() >= next_sample:
                samples.append((time.monotonic(), rss_mb(monitor.pid)))
                next_sample += 10
    finally:
        monitor.send_signal(signal.SIGTERM)
        monitor.wait(10)
        subscriber.close()

    warmup = min(60.0, 0.1 * args.minutes * 60)  # models loaded, buffers and caches full
    steady = [m for t, m in samples if t - samples[0][0] >= warmup] or [m for _, m in samples]
    tenth = max(len(lags) // 10, 1)
    report = {
        "minutes": args.minutes, "bundle": args.bundle, "clip": args.clip, "messages": counts,
        "seq_gaps": subscriber.gaps, "monitor_exit_code": monitor.returncode,
        "rss_mb": {"first": samples[0][1], "after_warmup": steady[0], "last": samples[-1][1], "max": max(m for _, m in samples)},
        "rss_growth_after_warmup_pct": 100 * (steady[-1] - steady[0]) / steady[0],
        "lag_s": {"first_tenth_median": statistics.median(l for _, l in lags[:tenth]),
                  "last_tenth_median": statistics.median(l for _, l in lags[-tenth:]),
                  "p99": sorted(l for _, l in lags)[int(0.99 * (len(lags) - 1))]},
        "latency_ms": {"p50": statistics.median(latencies), "p99": sorted(latencies)[int(0.99 * (len(latencies) - 1))]},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
