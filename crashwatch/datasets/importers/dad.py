"""The Dashcam Accident Dataset (Chan et al., ACCV 2016; github.com/smallcorgi/Anticipating-Accidents), in the
layout of its download:

    SRC/videos/{training,testing}/{positive,negative}/NAME.mp4    (or SRC/{training,testing}/... directly)

Every clip is 100 frames at 20 fps; a positive clip's accident is at frame 90 by the set's convention (its
evaluation takes the first 90 frames: ``accident.py``, ``total_time = 90``), so ``event_time`` is 4.5 s. A
folder of frame images in place of a video (``NAME/001.jpg`` ...; some repositories hold the clips so) is
encoded at 20 fps. Names repeat across the four folders, so a clip is named by its place:
``training-positive-000001.mp4``. The set's split is training/testing.
"""

from __future__ import annotations

from pathlib import Path

from crashwatch.contract.dataset import Problem
from crashwatch.contract.video import VideoError
from crashwatch.datasets.importers.frames import encode_frames
from crashwatch.datasets.importers.paths import first_existing
from crashwatch.datasets.index import VIDEO_SUFFIXES, LabelledVideo
from crashwatch.datasets.progress import progress

FPS = 20.0
EVENT_TIME = 90 / FPS
SPLITS = {"training": "train", "testing": "test"}
LABELS = {"positive": 1, "negative": 0}


def read(source: Path, staging: Path, problems: list[Problem]) -> list[LabelledVideo]:
    root = first_existing([source / "videos" / "training", source / "videos" / "testing", source / "training",
                           source / "testing"], "DAD training/ or testing/ folder").parent
    entries = []
    for part, split in SPLITS.items():
        for kind, label in LABELS.items():
            folder = root / part / kind
            if not folder.is_dir():
                problems.append(Problem(folder, None, "no such folder: its clips are not imported"))
                continue
            entries += [(entry, split, label) for entry in sorted(folder.iterdir())]
    found = []
    for entry, split, label in progress(entries, "reading DAD"):
        video = _clip(entry, root, split, label, staging, problems)
        if video is not None:
            found.append(video)
    return found


def _clip(entry: Path, root: Path, split: str, label: int, staging: Path,
          problems: list[Problem]) -> LabelledVideo | None:
    relative = entry.relative_to(root)
    name = "-".join(relative.parent.parts + (entry.stem,)) + ".mp4"
    path, move = entry, False
    if entry.is_dir():
        try:
            path, move = encode_frames(entry, staging / name, FPS), True
        except VideoError as err:
            problems.append(Problem(entry, None, str(err)))
            return None
    elif entry.suffix.lower() not in VIDEO_SUFFIXES:
        problems.append(Problem(entry, None, "neither a video nor a folder of frames"))
        return None
    return LabelledVideo(path, label, EVENT_TIME if label else None, meta={"source": str(relative)}, name=name,
                         split=split, move=move)
