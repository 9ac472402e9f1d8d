"""Shared fixtures: real video files written by the tests themselves, and the ``../shared`` material."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CLIPS = SHARED / "clips"
SMOLVLM_TOKENIZER = SHARED / "smolvlm" / "SmolVLM-256M-Instruct"
TINY_CONFIG = REPO / "configs" / "tiny.yaml"


def forbid(*packages: str) -> str:
    """Prepended to a `python -c` script: ``packages`` then look not installed."""
    return f"""
import importlib.abc, sys
class _Forbid(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {packages!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (forbidden in this test)", name=name)
sys.meta_path.insert(0, _Forbid())
"""


# As on a host with the runtime-only install.
FORBID_TORCH = forbid("torch", "transformers", "onnx")
QUESTION = "Is a vehicle collision likely to happen within 1 to 2 seconds?(0: No, 1: Yes)"


def need_shared(path: Path) -> Path:
    """Skip (saying why) where a clone has no ../shared beside it; the core suite makes its own videos."""
    if not path.exists():
        pytest.skip(f"{path} is not here (../shared is only beside the developers' and CI's clones)")
    return path


BITS = 8  # a test video's frame carries its index modulo 256 as 8 black/white blocks along its top


def frame_index(frame: np.ndarray) -> int:
    """The index painted into a test video's frame by ``write_video`` (modulo 256); survives compression."""
    block = frame.shape[1] // BITS
    bits = [int(frame[block // 2, b * block + block // 2].mean() > 128) for b in range(BITS)]
    return sum(bit << b for b, bit in enumerate(bits))


def draw_frame(i: int, num_frames: int, size: tuple[int, int] = (96, 64), moving_box: bool = True) -> np.ndarray:
    """Frame ``i`` of ``num_frames`` of a test video: ``i`` in blocks along its top (``frame_index``) and,
    optionally, a box sliding across the grey below."""
    width, height = size
    frame = np.full((height, width, 3), 128, np.uint8)
    block = width // BITS
    for b in range(BITS):
        frame[: block, b * block:(b + 1) * block] = 255 if (i >> b) & 1 else 0
    if moving_box:
        x = int((width - 16) * i / max(num_frames - 1, 1))
        cv2.rectangle(frame, (x, height // 3), (x + 16, height // 3 + 16), (0, 0, 255), -1)
    return frame


def write_video(path: Path, num_frames: int, fps: float = 10.0, size: tuple[int, int] = (96, 64),
                moving_box: bool = True) -> Path:
    """A real MPEG-4 file of ``draw_frame`` frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for i in range(num_frames):
        writer.write(draw_frame(i, num_frames, size, moving_box))
    writer.release()
    return path


def write_split(root: Path, split: str, entries: list[dict], frames: int = 30, fps: float = 10.0) -> None:
    """Write ``root/split/*.mp4`` for each entry's video and ``root/split.jsonl`` with the entries."""
    for entry in entries:
        write_video(root / split / entry["video"], frames, fps)
    (root / f"{split}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")


def write_training_clips(root: Path) -> Path:
    """What the tiny runs train on: 4 training and 2 validation clips in the research layout, half positive."""
    for split, count in (("train", 4), ("val", 2)):
        write_split(root, split, [{"video": f"{split}{i}.mp4", "text": QUESTION, "label": i % 2} for i in range(count)])
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """A small dataset in the research layout: 3-second clips, crash clips with an event time."""
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
