"""``crashwatch dataset index``: the research ``dataset_script.py``, grown up.

From a folder of labelled videos (``positive/`` and ``negative/`` subfolders) or a CSV (columns ``video`` or
``file``, ``label``, optional ``event_time`` or ``event_time_s``; paths relative to the CSV), write the
research format: ``OUT/{train,val,test}/`` with the videos and ``OUT/{split}.jsonl``. Splits are stratified
by label and drawn with a seed. Every video is checked to decode first. The importers of public data sets
(``crashwatch.datasets.importers``) write the layout with the same functions.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crashwatch.contract.dataset import SPLITS, DatasetError, Problem
from crashwatch.contract.video import VideoError, probe_clip
from crashwatch.datasets.progress import progress

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


@dataclass(frozen=True)
class LabelledVideo:
    """A video and what its source says of it. ``name`` is its file name in the dataset (default: its own),
    ``split`` the split its source puts it in (None: the source has none), ``move`` that the file was made for
    this import (frames encoded into a video) and is moved into place rather than copied."""

    path: Path
    label: int
    event_time: float | None = None
    alert_time: float | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    name: str = ""
    split: str | None = None
    move: bool = False

    @property
    def file_name(self) -> str:
        return self.name or self.path.name

    def entry(self, question: str) -> dict[str, Any]:
        """Its line of ``{split}.jsonl``."""
        entry: dict[str, Any] = {"video": self.file_name, "text": question, "label": self.label}
        for key, value in (("event_time", self.event_time), ("alert_time", self.alert_time), ("meta", self.meta)):
            if value is not None and value != {}:
                entry[key] = value
        return entry


def from_folders(source: Path) -> list[LabelledVideo]:
    """Videos under ``source/positive`` (label 1) and ``source/negative`` (label 0)."""
    found = []
    for name, label in (("positive", 1), ("negative", 0)):
        folder = source / name
        if not folder.is_dir():
            raise DatasetError(f"{source}: expected subfolders positive/ and negative/ ({folder} is missing)")
        found += [LabelledVideo(p, label) for p in sorted(folder.iterdir()) if p.suffix.lower() in VIDEO_SUFFIXES]
    return found


def from_csv(table: Path) -> tuple[list[LabelledVideo], list[Problem]]:
    """Rows of a CSV; rows with problems are returned apart, each naming its line."""
    found, problems = [], []
    try:
        handle = table.open(newline="", encoding="utf-8")
    except OSError as err:
        raise DatasetError(f"{table}: cannot read it ({err.strerror or err})") from None
    with handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or [])
        video_key = "video" if "video" in columns else "file"
        if video_key not in columns or "label" not in columns:
            raise DatasetError(f"{table}: needs a 'video' (or 'file') and a 'label' column, has {sorted(columns)}")
        event_key = next((k for k in ("event_time", "event_time_s") if k in columns), None)
        for row in reader:
            line = reader.line_num
            label_text = (row.get("label") or "").strip()
            if label_text not in ("0", "1"):
                problems.append(Problem(table, line, f"label must be 0 or 1, got {label_text!r}"))
                continue
            event_text = (row.get(event_key) or "").strip() if event_key else ""
            event = None
            if event_text:
                try:
                    event = float(event_text)
                except ValueError:
                    event = -1.0
                if not math.isfinite(event) or event < 0:
                    problems.append(Problem(table, line, f"event time must be a non-negative number, got {event_text!r}"))
                    continue
            found.append(LabelledVideo(table.parent / row[video_key], int(label_text), event))
    return found, problems


def split_videos(videos: list[LabelledVideo], fractions: tuple[float, float, float],
                 seed: int) -> dict[str, list[LabelledVideo]]:
    """Stratified split: each label's videos shuffled with ``seed`` and cut by ``fractions`` (train, val, test).
    A split with a share gets at least one video of each label where there are enough (train first, then val,
    then test): a small set would otherwise leave val or test without a class, or empty."""
    rng = random.Random(seed)
    splits: dict[str, list[LabelledVideo]] = {s: [] for s in SPLITS}
    for label in (0, 1):
        group = [v for v in videos if v.label == label]
        rng.shuffle(group)
        n_val = round(len(group) * fractions[1])
        n_test = round(len(group) * fractions[2])
        if fractions[1] > 0 and n_val == 0 and len(group) - n_test >= 2:
            n_val = 1
        if fractions[2] > 0 and n_test == 0 and len(group) - n_val >= 2:
            n_test = 1
        n_train = len(group) - n_val - n_test
        splits["train"] += group[:n_train]
        splits["val"] += group[n_train:n_train + n_val]
        splits["test"] += group[n_train + n_val:]
    return splits


def describe_splits(splits: dict[str, list[LabelledVideo]]) -> str:
    """Each split's clips by class, and what a split lacks that training or evaluation needs."""
    parts, lacking = [], []
    for split in SPLITS:
        videos = splits.get(split, [])
        positive = sum(v.label for v in videos)
        parts.append(f"{split} {len(videos)} ({positive} positive, {len(videos) - positive} negative)")
        if split in ("train", "val") and not videos:
            lacking.append(f"{split} is empty (crashwatch train needs train and val)")
        elif videos and positive in (0, len(videos)):
            lacking.append(f"{split} holds one class only (AUROC and calibration need both)")
    return ", ".join(parts) + ("" if not lacking else "; " + "; ".join(lacking) + ": the set is too small to split")


