"""A progress bar for the long passes over a data set (probing, copying, encoding thousands of clips).

tqdm is imported when a bar is made, not with the module, so that the commands importing this one still load
where only the runtime is installed; the bar shows on a terminal only (``disable=None``), never in logs.
"""

from __future__ import annotations

from typing import Iterable, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterable[T]:
    from tqdm import tqdm

    return tqdm(items, desc=description, total=total, unit="clip", disable=None, leave=False)
