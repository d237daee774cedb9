"""Checkable facts read from a parsed document: numbers in sentences and cells of tables.

The rules teacher writes its questions from these. A sentence fact is a sentence holding
exactly one number (years aside), kept with that number blanked out ("cloze"); a table fact is
a numeric cell located by the table's caption, its row label and its column header. Numbers
are read the way the document's language prints them (4,512.5 / 4 512,5 / 4.512,5).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from mmprolong_schemas import Block, BlockLabel, Document
from mmprolong_schemas.numbers import find_numbers, parse_number

BLANK = "___"

# A sentence ends at . ! ? before a capital, digit or quote, or at a CJK full stop (。！？),
# which needs no space after it.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-ZÀ-ÖØ-Þ0-9\"'«„(])|(?<=[。！？])\s*")
_YEAR = re.compile(r"^(1[89]\d\d|20\d\d|2100)$")
_TEXT_LABELS = {BlockLabel.TEXT, BlockLabel.LIST_ITEM}
# Numbered captions in en, fr, de, es, pt, ru ("Table 3: ...") and zh, ja ("表3：...").
_CAPTION = re.compile(
    r"^((?:Figure|Fig\.|Table|Tableau|Tabelle|Abbildung|Chart|Exhibit|Tabla|Figura|Gráfico"
    r"|Tabela|Таблица|Рисунок|Рис\.)\s+\d+|(?:表|図|图)\s*\d+)\s*[:.：]\s*(\S.{1,})$"
)


@dataclass(frozen=True)
class PageFact:
    """One number on one page, and where exactly it is printed."""

    page: int
    kind: Literal["sentence", "table"]
    value: int | float
    value_text: str
    sentence: str = ""
    cloze: str = ""
    caption: str = ""
    row_label: str = ""
    column: str = ""

    def locator(self) -> dict[str, object]:
        """How a checker finds the fact again: page plus sentence, or page plus table cell."""
        if self.kind == "sentence":
            return {
                "kind": "sentence",
                "page": self.page,
                "sentence": self.sentence,
                "value": self.value,
            }
        return {
            "kind": "table",
            "page": self.page,
            "caption": self.caption,
            "row": self.row_label,
            "column": self.column,
            "value": self.value,
        }


@dataclass(frozen=True)
class PageTable:
    page: int
    caption: str
    rows: tuple[tuple[str, ...], ...]

    @property
    def data_rows(self) -> int:
        return max(0, len(self.rows) - 1)


@dataclass(frozen=True)
class PageCaption:
    """A numbered caption such as "Figure 3: Survey sites": label "Figure 3", title after."""

    page: int
    label: str
    title: str

    def locator(self) -> dict[str, object]:
        return {"kind": "caption", "page": self.page, "label": self.label, "title": self.title}


@dataclass
class DocumentFacts:
    facts: list[PageFact]
    tables: list[PageTable]
    captions: list[PageCaption]

    def on_pages(self, first: int, last: int) -> DocumentFacts:
        return DocumentFacts(
            [f for f in self.facts if first <= f.page <= last],
            [t for t in self.tables if first <= t.page <= last],
            [c for c in self.captions if first <= c.page <= last],
        )


def _flat(text: str) -> str:
    return " ".join(text.split())


def sentence_facts(page: int, text: str, lang: str | None) -> list[PageFact]:
    found = []
    for sentence in _SENTENCE_END.split(_flat(text)):
        spans = list(find_numbers(sentence, lang))
        values = [n for n in spans if not _YEAR.match(n.text)]
        years = [n for n in spans if _YEAR.match(n.text)]
        chosen = (
            values[0]
            if len(values) == 1
            else (years[0] if not values and len(years) == 1 else None)
        )
        if chosen is None:
            continue
        cloze = sentence[: chosen.start] + BLANK + sentence[chosen.end :]
        found.append(
            PageFact(page, "sentence", chosen.value, chosen.text, sentence=sentence, cloze=cloze)
        )
    return found


def _caption_for(table: Block, blocks: list[Block]) -> str:
    above = [
        b
        for b in blocks
        if b.label is BlockLabel.CAPTION and b.bbox.y1 <= table.bbox.y0 + 2 and b.text.strip()
    ]
    if not above:
        return ""
    return _flat(max(above, key=lambda b: b.bbox.y1).text)


def table_facts(page: int, table: PageTable, lang: str | None) -> list[PageFact]:
    if len(table.rows) < 2:
        return []
    header = table.rows[0]
    found = []
    for row in table.rows[1:]:
        label = _flat(row[0]) if row else ""
        if not label or parse_number(label, lang) is not None:
            continue
        for column, cell in zip(header[1:], row[1:], strict=False):
            value = parse_number(cell, lang)
            if value is not None and _flat(column):
                found.append(
                    PageFact(
                        page,
                        "table",
                        value,
                        cell.strip(),
                        caption=table.caption,
                        row_label=label,
                        column=_flat(column),
                    )
                )
    return found


def extract_facts(doc: Document) -> DocumentFacts:
    """Every sentence and table fact of ``doc`` that can be located without ambiguity.

    A cloze that occurs twice in the document, or a (caption, row, column) that occurs twice
    on one page, is dropped: a question about it could have two answers.
    """
    facts: list[PageFact] = []
    tables: list[PageTable] = []
    captions: list[PageCaption] = []
    for page in doc.pages:
        blocks = sorted(page.blocks, key=lambda b: b.order)
        for block in blocks:
            if block.label is BlockLabel.CAPTION and (match := _CAPTION.match(_flat(block.text))):
                captions.append(PageCaption(page.number, match.group(1), match.group(2)))
            elif block.label in _TEXT_LABELS and block.text:
                facts.extend(sentence_facts(page.number, block.text, doc.lang))
            elif block.label is BlockLabel.TABLE and block.rows:
                table = PageTable(
                    page.number,
                    _caption_for(block, blocks),
                    tuple(tuple(_flat(c) for c in row) for row in block.rows),
                )
                tables.append(table)
                facts.extend(table_facts(page.number, table, doc.lang))
    clozes = Counter(f.cloze for f in facts if f.kind == "sentence")
    cells = Counter((f.page, f.caption, f.row_label, f.column) for f in facts if f.kind == "table")
    unique = [
        f
        for f in facts
        if (f.kind == "sentence" and clozes[f.cloze] == 1)
        or (f.kind == "table" and cells[(f.page, f.caption, f.row_label, f.column)] == 1)
    ]
    labels = Counter((c.page, c.label) for c in captions)
    return DocumentFacts(unique, tables, [c for c in captions if labels[(c.page, c.label)] == 1])
