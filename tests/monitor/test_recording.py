"""Loop recording and event lock: real video files written and read
back, a real monitor process killed with SIGKILL, a real subscriber taking the alert."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from crashwatch.bench.process import free_port
from crashwatch.cli import main
from crashwatch.contract.video import probe_clip, read_frames
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.evidence.lock import SIDECAR
from crashwatch.monitor.evidence.segments import KeepPolicy, read_index
from crashwatch.monitor.pipeline.camera import Monitor
from crashwatch.monitor.pipeline.options import MonitorOptions, OptionsError
from crashwatch.monitor.pipeline.source import parse_source
from crashwatch.monitor.transports.zeromq import Publisher
from tests.support.collector import Collector
from tests.support.media import frame_index, write_video
from tests.support.shared import REPO


def _monitor(bundle: Path, clip: Path, tmp_path: Path, **options) -> Monitor:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    return Monitor(RiskModel.open(bundle), MonitorOptions(source=parse_source(str(clip)), replay="fast", camera="front",
                                                     **options),
                   lambda status: Publisher(endpoint, "front", status=status))


def _segments(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def _assert_plays_at_stream_speed(video: Path, segment: dict) -> None:
    """The file's duration is the stream time its frames cover, within one frame; each frame at its time."""
    fps, frames = segment["fps"], segment["frames"]
    info = probe_clip(video)
    covered = frames[-1]["t"] - frames[0]["t"] + 1 / fps
    assert info.fps == pytest.approx(fps, rel=1e-3)
    assert abs(info.duration - covered) <= 1 / fps + 1e-6, (video, info.duration, covered)
    for frame in frames:
        assert abs(frame["clip_t"] - (frame["t"] - frames[0]["t"])) <= 0.5 / fps + 1e-6


@pytest.mark.parametrize("fps", [30.0, 8.0])
def test_segments_play_at_the_streams_speed_and_hold_every_frame(tiny_bundle, tmp_path, fps):
    clip = write_video(tmp_path / "src.mp4", int(9 * fps), fps=fps)
    _monitor(tiny_bundle, clip, tmp_path, record_dir=tmp_path / "rec").run()
    ring = tmp_path / "rec" / "front"
    segments = _segments(ring)
    assert len(segments) >= 4
    ids = []
    for segment in segments:
        video = ring / segment["name"]
        _assert_plays_at_stream_speed(video, segment)
        assert segment["frames"][-1]["t"] - segment["frames"][0]["t"] < 2.0
        decoded = read_frames(video, [0, len(segment["frames"]) - 1])  # the file holds the frames it says
        assert [frame_index(f) for f in decoded] == [segment["frames"][0]["id"] % 256, segment["frames"][-1]["id"] % 256]
        ids += [f["id"] for f in segment["frames"]]
    assert ids == list(range(int(9 * fps)))  # every captured frame, once, in order
    index = read_index(ring)
    assert [line["name"] for line in index] == [s["name"] for s in segments]
    assert all(line["wall_end"] >= line["wall_start"] for line in index)


def test_an_alert_locks_its_window_and_post_roll_into_the_event_folder(tiny_bundle, tmp_path):
    clip = write_video(tmp_path / "src.mp4", 120, fps=10)
    monitor = _monitor(tiny_bundle, clip, tmp_path, record_dir=tmp_path / "rec", events_dir=tmp_path / "events",
                       event_post_seconds=2.0, alert_on=0.0, alert_off=0.0, alert_min_on_seconds=4.0, alert_min_off_seconds=0.0)
    monitor.run()
    start = next(a for a in monitor.alerts if a.event.value == "start")
    folder = Path(start.clip)
    event = json.loads((folder / SIDECAR).read_text())
    assert folder.parent == tmp_path / "events" and event["alert"]["alert_id"] == start.alert_id
    assert event["state"] in ("complete", "stopped")
    times = [f["t"] for s in event["segments"] for f in s["frames"]]
    assert times[0] <= event["window_start"] + 1e-6 and times[-1] >= event["window_end"] - 1e-6
    assert times == sorted(times) and len(set(times)) == len(times)  # contiguous, in order, no frame twice
    for segment in event["segments"]:
        _assert_plays_at_stream_speed(folder / segment["name"], segment)
    assert monitor.status().events["locked"] == 1
    # Its risk chart: every stride's probability as published, from its window to the end of its post-roll.
    published = {round(r.t, 6): round(r.probability, 6) for r in monitor.risks}
    risks = event["risks"]
    assert risks[0][0] >= event["window_start"] - 1e-6 and risks[0][0] <= start.t <= risks[-1][0]
    assert all(published[round(t, 6)] == p for t, p in risks)
    assert [round(t, 6) for t, _ in risks] == [t for t in sorted(published)
                                               if risks[0][0] - 1e-6 <= t <= risks[-1][0] + 1e-6]