def write_dataset(splits: dict[str, list[LabelledVideo]], out: Path, question: str,
                  link: bool = False) -> dict[str, int]:
    """Put the videos into ``out/{split}/`` (copied, hard-linked with ``link``, moved when made for this import)
    and write the JSONL files; says each split's clips by class (a warning where a split lacks what training
    or evaluation needs). Returns the count per split."""
    described = describe_splits(splits)
    (log.warning if "too small to split" in described else log.info)("%s: %s", out, described)
    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)
    placed = [(split, video) for split in SPLITS for video in splits.get(split, [])]
    for split, video in progress(placed, "writing"):
        _place(video, out / split / video.file_name, link)
    for split in SPLITS:
        lines = [json.dumps(video.entry(question)) + "\n" for video in splits.get(split, [])]
        (out / f"{split}.jsonl").write_text("".join(lines), encoding="utf-8")
    return {split: len(splits.get(split, [])) for split in SPLITS}


def _place(video: LabelledVideo, target: Path, link: bool) -> None:
    if target.exists():
        target.unlink()
    if video.move:
        shutil.move(video.path, target)
    elif link:
        os.link(video.path, target)
    else:
        shutil.copy2(video.path, target)


def check_videos(videos: list[LabelledVideo], problems: list[Problem]) -> list[LabelledVideo]:
    """Keep the videos that decode whole; add a Problem for each that does not (or is damaged in the middle),
    or whose name repeats another's."""
    good, names = [], set()
    for video in progress(videos, "checking videos"):
        if video.file_name in names:
            problems.append(Problem(video.path, None, "another video has the same file name; names must be unique"))
            continue
        try:
            info = probe_clip(video.path)
        except VideoError as err:
            problems.append(Problem(video.path, None, str(err)))
            continue
        if info.damaged:
            where = ", ".join(f"{a} to {b} ({a / info.fps:.2f} to {b / info.fps:.2f} s)" for a, b in info.damaged)
            problems.append(Problem(video.path, None, f"damaged: frames {where} do not decode, frames after them do "
                                                      "(training would see only the frames before the damage)"))
            continue
        names.add(video.file_name)
        good.append(video)
    return good


def index_dataset(source: Path, out: Path, question: str, fractions: tuple[float, float, float], seed: int,
                  link: bool = False, skip_bad: bool = False) -> dict[str, int]:
    """``crashwatch dataset index``: read ``source`` (folders or CSV), check every video, write the layout.
    Problems stop it, listed with their file and line, unless ``skip_bad`` leaves them out with a warning."""
    if source.is_dir():
        videos, problems = from_folders(source), []
    else:
        videos, problems = from_csv(source)
    videos = check_videos(videos, problems)
    if problems:
        listing = "\n  ".join(str(p) for p in problems)
        if not skip_bad:
            raise DatasetError(f"{source}: {len(problems)} problem(s) (use --skip-bad to leave them out):\n  {listing}")
        log.warning("leaving out %d video(s):\n  %s", len(problems), listing)
    if not videos:
        raise DatasetError(f"{source}: no usable videos")
    return write_dataset(split_videos(videos, fractions, seed), out, question, link)
