"""lvlm-judge: rule-scoring throughput, and the judge calls saved by the cache and pre-judge.

- Items scored per second by the v1.0 rules (parse "Answer:" then score), on a generated mix
  of every answer format; the baseline is plain normalised exact match over the same items,
  the cheapest scorer there is.
- The LLM judge against a scripted OpenAI-compatible server on 127.0.0.1: the share of judge
  calls the cache saves on a rerun (target 100%), and the share the rule pre-judge saves on the
  first run of the generated set.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from benchlib import Result, best_of

from lvlm_judge.judge.cache import JudgeCache
from lvlm_judge.judge.llm import JudgeRequest, LLMJudge
from lvlm_judge.rules import normalize_answer, parse_output, score_output
from mmprolong_runtime.chat_client import ClientSettings
from mmprolong_runtime.testing import ChatServer
from mmprolong_schemas import AnswerFormat

REFERENCES: list[tuple[object, AnswerFormat, list[str]]] = [
    ("Paris", AnswerFormat.STRING, ["Paris", "It is Paris.", "Lyon", "paris"]),
    ("2023-05-01", AnswerFormat.STRING, ["2023-05-01", "May 1, 2023", "2023-05-02"]),
    (12, AnswerFormat.INTEGER, ["12", "There are 12 rows.", "13", "twelve"]),
    (0.25, AnswerFormat.FLOAT, ["0.25", "25%", "about 0.3", "0.2"]),
    (["red", "blue"], AnswerFormat.LIST, ['["red", "blue"]', "red and blue", "red"]),
    ("Not answerable", AnswerFormat.NONE, ["Not answerable.", "It is 4", "Not answerable"]),
]


def generated_set(count: int, seed: int = 0) -> list[tuple[str, object, AnswerFormat, str]]:
    """(question, reference, format, raw model output) tuples with varied predictions."""
    rng = random.Random(seed)
    items = []
    for index in range(count):
        reference, answer_format, predictions = rng.choice(REFERENCES)
        prediction = rng.choice(predictions)
        if rng.random() < 0.5:
            prediction = "Answer: " + prediction
        items.append((f"Question {index % 50}?", reference, answer_format, prediction))
    return items


def _judge_reply(body: dict[str, object], seen: int) -> str:
    prompt = body["messages"][0]["content"]  # type: ignore[index]
    if "student_answer_count" in prompt:
        return '[Rationale]: ok\n[JSON]: {"student_answer_count": 2, "covered_count": 1}'
    return '[Scoring Rationale]: ok\n[Score]: 1 points\n[JSON]: {"answer_score": 1}'


def run(work: Path) -> list[Result]:
    results: list[Result] = []
    items = generated_set(5000)

    def rules() -> None:
        for _, reference, answer_format, output in items:
            score_output(reference, output, answer_format)

    def exact_match() -> None:
        for _, reference, _, output in items:
            expected = json.dumps(reference) if isinstance(reference, list) else str(reference)
            _ = normalize_answer(parse_output(output)) == normalize_answer(expected)

    rules_s = best_of(rules)
    exact_s = best_of(exact_match)
    rate = len(items) / rules_s
    results.append(
        Result(
            name="rule scoring throughput",
            value=rate,
            unit="items/s",
            baseline=len(items) / exact_s,
            baseline_name="normalised exact match",
            target=">= 10000 items/s",
            passed=rate >= 10000,
            details={"items": len(items)},
        )
    )

    judged = generated_set(300, seed=1)
    requests = [
        JudgeRequest(f"item-{i}", question, reference, answer_format, parse_output(output))
        for i, (question, reference, answer_format, output) in enumerate(judged)
    ]
    server = ChatServer()
    server.reply = _judge_reply
    server.start()
    try:
        settings = ClientSettings(server.url, concurrency=8, backoff_s=0.01)
        cache_path = work / "judge-cache.sqlite"
        first = LLMJudge(settings, "bench-judge", cache=JudgeCache(cache_path))
        first.judge(requests)
        calls_first = server.count
        rerun = LLMJudge(settings, "bench-judge", cache=JudgeCache(cache_path))
        rerun.judge(requests)
        calls_rerun = server.count - calls_first
    finally:
        server.stop()
    needing_judge = len(requests) - first.stats.skipped
    saved = 1.0 - calls_rerun / needing_judge if needing_judge else 1.0
    results.append(
        Result(
            name="judge calls saved by the cache on a rerun",
            value=100 * saved,
            unit="%",
            baseline=float(calls_first),
            baseline_name="calls on the first run",
            target="100%",
            passed=calls_rerun == 0,
            details={"requests": len(requests), "calls_rerun": calls_rerun},
        )
    )
    skipped_share = first.stats.skipped / len(requests)
    results.append(
        Result(
            name="judge calls saved by the rule pre-judge (generated set)",
            value=100 * skipped_share,
            unit="%",
            target="report",
            details={**first.stats.as_dict(), "requests": len(requests)},
        )
    )
    return results
