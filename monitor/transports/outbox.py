"""A durable outbox: messages wait on disk until the broker has them, so a crash or a long outage loses none.

SQLite in WAL mode with ``synchronous=FULL``: a ``put`` has reached the disk when it returns, so a message
survives SIGKILL or a power cut, and a restart delivers what was left. The queue is bounded: past the count
bound the oldest non-critical rows (risk) go first and critical ones (alerts) only when nothing else is left;
past the age bound a row goes whatever it is. Each drop is counted, a critical one apart and with a warning.

One process owns an outbox: it holds the exclusive lock of a small SQLite file beside it for as long as the
outbox is open (SQLite's own locking, on every platform; the outbox stays readable), and a text file beside it
names the holder, so a second monitor given the same outbox (the same camera name and default place) is
refused in one line naming the first instead of both delivering from it.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crashwatch.contract.errors import CrashwatchError

log = logging.getLogger(__name__)

LOCK_WAIT_S = 1.0  # how long an open waits for another process's lock before it says who holds it


def _own(lock: Path) -> sqlite3.Connection:
    """Take the exclusive lock of the SQLite file ``lock``, held until the returned connection closes."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    owner = sqlite3.connect(lock, check_same_thread=False, isolation_level=None, timeout=LOCK_WAIT_S)
    try:
        owner.execute("PRAGMA locking_mode=EXCLUSIVE")
        owner.execute("BEGIN IMMEDIATE")
        owner.execute("CREATE TABLE IF NOT EXISTS owner (pid INTEGER)")
        owner.execute("COMMIT")  # in exclusive mode the lock stays after the commit
    except sqlite3.Error:
        owner.close()
        raise
    return owner

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    critical INTEGER NOT NULL,
    created_at REAL NOT NULL
)
"""


class OutboxError(CrashwatchError):
    """The outbox file cannot be opened, read or written; the message names it."""


@dataclass(frozen=True)
class Row:
    """One queued message; ``id`` is its place in the delivery order."""

    id: int
    topic: str
    payload: str
    qos: int
    retain: bool
    critical: bool
    created_at: float


class Outbox:
    """An on-disk FIFO of MQTT messages, shared by the threads of one process through one locked connection."""

    def __init__(self, path: Path, max_messages: int = 10000, max_age_s: float = 7 * 86400) -> None:
        if max_messages < 1 or not max_age_s > 0:
            raise ValueError(f"outbox bounds must be positive, got max_messages={max_messages}, "
                             f"max_age_s={max_age_s}")
        self.path = path
        self.max_messages = max_messages
        self.max_age_s = max_age_s
        self.dropped = 0  # this process's drops, critical ones included
        self.dropped_critical = 0
        self._lock = threading.Lock()
        try:
            self._owner = _own(path.with_name(path.name + ".lock"))
        except sqlite3.OperationalError as err:
            if "locked" not in str(err):
                raise OutboxError(f"{path}: cannot lock the MQTT outbox: {err}") from None
            raise OutboxError(f"{path}: the MQTT outbox is in use by another monitor ({self._holder()}); give "
                              "each monitor its own camera name or --mqtt-outbox") from None
        except OSError as err:
            raise OutboxError(f"{path}: cannot open the MQTT outbox: {err}") from None
        try:
            # Autocommit (isolation_level None): every transaction is an explicit BEGIN IMMEDIATE ... COMMIT.
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as err:
            self._owner.close()
            raise OutboxError(f"{path}: cannot open the MQTT outbox: {err}") from None
        try:
            if self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
                raise sqlite3.OperationalError("the file system does not support WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            check = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            # A write transaction: an outbox that can be read but not written fails here, not at the first alert.
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(SCHEMA)
            self._db.execute("COMMIT")
        except sqlite3.Error as err:
            self._db.close()
            self._owner.close()
            raise OutboxError(f"{path}: cannot use the MQTT outbox: {err} (corrupt, or not writable? move it away "
                              "to start with an empty one)") from None
        self._holder_file.write_text(f"process {os.getpid()} on {socket.gethostname()} since "
                                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n", encoding="utf-8")

    def put(self, topic: str, payload: str, qos: int, retain: bool = False, critical: bool = False) -> int:
        """Queue a message and enforce the bounds; returns its id."""
        with self._session("write to"):
            cursor = self._db.execute(
                "INSERT INTO outbox (topic, payload, qos, retain, critical, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (topic, payload, qos, int(retain), int(critical), time.time()))
            self._expire()
            self._trim()
            rowid = cursor.lastrowid
            assert rowid is not None  # an INSERT sets it
            return rowid

    def peek(self, limit: int = 1) -> list[Row]:
        """The oldest ``limit`` messages, left in place (``remove`` takes one out once it is delivered)."""
        with self._session("read"):
            self._expire()
            rows = self._db.execute("SELECT id, topic, payload, qos, retain, critical, created_at FROM outbox "
                                    "ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [Row(i, topic, payload, qos, bool(retain), bool(critical), created)
                for i, topic, payload, qos, retain, critical, created in rows]

    def remove(self, row_id: int) -> None:
        with self._session("write to"):
            self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))

    def stats(self) -> dict[str, Any]:
        """queued, oldest_age_s (None when empty), dropped and dropped_critical (this process's)."""
        with self._session("read"):
            queued, oldest = self._db.execute("SELECT COUNT(*), MIN(created_at) FROM outbox").fetchone()
        return {"queued": queued, "oldest_age_s": None if oldest is None else max(time.time() - oldest, 0.0),
                "dropped": self.dropped, "dropped_critical": self.dropped_critical}

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._holder_file.unlink(missing_ok=True)
        self._owner.close()

    @property
    def _holder_file(self) -> Path:
        return self.path.with_name(self.path.name + ".holder")

    def _holder(self) -> str:
        try:
            return self._holder_file.read_text(encoding="utf-8").strip() or "holder unknown"
        except OSError:
            return "holder unknown"

    def _expire(self) -> None:
        """Drop what is older than ``max_age_s``, alerts too: a reader acts on an alert that is minutes old, not
        on one a week old."""
        cutoff = time.time() - self.max_age_s
        self._drop("created_at < ? AND critical = 0", (cutoff,), critical=False, why="older than the age bound")
        self._drop("created_at < ? AND critical = 1", (cutoff,), critical=True, why="older than the age bound")

    def _trim(self) -> None:
        """Drop the oldest rows past ``max_messages``: non-critical ones first, critical ones only when no other
        is left."""
        excess = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] - self.max_messages
        if excess > 0:
            excess -= self._drop("id IN (SELECT id FROM outbox WHERE critical = 0 ORDER BY id LIMIT ?)", (excess,),
                                 critical=False, why="past the count bound")
        if excess > 0:
            self._drop("id IN (SELECT id FROM outbox WHERE critical = 1 ORDER BY id LIMIT ?)", (excess,),
                       critical=True, why="past the count bound")

    def _drop(self, where: str, args: tuple, critical: bool, why: str) -> int:
        count = self._db.execute(f"DELETE FROM outbox WHERE {where}", args).rowcount
        if count:
            self.dropped += count
            if critical:
                self.dropped_critical += count
                log.warning("%s: %d alert(s) dropped unsent, %s (max %d messages, %.0f s)", self.path, count, why,
                            self.max_messages, self.max_age_s)
        return count

    @contextmanager
    def _session(self, doing: str):
        """The connection to itself, in one transaction; an sqlite3 error after the open (disk full, a file
        damaged under us) becomes an OutboxError naming the file."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield
                self._db.execute("COMMIT")
            except BaseException as err:
                if self._db.in_transaction:  # SQLite has already rolled back after some errors (SQLITE_FULL)
                    self._db.execute("ROLLBACK")
                if isinstance(err, sqlite3.Error):
                    raise OutboxError(f"{self.path}: cannot {doing} the MQTT outbox: {err}") from None
                raise
