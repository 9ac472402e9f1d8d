"""The monitor end to end with real parts: video files, ZeroMQ sockets, an RTSP server on loopback."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

from crashwatch.bench.process import free_port
from crashwatch.contract.bundle import Manifest
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.frame import Frame
from crashwatch.monitor.messages import CollectingOutlet
from crashwatch.monitor.pipeline.alerts import AlertPolicy, AlertTracker
from crashwatch.monitor.pipeline.camera import Monitor
from crashwatch.monitor.pipeline.options import MonitorOptions
from crashwatch.monitor.pipeline.scorer import WindowScorer
from crashwatch.monitor.pipeline.source import SourceError, parse_source
from crashwatch.monitor.redact import redact_url
from crashwatch.monitor.transports.zeromq import Publisher, PublisherError
from tests.support.collector import Collector
from tests.support.imports import FORBID_TORCH
from tests.support.media import write_video
from tests.support.shared import CLIPS, REPO, need_shared
from tests.support.timing import within


@pytest.fixture
def bundle(tiny_bundle) -> Path:
    return tiny_bundle


def _monitor(bundle: Path, source: str, endpoint: str, **options) -> Monitor:
    options.setdefault("replay", "fast")
    return Monitor(RiskModel.open(bundle), MonitorOptions(source=parse_source(source), **options),
                   lambda status: Publisher(endpoint, options.get("camera", "cam0"), status=status))


def _connected(collector: Collector) -> None:
    """Wait for the first heartbeat: the subscription is live (ZeroMQ's slow joiner)."""
    assert collector.wait_for(lambda c: c.of("status"), 5), "no status heartbeat reached the subscriber"


def _assert_contiguous(messages: list[dict]) -> None:
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs


@pytest.mark.parametrize("name", ["highway_test_small1.mp4", "highway_test_small2.mp4", "dad_000528_mp4v.mp4",
                                  "urban_beijing_1.mp4"])
def test_replay_of_real_clips_reaches_a_subscriber_in_order(bundle, tmp_path, name):
    clip = need_shared(CLIPS / name)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    monitor = _monitor(bundle, str(clip), endpoint, events_dir=tmp_path / "events", events_hold="memory",
                       alert_on=0.0, alert_off=0.0)
    collector = Collector(endpoint)
    _connected(collector)
    summary = monitor.run()
    collector.wait_for(lambda c: any(m["source"]["state"] == "ended" for m in c.of("status")), 3)
    collector.stop()

    risks, alerts, statuses = collector.of("risk"), collector.of("alert"), collector.of("status")
    assert summary["source_state"] == "ended" and summary["strides_skipped"] == 0
    assert [m["seq"] for m in risks] == list(range(1, summary["strides"] + 1))  # every stride, none lost
    _assert_contiguous(statuses)
    assert [a["event"] for a in alerts] == ["start", "end"]  # threshold 0: one episode for the whole clip
    assert all(m["schema"] == f"crashwatch.{t}/1" and m["camera"] == "cam0" for t, m in collector.messages)
    order = [t for t, _ in collector.messages if t != "status"]
    # the start follows the risk that raised it and the level it raised, which a cab unit needs first
    assert order[:3] == ["risk", "level", "alert"]
    levels = collector.of("level")
    assert [(m["previous"], m["level"]) for m in levels] == [("none", "imminent"), ("imminent", "none")]
    assert levels[0]["alert_id"] == 1 and levels[0]["captured_at"] == risks[0]["captured_at"]
    assert risks[0]["level"] == "imminent" and alerts[0]["level"] == "imminent"
    for risk in risks:  # the window is sampled on the grid, frames oldest first, never past the window end
        assert risk["window"]["end"] - risk["window"]["start"] == pytest.approx(2.0)
        assert risk["frame_times"] == sorted(risk["frame_times"]) and risk["frame_times"][-1] <= risk["t"] + 1e-6
    clip_path = Path(alerts[0]["clip"])
    sidecar = json.loads(clip_path.with_suffix(".json").read_text())
    assert clip_path.stat().st_size > 0 and sidecar["alert"]["alert_id"] == 1 and sidecar["frames"]
    # The clip's risk chart: the probabilities published from its first frame to the end of its post-roll.
    published = [[r["t"], round(r["probability"], 6)] for r in risks]
    assert sidecar["risks"] and sidecar["risks"][0][0] >= sidecar["frames"][0]["t"] - 1e-6
    assert sidecar["risks"] == [r for r in published if sidecar["risks"][0][0] <= r[0] <= sidecar["risks"][-1][0]]


def test_cached_stride_scores_exactly_as_a_full_recomputation(bundle, tmp_path):
    clip = write_video(tmp_path / "c.mp4", 100, fps=15)
    model = RiskModel.open(bundle)
    import cv2

    capture = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(Frame(len(frames), len(frames) / 15, 0.0, image))
    m = model.manifest
    window = m.window

    pixels = m.pixels
    cached = WindowScorer(model, window, pixels)
    ends = [2.0 + k * window.spacing for k in range(5)]
    results = [cached.score(frames, end) for end in ends]
    assert [r.encoded for r in results] == [m.window.num_frames, 1, 1, 1, 1]  # one new frame per stride
    for end, result in zip(ends, results):
        fresh = WindowScorer(model, window, pixels, cache=False).score(frames, end)
        assert fresh.encoded == m.window.num_frames
        assert fresh.probability == result.probability  # exactly: the same computations
        assert [f.id for f in fresh.frames] == [f.id for f in result.frames]


def test_realtime_replay_keeps_the_file_pace(bundle, tmp_path):
    clip = write_video(tmp_path / "c.mp4", 45, fps=15)  # 3 s
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    monitor = _monitor(bundle, str(clip), endpoint, replay="realtime")
    started = time.monotonic()
    summary = monitor.run()
    elapsed = time.monotonic() - started
    assert elapsed >= 2.8  # a 3-second file is not replayed faster than real time
    assert summary["frames"] + summary["frames_dropped"] == 45


def test_slow_and_vanishing_subscribers_do_not_hold_up_the_monitor(bundle, tmp_path):
    clip = write_video(tmp_path / "c.mp4", 120, fps=15)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    monitor = _monitor(bundle, str(clip), endpoint)
    context = zmq.Context.instance()
    stalled = context.socket(zmq.SUB)  # subscribes to everything, never reads
    stalled.setsockopt(zmq.RCVHWM, 1)
    stalled.setsockopt(zmq.SUBSCRIBE, b"")
    stalled.connect(endpoint)
    vanishing = context.socket(zmq.SUB)
    vanishing.setsockopt(zmq.SUBSCRIBE, b"")
    vanishing.connect(endpoint)
    reader = Collector(endpoint, ("risk",))
    _connected(Collector(endpoint))  # heartbeat seen: all connections are up
    done = threading.Event()
    result = {}
    thread = threading.Thread(target=lambda: (result.update(monitor.run()), done.set()))
    thread.start()
    vanishing.close(0)
    assert done.wait(60), "the monitor did not finish with a stalled subscriber connected"
    reader.wait_for(lambda c: len(c.of("risk")) >= result["strides"], 3)
    reader.stop()
    stalled.close(0)
    assert [m["seq"] for m in reader.of("risk")] == list(range(1, result["strides"] + 1))


def test_rtsp_outage_is_reported_and_the_monitor_resumes(bundle, rtsp_camera):
    camera = rtsp_camera
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    stop = threading.Event()
    monitor = Monitor(RiskModel.open(bundle), MonitorOptions(source=parse_source(camera.url.replace("rtsp://", "rtsp://viewer:s3cret@")),
                                                        backoff_initial=0.3, backoff_max=1.0),
                      lambda status: Publisher(endpoint, "road", status=status), stop=stop)
    collector = Collector(endpoint)
    thread = threading.Thread(target=monitor.run)
    thread.start()
    try:
        assert collector.wait_for(lambda c: len(c.of("risk")) >= 2, 30), "no risk from the live stream"
        camera.kill()
        assert collector.wait_for(lambda c: any(s["source"]["state"] == "reconnecting" for s in c.of("status")), 20)
        outage = next(s for s in collector.of("status") if s["source"]["state"] == "reconnecting")
        assert outage["source"]["outages"] == 1 and outage["source"]["backoff_s"] > 0
        risks_before = len(collector.of("risk"))
        time.sleep(1.5)
        camera.start()
        assert collector.wait_for(lambda c: len(c.of("risk")) >= risks_before + 2, 30), "did not resume"
        # the burst the server sends on reconnection may carry both strides before the next heartbeat
        assert collector.wait_for(lambda c: c.of("status")[-1]["source"]["state"] == "online", 3)
    finally:
        stop.set()
        thread.join(10)
        camera.kill()
        collector.stop()
    assert not thread.is_alive()
    _assert_contiguous(collector.of("risk"))
    text = json.dumps([m for _, m in collector.messages])
    assert "s3cret" not in text and "***@127.0.0.1" in text


@pytest.mark.timed
def test_sigterm_stops_within_a_second_and_finishes_the_event_clip(bundle, tmp_path):
    clip = write_video(tmp_path / "long.mp4", 300, fps=15)  # 20 s, replayed in real time
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    collector = Collector(endpoint, ("risk",))
    process = subprocess.Popen([sys.executable, "-m", "crashwatch", "monitor", "--bundle", str(bundle), "--source",
                                str(clip), "--pub", endpoint, "--events", str(tmp_path / "events"), "--events-hold", "memory",
                                "--alert-on", "0"],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The alert starts on the first frame, maybe before this subscriber is connected: its risk messages say it.
        assert collector.wait_for(lambda c: any(r["alert_active"] for r in c.of("risk")), 30), "no alert started"
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        stopped_in = time.monotonic() - sent
    finally:
        process.kill()
        collector.stop()
    assert process.returncode == 0, process.stderr.read()
    assert stopped_in < within(1.5)
    clips = list((tmp_path / "events").glob("*.mp4"))
    assert len(clips) == 1 and clips[0].with_suffix(".json").is_file()
    assert "stopped:" in process.stdout.read()


@pytest.mark.parametrize("source,message", [
    ("ftp://host/x.mp4", "unsupported URL scheme"),
    ("/no/such/file.mp4", "no such video file"),
])
def test_bad_sources_are_refused_clearly(source, message):
    with pytest.raises(SourceError, match=message):
        parse_source(source)


def test_bad_sources_through_the_command(bundle, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "text.mp4"
    text.write_text("not a video")
    cases = [("ftp://user:pw@host/x", "unsupported URL scheme"), (str(empty), "the file is empty"),
             (str(text), "not a video FFmpeg can read")]
    for source, message in cases:
        result = subprocess.run([sys.executable, "-m", "crashwatch", "monitor", "--bundle", str(bundle), "--source",
                                 source, "--pub", f"tcp://127.0.0.1:{free_port()}"],
                                cwd=REPO, capture_output=True, text=True, timeout=60)
        assert result.returncode != 0, source
        assert message in result.stderr, result.stderr
        assert "pw@" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("source", ["7", "/dev/video42"])
def test_a_webcam_not_there_yet_is_waited_for(bundle, source):
    """A USB camera may enumerate after the monitor starts: an absent one is retried like a stream that is down,
    the reason in the log and in status, and the monitor stops at once when asked."""
    assert parse_source(source).kind == "webcam"
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    collector = Collector(endpoint, ("status",))
    process = subprocess.Popen([sys.executable, "-m", "crashwatch", "monitor", "--bundle", str(bundle), "--source",
                                source, "--pub", endpoint], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    def waiting(c: Collector) -> list[dict]:
        return [s for s in c.of("status") if s["source"]["state"] == "reconnecting"
                and (s["source"].get("reconnect_attempts") or 0) >= 2]

    try:
        assert collector.wait_for(lambda c: waiting(c), 30), "the monitor did not keep waiting for the webcam"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
        collector.stop()
    assert process.returncode == 0, err
    assert f"cannot open webcam {source}: not found or busy" in err and err.count("reconnecting") == 1
    assert waiting(collector)[-1]["source"]["last_error"].startswith(f"cannot open webcam {source}: not found or busy")


def test_endpoint_in_use_is_a_clear_error():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    first = Publisher(endpoint, "a")
    try:
        with pytest.raises(PublisherError, match="cannot bind.*another monitor"):
            Publisher(endpoint, "b")
    finally:
        first.close(final_status=False)


def test_alert_hysteresis_makes_one_episode_one_alert():
    tracker = AlertTracker(AlertPolicy(on=0.6, off=0.4, min_on_seconds=0.5, min_off_seconds=1.0, update_step=0.1))
    series = [0.1, 0.7, 0.65, 0.8, 0.5, 0.35, 0.7, 0.3, 0.3, 0.3, 0.3, 0.9]
    events = []
    for k, p in enumerate(series):
        events += [(k * 0.5, e.event.value, e.alert_id) for e in tracker.update(k * 0.5, p)]
    # 0.7 at 0.5 s holds through 1.0 s -> start; 0.8 rises by >= 0.1 -> update; dips to 0.35 and 0.5 are
    # hysteresis, not an end; below 0.4 from 3.5 s for 1 s -> end at 4.5 s; 0.9 alone is not yet a new alert.
    assert events == [(1.0, "start", 1), (1.5, "update", 1), (4.5, "end", 1)]
    with pytest.raises(ValueError):
        AlertPolicy(on=0.3, off=0.5)


def test_an_alert_can_end_whatever_its_start():
    for on in (0.94, 0.5, 0.1, 0.02):
        policy = AlertPolicy.around(on)
        assert 0 < policy.off < on
        tracker = AlertTracker(policy)
        kinds = [e.event.value for k, p in enumerate([on, on, 0.0, 0.0, 0.0]) for e in tracker.update(k * 0.5, p)]
        assert kinds == ["start", "end"], on
    assert AlertPolicy.around(0.94).off == pytest.approx(0.752)  # the demo bundle's, as before


def test_a_risk_says_whether_an_alert_is_open_after_its_own_stride(tiny_bundle, tmp_path):
    """The stride that starts an alert is active, the one that ends it is not (it lagged a stride)."""
    clip = write_video(tmp_path / "c.mp4", 80)

    def replay(**alert) -> Monitor:
        options = MonitorOptions(source=parse_source(str(clip)), replay="fast", stride=0.5, alert_min_off_seconds=0.0,
                                 **alert)
        monitor = Monitor(RiskModel.open(tiny_bundle), options, lambda status: CollectingOutlet())
        monitor.run()
        return monitor

    probabilities = sorted({r.probability for r in replay(alert_on=1.0).risks})
    assert len(probabilities) > 2, "the tiny model's probability does not move on this clip"
    on = probabilities[len(probabilities) // 2]
    monitor = replay(alert_on=on, alert_off=on - 1e-9)
    opened = {a.t: a.event.value for a in monitor.alerts}
    assert "start" in opened.values() and "end" in opened.values()
    active = False
    for risk in monitor.risks:
        active = {"start": True, "end": False}.get(opened.get(risk.t, ""), active)
        assert risk.alert_active is active, (risk.t, opened)


def test_credentials_never_leave_the_url_redactor():
    assert redact_url("rtsp://admin:hunter2@10.0.0.5:554/cam") == "rtsp://***@10.0.0.5:554/cam"
    assert redact_url("rtsp://cam.local/stream") == "rtsp://cam.local/stream"
    assert parse_source("rtsp://admin:hunter2@cam/x").display == "rtsp://***@cam/x"


def test_replay_eval_reports_per_clip_and_overall(bundle, tiny_dataset, tmp_path):
    out = tmp_path / "replay"
    result = subprocess.run([sys.executable, "-m", "crashwatch", "replay-eval", "--bundle", str(bundle), "--data",
                             str(tiny_dataset), "--out", str(out), "--alert-on", "0"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "replay_eval.json").read_text())
    clips, summary = report["clips"], report["summary"]
    assert [c["file_name"] for c in clips] == [f"test_{i}.mp4" for i in range(4)]
    # Threshold 0: every clip alerts from its first stride, on its first frame (a partial window).
    assert all(c["alert_fired"] == 1 and c["first_alert_s"] == pytest.approx(0.0) for c in clips)
    crash = [c for c in clips if c["label"] == 1]
    assert all(c["time_to_accident_s"] == pytest.approx(2.8 - 0.0) for c in crash)
    assert summary["alerted_before_collision"] == len(crash) and summary["false_alerts"] == 2
    assert summary["false_alerts_per_hour"] == pytest.approx(2 / (2 * 3.0 / 3600))
    assert "before the collision 2/2 (100%)" in result.stdout
    # Every alert start explained; these clips have no road-user boxes, so no pointing game, and it says so.
    assert summary["pointing"]["ready"] == 4 and summary["pointing"]["pointing_peak"] is None
    assert "no clip has road-user boxes" in result.stdout
    assert len(list((out / "explanations").glob("*-alert1-start.png"))) == 4
    with (out / "explanations.csv").open() as handle:
        assert sorted(row["file_name"] for row in csv.DictReader(handle)) == [c["file_name"] for c in clips]
    for c in clips:
        assert (out / "plots" / c["file_name"].replace(".mp4", ".png")).read_bytes()[:4] == b"\x89PNG"
        with (out / "traces" / c["file_name"].replace(".mp4", ".csv")).open() as handle:
            trace = list(csv.DictReader(handle))
        assert len(trace) == c["strides"] and float(trace[0]["t"]) == pytest.approx(0.0)
        assert max(float(r["probability"]) for r in trace) == pytest.approx(c["max_probability"], abs=1e-5)
    # The field's metrics, written beside the report and computed again from the folder alone to the same figures.
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dad_ccd"]["crash_clips"] == 2 and metrics["nexar"]["normal_clips"] == 2
    assert metrics["project_alerts"]["at_threshold"]["false_alerts"] == summary["false_alerts"]
    assert "DAD/CCD protocol: AP" in result.stdout and "Nexar score" in result.stdout
    again = subprocess.run([sys.executable, "-m", "crashwatch", "metrics", str(out), "--out", str(tmp_path / "m")],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "m" / "metrics.json").read_text()) == metrics


def test_an_alert_minutes_before_a_drives_collision_is_a_false_alert_not_a_warning():
    from crashwatch.evaluation.scoring import score_alerts

    # A 4-minute drive ending in a collision at 230 s: alerts at 20 s and 227.5 s.
    drive = score_alerts([20.0, 227.5], duration=235.0, event_time=230.0, label=1, window=5.0)
    assert drive == {"warning_s": 227.5, "time_to_accident_s": 2.5, "false_alerts": 1, "normal_s": 225.0}
    missed = score_alerts([20.0], duration=235.0, event_time=230.0, label=1, window=5.0)
    assert missed["time_to_accident_s"] is None and missed["false_alerts"] == 1
    # A short clip (collision 1-2 s after its end): the window covers it all, the first alert is the warning.
    clip = score_alerts([2.4, 3.6], duration=5.0, event_time=6.5, label=1, window=5.0)
    assert clip["warning_s"] == 2.4 and clip["false_alerts"] == 0 and clip["normal_s"] == 1.5
    normal = score_alerts([3.0, 9.0], duration=60.0, event_time=None, label=0)
    assert normal["false_alerts"] == 2 and normal["normal_s"] == 60.0


def test_false_alerts_are_counted_by_the_segment_on_screen_where_ground_truth_names_segments(tmp_path):
    from crashwatch.contract.sidecars import read_truth, segments_of
    from crashwatch.evaluation.scoring import false_alert_starts

    assert segments_of(read_truth(tmp_path, "test")) == {}  # no ground truth: nothing to count by
    truth = {"drive_000.mp4": {"segments": ["follow", "handover", "pass_by", "handover", "rear_end"],
                               "segment_starts_s": [0.0, 8.0, 12.0, 20.0, 24.0], "event_time": 30.0},
             "clip.mp4": {"kind": "follow", "clip_end": 5.0}}  # a clip's truth names no segments
    (tmp_path / "test_truth.json").write_text(json.dumps(truth))
    segments = segments_of(read_truth(tmp_path, "test"))
    assert list(segments) == ["drive_000.mp4"]
    # Alerts at 9 s (handover), 12 s (pass_by starts), 19.9 s (still pass_by) are false; 27 s warns of the crash.
    false = false_alert_starts([9.0, 12.0, 19.9, 27.0], event_time=30.0, label=1, window=5.0)
    assert false == [9.0, 12.0, 19.9]
    drive = segments["drive_000.mp4"]
    assert [drive.at(t) for t in false] == ["handover", "pass_by", "pass_by"]
    assert drive.at(0.0) == "follow" and drive.at(99) == "rear_end"


def test_the_operating_curve_replays_the_alert_policy_over_recorded_probabilities():
    from crashwatch.evaluation.curve import Trace, operating_curve, within_budget

    times = [0.5 * k for k in range(121)]  # 60 s at a 0.5 s stride
    normal = [0.5 if 10.0 <= t <= 12.0 else 0.1 for t in times]  # one scare, 2 s long
    crash = [0.8 if t >= 52.0 else 0.1 for t in times]  # rises 3 s before the collision at 55 s
    traces = [Trace("normal.mp4", 0, None, 60.0, times, normal), Trace("crash.mp4", 1, 55.0, 60.0, times, crash)]
    curve = operating_curve(traces, {}, warning_window=5.0, thresholds=[0.3, 0.6, 0.9])
    assert [p["false_alerts"] for p in curve] == [1, 0, 0]
    assert [p["alerted_before_collision"] for p in curve] == [1, 1, 0]
    assert curve[0]["median_time_to_accident_s"] == pytest.approx(3.0)
    hours = (60.0 + 50.0) / 3600  # the normal drive, and the crash drive before its warning window
    assert curve[0]["false_alerts_per_hour"] == pytest.approx(1 / hours)
    assert within_budget(curve, 0.0)["threshold"] == 0.6  # without false alerts, 0.9 would warn of nothing
    assert within_budget(curve, 100.0)["threshold"] == 0.3  # as many warnings, earlier
    assert within_budget(curve[:1], 0.0) is None  # calibrate then leaves the bundle as it is
    # Held for 3 s before starting, the 2 s scare never becomes an alert; the crash (held 3 s) still does.
    held = operating_curve(traces, {"min_on_seconds": 2.5}, warning_window=5.0, thresholds=[0.3])
    assert held[0]["false_alerts"] == 0 and held[0]["alerted_before_collision"] == 1


def test_calibrate_sets_the_bundles_threshold_for_a_false_alert_budget(bundle, tiny_dataset, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    out = tmp_path / "calibration"
    result = subprocess.run([sys.executable, "-m", "crashwatch", "calibrate", "--bundle", str(copy), "--data",
                             str(tiny_dataset), "--out", str(out), "--false-alerts-per-hour", "0",
                             "--min-normal-hours", "0"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with (out / "operating_curve.csv").open() as handle:
        curve = list(csv.DictReader(handle))
    clean = [p for p in curve if int(p["false_alerts"]) == 0]
    most = max(int(p["alerted_before_collision"]) for p in clean)
    pick = min(float(p["threshold"]) for p in clean if int(p["alerted_before_collision"]) == most)
    manifest = Manifest.read(copy)
    assert manifest.threshold == pick  # of the thresholds without a false alert, the earliest warning the most
    assert manifest.raw["threshold_from_validation"] == Manifest.read(bundle).threshold
    assert manifest.raw["threshold_calibration"]["false_alerts_per_hour_budget"] == 0
    assert f"alert threshold {pick:.2f}" in result.stdout
    # The caution below it, by the same rule over thresholds and the rising rule's look-aheads, at that alert
    with (out / "caution_curve.csv").open() as handle:
        tried = list(csv.DictReader(handle))
    assert tried and all(float(r["caution_threshold"]) <= pick for r in tried)
    within = [r for r in tried if r["false_cautions_per_hour"] and float(r["false_cautions_per_hour"]) <= 6.0]
    best = max(within, key=lambda r: (int(r["warned_by_either"]), float(r["median_first_warning_s"] or 0),
                                      float(r["caution_threshold"])))
    assert (manifest.caution_threshold, manifest.caution_rise_seconds) == (
        float(best["caution_threshold"]), float(best["caution_rise_seconds"]))
    assert f"caution threshold {manifest.caution_threshold:.2f}" in result.stdout
    model = RiskModel.open(copy)  # still a valid bundle: the checksummed files are untouched
    assert model.manifest.content_hash == Manifest.read(bundle).content_hash  # the same model, another threshold
    assert model.identity()["threshold"] == pick


def test_the_monitor_command_runs_without_torch(bundle, tmp_path):
    clip = write_video(tmp_path / "c.mp4", 45, fps=15)
    args = ["crashwatch", "monitor", "--bundle", str(bundle), "--source", str(clip), "--replay", "fast",
            "--pub", f"tcp://127.0.0.1:{free_port()}"]
    script = FORBID_TORCH + f"sys.argv = {args!r}\nimport runpy\nrunpy.run_module('crashwatch', run_name='__main__')\n"
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "stopped: 5 strides (0 skipped)" in result.stdout  # 3 s of video: windows ending at 0, 0.67, ... 2.67 s