def test_the_ring_stays_within_record_keep_and_never_loses_a_locked_segment(tiny_bundle, tmp_path):
    clip = write_video(tmp_path / "src.mp4", 300, fps=10)  # 30 s: 15 segments of 2 s
    probe = tmp_path / "probe"
    _monitor(tiny_bundle, write_video(tmp_path / "p.mp4", 20, fps=10), tmp_path, record_dir=probe).run()
    per_segment = max(s["bytes"] for s in _segments(probe / "front"))
    keep = KeepPolicy(max_bytes=3 * per_segment + per_segment // 2)
    monitor = _monitor(tiny_bundle, clip, tmp_path, record_dir=tmp_path / "rec", record_keep=keep,
                       alert_on=0.0, alert_off=0.0, alert_min_on_seconds=6.0, alert_min_off_seconds=0.0)
    ring = tmp_path / "rec" / "front"
    peak, done = [0], threading.Event()

    def watch() -> None:  # the closed segments on disk, sampled all through the run
        while not done.is_set():
            peak[0] = max(peak[0], sum((ring / s["name"]).stat().st_size for s in _segments_safe(ring)))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        monitor.run()
    finally:
        done.set()
        watcher.join()
    assert monitor.evidence.recorder.deleted >= 6
    assert 0 < peak[0] <= keep.max_bytes
    # The alert lasted from 6 s to the end: the event holds every segment of it, the ring only the last few.
    sidecar = next((tmp_path / "rec" / "events").glob(f"*/{SIDECAR}"))
    event = json.loads(sidecar.read_text())
    numbers = [s["number"] for s in event["segments"]]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))) and len(numbers) >= 10
    for segment in event["segments"]:
        _assert_plays_at_stream_speed(sidecar.parent / segment["name"], segment)


def _segments_safe(ring: Path) -> list[dict]:
    """The segments whose sidecar and video both exist at this instant (the ring deletes as we look)."""
    found = []
    for path in list(ring.glob("*.json")):
        try:
            segment = json.loads(path.read_text())
            if (ring / segment["name"]).is_file():
                found.append(segment)
        except (OSError, ValueError):
            continue
    return found


@pytest.mark.parametrize("keeping, ring", [("--record", "rec/front"), ("--events", "rec/.ring/front")],
                         ids=["record", "events alone"])
def test_sigkill_after_an_alert_leaves_its_evidence_and_a_restart_finishes_it(tiny_bundle, tmp_path, keeping, ring):
    """With --record, and with --events alone (its own ring, the default), the window is on disk when the start
    is published: a monitor killed half a second later leaves it, and the next run finishes the event."""
    clip = write_video(tmp_path / "long.mp4", 400, fps=20)  # 20 s, replayed in real time
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "crashwatch", "monitor", "--bundle", str(tiny_bundle), "--source", str(clip),
               "--pub", endpoint, keeping, str(tmp_path / "rec"), "--camera", "front",
               "--alert-on", "0", "--alert-min-on", "4"]
    collector = Collector(endpoint, ("alert",))
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert collector.wait_for(lambda c: c.of("alert"), 30), "no alert started"
        time.sleep(0.5)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        process.kill()
        collector.stop()
    start = collector.of("alert")[0]
    assert start["event"] == "start"
    folder = Path(start["clip"])
    event = json.loads((folder / SIDECAR).read_text())
    assert event["state"] == "recording"  # the dead run could not finish it
    times = [f["t"] for s in event["segments"] for f in s["frames"]]
    assert times and times[0] <= event["window_start"] + 1e-6 and times[-1] >= event["window_end"] - 1e-6
    for segment in event["segments"]:
        _assert_plays_at_stream_speed(folder / segment["name"], segment)
    unfinished = [p for p in (tmp_path / ring).glob("*.mp4") if not p.with_suffix(".json").exists()]

    restart = subprocess.run(command[:command.index("--pub")] + ["--pub", endpoint, keeping, str(tmp_path / "rec"),
                                                                 "--camera", "front", "--replay", "fast"],
                             cwd=REPO, capture_output=True, text=True, timeout=120)
    assert restart.returncode == 0, restart.stderr
    event = json.loads((folder / SIDECAR).read_text())
    assert event["state"] == "interrupted"
    assert f"event {folder.name} was interrupted" in restart.stderr
    assert all(not p.exists() for p in unfinished)  # the segment open at the kill is gone, and said so
    if unfinished:
        assert "the segment being written when the monitor stopped" in restart.stderr


