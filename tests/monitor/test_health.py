"""Camera health on real dashcam clips: none of the sound clips is ever called degraded, each injected fault is
reported within 2 s of its start and cleared within 2 s of its end (crashwatch.bench.health measures it, and
`crashwatch bench --camera-health` prints the whole table); and a real monitor says it, over ZeroMQ and MQTT."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import pytest

from crashwatch.bench.health import FAULTS, measure
from crashwatch.bench.process import free_port
from crashwatch.contract.video import probe_clip, read_frames
from tests.support.collector import Collector
from tests.support.mqtt_broker import Broker, Subscriber, need_mosquitto
from tests.support.shared import CLIPS, REPO, need_shared

FAULTED = ("highway_640.mp4", "dad_000493.mp4")


def test_sound_clips_are_never_degraded():
    need_shared(CLIPS / FAULTED[0])
    runs = measure(sorted(CLIPS.glob("*.mp4")), faults=(), looped=False)
    assert len(runs) >= 20
    assert [(r.clip, r.others) for r in runs if r.others] == []


@pytest.mark.parametrize("name", FAULTED)
def test_each_fault_is_reported_within_2_s_and_cleared_within_2_s(name):
    runs = measure([need_shared(CLIPS / name)])
    for run in runs[1:]:
        assert run.onset_s is not None and run.onset_s <= 2.0, (run.fault, run.onset_s)
        assert run.clear_s is not None and run.clear_s <= 2.0, (run.fault, run.clear_s)
        assert run.others == (), (run.fault, run.others)
    assert {r.fault for r in runs} == {None, *FAULTS}


def test_a_monitor_says_its_camera_froze_and_flags_or_holds_its_alerts(tiny_bundle, tmp_path):
    """A real clip whose picture is stuck for its first 5 s (the first frame repeated, as a stuck encoder sends
    it), with an alert raised meanwhile."""
    need_mosquitto()
    clip = need_shared(CLIPS / "highway_640.mp4")
    info = probe_clip(clip)
    frames = read_frames(clip, list(range(info.num_frames)))
    frozen = tmp_path / "frozen.mp4"
    writer = cv2.VideoWriter(str(frozen), cv2.VideoWriter.fourcc(*"mp4v"), info.fps, (info.width, info.height))
    for k, frame in enumerate(frames):
        writer.write(frames[0] if k < 5 * info.fps else frame)
    writer.release()
    broker = Broker(tmp_path / "broker").start()
    watcher = Subscriber(broker, "crashwatch/cab/health")

    def monitor(*extra: str) -> tuple[Collector, str]:
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        collector = Collector(endpoint, ("health", "alert", "status"))
        try:
            run = subprocess.run([sys.executable, "-m", "crashwatch", "monitor", "--bundle", str(tiny_bundle),
                                  "--source", str(frozen), "--camera", "cab", "--pub", endpoint, "--replay", "fast",
                                  "--alert-on", "0", "--alert-min-on", "3", "--mqtt",
                                  f"mqtt://127.0.0.1:{broker.port}", "--mqtt-outbox", str(tmp_path / "outbox.sqlite"),
                                  *extra], cwd=REPO, capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, run.stderr
            collector.wait_for(lambda c: any(s["source"]["state"] == "ended" for s in c.of("status")), 5)
        finally:
            collector.stop()
        return collector, run.stderr

    try:
        flagged, _ = monitor()
        watcher.wait_for(lambda got: len(got) >= 2, 10, "two health messages over MQTT")
        held, held_log = monitor("--degraded-alerts", "hold")
    finally:
        watcher.close()
        broker.stop()
    changes = [(m["state"], m["reasons"], round(m["t"], 1)) for m in flagged.of("health")]
    assert [c[:2] for c in changes] == [("degraded", ["frozen"]), ("ok", [])], changes
    assert changes[0][2] <= 2.0 and 5.0 <= changes[1][2] <= 7.0, changes
    assert [json.loads(json.dumps(m.payload))["state"] for m in watcher.on("crashwatch/cab/health")][:2] == \
        ["degraded", "ok"]
    (start,) = [a for a in flagged.of("alert") if a["event"] == "start"]
    assert start["t"] < 5.0 and start["camera_degraded"] == ["frozen"]
    assert flagged.of("status")[-1]["camera_health"]["state"] == "ok"
    assert held.of("alert") == [] and "alert 1 held back: the camera cannot see well (frozen)" in held_log
