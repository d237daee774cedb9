"""A SQLite table of finished requests by key: the per-request form of "finished".

A stage that pays for each request (a teacher reply, a judge verdict) stores the result the
moment it arrives, under a hash of everything that decides it; a row present is a request
finished, so a run killed at any point and started again sends only the rest. Each stage
keeps its own table and columns; this class is how all of them open, read and write one.
"""

from __future__ import annotations

import abc
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self


class CacheFileError(ValueError):
    """The file is not a SQLite cache of the expected table."""


class ClosedOnExit(abc.ABC):
    """``with cache:`` closes it at the end: for this cache and the stage caches built on it."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SqliteCache(ClosedOnExit):
    """Rows of ``columns`` (name -> SQL declaration) by a text ``key`` in table ``table``.
    Safe to share between threads of one process. Every put is committed at once (WAL,
    autocommit), so a killed run keeps every row it had written."""

    def __init__(self, path: str | Path, table: str, columns: Mapping[str, str]):
        self.path = Path(path)
        self.table = table
        self.columns = tuple(columns)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            declared = ", ".join(f"{name} {kind}" for name, kind in columns.items())
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, {declared})"
            )
            found = [row[1] for row in self._db.execute(f"PRAGMA table_info({table})")]
        except sqlite3.DatabaseError as error:
            self._db.close()
            raise CacheFileError(f"{self.path} is not a SQLite cache: {error}") from None
        if found != ["key", *self.columns]:
            self._db.close()
            raise CacheFileError(
                f"{self.path}: table {table} has columns {found}, "
                f"a cache of this kind has {['key', *self.columns]}"
            )
        self._select = f"SELECT {', '.join(self.columns)} FROM {table} WHERE key = ?"
        self._insert = (
            f"INSERT OR REPLACE INTO {table} (key, {', '.join(self.columns)}) "
            f"VALUES ({', '.join('?' * (len(self.columns) + 1))})"
        )

    def get(self, key: str) -> tuple[Any, ...] | None:
        """The row's columns (without the key), or None when the request is not finished."""
        with self._lock:
            row = self._db.execute(self._select, (key,)).fetchone()
        return tuple(row) if row is not None else None

    def put(self, key: str, values: Sequence[Any]) -> None:
        with self._lock:
            self._db.execute(self._insert, (key, *values))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
