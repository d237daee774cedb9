"""SqliteCache: the request caches of qasynth (teacher replies) and lvlm-judge (verdicts)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from mmprolong_runtime.sqlite_cache import CacheFileError, SqliteCache

COLUMNS = {"text": "TEXT NOT NULL", "tokens": "INTEGER NOT NULL"}


def test_rows_survive_closing_and_reopening(tmp_path: Path) -> None:
    with SqliteCache(tmp_path / "c.sqlite", "replies", COLUMNS) as cache:
        assert cache.get("k") is None
        cache.put("k", ("hello", 3))
        cache.put("k", ("again", 4))  # a retried request replaces its row
    with SqliteCache(tmp_path / "c.sqlite", "replies", COLUMNS) as cache:
        assert cache.get("k") == ("again", 4) and len(cache) == 1


def test_a_row_is_readable_by_another_connection_as_soon_as_it_is_put(tmp_path: Path) -> None:
    # No open transaction: a process killed right after put keeps the row.
    with SqliteCache(tmp_path / "c.sqlite", "replies", COLUMNS) as cache:
        cache.put("k", ("hello", 3))
        other = sqlite3.connect(tmp_path / "c.sqlite")
        assert other.execute("SELECT text FROM replies WHERE key = 'k'").fetchone() == ("hello",)
        other.close()


def test_threads_share_one_cache(tmp_path: Path) -> None:
    with SqliteCache(tmp_path / "c.sqlite", "replies", COLUMNS) as cache:

        def put_many(start: int) -> None:
            for number in range(start, start + 50):
                cache.put(f"k{number}", (str(number), number))

        threads = [threading.Thread(target=put_many, args=(n * 50,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(cache) == 200 and cache.get("k199") == ("199", 199)


def test_a_file_of_another_kind_is_refused_naming_it(tmp_path: Path) -> None:
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database at all, just some words " * 20)
    with pytest.raises(CacheFileError, match=r"notes\.sqlite is not a SQLite cache"):
        SqliteCache(text, "replies", COLUMNS)
    other = tmp_path / "other.sqlite"
    with SqliteCache(other, "replies", {"text": "TEXT NOT NULL"}):
        pass
    with pytest.raises(CacheFileError, match=r"other\.sqlite: table replies has columns"):
        SqliteCache(other, "replies", COLUMNS)
    assert text.read_text().startswith("not a database")
