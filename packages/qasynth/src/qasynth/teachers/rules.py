"""The rules teacher: a deterministic bootstrap teacher, not a vision-language model.

It reads the parsed text blocks and tables of a segment (never the pixels) and writes grounded,
anchored questions from the facts it finds there: one fact for extract-single, facts of two or
three pages as a List for extract-multi, and a sum, difference, comparison or count over facts
of two pages for reasoning. It answers in the same "Evidence: ... JSON: {...}" form a VLM is
asked for, so its replies go through the same parser and validator. It exists so the whole
pipeline runs offline (demo, tests, CI); its questions are plainer than a VLM's and it cannot
ask about figures or layout. Every reply's ``meta["facts"]`` locates the facts it used.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mmprolong_schemas import Document, Task
from qasynth.facts import DocumentFacts, PageCaption, PageFact, PageTable, extract_facts
from qasynth.parsing import FALLBACK_MARK
from qasynth.teachers.base import ReplyCallback, Teacher, TeacherReply, TeacherRequest

RULES_MODEL = "bootstrap-v1"


@dataclass
class Draft:
    question: str
    answer: Any
    answer_format: str
    pages: list[int]
    sources: list[str]
    evidence: str
    facts: list[PageFact]
    tables: list[PageTable]
    operation: str
    captions: tuple[PageCaption, ...] = ()

    def reply(self) -> TeacherReply:
        data = {
            "question": self.question,
            "answer": self.answer,
            "answer_format": self.answer_format,
            "evidence_pages": self.pages,
            "evidence_sources": self.sources,
        }
        text = f"Evidence: {self.evidence}\nJSON: {json.dumps(data, ensure_ascii=False)}"
        meta = {
            "operation": self.operation,
            "facts": [f.locator() for f in self.facts],
            "tables": [{"page": t.page, "caption": t.caption} for t in self.tables],
            "captions": [c.locator() for c in self.captions],
        }
        return TeacherReply(text=text, meta=meta)


def _pages_phrase(pages: Sequence[int]) -> str:
    pages = sorted(set(pages))
    if len(pages) == 1:
        return f"Page {pages[0]}"
    return "Pages " + ", ".join(str(p) for p in pages[:-1]) + f" and {pages[-1]}"


def _table_name(caption: str, page: int) -> str:
    return f'the table "{caption}" on Page {page}' if caption else f"the table on Page {page}"


def _describe(fact: PageFact) -> str:
    """A noun phrase that points at the fact unambiguously, page included."""
    if fact.kind == "sentence":
        return f'the number missing from "{fact.cloze}" (Page {fact.page})'
    return (
        f'the "{fact.column}" value for {fact.row_label} in {_table_name(fact.caption, fact.page)}'
    )


def _evidence(fact: PageFact) -> str:
    if fact.kind == "sentence":
        return f'Text on Page {fact.page}: the sentence "{fact.sentence}" gives {fact.value_text}.'
    return (
        f"Table on Page {fact.page}: in {_table_name(fact.caption, fact.page)}, row "
        f'{fact.row_label}, column "{fact.column}" reads {fact.value_text}.'
    )


def _source(fact: PageFact) -> str:
    return "Text" if fact.kind == "sentence" else "Table"


def _number_format(values: Sequence[int | float]) -> str:
    return "Integer" if all(isinstance(v, int) for v in values) else "Float"


def _decimals(fact: PageFact) -> int:
    text = fact.value_text.replace(" ", "")
    for mark in (",", "."):
        head, _, tail = text.rpartition(mark)
        if head and tail.isdigit() and len(tail) != 3:
            return len(tail)
    return 0


def _combine(value: float, facts: Sequence[PageFact]) -> int | float:
    if all(isinstance(f.value, int) for f in facts):
        return int(round(value))
    return round(value, max(_decimals(f) for f in facts) or 1)


class RulesTeacher(Teacher):
    """Writes QA from a segment's parsed blocks; ``documents`` looks a document up by id."""

    backend = "rules"

    def __init__(self, documents: Callable[[str], Document], model: str = RULES_MODEL):
        super().__init__(model)
        self._documents = documents
        self._facts: dict[str, DocumentFacts] = {}

    def complete(self, requests: Sequence[TeacherRequest], on_reply: ReplyCallback) -> None:
        for request in requests:
            try:
                reply = self.answer(request)
            except (KeyError, ValueError, OSError) as error:
                reply = TeacherReply(text=None, error=f"document not readable: {error}")
            on_reply(request, reply)

    def _document_facts(self, doc_id: str) -> DocumentFacts:
        if doc_id not in self._facts:
            if len(self._facts) > 64:
                self._facts.clear()
            self._facts[doc_id] = extract_facts(self._documents(doc_id))
        return self._facts[doc_id]

    def answer(self, request: TeacherRequest) -> TeacherReply:
        pages = request.segment.pages
        facts = self._document_facts(request.segment.doc_id).on_pages(pages.first, pages.last)
        rng = random.Random(request.key)
        writers = {
            Task.EXTRACT_SINGLE: self._single,
            Task.EXTRACT_MULTI: self._multi,
            Task.REASONING: self._reasoning,
        }
        draft = writers[request.task](facts, rng)
        if draft is None:
            return TeacherReply(
                text=f"Evidence: pages {pages} hold no facts this rules teacher can ask about.",
                meta={"facts": []},
            )
        return draft.reply()

    # -- extract-single ---------------------------------------------------------------------

    def _single(self, facts: DocumentFacts, rng: random.Random) -> Draft | None:
        if facts.captions and (not facts.facts or rng.random() < 0.2):
            return self._caption(rng.choice(facts.captions))
        if not facts.facts:
            return None
        fact = rng.choice(facts.facts)
        if fact.kind == "sentence":
            question = f'On Page {fact.page}, what number fills the blank in "{fact.cloze}"?'
        else:
            question = (
                f"According to {_table_name(fact.caption, fact.page)}, what is the "
                f'"{fact.column}" value for {fact.row_label}?'
            )
        return Draft(
            question,
            fact.value,
            _number_format([fact.value]),
            [fact.page],
            [_source(fact)],
            _evidence(fact),
            [fact],
            [],
            "value",
        )

    def _caption(self, caption: PageCaption) -> Draft:
        question = f"What title does the caption of {caption.label} on Page {caption.page} give?"
        evidence = (
            f'Layout on Page {caption.page}: the caption reads "{caption.label}: {caption.title}".'
        )
        return Draft(
            question,
            caption.title,
            "String",
            [caption.page],
            ["Layout"],
            evidence,
            [],
            [],
            "caption",
            (caption,),
        )

    # -- extract-multi ----------------------------------------------------------------------

    def _multi(self, facts: DocumentFacts, rng: random.Random) -> Draft | None:
        options = []
        sentence_pages = sorted({f.page for f in facts.facts if f.kind == "sentence"})
        if len(sentence_pages) >= 2:
            options.append(self._multi_clozes)
        tables_by_page = sorted({t.page for t in facts.tables if t.data_rows})
        if len(tables_by_page) >= 2:
            options.append(self._multi_table_rows)
        if options:
            return rng.choice(options)(facts, rng)
        return self._multi_fallback(facts, rng)

    def _multi_clozes(self, facts: DocumentFacts, rng: random.Random) -> Draft:
        by_page: dict[int, list[PageFact]] = {}
        for fact in facts.facts:
            if fact.kind == "sentence":
                by_page.setdefault(fact.page, []).append(fact)
        pages = sorted(rng.sample(sorted(by_page), min(len(by_page), rng.choice((2, 2, 3)))))
        chosen = [rng.choice(by_page[p]) for p in pages]
        listed = "; ".join(f'({n}) "{f.cloze}" (Page {f.page})' for n, f in enumerate(chosen, 1))
        question = (
            f"On {_pages_phrase(pages)}, which numbers fill the blanks of these sentences, "
            f"in this order: {listed}?"
        )
        return Draft(
            question,
            [f.value for f in chosen],
            "List",
            pages,
            ["Text"],
            " ".join(_evidence(f) for f in chosen),
            chosen,
            [],
            "list-values",
        )

    def _multi_table_rows(self, facts: DocumentFacts, rng: random.Random) -> Draft:
        first_table: dict[int, PageTable] = {}
        for table in facts.tables:
            if table.data_rows and table.page not in first_table:
                first_table[table.page] = table
        pages = sorted(rng.sample(sorted(first_table), 2))
        tables = [first_table[p] for p in pages]
        # A table whose first column is empty in some rows (merged cells, spacer rows) has no
        # label to ask for there.
        labels = list(dict.fromkeys(r[0] for t in tables for r in t.rows[1:] if r and r[0]))
        names = " and ".join(_table_name(t.caption, t.page) for t in tables)
        header = tables[0].rows[0][0] if tables[0].rows[0] else "row"
        question = (
            f'Which entries of the first column ("{header}") appear in {names}, listed once '
            f"each in order of first appearance?"
        )
        evidence = " ".join(
            f"Table on Page {t.page}: {_table_name(t.caption, t.page)} lists "
            f"{', '.join(r[0] for r in t.rows[1:])}."
            for t in tables
        )
        return Draft(
            question, labels, "List", pages, ["Table"], evidence, [], tables, "list-row-labels"
        )

    def _multi_fallback(self, facts: DocumentFacts, rng: random.Random) -> Draft | None:
        sentences = [f for f in facts.facts if f.kind == "sentence"]
        by_page: dict[int, list[PageFact]] = {}
        for fact in sentences:
            by_page.setdefault(fact.page, []).append(fact)
        candidates = [p for p, found in by_page.items() if len(found) >= 2]
        if not candidates:
            return None
        page = rng.choice(sorted(candidates))
        chosen = sorted(rng.sample(by_page[page], 2), key=by_page[page].index)
        listed = "; ".join(f'({n}) "{f.cloze}"' for n, f in enumerate(chosen, 1))
        question = (
            f"On Page {page}, which numbers fill the blanks of these sentences, in order: {listed}?"
        )
        evidence = (
            f"Only Page {page} holds two related facts, so this is a {FALLBACK_MARK}. "
            + " ".join(_evidence(f) for f in chosen)
        )
        return Draft(
            question,
            [f.value for f in chosen],
            "List",
            [page],
            ["Text"],
            evidence,
            chosen,
            [],
            "list-values",
        )

    # -- reasoning --------------------------------------------------------------------------

    def _reasoning(self, facts: DocumentFacts, rng: random.Random) -> Draft | None:
        by_page: dict[int, list[PageFact]] = {}
        for fact in facts.facts:
            by_page.setdefault(fact.page, []).append(fact)
        options: list[str] = []
        if len(by_page) >= 2:
            options += ["sum", "difference", "compare"]
        if len({t.page for t in facts.tables if t.data_rows}) >= 2:
            options.append("count")
        if not options:
            return None
        operation = rng.choice(options)
        if operation == "count":
            return self._count_rows(facts, rng)
        first_page, second_page = sorted(rng.sample(sorted(by_page), 2))
        a, b = rng.choice(by_page[first_page]), rng.choice(by_page[second_page])
        if operation == "compare" and a.value == b.value:
            operation = "sum"
        pages = [a.page, b.page]
        sources = list(dict.fromkeys([_source(a), _source(b)]))
        evidence = f"{_evidence(a)} {_evidence(b)}"
        if operation in ("sum", "difference"):
            if operation == "sum":
                answer = _combine(a.value + b.value, [a, b])
                question = f"What is the sum of {_describe(a)} and {_describe(b)}?"
                evidence += f" Their sum is {answer}."
            else:
                answer = _combine(a.value - b.value, [a, b])
                question = f"What is {_describe(a)} minus {_describe(b)}?"
                evidence += f" The difference is {answer}."
            answer_format = _number_format([a.value, b.value])
            return Draft(
                question, answer, answer_format, pages, sources, evidence, [a, b], [], operation
            )
        answer_label = "A" if a.value > b.value else "B"
        question = f"Which is larger: (A) {_describe(a)}, or (B) {_describe(b)}? Answer A or B."
        evidence += f" {max(a.value, b.value)} is the larger value."
        return Draft(
            question, answer_label, "String", pages, sources, evidence, [a, b], [], "compare"
        )

    def _count_rows(self, facts: DocumentFacts, rng: random.Random) -> Draft:
        first_table: dict[int, PageTable] = {}
        for table in facts.tables:
            if table.data_rows and table.page not in first_table:
                first_table[table.page] = table
        pages = sorted(rng.sample(sorted(first_table), 2))
        tables = [first_table[p] for p in pages]
        names = " and ".join(_table_name(t.caption, t.page) for t in tables)
        total = sum(t.data_rows for t in tables)
        question = f"How many data rows, not counting header rows, do {names} have together?"
        evidence = (
            " ".join(
                f"Table on Page {t.page}: {_table_name(t.caption, t.page)} has "
                f"{t.data_rows} data rows."
                for t in tables
            )
            + f" Together {total}."
        )
        return Draft(
            question, total, "Integer", pages, ["Table"], evidence, [], tables, "count-rows"
        )
