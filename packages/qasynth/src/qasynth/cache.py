"""The teacher's request cache: every reply is stored the moment it arrives.

A run killed at any point and started again finds every finished request here and sends
only the rest. Failed requests (timeouts after all retries, server errors) and replies cut
at their token limit (finish_reason "length") are not stored, so they are tried again.
The table is the runtime's ``SqliteCache``; its layout is the one qasynth has always written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from mmprolong_runtime.sqlite_cache import ClosedOnExit, SqliteCache
from qasynth.teachers.base import TeacherReply, TeacherRequest

REPLY_COLUMNS = {
    "teacher": "TEXT NOT NULL",
    "prompt_version": "TEXT NOT NULL",
    "segment_id": "TEXT NOT NULL",
    "task": "TEXT NOT NULL",
    "seed": "INTEGER NOT NULL",
    "attempt": "INTEGER NOT NULL",
    "text": "TEXT NOT NULL",
    "meta": "TEXT NOT NULL",
    "created": "REAL NOT NULL",
}


class RequestCache(ClosedOnExit):
    def __init__(self, path: str | Path):
        self._table = SqliteCache(path, "replies", REPLY_COLUMNS)
        self.path = self._table.path

    def get(self, key: str) -> TeacherReply | None:
        row = self._table.get(key)
        if row is None:
            return None
        columns = dict(zip(REPLY_COLUMNS, row, strict=True))
        return TeacherReply(text=columns["text"], meta=json.loads(columns["meta"]))

    def put(self, teacher: str, request: TeacherRequest, reply: TeacherReply) -> None:
        if reply.text is None or reply.truncated:
            return
        self._table.put(
            request.key,
            (
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
        return len(self._table)

    def close(self) -> None:
        self._table.close()
