"""A full disk never stops the warnings: a 1 MiB tmpfs (mounted by the test, as root) as the recording folder,
full before the start, filled during a run with an alert in progress, then freed. The monitor, the recorder,
the event lock and the files are the real ones; only the disk is small."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.evidence.lock import SIDECAR, EventLocker
from crashwatch.monitor.evidence.ring import RETRY_S, LoopRecorder
from crashwatch.monitor.evidence.segments import KeepPolicy
from crashwatch.monitor.frame import Frame
from crashwatch.monitor.messages import Alert, AlertEvent, CollectingOutlet, Risk
from crashwatch.monitor.pipeline.camera import Monitor
from crashwatch.monitor.pipeline.options import MonitorOptions
from crashwatch.monitor.pipeline.source import parse_source
from tests.support.media import draw_frame, write_video
from tests.support.timing import within


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "sd"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (the full-disk tests need root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(folder: Path) -> Path:
    """Fill the disk ``folder`` lies on to the last byte; the filler file, to delete to free it."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for chunk in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as err:
                assert err.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_a_disk_full_at_start_costs_the_recording_only_and_recording_resumes_once_freed(tiny_bundle, small_disk,
                                                                                        tmp_path):
    filler = _fill(small_disk)
    clip = write_video(tmp_path / "drive.mp4", 40, fps=10)
    outlet = CollectingOutlet()
    stop = threading.Event()
    monitor = Monitor(RiskModel.open(tiny_bundle), MonitorOptions(
        source=parse_source(str(clip)), camera="front", loop=True, record_dir=small_disk / "rec",
        record_segment_seconds=0.5, record_min_free=0, alert_on=0.0), lambda status: outlet, stop)
    runner = threading.Thread(target=monitor.run, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + within(30)
        while not any(isinstance(b, Risk) for b in outlet.bodies) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(isinstance(b, Risk) for b in outlet.bodies), "no risk while the recording disk was full"
        recording = monitor.status().recording
        assert recording["state"] == "unavailable"
        assert recording["last_error"] == f"no space left on {small_disk}"
        assert any(isinstance(b, Alert) and b.event is AlertEvent.START for b in outlet.bodies)  # published all the same

        filler.unlink()
        deadline = time.monotonic() + within(RETRY_S + 10)
        while monitor.status().recording["segments"] < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        recording = monitor.status().recording
        assert recording["state"] == "recording" and recording["segments"] >= 2, recording
        assert recording["last_error"] is None and recording["frames_unrecorded"] > 0
    finally:
        stop.set()
        runner.join(30)


def _frames(start: int, end: int, fps: float = 10.0):
    return [Frame(k, k / fps, time.time(), draw_frame(k, 1000)) for k in range(start, end)]


def test_a_disk_filled_under_an_alert_marks_its_event_incomplete_and_evicts_the_ring_to_its_floor(small_disk):
    recorder = LoopRecorder(small_disk / "rec", "front", KeepPolicy(max_bytes=10**9), "mp4v", segment_seconds=0.5,
                            lossless=True, min_free=200_000)
    locker = EventLocker(small_disk / "events", "front", recorder, post_seconds=1.0)
    alert = Alert(event=AlertEvent.START, alert_id=1, start=2.0, t=2.0, probability=0.9, peak=0.9, peak_at=2.0,
                  threshold=0.5)
    for frame in _frames(0, 20):  # 0 to 1.9 s recorded
        recorder.feed(frame)
    path = locker.path_for(alert)
    locker.start(alert, path, 0.0, 2.0)
    time.sleep(0.5)  # the recorder's thread locks the window
    filler = _fill(small_disk)
    for frame in _frames(20, 40):  # 2 to 3.9 s: nothing can be written
        recorder.feed(frame)
    locker.end(Alert(event=AlertEvent.END, alert_id=1, start=2.0, t=3.0, probability=0.1, peak=0.9, peak_at=2.0,
                     threshold=0.5, duration=1.0, reason="risk subsided"))  # its post-roll ends at 4.0 s
    for frame in _frames(40, 45):
        recorder.feed(frame)
    deadline = time.monotonic() + within(10)
    while locker.stats()["incomplete"] == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    filler.unlink()
    time.sleep(RETRY_S)  # the folder is tried again this long after it failed
    for frame in _frames(45, 70):  # freed: recorded again
        recorder.feed(frame)
    recorder.close()
    locker.close()

    event = json.loads((path / SIDECAR).read_text())
    assert event["state"] == "incomplete", event["state"]
    assert event["missing"] and all(m["why"] == f"no space left on {small_disk}" for m in event["missing"])
    assert 2.0 <= min(m["from"] for m in event["missing"]) and max(m["to"] for m in event["missing"]) >= 4.0 - 0.1
    assert event["segments"] and event["segments"][0]["frames"][0]["t"] == 0.0  # the window before, kept
    stats = locker.stats()
    assert stats["incomplete"] == 1 and stats["complete"] == 0
    assert recorder.failed >= 1 and recorder.deleted >= 1  # segments lost, and the ring evicted to its floor
    assert max(s.t_end for s in recorder.segments) >= 6.5  # recording resumed once freed
