"""The disk evidence goes to, in the project's words: what an ``OSError`` there means (``no space left on
/media/sd``), how much room is left, and sizes as a user writes them (``500MB``)."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

SIZE_UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_size(text: str) -> int:
    """``500MB``, ``1.5GB``, ``64KiB`` as bytes; ValueError saying what is wrong."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*", str(text))
    if not match or match.group(2).lower() not in SIZE_UNITS:
        raise ValueError(f"{text!r}: give a size such as 500MB, 2GB or 64KiB")
    return int(float(match.group(1)) * SIZE_UNITS[match.group(2).lower()])


def _existing(path: Path) -> Path:
    """``path``, or its nearest parent that exists (a folder not made yet lies on its parent's disk)."""
    return next((p for p in (path, *path.absolute().parents) if p.exists()), Path(path.absolute().anchor))


def mount_of(path: Path) -> Path:
    """The mount point ``path`` lies on."""
    here = _existing(path)
    while not os.path.ismount(here) and here != here.parent:
        here = here.parent
    return here


def free_bytes(path: Path) -> int | None:
    """Bytes free to this user where ``path`` lies (None where that cannot be read)."""
    try:
        return shutil.disk_usage(_existing(path)).free
    except OSError:
        return None


def make_writable(folder: Path) -> None:
    """Make ``folder`` where it is missing and check that it may be written; the ``OSError`` of the disk
    otherwise (``describe`` words it)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise PermissionError(errno.EACCES, "Permission denied", str(folder))


def describe(err: OSError, path: Path) -> str:
    """``err``, met writing at ``path``, as one line a user acts on."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on {mount_of(path)}"
    if err.errno == errno.EROFS:
        return f"{mount_of(path)} is mounted read-only"
    if err.errno in (errno.EACCES, errno.EPERM):
        return f"{path}: permission denied"
    if err.errno == errno.ENOENT:
        return f"{path}: no such folder (is its disk mounted?)"
    if err.errno == errno.EIO:
        return f"input/output error on {mount_of(path)} (a failing or removed card?)"
    return f"{path}: {err.strerror or err}"


def check_folder(folder: Path, what: str) -> str | None:
    """Whether ``folder`` can be written now (made where missing): None, or why not in words, logged once as a
    WARNING saying that monitoring goes on (a disk never stops the warnings)."""
    try:
        make_writable(folder)
    except OSError as err:
        why = describe(err, folder)
        log.warning("%s %s cannot be written now: %s. Scoring and alerts go on; each event tries again", what,
                    folder, why)
        return why
    return None
