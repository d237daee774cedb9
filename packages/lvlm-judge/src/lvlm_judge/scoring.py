"""Judging predictions of EvalItems: rules always, the LLM judge on top for document QA.

MM-NIAH items are scored by their metric (MMLongBench uses no LLM judge there). As in
MMLongBench v1.1 (eval_api_batch.py), an item whose parsed output is empty (no answer, or a
failed model call) is left out of the means; here it is kept in the results with the reason in
``excluded`` and counted. A runner error and a judge call that failed for good are recorded
the same way, so a rerun judges them again (the judge cache keeps the rest).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Literal

from lvlm_judge.judge.llm import JudgeRequest, LLMJudge
from lvlm_judge.metrics import ScoredAnswer, accuracy, generalized_f1
from lvlm_judge.niah import score_niah
from lvlm_judge.prompting import OUR_TEMPLATES, PromptTemplates, doc_question
from lvlm_judge.results import ItemResult
from lvlm_judge.rules import parse_generation, score_output
from mmprolong_runtime.executor import Executor
from mmprolong_schemas import EvalItem, Prediction

JudgeName = Literal["rules", "llm"]


def rule_result(item: EvalItem, prediction: Prediction, exclude_empty: bool = True) -> ItemResult:
    """The v1.0 rule score (documents) or the NIAH metric scores of one prediction. An empty
    output is left out of the means (``exclude_empty``, MMLongBench v1.1) or scores 0."""
    base = {
        "item_id": item.item_id, "dataset": item.dataset, "length": item.length,
        "question": item.question, "answer": item.answer, "answer_format": item.answer_format,
        "metric": item.metric, "model": prediction.model,
        "prompt_format": prediction.prompt_format, "prediction": prediction.output,
        "judge": "rules", "error": prediction.error,
    }  # fmt: skip
    if prediction.error is not None:
        return ItemResult(
            parsed_answer="",
            score=0.0,
            scores={},
            judge_source="error",
            excluded=f"runner error: {prediction.error}",
            **base,
        )
    if not parse_generation(prediction.output):
        return ItemResult(
            parsed_answer="",
            score=0.0,
            scores={},
            judge_source="empty",
            excluded="empty output" if exclude_empty else None,
            **base,
        )
    if item.metric is not None:
        scores = score_niah(prediction.output, item.answer, item.metric)
        headline = next(iter(scores.values()))
        parsed = parse_generation(prediction.output)
    else:
        assert item.answer_format is not None
        headline, parsed = score_output(item.answer, prediction.output, item.answer_format)
        scores = {"rules": headline}
    return ItemResult(
        parsed_answer=parsed,
        score=headline,
        scores=scores,
        judge_source="rules",
        **base,
    )


RULE_CHUNK = 256
"""Items per rule-scoring task on an executor (one item takes microseconds)."""


def rule_results(
    pairs: Sequence[tuple[EvalItem, Prediction]], exclude_empty: bool = True
) -> list[ItemResult]:
    """The rule step over a chunk of (item, prediction) pairs."""
    return [rule_result(item, prediction, exclude_empty) for item, prediction in pairs]


def _rule_results_on(
    executor: Executor, pairs: list[tuple[EvalItem, Prediction]], exclude_empty: bool
) -> list[ItemResult]:
    tasks = (
        (start, (pairs[start : start + RULE_CHUNK], exclude_empty))
        for start in range(0, len(pairs), RULE_CHUNK)
    )
    chunks: dict[int, list[ItemResult]] = {}
    for outcome in executor.run(rule_results, tasks):
        if not outcome.ok:
            raise RuntimeError(f"rule scoring of items {outcome.key}+ failed: {outcome.error}")
        chunks[outcome.key] = outcome.value
    return [result for start in sorted(chunks) for result in chunks[start]]


def judge_predictions(
    items: Sequence[EvalItem],
    predictions: dict[str, Prediction],
    judge: JudgeName = "rules",
    llm_judge: LLMJudge | None = None,
    on_judged: Callable[[int], None] | None = None,
    executor: Executor | None = None,
    templates: PromptTemplates = OUR_TEMPLATES,
    exclude_empty: bool = True,
) -> list[ItemResult]:
    """Results for every item that has a prediction; ``on_judged(n)`` follows the LLM judge's
    progress. The judge sees each question as the model saw it (``templates``' document
    prefix). An empty output is never judged: left out of the means with ``exclude_empty``
    (MMLongBench v1.1), else scored 0. With an ``executor`` the rule scores are computed there
    in chunks (same results, same order)."""
    if judge == "llm" and llm_judge is None:
        raise ValueError("judge 'llm' needs an LLMJudge (a judge model and server)")
    pairs = [(item, predictions[item.item_id]) for item in items if item.item_id in predictions]
    results = (
        rule_results(pairs, exclude_empty)
        if executor is None
        else _rule_results_on(executor, pairs, exclude_empty)
    )
    if judge == "rules":
        return results
    assert llm_judge is not None
    by_id = {item.item_id: item for item in items}
    to_judge = [
        r
        for r in results
        if r.answer_format is not None and r.excluded is None and r.judge_source != "empty"
    ]
    requests = [
        JudgeRequest(
            r.item_id,
            doc_question(by_id[r.item_id], templates),
            by_id[r.item_id].answer,
            r.answer_format,
            r.parsed_answer,
        )
        for r in to_judge
        if r.answer_format is not None
    ]
    verdicts = llm_judge.judge(requests, on_judged)
    verdict_by_id = {
        request.item_id: verdict for request, verdict in zip(requests, verdicts, strict=True)
    }
    judged: list[ItemResult] = []
    for result in results:
        if result.item_id not in verdict_by_id:
            judged.append(result.model_copy(update={"judge": "llm"}))
            continue
        verdict = verdict_by_id[result.item_id]
        if verdict is None:
            judged.append(
                result.model_copy(
                    update={
                        "judge": "llm",
                        "judge_source": "judge-failed",
                        "excluded": "judge call failed after retries",
                        "error": "the LLM judge gave no verdict (see run.json judge errors)",
                    }
                )
            )
            continue
        judged.append(
            result.model_copy(
                update={
                    "judge": "llm",
                    "score": verdict.score,
                    "scores": {**result.scores, "llm": verdict.score},
                    "judge_source": verdict.source.value,
                    "judge_model": verdict.judge_model,
                    "rationale": verdict.rationale,
                }
            )
        )
    return judged


def doc_summary(results: Sequence[ItemResult]) -> dict[str, dict[str, float]]:
    """MMLongBench-Doc accuracy and generalised F1 (percent) per dataset@length of doc items."""
    groups: dict[str, list[ScoredAnswer]] = defaultdict(list)
    for r in results:
        if r.answer_format is not None and r.excluded is None:
            key = f"{r.dataset}@{r.length}"
            groups[key].append(ScoredAnswer(r.answer, r.parsed_answer, r.score))
    return {
        key: {"n": len(group), "accuracy": 100 * accuracy(group),
              "generalized_f1": 100 * generalized_f1(group)}
        for key, group in sorted(groups.items())
    }  # fmt: skip
