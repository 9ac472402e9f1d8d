"""The files a dataset may carry beside the research JSONL, each with its one reader.

- ``DATA/{split}_truth.json``: ground truth per file name, as ``crashwatch synth`` writes it (scenario
  ``kind``; for drives, ``segments`` and ``segment_starts_s``). Evaluation reads kinds and segments from it.
- ``NAME.geometry.json`` beside a clip: what every frame shows (``size``, and per frame ``ego_speed`` and each
  drawn road user's box, distance and offset), for ``training.geometry_weight``.
- ``NAME.boxes.json`` beside a clip or drive: the road users in view per frame, the one a collision involves
  marked ``target``; ``replay-eval`` reads it for the explanation's pointing game. ``crashwatch synth`` writes
  one beside every video; for a labelled real clip, write one by hand::

    {"frames": [{"t": 0.0, "boxes": [{"box": [0.41, 0.52, 0.58, 0.71], "label": "car", "target": true}]},
                {"t": 0.1, "boxes": []}]}

  ``t``: seconds from the video's start, strictly increasing (a frame per video frame, or only the labelled
  ones); ``box``: ``[x0, y0, x1, y1]`` relative to the full frame (0..1, x to the right, y down, ``x0 < x1``,
  ``y0 < y1``); ``label``: what the road user is (free text: ``car``, ``truck``, ``pedestrian``, ...;
  optional); ``target`` (optional, default false): the road user the collision involves, at most one per
  frame. Frames without a target, or without boxes, are fine; other keys are ignored.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, TypeGuard

from crashwatch.contract.dataset import DatasetError

TRUTH_SUFFIX = "_truth.json"
GEOMETRY_SUFFIX = ".geometry.json"
BOXES_SUFFIX = ".boxes.json"


class GeometryError(DatasetError):
    """A geometry file that is missing or unreadable; the message names it."""


class BoxesError(DatasetError):
    """A boxes file that is missing or not in the format; the message names it, the frame and box, and what is
    wrong."""


def truth_path(data: Path, split: str) -> Path:
    return data / f"{split}{TRUTH_SUFFIX}"


def read_truth(data: Path, split: str) -> dict[str, dict[str, Any]]:
    """The split's ground truth per file name; empty where the split has none (real data sets)."""
    path = truth_path(data, split)
    if not path.is_file():
        return {}
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: unreadable ground truth ({err})") from None
    if not isinstance(truth, dict):
        raise DatasetError(f"{path}: expected a JSON object of file names, got {type(truth).__name__}")
    return {name: entry for name, entry in truth.items() if isinstance(entry, dict)}


def kinds_of(truth: dict[str, dict[str, Any]], names: Iterable[str]) -> list[str] | None:
    """Each named file's kind where the truth names one for every file; None otherwise."""
    kinds = [truth.get(name, {}).get("kind") for name in names]
    return [str(kind) for kind in kinds] if kinds and all(isinstance(kind, str) for kind in kinds) else None


@dataclass(frozen=True)
class Segments:
    """What each stretch of a file shows, and the second each starts at."""

    starts: list[float]
    kinds: list[str]

    def at(self, t: float) -> str:
        """What the segment playing at ``t`` shows."""
        return self.kinds[max(bisect.bisect_right(self.starts, t) - 1, 0)]


def segments_of(truth: dict[str, dict[str, Any]]) -> dict[str, Segments]:
    """Per file name, its segments, where the truth says (generated drives); empty otherwise."""
    return {name: Segments(entry["segment_starts_s"], entry["segments"]) for name, entry in truth.items()
            if "segment_starts_s" in entry and "segments" in entry}


def geometry_path(video: Path) -> Path:
    """Where the per-frame geometry of ``video`` lies: beside it, ``NAME.geometry.json``."""
    return video.with_suffix(GEOMETRY_SUFFIX)


@dataclass(frozen=True)
class FrameGeometry:
    """A clip's per-frame geometry file: the frame size it was drawn at and what each frame shows."""

    width: int
    height: int
    frames: list[dict[str, Any]]

    @classmethod
    def read(cls, path: Path) -> "FrameGeometry":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            width, height = (int(v) for v in data["size"])
            return cls(width, height, list(data["frames"]))
        except FileNotFoundError:
            raise GeometryError(f"{path}: no such geometry file (training.geometry_weight needs one beside every "
                                "training video, as `crashwatch synth` writes; set it to 0 for other data)") from None
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise GeometryError(f"{path}: not a geometry file ({err})") from None


def boxes_path(video: Path) -> Path:
    """Where the per-frame road-user boxes of ``video`` lie: beside it, ``NAME.boxes.json``."""
    return video.with_suffix(BOXES_SUFFIX)


@dataclass(frozen=True)
class Box:
    """A road user in a frame: its box relative to the full frame (0..1, x to the right, y down), what it is,
    and whether it is the one the collision involves."""

    x0: float
    y0: float
    x1: float
    y1: float
    label: str = ""
    target: bool = False

    def contains(self, x: float, y: float) -> bool:
        """Whether the point (``x``, ``y``), relative to the frame as the box is, lies in the box (edges in)."""
        return self.x0 <= x <= self.x1 and self.y0 <= y <= self.y1


