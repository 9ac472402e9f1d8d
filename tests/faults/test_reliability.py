"""Faults survived, bad input refused clearly, nothing lost, nobody let in (see docs/reliability.md)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crashwatch.bench.process import free_port
from crashwatch.contract.bundle import BundleError, Manifest
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.evidence.clips import EventRecorder
from crashwatch.monitor.frame import Frame
from crashwatch.monitor.messages import Alert, AlertEvent, Status
from crashwatch.monitor.pipeline.camera import Monitor
from crashwatch.monitor.pipeline.options import MonitorOptions
from crashwatch.monitor.pipeline.scorer import WindowScorer
from crashwatch.monitor.pipeline.source import parse_source
from crashwatch.monitor.transports.curve import ClientCurve, ServerCurve, create_keys
from crashwatch.monitor.transports.zeromq import Publisher
from tests.support.collector import Collector
from tests.support.media import write_video
from tests.support.shared import REPO
from tests.support.timing import within


def _start(bundle: Path | RiskModel, source: str, endpoint: str, stop: threading.Event,
           **options) -> tuple[Monitor, threading.Thread]:
    model = bundle if isinstance(bundle, RiskModel) else RiskModel.open(bundle)
    monitor = Monitor(model, MonitorOptions(source=parse_source(source), **options),
                      lambda status: Publisher(endpoint, "cam", status=status), stop=stop)
    thread = threading.Thread(target=monitor.run)
    thread.start()
    return monitor, thread


@pytest.mark.parametrize("url", ["rtsp://127.0.0.1:{port}/live", "rtsp://no-such-camera.invalid/live"])
def test_a_stream_that_never_answers_is_retried_with_backoff(tiny_bundle, url):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    collector = Collector(endpoint)
    stop = threading.Event()
    monitor, thread = _start(tiny_bundle, url.format(port=free_port()), endpoint, stop,
                             backoff_initial=0.2, backoff_max=0.8)
    try:
        assert collector.wait_for(lambda c: any(s["source"]["reconnect_attempts"] >= 3 for s in c.of("status")), 30)
    finally:
        stop.set()
        thread.join(5)
        collector.stop()
    statuses = collector.of("status")
    assert not thread.is_alive()
    reconnecting = [s for s in statuses if s["source"]["state"] == "reconnecting"]
    assert reconnecting and reconnecting[-1]["source"]["backoff_s"] == pytest.approx(0.8)
    assert reconnecting[-1]["source"]["outages"] == 1  # one outage, many attempts


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _threads() -> int:
    """Live threads but the one helper an attempt to open the stream runs in while it lasts (it ends with the
    attempt: with attempts back to back, a reading may fall inside one or between two, more often on a busy CPU)."""
    return sum(t.name != "capture-open" for t in threading.enumerate())


def test_no_thread_or_descriptor_leaks_across_20_reconnects(tiny_bundle):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    stop = threading.Event()
    model = RiskModel.open(tiny_bundle)  # opened (and warmed up: its runtime's threads and descriptors made) first,
    zmq.Context.instance()  # and the process's ZeroMQ context, which stays (its descriptors with it)
    threads_before, fds_before = threading.active_count(), _fds()
    monitor, thread = _start(model, f"rtsp://127.0.0.1:{free_port()}/live", endpoint, stop,
                             backoff_initial=0.01, backoff_max=0.01)
    deadline = time.monotonic() + 60
    while monitor.capture.stats.reconnect_attempts < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    threads_early, fds_early = _threads(), _fds()
    while monitor.capture.stats.reconnect_attempts < 25 and time.monotonic() < deadline:
        time.sleep(0.05)
    threads_late, fds_late = _threads(), _fds()
    stop.set()
    thread.join(5)
    assert monitor.capture.stats.reconnect_attempts >= 25
    assert threads_late == threads_early and fds_late == fds_early  # 20 reconnects between the two readings
    time.sleep(0.5)
    deadline = time.monotonic() + 10  # an open attempt given up at the stop ends within its open timeout
    while any(t.name == "capture-open" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= threads_before + 1  # ZeroMQ's I/O thread may stay with the context
    assert _fds() <= fds_before + 4


def test_a_late_subscriber_gets_a_status_within_a_second(tiny_bundle, tmp_path):
    clip = write_video(tmp_path / "c.mp4", 150, fps=15)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    stop = threading.Event()
    monitor, thread = _start(tiny_bundle, str(clip), endpoint, stop)
    time.sleep(2.0)
    joined = time.monotonic()
    collector = Collector(endpoint, ("status",))
    try:
        assert collector.wait_for(lambda c: c.of("status"), 3)
        waited = time.monotonic() - joined
    finally:
        stop.set()
        thread.join(5)
        collector.stop()
    assert waited < 1.5  # one heartbeat period plus the connection


def _fill(folder: Path) -> None:
    """Write into ``folder`` until its file system is full to the last byte."""
    filler = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(filler, b"\0" * 512):
            pass
    except OSError:
        pass
    finally:
        os.close(filler)


@pytest.mark.parametrize("where", ["under-a-file", "full-disk"])
def test_event_clips_that_cannot_be_written_are_reported_and_alerts_go_on(tiny_bundle, tmp_path, where):
    if where == "under-a-file":
        (tmp_path / "blocker").write_text("a file, not a folder")
        events = tmp_path / "blocker" / "events"
    else:
        events = tmp_path / "small"
        events.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(events)], capture_output=True).returncode:
            pytest.skip("cannot mount a small tmpfs here (needs root) to fill a disk")
    try:
        if where == "full-disk":
            _fill(events)
        clip = write_video(tmp_path / "c.mp4", 90, fps=15, size=(320, 240))
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        collector = Collector(endpoint)
        monitor = Monitor(RiskModel.open(tiny_bundle), MonitorOptions(source=parse_source(str(clip)), replay="fast",
                                                                 events_dir=events, events_hold="memory", event_post_seconds=0.5,
                                                                 alert_on=0.0, alert_off=0.0),
                          lambda status: Publisher(endpoint, "cam", status=status))
        assert collector.wait_for(lambda c: c.of("status"), 5)
        summary = monitor.run()
        collector.wait_for(lambda c: (c.of("status")[-1].get("events") or {}).get("failed"), 3)
        collector.stop()
    finally:
        if where == "full-disk":
            subprocess.run(["umount", str(events)])
    assert summary["source_state"] == "ended" and summary["alerts"] == 1
    assert [a["event"] for a in collector.of("alert")] == ["start", "end"]
    final = collector.of("status")[-1]["events"]
    assert final["failed"] == 1 and final["written"] == 0 and "alert0001" in final["last_error"]


def test_a_file_truncated_while_replayed_ends_cleanly(tiny_bundle, tmp_path):
    clip = write_video(tmp_path / "c.mp4", 150, fps=15, size=(320, 240))
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    stop = threading.Event()
    monitor, thread = _start(tiny_bundle, str(clip), endpoint, stop)
    time.sleep(2.5)
    with clip.open("r+b") as handle:
        handle.truncate(clip.stat().st_size // 3)
    thread.join(30)
    assert not thread.is_alive()
    assert monitor.capture.stats.state == "ended" and monitor.stats.strides >= 1


def test_frames_that_change_size_mid_stream(tiny_bundle, tmp_path):
    model = RiskModel.open(tiny_bundle)
    m = model.manifest
    rng = np.random.default_rng(0)
    sizes = [(240, 320), (480, 640), (100, 100), (720, 1280)]
    frames = [Frame(i, i / 10, time.time(), rng.integers(0, 255, (*sizes[i % 4], 3), dtype=np.uint8)) for i in range(40)]
    scorer = WindowScorer(model, m.window, m.pixels)
    assert 0.0 <= scorer.score(frames, 3.0).probability <= 1.0
    recorder = EventRecorder(tmp_path / "events", "cam", post_seconds=0.5)
    alert = Alert(AlertEvent.START, alert_id=1, start=2.0, t=2.0, probability=0.9, peak=0.9, peak_at=2.0, threshold=0.5)
    recorder.start(alert, frames[:21])
    path = recorder.path_for(alert)
    for frame in frames[21:]:
        recorder.feed(frame)
    recorder.close()
    assert recorder.written == 1 and path.is_file()


@pytest.mark.timed
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_stop_the_monitor_cleanly(tiny_bundle, tmp_path, sig):
    clip = write_video(tmp_path / "c.mp4", 300, fps=15)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    collector = Collector(endpoint, ("risk",))
    process = subprocess.Popen([sys.executable, "-m", "crashwatch", "monitor", "--bundle", str(tiny_bundle),
                                "--source", str(clip), "--pub", endpoint], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert collector.wait_for(lambda c: c.of("risk"), 30)
        sent = time.monotonic()
        process.send_signal(sig)
        out, err = process.communicate(timeout=10)
        stopped_in = time.monotonic() - sent
    finally:
        process.kill()
        collector.stop()
    assert process.returncode == 0 and stopped_in < within(1.5)
    # Asked to stop, not at the end of the file: the words say so.
    assert "source stopped" in out and "source ended" not in out and "end of file" not in err
    # The endpoint is free again: the socket was closed.
    Publisher(endpoint, "again").close(final_status=False)


def test_credentials_never_reach_logs_or_messages(tiny_bundle, tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    collector = Collector(endpoint)
    process = subprocess.Popen([sys.executable, "-m", "crashwatch", "-vv", "monitor", "--bundle", str(tiny_bundle),
                                "--source", f"rtsp://operator:Sup3rSecret@127.0.0.1:{free_port()}/cam",
                                "--pub", endpoint, "--events", str(tmp_path / "ev")],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert collector.wait_for(lambda c: any(s["source"]["state"] == "reconnecting" for s in c.of("status")), 30)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
        collector.stop()
    everything = out + err + json.dumps([m for _, m in collector.messages])
    assert "Sup3rSecret" not in everything and "operator" not in everything
    assert "rtsp://***@127.0.0.1" in everything


def test_curve_admits_listed_subscribers_only(tmp_path):
    create_keys(tmp_path / "server", "monitor")
    create_keys(tmp_path / "clients", "listed")
    create_keys(tmp_path / "strangers", "unlisted")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    shutil.copy(tmp_path / "clients" / "listed.key", allowed)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    heartbeat = Status(source={"kind": "file", "name": "c.mp4", "state": "online"}, capture_fps=10.0, frames_captured=0,
                       frames_dropped=0, strides=0, strides_skipped=0, stride_s=0.5, lag_s=None, model_ms=None,
                       alert_active=False)
    publisher = Publisher(endpoint, "cam", status=lambda: heartbeat, period=0.2,
                          curve=ServerCurve(tmp_path / "server" / "monitor.key_secret", allowed))
    server_key = tmp_path / "server" / "monitor.key"
    listed = Collector.__new__(Collector)
    try:
        listed = Collector(endpoint, curve=ClientCurve(server_key, tmp_path / "clients" / "listed.key_secret"))
        unlisted = Collector(endpoint, curve=ClientCurve(server_key, tmp_path / "strangers" / "unlisted.key_secret"))
        plain = Collector(endpoint)
        assert listed.wait_for(lambda c: len(c.of("status")) >= 5, 10)
        time.sleep(0.5)
    finally:
        publisher.close(final_status=False)
        for c in (listed, unlisted, plain):
            c.stop()
    assert unlisted.messages == [] and plain.messages == []
    seqs = [m["seq"] for m in listed.of("status")]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_keys_command_and_clear_key_errors(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "crashwatch", *a], cwd=REPO, capture_output=True, text=True)  # noqa: E731
    made = run("keys", "--out", str(tmp_path), "--name", "monitor")
    assert made.returncode == 0 and (tmp_path / "monitor.key").is_file()
    assert oct((tmp_path / "monitor.key_secret").stat().st_mode & 0o777) == "0o600"
    again = run("keys", "--out", str(tmp_path), "--name", "monitor")
    assert again.returncode != 0 and "exists already" in again.stderr
    wrong = run("subscribe", "--curve-server-key", str(tmp_path / "monitor.key"),
                "--curve-secret", str(tmp_path / "monitor.key"), "--count", "1")
    assert wrong.returncode != 0 and "holds no secret key" in wrong.stderr and "Traceback" not in wrong.stderr


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=400),
                 st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=12),
                              lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=5),
                              max_leaves=20).map(lambda v: json.dumps(v).encode()),
                 st.fixed_dictionaries({"format": st.just("crashwatch-bundle"), "version": st.just(1)},
                                       optional={"precision": st.text(max_size=5), "window": st.dictionaries(
                                           st.sampled_from(["seconds", "num_frames"]), st.integers() | st.text()),
                                           "model": st.none() | st.dictionaries(st.text(max_size=4), st.integers()),
                                           "files": st.lists(st.integers())}).map(lambda v: json.dumps(v).encode())))
def test_manifest_reader_never_crashes(tmp_path_factory, payload):
    folder = tmp_path_factory.mktemp("manifest")
    (folder / "manifest.json").write_bytes(payload)
    with pytest.raises(BundleError, match=re.escape(str(folder / "manifest.json"))):
        Manifest.read(folder)


def test_nothing_is_loaded_with_pickle():
    """Checkpoints are safetensors + JSON, bundles ONNX + JSON + .npy read with allow_pickle=False."""
    offenders = []
    for path in [*REPO.glob("monitor/*.py"), *REPO.glob("train/*.py"), *REPO.glob("export/*.py"), *REPO.glob("crashwatch/*.py")]:
        text = path.read_text()
        if re.search(r"\bimport pickle\b|\bpickle\.load|torch\.load\(|allow_pickle=True|joblib\.load", text):
            offenders.append(path.name)
        if "np.load(" in text and "allow_pickle=False" not in text:
            offenders.append(f"{path.name} (np.load without allow_pickle=False)")
    assert offenders == []
