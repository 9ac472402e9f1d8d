"""Writes that survive a power cut: whatever moment the process dies at, a file is either its old content or
its new one, never half of each (temp file, fsync, rename, fsync of the folder)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any


def fsync(path: Path) -> None:
    """Make a file's content, or a folder's entries (a rename, link or unlink lives in the folder, not the
    file), durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def link_or_copy(source: Path, target: Path) -> None:
    """``source`` also at ``target`` (its folder made): a hard link where the file system allows, so that no
    byte is stored twice and deleting one name cannot touch the other, else a copy. For files never written to
    again (evidence, a bundle version's graphs)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def write_json(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON, atomically and durably."""
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    fsync(path.parent)


def append_line(path: Path, data: Any) -> None:
    """Append one JSON line to ``path`` and fsync it; a reader skips a last line cut short by a crash."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(data) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a file ``append_line`` wrote; a line cut short by a crash is left out."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
