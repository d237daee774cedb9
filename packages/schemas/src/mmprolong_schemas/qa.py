"""Segments of a document and the QA pairs a teacher writes about them."""

from __future__ import annotations

import ast
import json
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, model_validator

from mmprolong_schemas.base import Model, Record
from mmprolong_schemas.document import DocId, PageNumber
from mmprolong_schemas.numbers import parse_number


class Task(StrEnum):
    EXTRACT_SINGLE = "extract-single"
    EXTRACT_MULTI = "extract-multi"
    REASONING = "reasoning"
    OCR_FULL = "ocr-full"
    OCR_NEEDLE = "ocr-needle"
    SHORT = "short"


VQA_TASKS = (Task.EXTRACT_SINGLE, Task.EXTRACT_MULTI, Task.REASONING)


class AnswerFormat(StrEnum):
    """MMLongBench's answer formats; "None" marks a question the document cannot answer."""

    STRING = "String"
    INTEGER = "Integer"
    FLOAT = "Float"
    LIST = "List"
    NONE = "None"


class EvidenceSource(StrEnum):
    TEXT = "Text"
    LAYOUT = "Layout"
    FIGURE = "Figure"
    TABLE = "Table"


NOT_ANSWERABLE = "Not answerable"

Scalar = str | int | float
Answer = Scalar | list[Scalar] | None


def coerce_answer(value: Any, answer_format: AnswerFormat, lang: str | None = None) -> Answer:
    """Bring ``value`` into the Python type of ``answer_format`` or say why it cannot be.

    Numbers may arrive as strings ("1,204"), read in ``lang``'s convention by
    ``mmprolong_schemas.numbers.parse_number``; lists may arrive as a JSON or Python literal
    string, as MMLongBench stores them.
    """
    shown = repr(value) if not isinstance(value, str) else f"'{value}'"
    if answer_format is AnswerFormat.NONE:
        if value is None or (
            isinstance(value, str) and value.strip().lower() == NOT_ANSWERABLE.lower()
        ):
            return NOT_ANSWERABLE
        raise ValueError(f"answer {shown} is given for a question marked not answerable")
    if answer_format is AnswerFormat.INTEGER:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and isinstance(number := parse_number(value, lang), int):
            return number
        raise ValueError(f"answer {shown} is not an Integer")
    if answer_format is AnswerFormat.FLOAT:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and (number := parse_number(value, lang)) is not None:
            return float(number)
        raise ValueError(f"answer {shown} is not a Float")
    if answer_format is AnswerFormat.LIST:
        items = _parse_list(value)
        if items is None:
            raise ValueError(f"answer {shown} is not a List")
        if not items:
            raise ValueError("answer is an empty List")
        return items
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"answer {shown} is not a non-empty String")


def _parse_list(value: Any) -> list[Scalar] | None:
    if isinstance(value, str):
        for parse in (json.loads, ast.literal_eval):
            try:
                value = parse(value)
                break
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
        else:
            return None
    if not isinstance(value, list | tuple):
        return None
    if not all(
        isinstance(item, str | int | float) and not isinstance(item, bool) for item in value
    ):
        return None
    return list(value)


def coerce_answer_field(data: Any) -> Any:
    """Before-validation hook for records with ``answer`` and ``answer_format``: coerce the raw
    answer, so pydantic's lax union never turns ``True`` into ``1`` first."""
    if isinstance(data, dict) and data.get("answer_format") is not None and "answer" in data:
        try:
            answer_format = AnswerFormat(data["answer_format"])
        except ValueError:
            return data  # the field validator reports the unknown format
        data = {**data, "answer": coerce_answer(data["answer"], answer_format)}
    return data


class PageRange(Model):
    """An inclusive range of 1-based pages, written "12-20"."""

    first: PageNumber
    last: PageNumber

    @model_validator(mode="after")
    def _ordered(self) -> PageRange:
        if self.last < self.first:
            raise ValueError(f"page range {self.first}-{self.last} ends before it starts")
        return self

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"

    @classmethod
    def parse(cls, text: str) -> PageRange:
        """A range as written ("12-20"), or one page ("12"); ValueError naming ``text``."""
        first, dash, last = text.strip().partition("-")
        try:
            return cls(first=int(first), last=int(last) if dash else int(first))
        except ValueError:  # pydantic's ValidationError is a ValueError too
            raise ValueError(
                f"{text!r} is not a page or a 1-based page range such as 32-50"
            ) from None

    def __contains__(self, page: object) -> bool:
        return isinstance(page, int) and self.first <= page <= self.last

    def __len__(self) -> int:
        return self.last - self.first + 1

    @property
    def pages(self) -> list[int]:
        return list(range(self.first, self.last + 1))


class Segment(Record):
    """Consecutive pages of one document that a teacher sees at once."""

    segment_id: str = Field(description="Stable id: doc_id prefix and page range.")
    doc_id: DocId
    pages: PageRange
    section_titles: list[str] = Field(default_factory=list)
    doc_pages: int = Field(ge=1, description="Pages of the whole document.")

    @model_validator(mode="after")
    def _inside_document(self) -> Segment:
        if self.pages.last > self.doc_pages:
            raise ValueError(
                f"segment {self.pages} goes past the last page {self.doc_pages} of the document"
            )
        return self


class QAPair(Record):
    """One question about a segment, with its answer and evidence, as the teacher wrote it."""

    qa_id: str
    doc_id: DocId
    segment: PageRange
    task: Task
    question: str = Field(min_length=1)
    answer: Answer
    answer_format: AnswerFormat
    evidence_pages: list[PageNumber] = Field(min_length=1)
    evidence_sources: list[EvidenceSource] = Field(min_length=1)
    evidence_description: str = ""
    teacher: str = Field(description="Backend and model that wrote the pair, e.g. 'rules'.")
    prompt_version: str
    grounding: Literal["grounded", "unverified"] | None = Field(
        default=None,
        description="Whether the answer was found on the evidence pages' text layer "
        "('unverified': pages without checkable text); None when not checked (reasoning).",
    )

    _coerce_answer = model_validator(mode="before")(coerce_answer_field)

    @model_validator(mode="after")
    def _check(self) -> QAPair:
        for page in self.evidence_pages:
            if page not in self.segment:
                raise ValueError(f"evidence page {page} is outside segment {self.segment}")
        if len(set(self.evidence_pages)) != len(self.evidence_pages):
            raise ValueError(f"evidence pages {self.evidence_pages} repeat a page")
        return self
