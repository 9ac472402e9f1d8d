"""The loop recording's on-disk format: a closed segment and its sidecar, the folder's index, and how much of
the ring is kept. The recorder writes it; the event locker and the dashboard read it through here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from crashwatch.contract.errors import CrashwatchError
from crashwatch.monitor.evidence.disk import SIZE_UNITS
from crashwatch.monitor.evidence.durable import read_lines

INDEX = "index.jsonl"
BROWSER_COPY = "clip.webm"  # the dashboard's transcoded copy in an event folder: derived, not evidence
JOINED = "clip"  # the dashboard's joined segments in an event folder (.mp4 or .webm): derived, not evidence


class RecordingError(CrashwatchError):
    """The recording folder or its settings cannot be used; the message names them."""


@dataclass(frozen=True)
class KeepPolicy:
    """How much of the ring to keep: at most ``max_bytes`` of segments, none older than ``max_age_s``."""

    max_bytes: int | None = None
    max_age_s: float | None = None

    AGES = {"s": 1, "min": 60, "h": 3600, "d": 86400}

    @classmethod
    def parse(cls, text: str) -> "KeepPolicy":
        """``2GB``, ``30min``, ``2GB,1h`` (size and/or age); ValueError saying what is wrong."""
        max_bytes = max_age = None
        for part in (p.strip() for p in text.split(",")):
            match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]+)", part)
            unit = match.group(2).lower() if match else ""
            if match and unit in SIZE_UNITS and max_bytes is None:
                max_bytes = int(float(match.group(1)) * SIZE_UNITS[unit])
            elif match and unit in cls.AGES and max_age is None:
                max_age = float(match.group(1)) * cls.AGES[unit]
            else:
                raise ValueError(f"{text!r}: give a size (500MB, 2GB), an age (30min, 24h, 7d) or both, "
                                 "comma-separated")
        if max_bytes == 0 or max_age == 0:
            raise ValueError(f"{text!r}: a ring of nothing records nothing")
        return cls(max_bytes, max_age)

    def describe(self) -> str:
        parts = ([f"{self.max_bytes / 1e6:.0f} MB"] if self.max_bytes else []) + \
                ([f"{self.max_age_s / 3600:g} h"] if self.max_age_s else [])
        return " and ".join(parts) or "unbounded"


@dataclass
class Segment:
    """One closed segment: its file, and each frame's id, stream time, wall-clock time and time in the file."""

    name: str
    session: str  # the monitor run that wrote it: stream times of different runs are not comparable
    number: int
    fps: float
    codec: str
    bytes: int
    frames: list[dict[str, float]] = field(repr=False)  # id, t, wall, clip_t
    sha256: str = ""  # of the file as closed ("" in a recording made before files were hashed)

    @property
    def t_start(self) -> float:
        return self.frames[0]["t"]

    @property
    def t_end(self) -> float:
        """Just after the last frame: the stream time the next segment starts at."""
        return self.frames[-1]["t"] + 1.0 / self.fps

    @property
    def wall_start(self) -> float:
        return self.frames[0]["wall"]

    @property
    def wall_end(self) -> float:
        return self.frames[-1]["wall"] + 1.0 / self.fps

    @property
    def duration(self) -> float:
        return self.frames[-1]["clip_t"] + 1.0 / self.fps

    def summary(self) -> dict[str, Any]:
        """The index line: where this file lies in stream and wall-clock time."""
        return {"name": self.name, "session": self.session, "number": self.number, "t_start": self.t_start,
                "t_end": self.t_end, "wall_start": self.wall_start, "wall_end": self.wall_end,
                "frames": len(self.frames), "fps": self.fps, "codec": self.codec, "bytes": self.bytes,
                "sha256": self.sha256}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Segment":
        return cls(**{key: data[key] for key in ("name", "session", "number", "fps", "codec", "bytes", "frames")},
                   sha256=data.get("sha256", ""))


class SegmentListener(Protocol):
    def segment_closed(self, segment: Segment) -> None:
        """A segment was closed, whole, and listed in the index."""

    def stretch_lost(self, t_start: float, t_end: float, why: str) -> None:
        """The frames from ``t_start`` to ``t_end`` (stream seconds) could not be recorded, for ``why``."""


def safe_name(camera: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in camera)


def read_index(folder: Path) -> list[dict[str, Any]]:
    """The live segments of a recording folder (``folder/CAMERA``), oldest first, from its index."""
    live: dict[str, dict[str, Any]] = {}
    for record in read_lines(folder / INDEX):
        if "deleted" in record:
            live.pop(record["deleted"], None)
        elif "name" in record:
            live[record["name"]] = record
    return list(live.values())
