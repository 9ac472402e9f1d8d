"""Shared fixtures: datasets, a tiny trained run and its bundle, made once per session, and a real RTSP camera.
Helpers live in ``tests.support``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.support.media import QUESTION, write_split, write_training_clips, write_video
from tests.support.shared import CLIPS, TINY_CONFIG, need_shared

# `--runtime auto` keeps what it measured per CPU and bundle: the tests' bundles go to a cache of their own, not
# the user's (a test of the cache sets its own folder).
os.environ.setdefault("CRASHWATCH_CACHE_DIR", tempfile.mkdtemp(prefix="crashwatch-test-cache-"))


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """A small dataset in the research format: 3-second clips, crash clips with an event time."""
    root = tmp_path / "data"
    for split, count in (("train", 6), ("val", 4), ("test", 4)):
        entries = []
        for i in range(count):
            label = i % 2
            entry = {"video": f"{split}_{i}.mp4", "text": QUESTION, "label": label}
            if label:
                entry["event_time"] = 2.8
            entries.append(entry)
        write_split(root, split, entries)
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The tiny config trained for one epoch on written clips: a real checkpoint, made once per test session."""
    from crashwatch.train.config import load_config
    from crashwatch.train.fit import train

    root = tmp_path_factory.mktemp("tiny-run")
    train(load_config(TINY_CONFIG), write_training_clips(root / "data"), root / "run")
    return root / "run"


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run, tmp_path_factory) -> Path:
    """``tiny_run`` exported as an fp32 bundle."""
    from crashwatch.export.exporter import export_bundle

    root = tmp_path_factory.mktemp("tiny-bundle")
    export_bundle(tiny_run, root / "bundle", "fp32", write_video(root / "parity.mp4", 30))
    return root / "bundle"


@pytest.fixture
def rtsp_camera():
    """A real RTSP camera on loopback (GStreamer's RTSP server) streaming a real H.264 dashcam clip; the test
    may kill and start it again."""
    from crashwatch.bench.rtsp import RtspServer, rtsp_server_available

    clip = need_shared(CLIPS / "highway_640.mp4")
    if not rtsp_server_available():
        pytest.skip("GStreamer's RTSP server (python3-gi, gir1.2-gst-rtsp-server-1.0) is not installed")
    camera = RtspServer(clip).start()
    yield camera
    camera.kill()
