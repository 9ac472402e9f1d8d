"""Detection of Traffic Anomaly (Yao et al., TPAMI 2022; github.com/MoonBlvd/Detection-of-Traffic-Anomaly), in
the layout of its repository and its frames download:

    SRC/dataset/annotations/VIDEO.json     one per clip (DoTA_annotations.zip; also read from SRC/annotations/)
    SRC/dataset/{train,val}_split.txt      clip names, one a line (also read from SRC/metadata/ or SRC/)
    SRC/frames/VIDEO/images/000000.jpg     the clip's frames at 10 fps (``video2frames.py -f 10``; also
                                           SRC/frames/VIDEO/*.jpg, as that script writes them)

An annotation holds ``video_name``, ``num_frames``, ``anomaly_start`` and ``anomaly_end`` (frame indices of the
clip), ``ego_involve``, ``night``, ``accident_id``, ``accident_name`` (``anomaly_class`` in the metadata files)
and ``ignore``. Every clip shows an anomaly, so every clip is a positive, ``event_time`` = anomaly_start / 10 fps;
its frames before the anomaly are what a model sees of it beforehand. Clips marked ``ignore`` are left out.
The frames are encoded into one video a clip at 10 fps. The set's split is train/val; its val clips (on which the
literature reports DoTA) become the test split here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crashwatch.contract.dataset import Problem
from crashwatch.contract.video import VideoError
from crashwatch.datasets.importers.frames import encode_frames, frame_files
from crashwatch.datasets.importers.paths import first_existing, optional_existing, read_lines
from crashwatch.datasets.index import LabelledVideo
from crashwatch.datasets.progress import progress

FPS = 10.0
SPLIT_LISTS = {"train_split.txt": "train", "val_split.txt": "test"}


def read(source: Path, staging: Path, problems: list[Problem]) -> list[LabelledVideo]:
    annotations = first_existing([source / "dataset" / "annotations", source / "annotations"],
                                 "DoTA annotations folder")
    frames = first_existing([source / "frames"], "DoTA frames folder")
    splits = _split_lists(source)
    found, annotated = [], set()
    for path in progress(sorted(annotations.glob("*.json")), "encoding DoTA frames"):
        annotated.add(path.stem)
        video = _clip(path, frames, staging, splits, problems)
        if video is not None:
            found.append(video)
    problems += [Problem(folder, None, f"no annotation {annotations / folder.name}.json")
                 for folder in sorted(frames.iterdir()) if folder.is_dir() and folder.name not in annotated]
    return found


def _split_lists(source: Path) -> dict[str, str]:
    """Clip name -> train|test from the set's split lists; empty where there are none."""
    splits = {}
    for name, split in SPLIT_LISTS.items():
        listing = optional_existing([source / "dataset" / name, source / "metadata" / name, source / name])
        if listing is not None:
            splits.update({line.strip(): split for line in read_lines(listing) if line.strip()})
    return splits


def _clip(path: Path, frames: Path, staging: Path, splits: dict[str, str],
          problems: list[Problem]) -> LabelledVideo | None:
    """One annotation file and its frames as a clip, or None with its Problem."""
    annotation = _annotation(path, problems)
    if annotation is None:
        return None
    name = annotation["video_name"]
    folder = optional_existing([frames / name / "images", frames / name])
    if folder is None:
        problems.append(Problem(path, None, f"no frames at {frames / name / 'images'}"))
        return None
    count = len(frame_files(folder))
    if annotation["anomaly_start"] >= count:
        problems.append(Problem(path, None, f"anomaly_start {annotation['anomaly_start']} is past the "
                                            f"{count} frames in {folder}"))
        return None
    try:
        video = encode_frames(folder, staging / f"{name}.mp4", FPS)
    except VideoError as err:
        problems.append(Problem(path, None, str(err)))
        return None
    meta = {"ego_involved": bool(annotation.get("ego_involve")), "night": bool(annotation.get("night")),
            "accident_name": annotation.get("accident_name", annotation.get("anomaly_class")),
            "accident_id": annotation.get("accident_id"), "anomaly_end_s": annotation["anomaly_end"] / FPS,
            "source": str(folder.relative_to(frames.parent))}
    return LabelledVideo(video, 1, annotation["anomaly_start"] / FPS,
                         meta={k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool))},
                         split=splits.get(name), move=True)


def _annotation(path: Path, problems: list[Problem]) -> dict[str, Any] | None:
    """The checked annotation of one clip, or None with its Problem (a JSON error names its line)."""
    def problem(line: int | None, message: str) -> None:
        problems.append(Problem(path, line, message))

    try:
        annotation = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        return problem(err.lineno, f"malformed JSON: {err.msg} at column {err.colno}")
    except (OSError, UnicodeDecodeError) as err:
        return problem(None, f"cannot read it ({err})")
    if not isinstance(annotation, dict):
        return problem(None, f"expected a JSON object, got {type(annotation).__name__}")
    if annotation.get("ignore"):
        return problem(None, "marked ignore in its annotation")
    for key in ("anomaly_start", "anomaly_end"):
        value = annotation.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return problem(None, f"{key!r} must be a frame index (a non-negative integer), got {value!r:.40}")
    if annotation["anomaly_end"] < annotation["anomaly_start"]:
        return problem(None, f"anomaly_end {annotation['anomaly_end']} is before anomaly_start "
                             f"{annotation['anomaly_start']}")
    name = annotation.setdefault("video_name", path.stem)
    if not isinstance(name, str) or not name or Path(name).name != name:
        return problem(None, f"'video_name' must be a plain clip name, got {name!r:.40}")
    return annotation