def test_record_options_are_checked(tiny_bundle, tmp_path):
    clip = write_video(tmp_path / "c.mp4", 20)
    for keep in ("lots", "0GB", "5GB,6TB", "-1h"):
        result = CliRunner().invoke(main, ["monitor", "--source", str(clip), "--record", str(tmp_path / "r"),
                                           "--record-keep", keep])
        assert result.exit_code == 2 and "Invalid value for '--record-keep'" in result.output, result.output
    assert KeepPolicy.parse("2GB,1h") == KeepPolicy(max_bytes=2 * 10**9, max_age_s=3600.0)
    assert KeepPolicy.parse("30min") == KeepPolicy(max_age_s=1800.0)
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(OptionsError, match="--record: .* is a file, not a folder"):
        _monitor(tiny_bundle, clip, tmp_path, record_dir=blocked)
    result = CliRunner().invoke(main, ["monitor", "--bundle", str(tiny_bundle), "--source", str(clip),
                                       "--record", str(blocked), "--pub", f"tcp://127.0.0.1:{free_port()}"])
    assert result.exit_code == 2 and "Invalid value for '--record'" in result.output, result.output
    for wrong in (["--record", str(tmp_path / "r")], []):  # memory or disk is a choice only --events alone has
        result = CliRunner().invoke(main, ["monitor", "--source", str(clip), *wrong, "--events-hold", "memory"])
        assert result.exit_code == 2 and "--events-hold: is for --events without --record" in result.output, \
            result.output


def test_a_live_rtsp_stream_is_recorded_at_its_own_timing_across_an_outage(tiny_bundle, rtsp_camera, tmp_path):
    stop = threading.Event()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    monitor = Monitor(RiskModel.open(tiny_bundle), MonitorOptions(source=parse_source(rtsp_camera.url), camera="front",
                                                             record_dir=tmp_path / "rec", record_segment_seconds=1.0),
                      lambda status: Publisher(endpoint, "front", status=status), stop=stop)
    thread = threading.Thread(target=monitor.run)
    thread.start()
    ring = tmp_path / "rec" / "front"
    try:
        deadline = time.monotonic() + 30
        while len(list(ring.glob("*.json"))) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        rtsp_camera.kill()  # an outage: the segment ends with the last frame before it
        time.sleep(3)
        rtsp_camera.start()
        while len(list(ring.glob("*.json"))) < 8 and time.monotonic() < deadline + 30:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=10)
    segments = _segments(ring)
    assert len(segments) >= 4
    # A live stream's frames are timed by their arrival: right after a connection the server's buffer comes
    # in a burst, and as it goes away the last frames bunch up; there each frame is shown once. In between,
    # segments play at the stream's speed.
    starts = [segments[0]["frames"][0]["t"]] + [b["frames"][0]["t"] for a, b in zip(segments, segments[1:])
                                                 if b["frames"][0]["t"] - a["frames"][-1]["t"] > 2.0]
    ends = [a["frames"][-1]["t"] for a, b in zip(segments, segments[1:])
            if b["frames"][0]["t"] - a["frames"][-1]["t"] > 2.0] + [segments[-1]["frames"][-1]["t"]]
    steady = 0
    for segment in segments:
        times = [f["t"] for f in segment["frames"]]
        assert segment["fps"] == pytest.approx(30.0, rel=0.01)  # the stream's declared rate, not arrival jitter
        assert max(b - a for a, b in zip(times, times[1:])) < 1.0  # the outage lies between segments, not in one
        assert probe_clip(ring / segment["name"]).num_frames >= len(times)  # every frame, once at least
        if all(times[0] - start >= 1.0 for start in starts if start <= times[0]) and \
                all(end - times[-1] >= 0.5 for end in ends if end >= times[-1]):
            steady += 1
            _assert_plays_at_stream_speed(ring / segment["name"], segment)
    assert steady >= 1, [(round(s["frames"][0]["t"], 2), round(s["frames"][-1]["t"], 2)) for s in segments]
    gaps = [b["frames"][0]["t"] - a["frames"][-1]["t"] for a, b in zip(segments, segments[1:])]
    assert max(gaps) > 2.0  # the outage
    assert monitor.evidence.recorder.stats()["frames_dropped"] == 0
