"""``crashwatch dataset import KIND SRC``: a public crash data set, in the layout its authors publish, written as
this project's research format (``crashwatch.datasets.index``), with ``event_time``, ``alert_time`` where the set has one, and
what the set says of each clip in ``meta``.

Each kind's module reads its set (``read(source, staging, problems)``): the clips it can use, each with the split
the set puts it in, and a Problem for every file or line it cannot use. The clips' videos are then probed, split
(the set's own split, validation drawn from its training part; or fractions of every clip) and written. Nothing a
set holds is left out silently: the report lists every file not used and why, and ``OUT/import_report.json``
keeps it.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from crashwatch.contract.dataset import DatasetError, Problem
from crashwatch.datasets.index import LabelledVideo, check_videos, split_videos, write_dataset

log = logging.getLogger(__name__)

KINDS = ("nexar", "dad", "ccd", "dota")
# For a set without a split of its own (Nexar: only train.csv is labelled), as `dataset index` splits.
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
VAL_FRACTION = 0.1
STAGING = ".import-frames"  # inside OUT: videos encoded from frames wait here until they are moved into a split


@dataclass(frozen=True)
class ImportReport:
    kind: str
    source: Path
    out: Path
    split: str  # how the clips were split, in words
    counts: dict[str, int]
    problems: list[Problem]

    def summary(self) -> str:
        used = sum(self.counts.values())
        return (f"imported {used} clips of {self.kind} from {self.source} into {self.out} ({self.split}): "
                + ", ".join(f"{split} {count}" for split, count in self.counts.items())
                + f"; {len(self.problems)} file(s) or line(s) could not be used")

    def to_json(self) -> dict:
        return {"kind": self.kind, "source": str(self.source), "split": self.split, "counts": self.counts,
                "not_used": [str(p) for p in self.problems]}


def import_dataset(kind: str, source: Path, out: Path, question: str,
                   fractions: tuple[float, float, float] | None = None, val_fraction: float = VAL_FRACTION,
                   seed: int = 0, link: bool = False) -> ImportReport:
    """Read ``source`` as a set of ``kind``, write the research format into ``out`` and return the report
    (also in ``out/import_report.json``). Raises DatasetError when nothing in ``source`` can be used."""
    if kind not in KINDS:
        raise DatasetError(f"unknown data set kind {kind!r}; known: {', '.join(KINDS)}")
    reader = importlib.import_module(f"{__name__}.{kind}").read
    problems: list[Problem] = []
    staging = out / STAGING
    try:
        videos = check_videos(reader(source, staging, problems), problems)
        if not videos:
            raise DatasetError(f"{source}: no usable clips of a {kind} data set"
                               + "".join(f"\n  {p}" for p in problems))
        if fractions is None and any(v.split for v in videos):
            splits, how = own_split(videos, val_fraction, seed, problems), (
                f"the set's own split, validation {val_fraction:g} of its training part")
        else:
            if fractions is None:
                log.info("%s: no split of its own here; splitting its clips %s", source, DEFAULT_FRACTIONS)
            fractions = fractions or DEFAULT_FRACTIONS
            splits, how = split_videos(videos, fractions, seed), "split " + ",".join(f"{f:g}" for f in fractions)
        counts = write_dataset(splits, out, question, link)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report = ImportReport(kind, source, out, how + f", seed {seed}", counts, problems)
    (out / "import_report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    return report


def own_split(videos: list[LabelledVideo], val_fraction: float, seed: int,
              problems: list[Problem]) -> dict[str, list[LabelledVideo]]:
    """The set's own train/test split, validation drawn (stratified, with ``seed``) from its training part. A
    clip the set's split lists leave out is not used, and reported."""
    for video in videos:
        if video.split is None:
            problems.append(Problem(video.path, None, "in none of the set's split lists"))
    train = [v for v in videos if v.split == "train"]
    splits = split_videos(train, (1.0 - val_fraction, val_fraction, 0.0), seed)
    splits["test"] = [v for v in videos if v.split == "test"]
    return splits
