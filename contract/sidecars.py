"""The files a dataset may carry beside the research JSONL, each with its one reader.

- ``DATA/{split}_truth.json``: ground truth per file name, as ``crashwatch synth`` writes it (scenario
  ``kind``; for drives, ``segments`` and ``segment_starts_s``). Evaluation reads kinds and segments from it.
- ``NAME.geometry.json`` beside a clip: what every frame shows (``size``, and per frame ``ego_speed`` and each
  drawn road user's box, distance and offset), for ``training.geometry_weight``.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from crashwatch.contract.dataset import DatasetError

TRUTH_SUFFIX = "_truth.json"
GEOMETRY_SUFFIX = ".geometry.json"


class GeometryError(DatasetError):
    """A geometry file that is missing or unreadable; the message names it."""


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
