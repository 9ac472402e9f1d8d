"""Reading the JSON files that describe a checkpoint or a bundle: present, parseable, of the right format and
of a version this crashwatch reads, with messages that name the file and say what to do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_versioned_json(path: Path, fmt: str, version: int | tuple[int, ...], error: type[Exception],
                        made_by: str) -> dict[str, Any]:
    """The JSON object at ``path``, checked for ``"format": fmt`` and a ``"version"`` among ``version``.

    ``made_by`` names the command that writes such folders, for the hint when the file is missing.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: missing; is {path.parent} a folder written by `{made_by}`?") from None
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"{path}: unreadable ({err})") from None
    return parse_versioned_json(text, str(path), fmt, version, error)


def parse_versioned_json(text: str | bytes, where: str, fmt: str, version: int | tuple[int, ...],
                         error: type[Exception]) -> dict[str, Any]:
    """``text`` as a JSON object of format ``fmt`` and a version among ``version`` (one, or those this crashwatch
    reads); ``where`` names it in errors (a file, or what it was received from: a bundle's manifest comes from a
    Triton server too)."""
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{where}: unreadable ({err})") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise error(f"{where}: not a {fmt} description")
    versions = (version,) if isinstance(version, int) else version
    found = data.get("version")
    if found not in versions:
        newer = isinstance(found, int) and found > max(versions)
        readable = ", ".join(map(str, versions[:-1])) + f" and {versions[-1]}" if len(versions) > 1 else str(versions[0])
        raise error(f"{where}: format version {found!r}; this crashwatch reads version {readable}"
                    + (" (upgrade crashwatch to use it)" if newer else ""))
    return data
