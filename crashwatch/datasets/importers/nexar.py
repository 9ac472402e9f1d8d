"""The Nexar Dashcam Collision Prediction set (Moura et al. 2025, arXiv:2503.03848; Kaggle
``nexar-collision-prediction``), in the competition's layout:

    SRC/train.csv      id, time_of_event, time_of_alert, target (the Hugging Face copy adds light_conditions,
                       weather, scene)
    SRC/train/*.mp4    named by id, zero-padded to five digits (id 42: 00042.mp4), about 40 s at 30 fps
    SRC/test.csv       id only: the test labels are not in this layout, so the test videos are not imported

A collision or near miss (target 1) has ``time_of_event`` (the collision) and ``time_of_alert`` (from when it
can be foreseen), seconds from the video's start; normal driving (target 0) has neither. Columns beyond those
four are kept in ``meta``. The set has no labelled split of its own: its clips are split by fractions.
"""

from __future__ import annotations

import csv
from pathlib import Path

from crashwatch.contract.dataset import DatasetError, Problem
from crashwatch.datasets.importers.paths import first_existing, seconds
from crashwatch.datasets.index import VIDEO_SUFFIXES, LabelledVideo

COLUMNS = ("id", "time_of_event", "time_of_alert", "target")


def video_name(clip_id: str) -> str:
    """``42`` and ``00042`` -> ``00042.mp4``, as the competition names its files; other ids as they are."""
    return f"{int(clip_id):05d}.mp4" if clip_id.isdigit() else f"{clip_id}.mp4"


def read(source: Path, staging: Path, problems: list[Problem]) -> list[LabelledVideo]:
    table = first_existing([source / "train.csv"], "Nexar train.csv")
    videos_dir = source / "train"
    try:
        handle = table.open(newline="", encoding="utf-8")
    except OSError as err:
        raise DatasetError(f"{table}: cannot read it ({err.strerror or err})") from None
    found, named = [], set()
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{table}:1: missing column(s) {missing}; has {reader.fieldnames}")
        extra = [c for c in reader.fieldnames or [] if c not in COLUMNS]
        for row in reader:
            named.add(video_name((row["id"] or "").strip()))  # a bad row's video is reported with the row
            video = _row(row, reader.line_num, table, videos_dir, extra, problems)
            if video is not None:
                found.append(video)
    if videos_dir.is_dir():
        problems += [Problem(path, None, f"not named in {table.name}") for path in sorted(videos_dir.iterdir())
                     if path.suffix.lower() in VIDEO_SUFFIXES and path.name not in named]
    test = source / "test.csv"
    if test.is_file():
        problems.append(Problem(test, None, "ids only, no labels (the competition keeps them): its videos are "
                                            "not imported"))
    return found


def _row(row: dict[str, str | None], line: int, table: Path, videos_dir: Path, extra: list[str],
         problems: list[Problem]) -> LabelledVideo | None:
    """One row of train.csv as a clip, or None with its Problem."""
    def problem(message: str) -> None:
        problems.append(Problem(table, line, message))

    if None in row:  # DictReader's key for cells beyond the header
        return problem(f"{len(row[None])} more cell(s) than the header has")
    clip_id, target = (row["id"] or "").strip(), (row["target"] or "").strip()
    if not clip_id:
        return problem("empty id")
    if target not in ("0", "1"):
        return problem(f"target must be 0 or 1, got {target!r}")
    try:
        event, alert = seconds(row["time_of_event"] or ""), seconds(row["time_of_alert"] or "")
    except ValueError as err:
        return problem(f"time_of_event/time_of_alert: {err}")
    label = int(target)
    if label == 0 and (event is not None or alert is not None):
        return problem("normal driving (target 0) with a time_of_event or time_of_alert")
    if label == 1 and event is None:
        return problem("a collision (target 1) without time_of_event")
    if alert is not None and alert > event:
        return problem(f"time_of_alert {alert} is after time_of_event {event}")
    path = videos_dir / video_name(clip_id)
    if not path.is_file():
        return problem(f"no video {path}")
    meta = {"source": f"train/{path.name}", **{c: row[c].strip() for c in extra if (row[c] or "").strip()}}
    return LabelledVideo(path, label, event, alert, meta)
