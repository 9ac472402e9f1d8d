"""A folder of frame images turned into a video, for the data sets published as frames (DoTA, and DAD as some
repositories hold it): the trainer and the monitor read videos, and one file a clip keeps the layout the same."""

from __future__ import annotations

import re
from pathlib import Path

import cv2

from crashwatch.contract.video import VideoError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def frame_files(folder: Path) -> list[Path]:
    """The images in ``folder`` in frame order: by the numbers in their names (``9.jpg`` before ``10.jpg``)."""
    def order(path: Path) -> list[int | str]:
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.stem)]

    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=order)


def encode_frames(folder: Path, target: Path, fps: float) -> Path:
    """Write the frames of ``folder`` to ``target`` (MPEG-4 at ``fps``; frames of another size are resized to the
    first's). Raises VideoError naming the folder without frames or the image that does not decode; nothing is
    left at ``target`` then."""
    frames = frame_files(folder)
    if not frames:
        raise VideoError(f"{folder}: no frame images ({', '.join(sorted(IMAGE_SUFFIXES))}) in it")
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for path in frames:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise VideoError(f"{path}: the image does not decode")
            if writer is None:
                size = (image.shape[1], image.shape[0])
                writer = cv2.VideoWriter(str(target), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
                if not writer.isOpened():
                    raise VideoError(f"{target}: OpenCV cannot write a video here")
            if (image.shape[1], image.shape[0]) != size:
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            writer.write(image)
    except BaseException:
        if writer is not None:
            writer.release()
        target.unlink(missing_ok=True)
        raise
    writer.release()
    return target
