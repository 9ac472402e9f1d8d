"""Real video files the tests write themselves: frames that carry their own index, and datasets in the
research format."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

QUESTION = "Is a vehicle collision likely to happen within 1 to 2 seconds?(0: No, 1: Yes)"

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
    """What the tiny runs train on: 4 training and 2 validation clips in the research format, half positive."""
    for split, count in (("train", 4), ("val", 2)):
        write_split(root, split, [{"video": f"{split}{i}.mp4", "text": QUESTION, "label": i % 2} for i in range(count)])
    return root