@dataclass(frozen=True)
class BoxFrame:
    """The boxes of one frame, ``t`` seconds from the video's start."""

    t: float
    boxes: tuple[Box, ...]

    @property
    def target(self) -> Box | None:
        """The box of the road user the collision involves, where this frame has one."""
        return next((box for box in self.boxes if box.target), None)


@dataclass(frozen=True)
class Boxes:
    """A video's ``NAME.boxes.json``: its frames' road-user boxes, in time order."""

    frames: tuple[BoxFrame, ...]
    _times: list[float] = field(init=False, repr=False, compare=False)
    _half: float = field(init=False, repr=False, compare=False)  # half a frame: half the median spacing

    def __post_init__(self) -> None:
        times = [frame.t for frame in self.frames]
        gaps = sorted(b - a for a, b in zip(times, times[1:]))
        object.__setattr__(self, "_times", times)
        object.__setattr__(self, "_half", gaps[len(gaps) // 2] / 2 if gaps else 0.0)

    def frame_at(self, t: float) -> BoxFrame | None:
        """The frame nearest to stream time ``t`` (seconds from the video's start), or None where ``t`` lies
        before the first frame or after the last by more than half a frame (half the frames' median spacing;
        a file of one frame holds at its own time only)."""
        times = self._times
        if not times or not times[0] - self._half - 1e-9 <= t <= times[-1] + self._half + 1e-9:
            return None
        k = bisect.bisect_left(times, t)
        if k == len(times) or (k > 0 and t - times[k - 1] <= times[k] - t):
            k -= 1
        return self.frames[k]

    def at(self, t: float) -> tuple[Box, ...] | None:
        """The boxes of the frame nearest to stream time ``t``, or None where ``t`` lies outside the frames by
        more than half a frame (``frame_at``)."""
        frame = self.frame_at(t)
        return None if frame is None else frame.boxes

    def target_at(self, t: float) -> Box | None:
        """The box of the road user the collision involves in the frame nearest to ``t``, where it has one."""
        frame = self.frame_at(t)
        return None if frame is None else frame.target

    def as_json(self, digits: int = 4) -> dict[str, Any]:
        """The file's content (what ``read_boxes`` reads back), numbers rounded to ``digits`` decimals."""
        return {"frames": [{"t": round(frame.t, digits),
                            "boxes": [{"box": [round(v, digits) for v in (box.x0, box.y0, box.x1, box.y1)],
                                       "label": box.label, "target": box.target} for box in frame.boxes]}
                           for frame in self.frames]}


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_boxes(path: Path) -> Boxes:
    """A boxes file (format in the module's docstring), checked; ``BoxesError`` names the file, the frame and
    box index, and what is wrong."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BoxesError(f"{path}: no such boxes file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BoxesError(f"{path}: unreadable boxes file ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise BoxesError(f"{path}: expected a JSON object with a 'frames' list")
    if not data["frames"]:
        raise BoxesError(f"{path}: no frames")
    frames: list[BoxFrame] = []
    for i, frame in enumerate(data["frames"]):
        where = f"{path}: frame {i}"
        if not isinstance(frame, dict):
            raise BoxesError(f"{where}: expected an object with 't' and 'boxes', got {type(frame).__name__}")
        t = frame.get("t")
        if not _number(t) or t < 0:
            raise BoxesError(f"{where}: 't' must be a number of seconds >= 0, got {t!r}")
        if frames and t <= frames[-1].t:
            raise BoxesError(f"{where}: 't' must increase strictly from frame to frame, got {t} after {frames[-1].t}")
        if not isinstance(frame.get("boxes"), list):
            raise BoxesError(f"{where}: 'boxes' must be a list, got {frame.get('boxes')!r}")
        boxes = tuple(_read_box(box, f"{where}, box {j}") for j, box in enumerate(frame["boxes"]))
        targets = sum(box.target for box in boxes)
        if targets > 1:
            raise BoxesError(f"{where}: {targets} boxes are 'target'; at most one may be")
        frames.append(BoxFrame(float(t), boxes))
    return Boxes(tuple(frames))


def _read_box(box: Any, where: str) -> Box:
    if not isinstance(box, dict):
        raise BoxesError(f"{where}: expected an object with 'box', got {type(box).__name__}")
    corners = box.get("box")
    if not (isinstance(corners, list) and len(corners) == 4 and all(_number(v) for v in corners)):
        raise BoxesError(f"{where}: 'box' must be [x0, y0, x1, y1], four numbers, got {corners!r}")
    x0, y0, x1, y1 = (float(v) for v in corners)
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise BoxesError(f"{where}: 'box' must be relative to the frame, 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, "
                         f"got {corners!r}")
    label = box.get("label", "")
    if not isinstance(label, str):
        raise BoxesError(f"{where}: 'label' must be a string, got {label!r}")
    target = box.get("target", False)
    if not isinstance(target, bool):
        raise BoxesError(f"{where}: 'target' must be true or false, got {target!r}")
    return Box(x0, y0, x1, y1, label, target)
