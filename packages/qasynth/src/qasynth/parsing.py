"""Turning a teacher's free-text reply into a validated QAPair, or a rejection with a reason.

Teachers answer "Evidence: ... JSON: {...}" (or, with structured output, one JSON object that
also holds ``evidence_description``). Replies are messy: code fences, single quotes, trailing
commas, prose after the object, page indices as strings, "$45.20" for a Float. Everything that
can be read unambiguously is read; everything else is rejected with one reason code, so a run's
statistics say what its teacher gets wrong.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mmprolong_schemas import AnswerFormat, EvidenceSource, QAPair, SchemaError, Segment, Task
from mmprolong_schemas.base import validate_record
from mmprolong_schemas.numbers import parse_number
from mmprolong_schemas.qa import coerce_answer
from qasynth.grounding import EvidenceText, Verdict, check_grounding, normalize_text

FALLBACK_MARK = "single-page fallback"
"""Written in the evidence description when extract-multi or reasoning uses one page."""


class QARejectReason(StrEnum):
    """Why a teacher's reply gave no QA pair (counted per reason in the run's stats)."""

    TEACHER_ERROR = "teacher-error"
    TRUNCATED = "truncated-reply"
    NO_JSON = "no-json"
    BAD_FIELDS = "bad-fields"
    EVIDENCE_OUTSIDE_SEGMENT = "evidence-outside-segment"
    SINGLE_NOT_ONE_PAGE = "single-not-one-page"
    TOO_FEW_PAGES = "too-few-pages"
    ANSWER_FORMAT = "answer-format"
    NO_ANCHOR = "no-anchor"
    BROAD_SCOPE = "broad-scope"
    DUPLICATE = "duplicate-question"
    EMPTY_ANSWER = "empty-answer"
    NOT_GROUNDED = "not-grounded"
    REASONING_VERBATIM = "reasoning-verbatim"


class Rejected(ValueError):
    def __init__(self, reason: QARejectReason, detail: str):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}")


@dataclass(frozen=True)
class ParsedReply:
    evidence_description: str
    data: dict[str, Any]


_MARKERS = re.compile(r"\[?\s*(evidence(?:\s+description)?|json)\s*\]?\s*:", re.IGNORECASE)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _balanced_objects(text: str) -> Iterator[str]:
    """Every top-level {...} in ``text``, braces inside strings ignored."""
    depth, start, quote, escaped = 0, -1, "", False
    for index, char in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
            continue
        if char in "\"'" and depth:
            quote = char
        elif char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                yield text[start : index + 1]


def _load_object(candidate: str) -> dict[str, Any] | None:
    for text in (candidate, _TRAILING_COMMA.sub(r"\1", candidate)):
        try:
            value = json.loads(text)
        except ValueError:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
        if isinstance(value, dict):
            return value
    return None


def parse_reply(text: str) -> ParsedReply:
    """Find the evidence description and the JSON object in a reply."""
    if not text or not text.strip():
        raise Rejected(QARejectReason.NO_JSON, "the reply is empty")
    json_at = None
    for match in _MARKERS.finditer(text):
        if match.group(1).lower() == "json":
            json_at = match
    search_from = json_at.end() if json_at else 0
    candidates = [m.group(1) for m in _FENCE.finditer(text[search_from:])]
    candidates += list(_balanced_objects(text[search_from:]))
    if json_at:
        candidates += list(_balanced_objects(text))
    data = None
    for candidate in candidates:
        loaded = _load_object(candidate.strip())
        if loaded is not None and "question" in loaded:
            data = loaded
            break
    if data is None:
        raise Rejected(QARejectReason.NO_JSON, "no JSON object with a 'question' key was found")
    description = str(data.pop("evidence_description", "") or "").strip()
    if not description:
        description = _description_before_json(text, json_at.start() if json_at else None)
    return ParsedReply(description, data)


def _description_before_json(text: str, json_start: int | None) -> str:
    head = text[:json_start] if json_start is not None else text.split("{", 1)[0]
    head = _FENCE.sub("", head)
    match = None
    for match in _MARKERS.finditer(head):
        if match.group(1).lower().startswith("evidence"):
            break
    else:
        match = None
    return (head[match.end() :] if match else head).strip()


# Page anchors in en, fr, de, es, zh and ja. One page word names one page or a range ("Page
# 12", "Seite 12-14", "第12页", "12ページ"); a plural word may list pages ("Pages 3, 5 and 9",
# "第3、5页"). "Page 12, 2019" names page 12 only: the comma after a singular word does not
# continue it. A list stops at a number that cannot be one of its pages (``_ends_list``), so
# "Pages 12, 2019" names page 12 only too.
_RANGE = r"(?:-|–|~|～|to|à|a|bis|au|至|到|から)"
_LIST = r"(?:,|、|，|and|&|et|und|y|e|和|及|と)"
_ONE = rf"\d+(?:\s*{_RANGE}\s*\d+)?"
_MANY = rf"{_ONE}(?:(?:\s*{_LIST})+\s*{_ONE})*"
_LIST_ITEM = re.compile(
    rf"(?P<separator>(?:\s*{_LIST})*)\s*(?P<low>\d+)(?:\s*{_RANGE}\s*(?P<high>\d+))?",
    re.IGNORECASE,
)
_PAGE_ANCHOR = re.compile(
    rf"\b(?:pages|pp\.|seiten|páginas|paginas)\s*(?P<many>{_MANY})\b"
    rf"|\b(?:page|p\.|seite|s\.|página|pagina|pág\.|pag\.)\s*(?P<one>{_ONE})\b"
    rf"|第\s*(?P<cjk>{_MANY})\s*(?:页|頁|ページ)"
    rf"|(?P<cjk_after>{_ONE})\s*(?:页|頁|ページ)"
    rf"|(?:ページ|页|頁)\s*(?P<cjk_before>{_ONE})",
    re.IGNORECASE,
)
_SECTION_ANCHOR = re.compile(
    r"\b(?:section|subsection|chapter|appendix|chapitre|annexe|abschnitt|kapitel|anhang"
    r"|sección|seccion|capítulo|capitulo|apéndice|apendice|anexo)\b"
    r"|\b(?:part|partie|teil|parte)\s+(?:[IVX]+|\d+)\b"
    r"|第\s*[\d一二三四五六七八九十百]+\s*(?:章|节|節|部分|部)"
    r"|[\d.]+\s*(?:章|节|節)|セクション|章节|附录|付録",
    re.IGNORECASE,
)
_BROAD = re.compile(
    r"\b(?:across|throughout|in)\s+the\s+(?:whole|entire|full)?\s*(?:document|file|report)\b"
    r"|\bwhole\s+(?:document|file)\b"
    r"|\b(?:dans\s+(?:tout\s+)?le\s+document|l'ensemble\s+du\s+document)\b"
    r"|\b(?:im\s+(?:gesamten\s+|ganzen\s+)?Dokument|gesamte[nm]?\s+Dokument)\b"
    r"|\b(?:en\s+(?:todo\s+)?el\s+documento|todo\s+el\s+documento)\b"
    r"|整个文档|整份文件|整篇文档|全文中|文書全体|ドキュメント全体",
    re.IGNORECASE,
)


def _ends_list(separator: str, number: int, previous: int, doc_pages: int | None) -> bool:
    """Whether a number after the first of a page list is no page of it: beyond the
    document's last page (where known), or a year after a comma ("Pages 12, 2019 edition")
    unless the list already counts pages in the thousands."""
    if doc_pages is not None and number > doc_pages:
        return True
    after_comma = any(comma in separator for comma in ",、，")
    return after_comma and 1000 <= number <= 2999 and previous < 1000


def anchored_pages(question: str, doc_pages: int | None = None) -> list[int]:
    """Page numbers the question names ("Page 12", "Pages 12-14", "Pages 3, 5 and 9",
    "Seite 4", "第12页", "12ページ"). ``doc_pages``, the document's page count, ends a list at a
    number beyond it; the first number is always kept (a wrong anchor must show)."""
    pages: list[int] = []
    for match in _PAGE_ANCHOR.finditer(question):
        spec = next(group for group in match.groups() if group)
        previous: int | None = None
        for item in _LIST_ITEM.finditer(spec):
            first = int(item["low"])
            if previous is not None and _ends_list(item["separator"], first, previous, doc_pages):
                break
            last = int(item["high"] or first)
            pages.extend(range(first, min(last, first + 500) + 1))
            previous = last
    return pages


def _has_section_anchor(question: str, titles: list[str]) -> bool:
    lowered = unicodedata.normalize("NFKC", question).casefold()
    titles = [unicodedata.normalize("NFKC", t).strip().casefold() for t in titles]
    if any(len(t) >= 3 and t in lowered for t in titles):
        return True
    return bool(_SECTION_ANCHOR.search(question))


def _normalize_question(question: str) -> str:
    """Case, width and punctuation folded; letters of every script kept."""
    return " ".join(
        re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", question).casefold()).split()
    )


def _as_page(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    match = re.fullmatch(r"\s*(?:page\s*)?(\d+)\s*", str(value), re.IGNORECASE)
    if not match:
        raise ValueError(value)
    return int(match.group(1))


def _source(value: Any) -> EvidenceSource:
    for source in EvidenceSource:
        if str(value).strip().lower() == source.value.lower():
            return source
    raise ValueError(value)


def _answer(value: Any, answer_format: AnswerFormat, lang: str | None) -> Any:
    """The answer in its format's type; numbers are read as the document's language prints
    them, with currency and percent signs dropped ("3,7 %" in French is 3.7)."""
    if answer_format in (AnswerFormat.INTEGER, AnswerFormat.FLOAT) and isinstance(value, str):
        number = parse_number(value, lang, decorated=True)
        value = value if number is None else number
    return coerce_answer(value, answer_format, lang)


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def _deduplicated(items: list[Any]) -> list[Any]:
    """List items once each, in order; "Lyon" and " lyon " are one item."""
    seen: set[str] = set()
    kept = []
    for item in items:
        key = normalize_text(str(item)) if isinstance(item, str) else repr(float(item))
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


def qa_id_for(segment_id: str, task: Task, teacher: str, question: str) -> str:
    digest = hashlib.sha256(f"{segment_id}|{task.value}|{teacher}|{question}".encode())
    return digest.hexdigest()[:24]


class QAValidator:
    """Checks replies against their segment and task; remembers questions to drop repeats."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()
        self.fallbacks = 0

    def validate(
        self,
        text: str,
        segment: Segment,
        task: Task,
        teacher: str,
        prompt_version: str,
        evidence: EvidenceText | None = None,
    ) -> QAPair:
        """A QAPair, or Rejected with the first reason that applies. With the document's
        ``evidence`` text, numbers are read in its language and the answer must be grounded
        (see ``qasynth.grounding``); without it the pair's grounding stays unchecked."""
        parsed = parse_reply(text)
        data = parsed.data
        try:
            question = str(data["question"]).strip()
            answer_format = AnswerFormat(str(data["answer_format"]).strip().title())
            raw_pages = data["evidence_pages"]
            raw_pages = raw_pages if isinstance(raw_pages, list) else [raw_pages]
            pages = sorted({_as_page(p) for p in raw_pages})
            raw_sources = data.get("evidence_sources") or []
            raw_sources = raw_sources if isinstance(raw_sources, list) else [raw_sources]
            sources = list(dict.fromkeys(_source(s) for s in raw_sources))
            raw_answer = data["answer"]
        except (KeyError, ValueError, TypeError) as error:
            raise Rejected(
                QARejectReason.BAD_FIELDS, f"missing or unreadable field ({error})"
            ) from None
        if not question or not pages or not sources:
            raise Rejected(
                QARejectReason.BAD_FIELDS, "empty question, evidence_pages or evidence_sources"
            )
        if answer_format is AnswerFormat.NONE:
            raise Rejected(QARejectReason.ANSWER_FORMAT, "answer_format 'None' is not asked for")
        if _is_empty(raw_answer):
            raise Rejected(QARejectReason.EMPTY_ANSWER, f"the answer {raw_answer!r} is empty")
        try:
            answer = _answer(raw_answer, answer_format, evidence.lang if evidence else None)
        except ValueError as error:
            raise Rejected(QARejectReason.ANSWER_FORMAT, str(error)) from None
        if isinstance(answer, list):
            if any(_is_empty(item) for item in answer):
                raise Rejected(QARejectReason.EMPTY_ANSWER, f"the list {answer!r} has empty items")
            answer = _deduplicated(answer)
        outside = [p for p in pages if p not in segment.pages]
        if outside:
            raise Rejected(
                QARejectReason.EVIDENCE_OUTSIDE_SEGMENT,
                f"evidence pages {outside} are outside segment {segment.pages}",
            )
        fallback = FALLBACK_MARK in parsed.evidence_description.lower()
        if task is Task.EXTRACT_SINGLE and len(pages) != 1:
            raise Rejected(
                QARejectReason.SINGLE_NOT_ONE_PAGE, f"extract-single cites pages {pages}"
            )
        if task in (Task.EXTRACT_MULTI, Task.REASONING) and len(pages) < 2 and not fallback:
            raise Rejected(
                QARejectReason.TOO_FEW_PAGES,
                f"{task.value} cites only page {pages[0]} without the single-page fallback",
            )
        if _BROAD.search(question):
            raise Rejected(QARejectReason.BROAD_SCOPE, "the question refers to the whole document")
        named = anchored_pages(question, segment.doc_pages)
        if named:
            if any(p not in segment.pages for p in named):
                raise Rejected(
                    QARejectReason.NO_ANCHOR,
                    f"the question names pages {named} outside segment {segment.pages}",
                )
        elif not _has_section_anchor(question, segment.section_titles):
            raise Rejected(QARejectReason.NO_ANCHOR, "the question names no page or section")
        grounding = None
        if evidence is not None:
            verdict, detail = check_grounding(answer, answer_format, task, pages, sources, evidence)
            if verdict is Verdict.NOT_FOUND:
                raise Rejected(QARejectReason.NOT_GROUNDED, detail)
            if verdict is Verdict.VERBATIM:
                raise Rejected(QARejectReason.REASONING_VERBATIM, detail)
            if verdict is not Verdict.REASONED:
                grounding = verdict.value
        key = (segment.doc_id, _normalize_question(question))
        if key in self._seen:
            raise Rejected(QARejectReason.DUPLICATE, "the same question was already accepted")
        try:
            pair = validate_record(
                QAPair,
                {
                    "qa_id": qa_id_for(segment.segment_id, task, teacher, question),
                    "doc_id": segment.doc_id,
                    "segment": segment.pages,
                    "task": task,
                    "question": question,
                    "answer": answer,
                    "answer_format": answer_format,
                    "evidence_pages": pages,
                    "evidence_sources": sources,
                    "evidence_description": parsed.evidence_description,
                    "teacher": teacher,
                    "prompt_version": prompt_version,
                    "grounding": grounding,
                },
                "teacher reply",
            )
        except SchemaError as error:
            raise Rejected(QARejectReason.BAD_FIELDS, "; ".join(error.problems)) from None
        self._seen.add(key)
        if fallback and task is not Task.EXTRACT_SINGLE and len(pages) < 2:
            self.fallbacks += 1
        return pair

    def remember(self, pair: QAPair) -> None:
        """Count an already accepted pair (from an earlier run) as seen."""
        self._seen.add((pair.doc_id, _normalize_question(pair.question)))
