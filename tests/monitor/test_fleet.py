"""Many cameras, one model: the cameras file, batched graphs that give each
camera what it would get alone, and three cameras in one process (two real files, one real RTSP camera that is
killed and restarted) with a real ZeroMQ subscriber."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from crashwatch.bench.process import free_port
from crashwatch.cli import main
from crashwatch.contract.config import ConfigError
from crashwatch.demo import DEMO_BUNDLE
from crashwatch.monitor.engines.batching import BatchingGraph, batching_engine, rows_independent
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.pipeline.camera import Monitor
from crashwatch.monitor.pipeline.options import MonitorOptions
from crashwatch.monitor.pipeline.source import parse_source
from crashwatch.monitor.serving.cameras import load_cameras
from crashwatch.monitor.serving.fleet import Fleet
from crashwatch.monitor.transports.zeromq import Publisher
from tests.support.collector import Collector
from tests.support.media import write_video
from tests.support.shared import REPO


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cameras.yaml"
    path.write_text(text)
    return path


def test_the_example_cameras_file_loads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_video(tmp_path / "recordings" / "yard.mp4", 10)
    config = load_cameras(REPO / "configs" / "cameras.example.yaml")
    assert [c.camera for c in config.cameras] == ["front", "yard"]
    assert config.cameras[0].source.target == "rtsp://cam1.local/stream" and config.serve.pub == "tcp://127.0.0.1:5555"


@pytest.mark.parametrize("text,message", [
    ("cameras: []\n", "cameras: list at least one camera"),
    ("", "the file is empty"),
    ("camera:\n  - {name: a, source: 0}\n", "unknown key(s) camera"),
    ("cameras:\n  - {name: a, source: 0}\n  - {name: b, source: 1, alert: {on: 1.5}}\n",
     "cameras[1].alert.on: must be a number from 0 to 1"),
    ("cameras:\n  - {name: a, source: 0, alert: {on: 0.5, of: 0.2}}\n", "unknown key(s) cameras[0].alert.of"),
    ("cameras:\n  - {name: a, source: 0}\n  - {name: a, source: 1}\n", "camera name(s) ['a'] used more than once"),
    ("cameras:\n  - {name: 'front/left', source: 0}\n", "cameras[0].name"),
    ("cameras:\n  - {name: process, source: 0}\n", "cameras[0].name"),
    ("cameras:\n  - {name: a, source: ftp://x/y}\n", "cameras[0].source: ftp://x/y: unsupported URL scheme"),
    ("cameras:\n  - {name: a, source: /no/such.mp4}\n", "cameras[0].source: /no/such.mp4: no such video file"),
    ("cameras:\n  - {name: a, source: 0, stride: -1}\n", "cameras[0].stride"),
    ("cameras:\n  - {name: a, source: 'rtsp://h/s', replay: fast}\n", "cameras[0].replay: fast is for files"),
    ("cameras:\n  - {name: a, source: 0, record_keep: lots}\n", "cameras[0].record_keep"),
    ("pub: tcp://127.0.0.1:99999\ncameras:\n  - {name: a, source: 0}\n", "pub: tcp://127.0.0.1:99999: port"),
    ("cameras:\n  - {name: a, source: 0}\nmqtt: {url: 'http://h'}\n", "mqtt.url"),
    ("cameras: {name: a}\n", "cameras: must be a list"),
    ("cameras:\n  - {name: a}\n", "cameras[0]"),
])
def test_a_bad_cameras_file_is_refused_naming_file_and_key(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_cameras(path)
    assert str(caught.value).startswith(str(path)) and message in str(caught.value), caught.value


def test_per_camera_options_beside_config_are_a_usage_error(tmp_path):
    path = _write(tmp_path, "cameras:\n  - {name: a, source: 0}\n")
    result = CliRunner().invoke(main, ["monitor", "--config", str(path), "--stride", "1", "--camera", "x"])
    assert result.exit_code == 2 and "--camera, --stride: set in the cameras file" in result.output


def _concurrently(graph, feeds: list[dict]) -> list[np.ndarray]:
    results: list = [None] * len(feeds)
    start = threading.Barrier(len(feeds))

    def call(i: int) -> None:
        start.wait()
        results[i] = graph(feeds[i])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(feeds))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _window_feeds(model: RiskModel, count: int) -> list[dict]:
    rng = np.random.default_rng(0)
    m = model.manifest
    feeds = []
    for i in range(count):
        embeds = rng.normal(scale=1 + i, size=(1, model.prompt_length, m.hidden_size)).astype(np.float32)
        feeds.append({"inputs_embeds": embeds, "attention_mask": np.ones((1, model.prompt_length), np.int64)})
    return feeds


def test_batched_calls_give_each_camera_what_it_gets_alone(tiny_bundle):
    model = RiskModel.open(tiny_bundle)  # fp32: rows are independent, so calls are batched
    assert rows_independent(model.engine)
    head = model.engine.graphs["head"]
    feeds = _window_feeds(model, 6)
    alone = [head(feed) for feed in feeds]
    batched = BatchingGraph(head, "head", batch_rows=True)
    for _ in range(5):
        together = _concurrently(batched, feeds)
        for one, other in zip(alone, together):
            np.testing.assert_allclose(other, one, atol=1e-5)
    stats = batched.stats()
    batched.close()
    assert stats["calls"] == 30 and stats["max_batch"] > 1 and stats["batches"] < 30  # some ran together


def test_int8_graphs_are_not_batched_across_cameras(tmp_path):
    model = RiskModel.open(DEMO_BUNDLE)  # int8, dynamically quantized: a batch would mix the cameras' scales
    assert not rows_independent(model.engine)
    head = model.engine.graphs["head"]
    feeds = _window_feeds(model, 4)
    alone = [head(feed) for feed in feeds]
    together_in_one_call = head({k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]})
    assert not np.allclose(together_in_one_call[0], alone[0][0], atol=1e-6)  # why: the first row changed
    model.engine, graphs = batching_engine(model.engine)
    results = _concurrently(model.engine.graphs["head"], feeds)
    for graph in graphs:
        graph.close()
    for one, other in zip(alone, results):
        np.testing.assert_array_equal(other, one)  # exactly what each gets alone


def test_three_cameras_one_process_an_rtsp_outage_leaves_the_others_alone(tiny_bundle, rtsp_camera, tmp_path):
    clips = [write_video(tmp_path / f"{name}.mp4", 400, fps=10) for name in ("front", "yard")]
    path = _write(tmp_path, f"""
