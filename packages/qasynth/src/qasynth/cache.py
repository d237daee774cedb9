"""A request cache in SQLite: every teacher reply is stored the moment it arrives.

A run killed at any point and started again finds every finished request here and sends
only the rest. Failed requests (timeouts after all retries, server errors) and replies cut
at their token limit (finish_reason "length") are not stored, so they are tried again.
WAL mode keeps readers and the single writer out of each other's way.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from types import TracebackType

from qasynth.teachers.base import TeacherReply, TeacherRequest

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,
    teacher TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    segment_id TEXT NOT NULL,
    task TEXT NOT NULL,
    seed INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    text TEXT NOT NULL,
    meta TEXT NOT NULL,
    created REAL NOT NULL
)
"""


class RequestCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def get(self, key: str) -> TeacherReply | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, meta FROM replies WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        return TeacherReply(text=row[0], meta=json.loads(row[1]))

    def put(self, teacher: str, request: TeacherRequest, reply: TeacherReply) -> None:
        if reply.text is None or reply.truncated:
            return
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    request.key,
                    teacher,
                    request.prompt.version,
                    request.segment.segment_id,
                    request.task.value,
                    request.seed,
                    request.attempt,
                    reply.text,
                    json.dumps(reply.meta),
                    time.time(),
                ),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> RequestCache:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
