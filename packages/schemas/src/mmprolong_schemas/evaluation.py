"""Evaluation records: an item to answer, a model's prediction, a judge's verdict, a score table."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from mmprolong_schemas.base import Model, Record
from mmprolong_schemas.document import PageNumber
from mmprolong_schemas.qa import Answer, AnswerFormat
from mmprolong_schemas.sample import Part


class NiahMetric(StrEnum):
    """MM-NIAH scoring: substring exact match, multiple-choice accuracy, counting soft accuracy."""

    SUB_EM = "sub_em"
    MC_ACC = "mc_acc"
    SOFT_ACC = "soft_acc"


class EvalItem(Record):
    item_id: str
    dataset: str = Field(description="e.g. mmlongdoc, longdocurl, slidevqa, mm-niah-retrieval.")
    length: int = Field(ge=1, description="Context-length bucket in tokens, e.g. 131072.")
    context: list[Part] = Field(description="Pages, images and text in the order shown.")
    question: str = Field(min_length=1)
    answer: Answer = Field(
        description='As the benchmark gives it (a Float "18.29%", a List as a JSON string): '
        "the scorers and the judge read it the way the benchmark's own scorer does."
    )
    answer_format: AnswerFormat | None = None
    metric: NiahMetric | None = None
    choices: list[str] | None = None
    doc_name: str | None = None
    evidence_pages: list[PageNumber] = Field(default_factory=list)
    answer_sources: list[str] = Field(default_factory=list)
    original_positions: list[int] | None = Field(
        default=None, description="Where the item's own pages sit in context after extension."
    )
    est_tokens: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check(self) -> EvalItem:
        if (self.answer_format is None) == (self.metric is None):
            raise ValueError("an item is scored either by answer_format or by metric, exactly one")
        if self.metric is NiahMetric.MC_ACC and not self.choices:
            raise ValueError("a multiple-choice item needs choices")
        return self


class Prediction(Record):
    item_id: str
    model: str
    output: str
    prompt_format: str
    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)
    latency_s: float | None = Field(default=None, ge=0)
    error: str | None = Field(default=None, description="Set when the runner failed on the item.")


class JudgeSource(StrEnum):
    RULES = "rules"
    LLM = "llm"
    CACHE = "cache"
    PRE_JUDGE = "pre-judge"


class Judgement(Record):
    item_id: str
    judge: Literal["rules", "llm"]
    score: float = Field(
        allow_inf_nan=False,
        description="Usually in [0, 1]; MMLongBench's v1.1 LLM judge keeps a score outside it "
        "as the judge gave it, and so does lvlm-judge, counting it.",
    )
    source: JudgeSource
    parsed_answer: Answer = None
    rationale: str = ""
    judge_model: str | None = None
    prompt_version: str | None = None
    judge_tokens: int = Field(default=0, ge=0)


class ScoreCell(Model):
    dataset: str
    length: int = Field(ge=1)
    n: int = Field(ge=0)
    score: float = Field(
        allow_inf_nan=False,
        description="Mean score in percent (outside [0, 100] only when a judge's scores are).",
    )


class ScoreTable(Record):
    """Scores per dataset and length, with the paper's macro and VLMEvalKit's micro averages."""

    model: str
    judge: str
    prompt_format: str
    cells: list[ScoreCell]
    protocol: str | None = Field(
        default=None,
        description="What produced the scores: our prompts and judge (lvlm-judge-v1) or "
        "MMLongBench's, read from the user's checkout (mmlb-v1.1).",
    )
    item_set: str | None = Field(
        default=None, description="Which items ran, e.g. MMLongBench's seeded subsets or all."
    )
    excluded: int = Field(
        default=0,
        ge=0,
        description="Items left out of the means (empty output, runner or "
        "judge failure), counted here.",
    )

    @model_validator(mode="after")
    def _unique(self) -> ScoreTable:
        keys = [(c.dataset, c.length) for c in self.cells]
        if len(set(keys)) != len(keys):
            raise ValueError("a (dataset, length) pair appears twice in the score table")
        return self

    @property
    def datasets(self) -> list[str]:
        return sorted({c.dataset for c in self.cells})

    @property
    def lengths(self) -> list[int]:
        return sorted({c.length for c in self.cells})

    def cell(self, dataset: str, length: int) -> ScoreCell | None:
        return next((c for c in self.cells if (c.dataset, c.length) == (dataset, length)), None)

    def _at(self, length: int | None) -> Iterable[ScoreCell]:
        return [c for c in self.cells if length is None or c.length == length]

    def macro(self, length: int | None = None) -> float | None:
        """Mean over datasets (and lengths when ``length`` is None), each weighing the same."""
        cells = [c for c in self._at(length) if c.n]
        return sum(c.score for c in cells) / len(cells) if cells else None

    def micro(self, length: int | None = None) -> float | None:
        """Mean over items: datasets weigh by their item counts."""
        cells = [c for c in self._at(length) if c.n]
        total = sum(c.n for c in cells)
        return sum(c.score * c.n for c in cells) / total if total else None
