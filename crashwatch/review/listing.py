"""The events a reviewer asks for: every event of the folder with its standing verdict, newest first, filtered
by camera, day, level and verdict, a page at a time. ``crashwatch review list`` and the dashboard's
``/api/events`` both answer from here."""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crashwatch.review.events import ClipError, list_events
from crashwatch.review.verdicts import Decision, ReviewError, VerdictStore

log = logging.getLogger(__name__)

UNREVIEWED = "unreviewed"  # the verdict filter for events no one has given one
PER_PAGE = 20


@dataclass(frozen=True)
class EventQuery:
    """What to list; each filter None for all. ``since`` and ``until`` are days (``YYYY-MM-DD``, UTC), both
    included."""

    camera: str | None = None
    verdict: str | None = None  # a Decision's value, or UNREVIEWED
    level: str | None = None
    since: str | None = None
    until: str | None = None
    page: int = 1
    per_page: int = PER_PAGE

    def check(self) -> None:
        verdicts = [d.value for d in Decision] + [UNREVIEWED]
        if self.verdict is not None and self.verdict not in verdicts:
            raise ReviewError(f"verdict {self.verdict!r}: one of {', '.join(verdicts)}")
        for name in ("since", "until"):
            _day(getattr(self, name), name)
        if self.page < 1 or not 1 <= self.per_page <= 500:
            raise ReviewError("page counts from 1, and a page holds 1 to 500 events")


def _day(text: str | None, name: str) -> float | None:
    """The wall clock a day starts at (UTC)."""
    if text is None:
        return None
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        raise ReviewError(f"{name} {text!r}: a day is written YYYY-MM-DD") from None
    return datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.timezone.utc).timestamp()


def query(events_dir: Path, store: VerdictStore, q: EventQuery) -> dict[str, Any]:
    """``{"events": [...], "total": N, "page": P, "pages": K}``: each event's summary with its ``verdict``
    (the standing one, null when unreviewed). An event whose sidecar cannot be read is listed by name with its
    ``error`` rather than left out."""
    q.check()
    since, until = _day(q.since, "since"), _day(q.until, "until")
    verdicts = store.current()
    rows = []
    for event in list_events(events_dir):
        try:
            row = event.summary()
        except ClipError as err:
            rows.append({"name": event.path.name, "error": str(err), "started_at": 0.0, "verdict": None})
            continue
        verdict = verdicts.get(row["name"])
        row["verdict"] = None if verdict is None else verdict.to_json()
        decision = UNREVIEWED if verdict is None else verdict.decision.value
        if (q.camera is not None and row["camera"] != q.camera) or (q.level is not None and row["level"] != q.level) \
                or (q.verdict is not None and decision != q.verdict) \
                or (since is not None and row["started_at"] < since) \
                or (until is not None and row["started_at"] >= until + 86400):
            continue
        rows.append(row)
    rows.sort(key=lambda r: r["started_at"], reverse=True)
    pages = max(1, -(-len(rows) // q.per_page))
    first = (q.page - 1) * q.per_page
    return {"events": rows[first:first + q.per_page], "total": len(rows), "page": q.page, "pages": pages}
