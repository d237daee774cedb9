"""Scoring predictions made elsewhere (``lvlm-judge score``).

Document records carry MMLongBench's fields ``question``, ``answer``, ``answer_format`` (a List
answer as a JSON string) and ``prediction``; MM-NIAH records carry ``metric`` (sub_em, mc_acc,
soft_acc) instead of ``answer_format``. Every record comes back unchanged with a numeric
``score`` added (0-1). The prediction is read as MMLongBench does: the text after "Answer:".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lvlm_judge.judge.llm import JudgeRequest, LLMJudge
from lvlm_judge.niah import score_niah
from lvlm_judge.rules import score_output
from lvlm_judge.scoring import JudgeName
from mmprolong_runtime.errors import InputError
from mmprolong_schemas import AnswerFormat, NiahMetric
from mmprolong_schemas.io import atomic_path


class RecordError(InputError):
    """Records that cannot be scored, all of them named."""


def read_records(path: str | Path) -> list[dict[str, Any]]:
    records, problems = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                problems.append(f"{path}:{number}: not valid JSON ({error.msg})")
                continue
            problem = _problem(record)
            if problem:
                problems.append(f"{path}:{number}: {problem}")
            records.append(record)
    if problems:
        raise RecordError("\n".join(problems))
    return records


def _problem(record: object) -> str | None:
    if not isinstance(record, dict):
        return "a record must be a JSON object"
    for name in ("prediction", "answer"):
        if name not in record:
            return f"field {name!r} is missing"
    if not isinstance(record["prediction"], str):
        return "prediction must be a string"
    if ("answer_format" in record) == ("metric" in record):
        return "give exactly one of answer_format (documents) and metric (MM-NIAH)"
    if "answer_format" in record:
        if record["answer_format"] not in {f.value for f in AnswerFormat}:
            return f"unknown answer_format {record['answer_format']!r}"
        if "question" not in record:
            return "field 'question' is missing"
    elif record["metric"] not in {m.value for m in NiahMetric}:
        return f"unknown metric {record['metric']!r}"
    return None


def score_records(
    records: Sequence[dict[str, Any]], judge: JudgeName = "rules", llm_judge: LLMJudge | None = None
) -> list[dict[str, Any]]:
    """Each record with ``score`` added; MM-NIAH records always by their metric."""
    scored: list[dict[str, Any]] = []
    requests: list[tuple[int, JudgeRequest]] = []
    problems: list[str] = []
    for index, record in enumerate(records):
        try:
            if "metric" in record:
                scores = score_niah(record["prediction"], record["answer"], record["metric"])
                score = next(iter(scores.values()))
            else:
                answer_format = AnswerFormat(record["answer_format"])
                score, parsed = score_output(record["answer"], record["prediction"], answer_format)
                if judge == "llm":
                    requests.append((index, JudgeRequest(
                        f"record-{index + 1}", str(record["question"]), record["answer"],
                        answer_format, parsed,
                    )))  # fmt: skip
        except (ValueError, TypeError) as error:
            problems.append(f"record {index + 1}: {error}")
            score = 0.0
        scored.append({**record, "score": score})
    if problems:
        raise RecordError("\n".join(problems))
    if requests:
        if llm_judge is None:
            raise ValueError("judge 'llm' needs an LLMJudge (a judge model and server)")
        verdicts = llm_judge.judge([request for _, request in requests])
        failed = []
        for (index, request), verdict in zip(requests, verdicts, strict=True):
            if verdict is None:
                failed.append(request.item_id)
                continue
            scored[index]["score"] = verdict.score
        if failed:
            raise RecordError(
                f"the judge gave no verdict for {len(failed)} records ({', '.join(failed[:5])}); "
                "rerun: verdicts already paid for are cached"
            )
    return scored


def write_records(path: str | Path, records: Sequence[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
