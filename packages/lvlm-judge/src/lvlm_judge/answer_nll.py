"""answer-nll: the teacher-forced negative log-likelihood of the gold answer given the document,
a metric that needs no judge (the paper names judge cost as what limits evaluating many
checkpoints). Lower is better; it measures how likely the model finds the right answer, not
whether it would say it, so it ranks checkpoints rather than replacing the judged score.

Per document-QA item: nats per answer token after the prompt and its "Answer:" prefill, from
the transformers runner. Per (dataset, length): the mean over items. Written to
``answer-nll.jsonl`` (one record per item, so a rerun resumes) and ``answer-nll.json``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from pydantic import Field

from lvlm_judge.prompting import OUR_TEMPLATES, PromptTemplates, build_prompt
from lvlm_judge.results import write_text
from lvlm_judge.rules import list_items
from lvlm_judge.runners.base import GenerationRequest
from mmprolong_schemas import AnswerFormat, EvalItem, read_jsonl
from mmprolong_schemas.base import Model
from mmprolong_schemas.io import append_jsonl

METRIC = "answer-nll"
UNIT = "nats per answer token (teacher-forced; lower is better)"


class AnswerNll(Model):
    item_id: str
    dataset: str
    length: int
    model: str
    nll: float | None = Field(default=None, description="Nats per answer token.")
    tokens: int = 0
    error: str | None = None


class LikelihoodRunner(Protocol):
    model_name: str

    def answer_nll(self, request: GenerationRequest, answer: str) -> tuple[float, int]: ...


def answer_text(item: EvalItem) -> str:
    """The gold answer as the model would write it: a list's items joined by commas."""
    if item.answer_format is AnswerFormat.LIST:
        return ", ".join(str(value) for value in list_items(item.answer))
    return str(item.answer)


def nll_table(records: Sequence[AnswerNll]) -> dict[str, Any]:
    """Mean nats per answer token per (dataset, length) over the items that have one."""
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for record in records:
        if record.nll is not None:
            groups[(record.dataset, record.length)].append(record.nll)
    return {
        "metric": METRIC,
        "unit": UNIT,
        "cells": [
            {"dataset": d, "length": n, "n": len(v), "nll": sum(v) / len(v)}
            for (d, n), v in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        ],
        "failed": sum(1 for r in records if r.error is not None),
    }


def run_answer_nll(
    items: Sequence[EvalItem],
    runner: Any,
    out_dir: str | Path,
    templates: PromptTemplates = OUR_TEMPLATES,
) -> dict[str, Any]:
    """answer-nll of every document-QA item into ``out_dir``; items already done are kept. An
    item that fails (out of memory, an answer with no tokens) is recorded with its error."""
    if not callable(getattr(runner, "answer_nll", None)):
        raise ValueError("answer-nll needs a local model: use the transformers runner")
    out = Path(out_dir)
    path = out / "answer-nll.jsonl"
    done: dict[str, AnswerNll] = {}
    if path.exists():
        done = {
            r.item_id: r
            for r in read_jsonl(path, AnswerNll, tolerate_torn_tail=True)
            if r.model == runner.model_name and r.error is None
        }
    records = []
    for item in items:
        if item.answer_format is None:
            continue
        if item.item_id in done:
            records.append(done[item.item_id])
            continue
        fields = {"item_id": item.item_id, "dataset": item.dataset, "length": item.length,
                  "model": runner.model_name}  # fmt: skip
        try:
            total, tokens = runner.answer_nll(
                GenerationRequest(item.item_id, build_prompt(item, templates)), answer_text(item)
            )
            record = AnswerNll(nll=total / tokens, tokens=tokens, **fields)
        except (RuntimeError, ValueError, OSError) as error:
            record = AnswerNll(error=f"{type(error).__name__}: {error}", **fields)
        append_jsonl(path, [record])
        records.append(record)
    table = {"model": runner.model_name, **nll_table(records)}
    write_text(out / "answer-nll.json", json.dumps(table, indent=1) + "\n")
    return table
