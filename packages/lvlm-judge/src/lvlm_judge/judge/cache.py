"""A SQLite cache of judge verdicts, so a rerun or a second checkpoint with the same answers
costs no judge call. The key is a hash of everything that decides the verdict: judge model,
prompt version, question, reference and prediction."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path


def cache_key(
    judge_model: str, prompt_version: str, question: str, reference: str, prediction: str
) -> str:
    payload = json.dumps(
        [judge_model, prompt_version, question, reference, prediction], ensure_ascii=False
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedVerdict:
    score: float
    rationale: str
    reply: str
    tokens: int


class JudgeCache:
    """Verdicts by key. Safe to share between threads of one process; every put is committed
    at once so a killed run keeps what it paid for."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, score REAL NOT NULL, "
            "rationale TEXT NOT NULL, reply TEXT NOT NULL, tokens INTEGER NOT NULL)"
        )
        self._db.commit()

    def get(self, key: str) -> CachedVerdict | None:
        with self._lock:
            row = self._db.execute(
                "SELECT score, rationale, reply, tokens FROM verdicts WHERE key = ?", (key,)
            ).fetchone()
        return CachedVerdict(*row) if row else None

    def put(self, key: str, verdict: CachedVerdict) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?)",
                (key, verdict.score, verdict.rationale, verdict.reply, verdict.tokens),
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
