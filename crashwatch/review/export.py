"""Verdicts become data (``crashwatch review export``): the reviewed events of an events folder as a research
dataset (docs/data.md), ready for ``crashwatch train`` or ``eval``.

Each confirmed event is a positive clip whose ``event_time`` is the reviewer's mark (seconds into the event's
video: what the dashboard's player shows), each dismissed one a negative with its reason in ``meta``; the clip
is the event's video as kept (the alert's window and what followed it; an event folder's segments one after
the other). Events not reviewed, back to ``needs_review`` or still being written are left out and counted.
The evidence goes along untouched, with its proof: ``DATA/evidence/`` holds each event's files as the monitor
wrote them, which ``crashwatch verify`` checks there as in the events folder.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from crashwatch.contract.errors import CrashwatchError
from crashwatch.contract.prompt import DEFAULT_QUESTION
from crashwatch.monitor.evidence.codecs import DEFAULT_BITS
from crashwatch.monitor.evidence.durable import link_or_copy
from crashwatch.review.events import EventClip, join, joinable, list_events, transcode
from crashwatch.review.verdicts import Decision, VerdictStore

log = logging.getLogger(__name__)

EVIDENCE = "evidence"


class ExportError(CrashwatchError):
    """An export that would overwrite a dataset, or has nothing to write; the message says which."""


def _keep_evidence(event: EventClip, folder: Path) -> None:
    for file, name in event.evidence_files():
        link_or_copy(file, folder / name)


def export_reviewed(events_dir: Path, out: Path, split: str = "train", question: str = DEFAULT_QUESTION) -> dict[str, Any]:
    """Write ``out/{split}.jsonl``, ``out/{split}/`` and ``out/evidence/``; returns the counts written and left
    out (with why)."""
    lines_path = out / f"{split}.jsonl"
    if lines_path.exists():
        raise ExportError(f"{lines_path}: exists already; export into another folder or split")
    store = VerdictStore(events_dir)
    verdicts = store.current()
    written: list[dict[str, Any]] = []
    left: dict[str, int] = {}
    for event in list_events(events_dir):
        name = event.path.name
        verdict = verdicts.get(name)
        why = "not reviewed" if verdict is None else "needs review" if verdict.decision is Decision.NEEDS_REVIEW \
            else None if event.complete() else "still being written"
        if why is not None:
            left[why] = left.get(why, 0) + 1
            continue
        assert verdict is not None
        summary = event.summary()
        stem = Path(name).stem
        video = out / split / f"{stem}.mp4"
        video.parent.mkdir(parents=True, exist_ok=True)
        sources = event.videos()
        if len(sources) == 1 and sources[0].suffix == ".mp4":
            shutil.copyfile(sources[0], video)
        elif sources[0].suffix == ".mp4" and joinable(sources, {"h264", "mpeg4", "av1", "libdav1d"}):
            join(sources, video)
        else:
            transcode(sources, video, "h264", max_width=1 << 16, bitrate=DEFAULT_BITS)
        _keep_evidence(event, out / EVIDENCE)
        meta = {"event": name, "camera": summary["camera"], "alert_start_s": summary["start"],
                "reviewer": verdict.reviewer, "reviewed_at": verdict.at, "source": "review"}
        line: dict[str, Any] = {"video": video.name, "text": question,
                                "label": int(verdict.decision is Decision.CONFIRMED)}
        if verdict.decision is Decision.CONFIRMED and verdict.mark_s is not None:
            line["event_time"] = verdict.mark_s
        if verdict.reason is not None:
            meta["reason"] = verdict.reason
        written.append({**line, "meta": meta})
    store.close()
    if not written:
        raise ExportError(f"{events_dir}: no event confirmed or dismissed yet"
                          + (f" ({', '.join(f'{n} {why}' for why, n in left.items())})" if left else ""))
    lines_path.write_text("".join(json.dumps(line) + "\n" for line in written), encoding="utf-8")
    log.info("exported %d reviewed events to %s", len(written), lines_path)
    return {"written": len(written), "confirmed": sum(line["label"] for line in written),
            "dismissed": sum(1 - line["label"] for line in written), "left_out": left, "jsonl": str(lines_path)}
