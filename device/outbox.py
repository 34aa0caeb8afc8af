"""The durable outbox: every alarm is on disk before it is published, until the hub confirms it.

SQLite with ``synchronous=FULL`` (each commit is fsynced), so an alarm survives
``kill -9`` of the firmware and a power cut the moment :meth:`Outbox.add`
returns. An entry leaves the outbox only when the hub says it has *stored* the
alarm (the ``received`` command); a broker PUBACK is not enough. Entries keep
the original alarm JSON, so a resend carries the same alarm id and press time
and the hub can both deduplicate it and tell that it is late.

Thread-safe: the firmware calls it from gpiozero, paho and its own timer thread.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from .protocol import AlarmMessage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    alarm_id     TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    payload      BLOB NOT NULL,       -- the alarm JSON exactly as first published
    created_s    REAL NOT NULL,       -- monotonic-free wall time of the press (Unix s)
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_sent_s  REAL                 -- Unix s of the latest publish, NULL if never
)
"""


@dataclass(frozen=True)
class Entry:
    alarm_id: str
    kind: str
    payload: bytes
    created_s: float
    attempts: int
    last_sent_s: float | None


class Outbox:
    """Unconfirmed alarms in a SQLite file (``:memory:`` for tests that need no disk)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)

    def add(self, alarm: AlarmMessage, now_s: float) -> None:
        """Store ``alarm`` durably (fsynced) just before its first publish.

        The entry counts that first attempt already (one fsync on the press path,
        not two); later resends go through :meth:`mark_sent`.
        """
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO outbox (alarm_id, kind, payload, created_s, "
                             "attempts, last_sent_s) VALUES (?, ?, ?, ?, 1, ?)",
                             (alarm.alarm_id, alarm.kind, alarm.to_json(), now_s, now_s))

    def mark_sent(self, alarm_id: str, now_s: float) -> None:
        with self._lock:
            self._db.execute("UPDATE outbox SET attempts = attempts + 1, last_sent_s = ? "
                             "WHERE alarm_id = ?", (now_s, alarm_id))

    def confirm(self, alarm_id: str) -> bool:
        """The hub stored it: drop it. ``False`` if it was not (or no longer) here."""
        with self._lock:
            return self._db.execute("DELETE FROM outbox WHERE alarm_id = ?",
                                    (alarm_id,)).rowcount == 1

    def pending(self) -> list[Entry]:
        """Unconfirmed alarms, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT alarm_id, kind, payload, created_s, attempts, "
                                    "last_sent_s FROM outbox ORDER BY created_s, rowid").fetchall()
        return [Entry(*row) for row in rows]

    def get(self, alarm_id: str) -> Entry | None:
        with self._lock:
            row = self._db.execute("SELECT alarm_id, kind, payload, created_s, attempts, "
                                   "last_sent_s FROM outbox WHERE alarm_id = ?",
                                   (alarm_id,)).fetchone()
        return Entry(*row) if row else None

    def depth(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def writable(self) -> bool:
        """A self-test: can we commit a write here right now?"""
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("ROLLBACK")
            return True
        except sqlite3.Error:
            return False

    def close(self) -> None:
        with self._lock:
            self._db.close()
