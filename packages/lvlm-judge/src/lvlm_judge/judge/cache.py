"""A SQLite cache of judge verdicts, so a rerun or a second checkpoint with the same answers
costs no judge call. The key is a hash of everything that decides the verdict: judge model,
prompt version, question, reference and prediction."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from mmprolong_runtime.sqlite_cache import ClosedOnExit, SqliteCache


def cache_key(
    judge_model: str, prompt_version: str, question: str, reference: str, prediction: str
) -> str:
    payload = json.dumps(
        [judge_model, prompt_version, question, reference, prediction], ensure_ascii=False
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


VERDICT_COLUMNS = {
    "score": "REAL NOT NULL",
    "rationale": "TEXT NOT NULL",
    "reply": "TEXT NOT NULL",
    "tokens": "INTEGER NOT NULL",
}


@dataclass(frozen=True)
class CachedVerdict:
    score: float
    rationale: str
    reply: str
    tokens: int


class JudgeCache(ClosedOnExit):
    """Verdicts by key, in the runtime's ``SqliteCache`` (the table lvlm-judge has always
    written). Safe to share between threads of one process; every put is committed at once
    so a killed run keeps what it paid for."""

    def __init__(self, path: str | Path):
        self._table = SqliteCache(path, "verdicts", VERDICT_COLUMNS)
        self.path = self._table.path

    def get(self, key: str) -> CachedVerdict | None:
        row = self._table.get(key)
        return CachedVerdict(*row) if row else None

    def put(self, key: str, verdict: CachedVerdict) -> None:
        self._table.put(key, (verdict.score, verdict.rationale, verdict.reply, verdict.tokens))

    def __len__(self) -> int:
        return len(self._table)

    def close(self) -> None:
        self._table.close()
