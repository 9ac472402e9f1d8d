"""Verdicts on events, kept in ``EVENTS/review.sqlite``: every verdict given, with who and when, the newest
standing.

A reviewer says ``confirmed`` (a collision or near miss, with the moment of impact or closest approach marked
in seconds into the event's video), ``dismissed`` (with a reason from the list, which the operator can extend)
or back to ``needs_review``. Nothing is overwritten: two reviewers of one event both stay in its history and
the last one stands. SQLite in WAL mode with full sync: a verdict acknowledged is on disk, whatever happens
to the process after; the file sits beside the events, never inside one, so the evidence and its signatures
are never touched by a review.
"""

from __future__ import annotations

import enum
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from crashwatch.contract.errors import CrashwatchError

STORE = "review.sqlite"
REASONS = ("shadow", "tunnel", "parked vehicle", "oncoming in own lane", "wipers", "glare", "camera fault",
           "other")


class ReviewError(CrashwatchError):
    """A verdict that cannot be given as asked; the message says what is wrong and what is allowed."""


class Decision(str, enum.Enum):
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"
    NEEDS_REVIEW = "needs_review"


@dataclass(frozen=True)
class Verdict:
    event: str  # the event's name in the events folder
    decision: Decision
    reviewer: str
    at: float  # wall clock it was given
    reason: str | None = None  # with dismissed
    mark_s: float | None = None  # with confirmed: seconds into the event's video of the impact or closest approach

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "decision": self.decision.value}


class VerdictStore:
    """The verdicts of one events folder; safe to share between threads (one connection, a lock)."""

    def __init__(self, events_dir: Path) -> None:
        if not events_dir.is_dir():
            raise ReviewError(f"{events_dir}: no such events folder")
        self.path = events_dir / STORE
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("CREATE TABLE IF NOT EXISTS verdicts (n INTEGER PRIMARY KEY, event TEXT NOT NULL, "
                             "decision TEXT NOT NULL, reviewer TEXT NOT NULL, at REAL NOT NULL, reason TEXT, "
                             "mark_s REAL)")
            self._db.execute("CREATE INDEX IF NOT EXISTS by_event ON verdicts (event, n)")
            self._db.execute("CREATE TABLE IF NOT EXISTS reasons (name TEXT PRIMARY KEY)")
            self._db.executemany("INSERT OR IGNORE INTO reasons VALUES (?)", [(r,) for r in REASONS])
        except sqlite3.Error as err:
            raise ReviewError(f"{self.path}: cannot be opened as the review database ({err})") from None

    def reasons(self) -> list[str]:
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT name FROM reasons ORDER BY rowid")]

    def add_reason(self, name: str) -> None:
        """A dismissal reason of the operator's own, offered from now on."""
        name = name.strip()
        if not name or len(name) > 60:
            raise ReviewError(f"{name!r}: a reason is a short text (1 to 60 characters)")
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO reasons VALUES (?)", (name,))

    def give(self, event: str, decision: Decision | str, reviewer: str, reason: str | None = None,
             mark_s: float | None = None) -> Verdict:
        """Record a verdict (checked first: a dismissal needs a known reason, a confirmation may mark a moment,
        a reviewer is named); returns it as stored."""
        try:
            decision = Decision(decision)
        except ValueError:
            raise ReviewError(f"{decision!r}: a verdict is one of {', '.join(d.value for d in Decision)}") from None
        if not reviewer.strip():
            raise ReviewError("a verdict names its reviewer")
        if decision is Decision.DISMISSED:
            if reason not in self.reasons():
                raise ReviewError(f"dismissing needs a reason among {', '.join(self.reasons())} (got {reason!r}); "
                                  "an operator adds one with `crashwatch review reasons EVENTS --add NAME`")
        elif reason is not None:
            raise ReviewError(f"a reason goes with dismissed, not {decision.value}")
        if mark_s is not None and (decision is not Decision.CONFIRMED or not mark_s >= 0):
            raise ReviewError("a mark (seconds into the event's video, at least 0) goes with confirmed")
        verdict = Verdict(event, decision, reviewer.strip(), time.time(), reason, mark_s)
        with self._lock:
            self._db.execute("INSERT INTO verdicts (event, decision, reviewer, at, reason, mark_s) VALUES "
                             "(?, ?, ?, ?, ?, ?)", (event, decision.value, verdict.reviewer, verdict.at, reason, mark_s))
        return verdict

    def history(self, event: str) -> list[Verdict]:
        """Every verdict on ``event``, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT event, decision, reviewer, at, reason, mark_s FROM verdicts WHERE "
                                    "event = ? ORDER BY n", (event,)).fetchall()
        return [_verdict(row) for row in rows]

    def current(self, events: Iterable[str] | None = None) -> dict[str, Verdict]:
        """The standing verdict of each event reviewed (of ``events``, where given)."""
        with self._lock:
            rows = self._db.execute("SELECT event, decision, reviewer, at, reason, mark_s FROM verdicts WHERE n IN "
                                    "(SELECT MAX(n) FROM verdicts GROUP BY event)").fetchall()
        wanted = None if events is None else set(events)
        return {row[0]: _verdict(row) for row in rows if wanted is None or row[0] in wanted}

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _verdict(row: tuple) -> Verdict:
    event, decision, reviewer, at, reason, mark_s = row
    return Verdict(event, Decision(decision), reviewer, at, reason, mark_s)
