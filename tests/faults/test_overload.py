"""A monitor on a bundle too slow for its stride: the stride lengthens, windows keep sharing frames, and no
frame is encoded twice. The bundle is made slow on purpose: a 12-layer text model over a 648-token
prompt, run on one thread, takes about twice the 0.2 s stride a window on this project's CPUs."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from crashwatch.bench.process import free_port
from crashwatch.contract.window import grid_at_or_after
from crashwatch.monitor.engines.model import RiskModel
from crashwatch.monitor.frame import Frame
from crashwatch.monitor.messages import CollectingOutlet
from crashwatch.monitor.pipeline.buffer import FrameBuffer
from crashwatch.monitor.pipeline.camera import Monitor
from crashwatch.monitor.pipeline.options import MonitorOptions
from crashwatch.monitor.pipeline.prefetch import WindowPrefetcher
from crashwatch.monitor.pipeline.scorer import WindowScorer
from crashwatch.monitor.pipeline.source import parse_source
from crashwatch.monitor.transports.zeromq import Publisher
from tests.support.collector import Collector
from tests.support.media import QUESTION, draw_frame, write_split, write_video
from tests.support.shared import TINY_CONFIG
from tests.support.timing import within

SLOW = {"window_seconds": 1.4, "num_frames": 8, "image_size": 256,
        "text_config": {"hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 12,
                        "num_attention_heads": 8},
        "vision_config": {"image_size": 256}}


@pytest.fixture(scope="module")
def slow_bundle(tmp_path_factory) -> Path:
    """The tiny config with a large text model and 8 frames of 64 tokens, random weights, exported to fp32."""
    from crashwatch.export.exporter import export_bundle
    from crashwatch.train.config import load_config
    from crashwatch.train.fit import train

    root = tmp_path_factory.mktemp("slow")
    config = yaml.safe_load(TINY_CONFIG.read_text())
    architecture = config["backbone"]["architecture"]
    for part in ("text_config", "vision_config"):
        architecture[part].update(SLOW[part])
    config.update({k: SLOW[k] for k in ("window_seconds", "num_frames", "image_size")})
    (root / "slow.yaml").write_text(yaml.safe_dump(config))
    for split in ("train", "val"):
        write_split(root / "data", split, [{"video": f"{split}{i}.mp4", "text": QUESTION, "label": i} for i in (0, 1)])
    train(load_config(root / "slow.yaml"), root / "data", root / "run", max_steps=0)
    export_bundle(root / "run", root / "bundle", "fp32", write_video(root / "parity.mp4", 30))
    return root / "bundle"


@pytest.mark.timed
def test_an_overloaded_monitor_lengthens_its_stride_and_encodes_only_new_frames(slow_bundle, tmp_path):
    clip = write_video(tmp_path / "drive.mp4", 200, fps=25.0)  # 8 s, replayed in real time
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    monitor = Monitor(RiskModel.open(slow_bundle, threads=1),
                      MonitorOptions(source=parse_source(str(clip)), replay="realtime"),
                      lambda status: Publisher(endpoint, "cam0", status=status))
    assert monitor.stride == pytest.approx(0.2)
    collector = Collector(endpoint)
    try:
        assert collector.wait_for(lambda c: c.of("status"), 5), "no status heartbeat reached the subscriber"
        summary = monitor.run()
        collector.wait_for(lambda c: len(c.of("risk")) >= summary["strides"], 3)
    finally:
        collector.stop()
    risks = collector.of("risk")
    assert len(risks) == summary["strides"] and summary["strides_skipped"] > 0, summary

    previous: set[int] = set()
    for risk in risks:  # never more vision passes than frames the window does not share with the last one
        ids = set(risk["frame_ids"])
        assert risk["timings"]["frames_encoded"] <= len(ids - previous), risk
        previous = ids
    scored = set().union(*(r["frame_ids"] for r in risks))
    assert monitor.scorer.passes == len(scored)  # each frame scored encoded once, none encoded in vain
    effective = [r["effective_stride_s"] for r in risks[1:]]
    assert all(round(e / 0.2, 6).is_integer() for e in effective), effective  # whole strides: frames shared
    longer = [r for r in risks if r["effective_stride_s"] and r["effective_stride_s"] > 0.2 + 1e-6]
    assert longer and all("head takes" in r["stride_reason"] for r in longer), longer[:1]
    full = [r for r in risks if not r["partial"]]
    for a, b in zip(full, full[1:]):  # a window slid by k strides keeps all but k of its 8 frames
        assert len(set(a["frame_ids"]) & set(b["frame_ids"])) == 8 - round(b["effective_stride_s"] / 0.2), (a, b)
    typical = float(np.mean(effective))
    assert typical > 0.2  # the machine cannot keep the 0.2 s stride with this bundle on one thread
    # No backlog: a queue of windows would raise every latency and go on raising it, so the median is held to
    # 2 strides and the worst window to 3. A p99 over a dozen windows is the worst one, which one stall of a
    # loaded shared host pushed past 2 strides (1.31 to 1.46 s against 1.3 s, on unchanged code too).
    latencies = [r["latency_ms"] for r in risks]
    assert np.median(latencies) <= 2 * typical * 1000 and max(latencies) <= 3 * typical * 1000, latencies

    statuses = [s for s in collector.of("status") if s.get("effective_stride_s")]
    assert statuses and statuses[-1]["stride_s"] == pytest.approx(0.2)


def test_a_monitor_that_cannot_hold_real_time_says_so_at_start_and_marks_its_late_risks(slow_bundle, tmp_path,
                                                                                     caplog):
    clip = write_video(tmp_path / "drive.mp4", 100, fps=25.0)
    model = RiskModel.open(slow_bundle, threads=1)
    timing = model.timing()
    assert timing is not None and timing.score_ms > 200  # measured here: the head is the slow part
    with caplog.at_level(logging.WARNING):
        monitor = Monitor(model, MonitorOptions(source=parse_source(str(clip)), replay="realtime"),
                          lambda status: CollectingOutlet())
    said = [r.getMessage() for r in caplog.records if "cannot hold real time" in r.getMessage()]
    assert len(said) == 1 and "more than the 0.20 s stride" in said[0] and "Ways out" in said[0], said
    realtime = monitor.status().realtime
    assert realtime is not None and realtime["holds"] is False and realtime["late_after_s"] == pytest.approx(0.2)
    monitor.run()
    assert any(risk.late for risk in monitor.risks)
    assert all(risk.late == (risk.latency_ms > 200) for risk in monitor.risks)


def test_a_monitor_that_holds_real_time_says_nothing_and_marks_nothing_late(tiny_bundle, tmp_path, caplog):
    clip = write_video(tmp_path / "drive.mp4", 30)
    with caplog.at_level(logging.WARNING):
        monitor = Monitor(RiskModel.open(tiny_bundle), MonitorOptions(source=parse_source(str(clip)), replay="fast"),
                          lambda status: CollectingOutlet())
    assert "cannot hold real time" not in caplog.text
    realtime = monitor.status().realtime
    assert realtime is not None and realtime["holds"] and realtime["encode_ms"] > 0 and realtime["reasons"] == []


def test_with_vision_slower_than_the_frame_spacing_the_next_window_is_one_not_begun(tiny_bundle):
    """Live, once vision passes take longer than the frame spacing, the prefetcher does not take the newest window
    (all of whose frames are there, so its score would come every frame's pass after its end) but the first that
    has not begun, encoding each frame as it arrives: its score then comes about one pass after its last frame.
    Vision's slowness is what the scorer measured; the frames, buffer, model and passes are real."""
    model = RiskModel.open(tiny_bundle)
    m = model.manifest
    buffer, stop = FrameBuffer(30.0), threading.Event()
    scorer = WindowScorer(model, m.window, m.pixels)
    scorer.vision_ms.extend([2000 * m.window.spacing] * 8)  # twice the frame spacing, as measured
    prefetcher = WindowPrefetcher(buffer, scorer, m.window, stride=0.5, stop=stop, paced=False)
    fps = 10
    image = draw_frame(0, 1, (96, 64))

    def push(until: float) -> None:
        while (buffer.snapshot()[-1].t if buffer.snapshot() else -1) < until - 1e-6:
            t = len(pushed) / fps
            buffer.push(Frame(len(pushed), t, time.time(), image))
            pushed.append(t)

    pushed: list[float] = []
    push(6.0)  # six seconds are there when the prefetcher starts
    prefetcher.start()
    try:
        expected = grid_at_or_after(6.0 + m.window.seconds, 0.5)  # the first window whose frames are all to come
        time.sleep(0.5)
        assert prefetcher.ready_after(0.0, 0.1) is None  # not the window ending at 6 s, whose frames were there
        push(expected)
        window = prefetcher.ready_after(expected, within(10))
        assert window is not None and window[0] == pytest.approx(expected)
        # each nominal time's newest frame at or before it, as arrived after the window was chosen
        assert [f.t for f in window[1]] == pytest.approx([int(n * fps + 1e-6) / fps
                                                          for n in m.window.nominal_times(expected)])
        assert min(f.t for f in window[1]) > 6.0 - 1e-6
        assert scorer.passes == m.window.num_frames  # only its frames were encoded, each once
    finally:
        stop.set()
        buffer.close()
        prefetcher.join(5)