bundle: {tiny_bundle}
pub: tcp://127.0.0.1:{free_port()}
cameras:
  - {{name: front, source: {clips[0]}}}
  - {{name: yard, source: {clips[1]}, stride: 1.0}}
  - {{name: gate, source: '{rtsp_camera.url}'}}
""")
    config = load_cameras(path)
    model = RiskModel.open(config.serve.bundle)
    publisher = Publisher(config.serve.pub)
    collector = Collector(config.serve.pub)
    stop = threading.Event()
    fleet = Fleet(model, config.options(), publisher, stop=stop)
    runner = threading.Thread(target=fleet.run)
    runner.start()
    try:
        assert collector.wait_for(lambda c: {m["camera"] for m in c.of("risk")} >= {"front", "yard", "gate"}, 30)
        time.sleep(4)
        before = (len(collector.messages), _risks(collector))
        time.sleep(4)
        rtsp_camera.kill()
        assert collector.wait_for(lambda c: any(s["camera"] == "gate" and s["source"]["state"] == "reconnecting"
                                                for s in c.of("status")), 20)
        killed = (len(collector.messages), _risks(collector))
        time.sleep(4)
        during = (len(collector.messages), _risks(collector))
        rtsp_camera.start()
        assert collector.wait_for(lambda c: _risks(c)["gate"] > during[1]["gate"], 30), "gate did not come back"
    finally:
        stop.set()
        runner.join(timeout=20)
        collector.stop()
        publisher.close()
    spacing = model.manifest.window.spacing  # front's default stride
    for name, stride in (("front", spacing), ("yard", 1.0)):  # each at its own rate, the outage or not
        spacing_before = _spacing(collector, name, before[0], killed[0])
        spacing_during = _spacing(collector, name, killed[0], during[0])
        assert spacing_before == pytest.approx(stride, rel=0.10), (name, spacing_before)
        assert spacing_during == pytest.approx(spacing_before, rel=0.10), (name, spacing_before, spacing_during)
    for name in ("front", "yard", "gate"):  # per camera and topic, seq without a gap
        for topic in ("risk", "status"):
            seqs = [m["seq"] for m in collector.of(topic) if m["camera"] == name]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), (name, topic)
    process = collector.of("process")
    assert process and set(process[-1]["cameras"]) == {"front", "yard", "gate"}
    assert process[-1]["batches"]["vision"]["calls"] > 0 and process[-1]["memory_mb"] > 0


def _spacing(collector: Collector, camera: str, start: int, end: int) -> float:
    """Stream seconds between the windows of ``camera`` that arrived between two points of the run."""
    times = [m["t"] for topic, m in collector.messages[start:end] if topic == "risk" and m["camera"] == camera]
    assert len(times) >= 3, (camera, times)
    return (times[-1] - times[0]) / (len(times) - 1)


def _risks(collector: Collector) -> dict[str, int]:
    counts = {"front": 0, "yard": 0, "gate": 0}
    for message in collector.of("risk"):
        counts[message["camera"]] += 1
    return counts


def test_the_buffer_keeps_only_frames_a_window_can_pick(tiny_bundle, tmp_path):
    """Memory per camera: the capture buffer drops frames no window can pick; the windows are the same."""
    clip = write_video(tmp_path / "c.mp4", 150, fps=30)
    runs = {}
    for name, held_events in (("thinned", {}), ("every frame", {"events_dir": tmp_path / "events",
                                                                 "events_hold": "memory"})):
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        monitor = Monitor(RiskModel.open(tiny_bundle), MonitorOptions(source=parse_source(str(clip)), replay="fast",
                                                                 **held_events),
                          lambda status: Publisher(endpoint, "cam", status=status))
        held = []
        push = monitor.buffer.push
        monitor.buffer.push = lambda frame: (push(frame), held.append(len(monitor.buffer.snapshot())))
        monitor.run()
        runs[name] = ([r.frame_ids for r in monitor.risks], max(held))
    assert runs["thinned"][0] == runs["every frame"][0]  # every window picked the very same frames
    assert runs["thinned"][1] * 5 < runs["every frame"][1]  # at 30 fps, 2 s windows of 4 frames


def test_one_camera_is_a_fleet_of_one_without_batching_or_a_process_heartbeat(tiny_bundle, tmp_path):
    clip = write_video(tmp_path / "c.mp4", 100)
    cameras = [MonitorOptions(source=parse_source(str(clip)), camera=name) for name in ("a", "b")]
    for count in (1, 2):
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        publisher = Publisher(endpoint)
        collector = Collector(endpoint)
        try:
            fleet = Fleet(RiskModel.open(tiny_bundle), cameras[:count], publisher)
            runner = threading.Thread(target=fleet.run)
            runner.start()
            assert collector.wait_for(lambda c: len(c.of("status")) >= 2 * count, 10)
            heard_process = bool(collector.of("process"))
            fleet.stop.set()
            runner.join(timeout=10)
        finally:
            publisher.close()
            collector.stop()
        assert heard_process == (count == 2)
        assert (fleet.channel is None, fleet.graphs == []) == (count == 1, count == 1)
