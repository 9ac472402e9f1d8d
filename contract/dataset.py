"""The research dataset format, read strictly.

``DATA/{split}.jsonl`` holds one clip a line, ``{"video": "x.mp4", "text": "<question>", "label": 0|1}`` and
optionally ``"event_time"`` (seconds from the clip's start to the collision; past the clip's end where the clip
stops before it, as in the research labels: a collision 1 to 2 s after the clip), ``"alert_time"`` (the second
from which the collision can be foreseen, as the Nexar set labels it; needs ``event_time`` and is not after it)
and ``"meta"`` (what the clip's public data set says of it that a user filters on: ego involvement, weather,
accident type, its file there; an object of plain values, which training ignores); the videos lie in
``DATA/{split}/``. Other keys are refused, so a misspelt ``event_time`` is not silently dropped. Everything is
checked before training starts: every problem names the file and line. With ``skip_bad`` the bad lines are
dropped, counted and listed in a warning; nothing is skipped silently.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from crashwatch.contract.errors import CrashwatchError
from crashwatch.contract.video import ClipInfo, VideoError, probe_clip

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
REQUIRED = {"video": str, "text": str, "label": int}
OPTIONAL = ("event_time", "alert_time", "meta")
# A line longer than this is not a clip description; refusing it early keeps a corrupt file from eating memory.
MAX_LINE_BYTES = 64 * 1024


class DatasetError(CrashwatchError):
    """The dataset cannot be used as it is; ``problems`` lists every bad line."""

    def __init__(self, message: str, problems: list["Problem"] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


@dataclass(frozen=True)
class Problem:
    """One bad line (or a whole-file problem when ``line`` is None)."""

    file: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        if self.line is not None:
            return f"{self.file}:{self.line}: {self.message}"
        # A video's own error names it (or the frame inside it) already: "x.mp4: x.mp4: ..." says it twice.
        return self.message if self.message.startswith(f"{self.file}") else f"{self.file}: {self.message}"


@dataclass(frozen=True)
class Clip:
    """A validated dataset line and what its video holds."""

    video: Path
    text: str
    label: int
    event_time: float | None
    line: int
    info: ClipInfo
    alert_time: float | None = None
    # Left out of equality and the hash: clips key sets and dicts (training windows), and a dict hashes not.
    meta: dict[str, str | int | float | bool | None] = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        return self.video.name


def _parse_line(raw: bytes, source: Path, number: int) -> dict | Problem:
    """The JSON object on one line, type-checked, or the Problem with it."""
    def problem(message: str) -> Problem:
        return Problem(source, number, message)

    if len(raw) > MAX_LINE_BYTES:
        return problem(f"line is {len(raw)} bytes, over the {MAX_LINE_BYTES}-byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return problem(f"not UTF-8 ({err.reason} at byte {err.start})")
    try:
        entry = json.loads(text)
    except json.JSONDecodeError as err:
        return problem(f"malformed JSON: {err.msg} at column {err.colno}")
    if not isinstance(entry, dict):
        return problem(f"expected a JSON object, got {type(entry).__name__}")
    unknown = sorted(set(entry) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        return problem(f"unknown key(s) {unknown}; allowed: {', '.join([*REQUIRED, *OPTIONAL])}")
    for key, kind in REQUIRED.items():
        if key not in entry:
            return problem(f"missing key {key!r}")
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            return problem(f"{key!r} must be {kind.__name__}, got {type(value).__name__} {value!r:.40}")
    if entry["label"] not in (0, 1):
        return problem(f"'label' must be 0 or 1, got {entry['label']}")
    if not entry["text"].strip():
        return problem("'text' is empty")
    for key in ("event_time", "alert_time"):
        seconds = entry.get(key)
        if seconds is not None and not _is_seconds(seconds):
            return problem(f"{key!r} must be a non-negative number of seconds, got {seconds!r:.40}")
    alert, event = entry.get("alert_time"), entry.get("event_time")
    if alert is not None and (event is None or alert > event):
        return problem(f"'alert_time' {alert} needs an 'event_time' at or after it, got {event!r}")
    meta = entry.get("meta")
    if meta is not None:
        if not isinstance(meta, dict):
            return problem(f"'meta' must be a JSON object, got {type(meta).__name__}")
        nested = sorted(k for k, v in meta.items() if v is not None and not isinstance(v, (str, int, float, bool)))
        if nested:
            return problem(f"'meta' values must be strings, numbers, booleans or null; {nested} are not")
    return entry


def _is_seconds(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


def _resolve_video(folder: Path, name: str) -> Path | str:
    """The video's path inside ``folder``, or why it is refused (paths may not leave the split folder)."""
    relative = Path(name)
    if not name or relative.is_absolute() or ".." in relative.parts:
        return f"video path {name!r} must be relative and stay inside {folder}"
    path = folder / relative
    try:
        real = path.resolve(strict=False)
        root = folder.resolve(strict=False)
    except (OSError, RuntimeError) as err:
        return f"video path {name!r} cannot be resolved: {err}"
    if root not in real.parents:
        return f"video path {name!r} leads outside {folder} (through a link)"
    return path


def read_split(data_dir: str | Path, split: str, skip_bad: bool = False) -> list[Clip]:
    """Validate ``DATA/{split}.jsonl`` and every video it names. Raises DatasetError listing all problems,
    unless ``skip_bad``, where bad lines are dropped with a warning that counts and lists them."""
    data_dir = Path(data_dir)
    source = data_dir / f"{split}.jsonl"
    folder = data_dir / split
    try:
        raw_lines = source.read_bytes().split(b"\n")
    except OSError as err:
        raise DatasetError(f"{source}: cannot read it ({err.strerror or err})") from None
    clips: list[Clip] = []
    problems: list[Problem] = []
    for number, raw in enumerate(raw_lines, start=1):
        raw = raw.removesuffix(b"\r")  # JSONL lines end at "\n"; a Windows "\r\n" is fine too
        if not raw.strip():
            continue
        entry = _parse_line(raw, source, number)
        if isinstance(entry, Problem):
            problems.append(entry)
            continue
        video = _resolve_video(folder, entry["video"])
        if isinstance(video, str):
            problems.append(Problem(source, number, video))
            continue
        try:
            info = probe_clip(video)
        except VideoError as err:
            problems.append(Problem(source, number, str(err)))
            continue
        if info.damaged:
            log.warning("%s line %d: %s is damaged: frames %s do not decode; each window takes the last whole "
                        "frame before them in their place", source, number, video,
                        ", ".join(f"{a} to {b} ({a / info.fps:.2f} to {b / info.fps:.2f} s)" for a, b in info.damaged))
        event, alert = entry.get("event_time"), entry.get("alert_time")
        clips.append(Clip(video, entry["text"], entry["label"], None if event is None else float(event), number, info,
                          None if alert is None else float(alert), dict(entry.get("meta") or {})))
    if problems:
        listing = "\n  ".join(str(p) for p in problems)
        if not skip_bad:
            raise DatasetError(f"{source}: {len(problems)} bad line(s) (use --skip-bad to drop them):\n  {listing}", problems)
        log.warning("%s: skipping %d bad line(s):\n  %s", source, len(problems), listing)
    if not clips:
        raise DatasetError(f"{source}: no usable clips", problems)
    log.info("%s: %d clips (%d positive)", source, len(clips), sum(c.label for c in clips))
    return clips
