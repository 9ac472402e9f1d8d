"""The package as an install lays it out (``crashwatch/monitor/...``), staged from the repository's folders.

import-linter and mypy find a package's modules by walking its folder, so the folders setup.cfg maps into the
namespace (``package_dir``) are linked into one tree for them. ``python -m tests.support.tree DEST`` stages it
for ``make test``'s checks.
"""

from __future__ import annotations

import configparser
import shutil
import sys
from pathlib import Path

from tests.support.shared import REPO


def rooms() -> dict[str, str]:
    """setup.cfg's ``package_dir``: each subpackage of the namespace and its folder in the repository."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return dict(line.split(" = ") for line in config["options"]["package_dir"].strip().splitlines())


def stage(dest: Path, copy: bool = False) -> Path:
    """Lay out ``dest/crashwatch`` as installed, by symbolic links into the repository (or copies, for a test
    that edits the tree); returns ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    root = dest / "crashwatch"
    root.mkdir(parents=True)
    mapped = {name.split(".", 1)[1]: folder for name, folder in rooms().items() if "." in name}
    for entry in sorted((REPO / "crashwatch").iterdir()):
        if entry.name in ("assets", "__pycache__"):
            continue
        _put(entry, root / entry.name, copy)
    for sub, folder in mapped.items():
        _put(REPO / folder, root / sub, copy)
    return dest


def _put(source: Path, target: Path, copy: bool) -> None:
    if not copy:
        target.symlink_to(source, target_is_directory=source.is_dir())
    elif source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "assets"))
    else:
        shutil.copy2(source, target)


if __name__ == "__main__":
    print(stage(Path(sys.argv[1]).resolve()))
