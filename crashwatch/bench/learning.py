"""The learning loop measured end to end (``make learn-eval``, docs/review.md): a week of fleet driving
replayed through the monitor, every alert reviewed through the dashboard's API by a reviewer who knows the
truth, the verdicts exported, a head learnt and gated, and the shipped model and the learnt one replayed on
unseen drives.

The reviewer confirms an alert in the warning window before a drive's collision, the collision marked in the
event's video, and dismisses any other (reason ``other``: a generated scene has no shadow or tunnel to name).
Every step runs the ``crashwatch`` command as a user would, so the figures are the product's.

    python -m crashwatch.bench.learning --bundle BUNDLE --week DRIVES --unseen DRIVES --holdout DRIVES \
        --data DRIVES --out DIR
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import click

from crashwatch.contract.dataset import read_split
from crashwatch.evaluation.scoring import score_alerts

log = logging.getLogger(__name__)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def review_by_truth(dashboard: str, drives: Path, split: str, reviewer: str = "truth") -> dict[str, int]:
    """Give every listed event its verdict; returns how many were confirmed, dismissed and left (no drive of
    that camera's name)."""
    clips = {clip.video.stem: clip for clip in read_split(drives, split)}
    counts = {"confirmed": 0, "dismissed": 0, "unknown camera": 0}
    page, pages = 1, 1
    while page <= pages:
        listing = _get(f"{dashboard}/api/events?page={page}&per_page=100")
        pages = listing["pages"]
        for event in listing["events"]:
            clip = clips.get(event.get("camera", ""))
            if clip is None:
                counts["unknown camera"] += 1
                continue
            body: dict[str, Any] = {"reviewer": reviewer}
            if score_alerts([event["start"]], clip.info.duration, clip.event_time, clip.label)["warning_s"] is not None:
                sidecar = _get(f"{dashboard}/events/{event['name']}/sidecar")
                frames = sidecar["frames"] if "frames" in sidecar else \
                    [f for segment in sidecar["segments"] for f in segment["frames"]]
                body.update(decision="confirmed", mark_s=round(clip.event_time - frames[0]["t"], 3))
            else:
                body.update(decision="dismissed", reason="other")
            _post(f"{dashboard}/api/events/{event['name']}/review", body)
            counts[body["decision"]] += 1
        page += 1
    return counts


def _crashwatch(*args: str | Path, log_to: Path | None = None) -> str:
    """Run the command as a user would; its output (stdout), or its log written to ``log_to``."""
    command = [sys.executable, "-m", "crashwatch", *map(str, args)]
    if log_to is None:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise click.ClickException(f"{' '.join(command[2:])} failed:\n{done.stderr[-2000:]}")
        return done.stdout
    with log_to.open("w") as handle:
        code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT).returncode
    if code:
        raise click.ClickException(f"{' '.join(command[2:])} failed; see {log_to}")
    return ""


def replay_week(drives: Path, split: str, events: Path, bundle: Path, logs: Path) -> None:
    """Every drive through the monitor (fast replay, its camera named after the drive), evidence kept."""
    logs.mkdir(parents=True, exist_ok=True)
    for number, clip in enumerate(read_split(drives, split), 1):
        _crashwatch("monitor", "--bundle", bundle, "--source", clip.video, "--replay", "fast", "--events", events,
                    "--camera", clip.video.stem, "--pub", f"tcp://127.0.0.1:{_free_port()}",
                    log_to=logs / f"{clip.video.stem}.log")
        log.info("week: %d drives replayed", number)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def review_week(events: Path, drives: Path, split: str) -> dict[str, int]:
    """A dashboard on ``events``, every event reviewed through its API, the dashboard stopped."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    dashboard = subprocess.Popen([sys.executable, "-m", "crashwatch", "dashboard", "--events", str(events),
                                  "--http", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(f"{url}/api/events?per_page=1")
                break
            except OSError:
                if time.monotonic() > deadline or dashboard.poll() is not None:
                    raise click.ClickException(f"the dashboard did not answer at {url}") from None
                time.sleep(0.5)
        return review_by_truth(url, drives, split)
    finally:
        dashboard.terminate()
        dashboard.wait(10)


def _figures(report: Path) -> dict[str, Any]:
    summary = json.loads(report.read_text())["summary"]
    return {key: summary[key] for key in ("alerted_before_collision", "crash_clips_with_event_time",
                                          "median_time_to_accident_s", "false_alerts", "false_alerts_per_hour",
                                          "normal_hours")}


@click.command()
@click.option("--week", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="The drives of the fleet's week (their labels are the reviewer's truth).")
@click.option("--unseen", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Drives of another seed, where both models are compared.")
@click.option("--holdout", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Driving the gate replays (`review learn --holdout`).")
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The bundle's calibration drives, fitted beside the verdicts (`review learn --data`).")
@click.option("--bundle", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="The shipped model: the store's first version.")
@click.option("--split", default="test", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
def main(week: Path, unseen: Path, holdout: Path | None, data: Path | None, bundle: Path, split: str,
         out: Path) -> None:
    """The learning loop on generated drives, each step by the crashwatch command; figures in OUT/learning.json."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    events, verdicts, store = out / "events", out / "verdicts", out / "models"
    if not events.is_dir():
        replay_week(week, split, events, bundle, out / "logs")
    counts = review_week(events, week, split)
    log.info("reviewed: %s", counts)
    _crashwatch("review", "export", events, "--out", verdicts)
    learn = ["review", "learn", verdicts, "--models", store, "--bundle", bundle, "--report", out / "update.json"]
    learn += ["--holdout", holdout, "--holdout-split", split] if holdout else []
    learn += ["--data", data, "--data-split", split] if data else []
    started = time.monotonic()
    click.echo(_crashwatch(*learn), nl=False)
    update_s = time.monotonic() - started
    _crashwatch("replay-eval", "--bundle", bundle, "--data", unseen, "--split", split, "--out", out / "unseen-shipped",
                log_to=out / "unseen-shipped.log")
    _crashwatch("replay-eval", "--bundle", store, "--data", unseen, "--split", split, "--out", out / "unseen-learnt",
                log_to=out / "unseen-learnt.log")
    result = {"reviewed": counts, "update_s": round(update_s, 1),
              "update": json.loads((out / "update.json").read_text()),
              "shipped": _figures(out / "unseen-shipped" / "replay_eval.json"),
              "learnt": _figures(out / "unseen-learnt" / "replay_eval.json")}
    (out / "learning.json").write_text(json.dumps(result, indent=2) + "\n")
    for name in ("shipped", "learnt"):
        f = result[name]
        click.echo(f"unseen drives, {name}: {f['alerted_before_collision']}/{f['crash_clips_with_event_time']} "
                   f"crashes warned, median time-to-accident {f['median_time_to_accident_s']:.2f} s, "
                   f"{f['false_alerts']} false alerts ({f['false_alerts_per_hour']:.2f}/h)")


if __name__ == "__main__":
    main()
