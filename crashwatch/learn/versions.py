"""A model store: a bundle's versions side by side, the one the monitor runs named in ``CURRENT``, and every
change (an update accepted or refused, a roll-back) in ``history.jsonl``.

    STORE/CURRENT             the running version's name, e.g. v2-1a2b3c4d
    STORE/versions/NAME/      each version, a whole bundle (its manifest's ``lineage`` names its parent)
    STORE/history.jsonl       what happened, one JSON line each
    STORE/features/ROOT/      the cached last-token states (``crashwatch.learn.features``)

``crashwatch monitor --bundle STORE`` runs the current version (``crashwatch.contract.bundle.resolve_bundle``);
``CURRENT`` is replaced in one rename, so a monitor starting meanwhile reads the old name or the new one.
Versions are never deleted or changed here: rolling back is naming another one.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from pathlib import Path
from typing import Any

from crashwatch.contract.bundle import CURRENT, MANIFEST, VERSIONS, Manifest, resolve_bundle
from crashwatch.contract.errors import CrashwatchError
from crashwatch.monitor.evidence.durable import link_or_copy

HISTORY = "history.jsonl"
FEATURES = "features"
NAME = re.compile(r"v[0-9]+-[0-9a-f]{8}")  # a version: its number in the store and its content hash's start


class StoreError(CrashwatchError):
    """A model store that cannot do what was asked; the message says why and what would."""


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _point(folder: Path, name: str) -> None:
    """Name ``name`` in ``folder/CURRENT``, in one rename."""
    partial = folder / f"{CURRENT}.partial"
    partial.write_text(name + "\n", encoding="utf-8")
    os.replace(partial, folder / CURRENT)


class ModelStore:
    """The store in ``folder`` (made by ``create``)."""

    def __init__(self, folder: Path) -> None:
        if not (folder / CURRENT).is_file():
            raise StoreError(f"{folder}: not a model store (no {CURRENT}); make one from a bundle with "
                             "`crashwatch review learn ... --models STORE --bundle BUNDLE`")
        self.folder = folder

    @classmethod
    def create(cls, folder: Path, bundle: Path) -> "ModelStore":
        """A store whose first version is ``bundle`` (its files linked or copied; a store given as the bundle
        gives its current version)."""
        if (folder / CURRENT).exists():
            raise StoreError(f"{folder}: a model store already; leave out --bundle to update its current version")
        if folder.exists() and any(folder.iterdir()):
            raise StoreError(f"{folder}: exists and is not empty; a model store needs a folder of its own")
        source = resolve_bundle(bundle)
        manifest = Manifest.read(source)
        manifest.verify_files(source)
        name = f"v1-{manifest.content_hash[:8]}"
        for file in sorted(source.iterdir()):
            if file.is_file():
                link_or_copy(file, folder / VERSIONS / name / file.name)
        _point(folder, name)
        store = cls(folder)
        store.record({"action": "created", "version": name, "from": str(bundle)})
        return store

    @property
    def current(self) -> str:
        return (self.folder / CURRENT).read_text(encoding="utf-8").strip()

    def path(self, name: str) -> Path:
        path = self.folder / VERSIONS / name
        if not (path / MANIFEST).is_file():
            raise StoreError(f"{self.folder}: no version {name!r} (it holds {', '.join(self.names()) or 'none'})")
        return path

    def names(self) -> list[str]:
        """The versions, oldest first."""
        found = [p.name for p in (self.folder / VERSIONS).iterdir() if p.is_dir() and NAME.fullmatch(p.name)]
        return sorted(found, key=lambda n: int(n[1:].split("-")[0]))

    def lineage(self, name: str) -> dict[str, Any]:
        """The version's ``lineage`` from its manifest ({} for a store's first version)."""
        return dict(Manifest.read(self.path(name)).raw.get("lineage", {}))

    def root(self) -> str:
        """The first version's content hash: whose last-token states every version shares."""
        first = Manifest.read(self.path(self.names()[0]))
        return first.content_hash

    def new_name(self, content_hash: str) -> str:
        return f"v{len(self.names()) + 1}-{content_hash[:8]}"

    def features(self) -> Path:
        return self.folder / FEATURES / self.root()[:16]

    def promote(self, name: str, why: dict[str, Any]) -> None:
        """Make ``name`` the version the monitor runs, and say why in the history."""
        self.path(name)
        previous = self.current
        _point(self.folder, name)
        self.record({"action": "accepted", "version": name, "replaces": previous, **why})

    def rollback(self, to: str | None = None) -> tuple[str, str]:
        """Run ``to`` again (default: the current version's parent); returns (from, to)."""
        current = self.current
        if to is None:
            to = self.lineage(current).get("parent_version")
            if to is None:
                raise StoreError(f"{current} is the store's first version: there is nothing to roll back to")
        self.path(to)
        _point(self.folder, to)
        self.record({"action": "rolled back", "version": to, "replaces": current})
        return current, to

    def record(self, entry: dict[str, Any]) -> None:
        with (self.folder / HISTORY).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"at": _now(), **entry}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def history(self) -> list[dict[str, Any]]:
        path = self.folder / HISTORY
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

