"""What the importers share in reading a set's own layout: finding its files where its releases put them, and
reading its numbers, each refusal naming the file (and line) and what is wrong."""

from __future__ import annotations

import math
from pathlib import Path

from crashwatch.contract.dataset import DatasetError


def first_existing(candidates: list[Path], what: str) -> Path:
    """The first of ``candidates`` that exists: releases and the repositories that re-host a set put its files
    in different folders. Raises DatasetError naming every place looked at."""
    for path in candidates:
        if path.exists():
            return path
    raise DatasetError(f"no {what}: looked for {', '.join(str(p) for p in candidates)}")


def optional_existing(candidates: list[Path]) -> Path | None:
    return next((path for path in candidates if path.exists()), None)


def seconds(text: str) -> float | None:
    """A non-negative, finite number of seconds, None for an empty field; ValueError for anything else."""
    text = text.strip()
    if not text:
        return None
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} is not a non-negative number of seconds")
    return value


def read_lines(path: Path) -> list[str]:
    """The lines of a text file of the set; DatasetError naming it when it cannot be read as UTF-8 text."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read it as text ({err})") from None
