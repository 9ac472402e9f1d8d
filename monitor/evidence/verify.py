"""``crashwatch verify``: whether an event's evidence is as the monitor wrote it. An event folder (``--record``)
is checked file by file against its sidecar, along its chain, for files added, and by its signature; an event
clip (``--events`` alone) by its sidecar's SHA-256 and signature."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from crashwatch.contract.errors import CrashwatchError
from crashwatch.monitor.evidence.lock import SIDECAR
from crashwatch.monitor.evidence.proof import Verdict, check_files, check_signature
from crashwatch.monitor.evidence.segments import BROWSER_COPY, JOINED

# Files beside the evidence that are not evidence: the dashboard's playable copies (and their partial files while
# they are made), and the sidecar's temporary file, which a crash mid-write leaves.
DERIVED = (BROWSER_COPY, f".{Path(BROWSER_COPY).stem}.partial.webm", f"{JOINED}.mp4", f".{JOINED}.partial.mp4",
           f"{JOINED}.webm", f".{JOINED}.partial.webm", f".{SIDECAR}.tmp")


class NotEvidence(CrashwatchError):
    """The path given is not an event folder or clip; the message says what was expected."""


def verify(path: Path, trusted: Ed25519PublicKey | None = None) -> Verdict:
    """Everything wrong with the event at ``path`` (a folder holding ``event.json``, or a clip or its
    sidecar), checked against ``trusted`` where given, else against the key the sidecar names."""
    if path.is_dir():
        sidecar = path / SIDECAR
        if not sidecar.is_file():
            raise NotEvidence(f"{path}: not an event folder (no {SIDECAR}); give an event folder or an event clip")
        document = _read(sidecar)
        verdict = Verdict()
        check_signature(document, SIDECAR, trusted, verdict)
        entries = document.get("segments") or []
        check_files(path, entries, verdict, chained=True)
        expected = {SIDECAR, *DERIVED, *(entry["name"] for entry in entries)}
        for extra in sorted(p.name for p in path.iterdir()):
            if extra not in expected:
                verdict.problems.append(f"added: {extra}")
        return verdict
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        raise NotEvidence(f"{path}: no event folder or clip sidecar ({sidecar.name}) here")
    document = _read(sidecar)
    verdict = Verdict()
    check_signature(document, sidecar.name, trusted, verdict)
    clip = {"name": document.get("clip", ""), "bytes": document.get("bytes"), **(
        {"sha256": document["sha256"]} if "sha256" in document else {})}
    check_files(sidecar.parent, [clip], verdict, chained=False)
    return verdict


def _read(sidecar: Path) -> dict:
    try:
        document = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise NotEvidence(f"{sidecar}: unreadable ({err})") from None
    if not isinstance(document, dict):
        raise NotEvidence(f"{sidecar}: not an event sidecar")
    return document
