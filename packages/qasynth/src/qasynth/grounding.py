"""Is an answer written on its evidence pages? The check behind the validator's grounding rule.

Answers and page texts are compared after the same normalisation: words broken at a line end
joined again ("infor-\nmation" is "information"; soft hyphens dropped), Unicode NFKC, case
folding, punctuation and symbols as spaces, whitespace collapsed (none kept between two CJK
characters, whose text has no word spaces), and every number rewritten in one spelling, read
the way the document's language prints it ("1 234,5" in French and "1,234.5" both become
"1234.5"). A number answer is found when a number of that value is printed on an evidence page.
A hyphen at a line end may also be a compound's own ("well-\nknown"): a page whose text has one
is searched in both readings.

A page without text (a scan, a chart) cannot show an answer is absent, and an OCR text layer
may misread it: such evidence makes a pair ``unverified`` when its answer is not found. So does
a Figure source when an evidence page holds a figure (a picture block, or a figure caption for
a chart drawn as vector paths, which leaves no picture block), whose answer may be drawn rather
than written; naming a Figure on pages without one excuses nothing.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from docpool.captions import is_figure_caption
from mmprolong_schemas import AnswerFormat, Document, EvidenceSource, Page, QAPair, Task
from mmprolong_schemas.document import Block, BlockLabel
from mmprolong_schemas.numbers import Number, canonical_number, find_numbers, parse_number

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"  # kana, han, hangul
_SPACE_IN_CJK = re.compile(rf"(?<=[{_CJK}]) (?=[{_CJK}])")
_HAS_CJK = re.compile(rf"[{_CJK}]")
# A letter, a hyphen, a line break: joined when a lowercase letter follows (docpool's fast
# layout joins wrapped lines the same way; other text sources keep the break).
_LINE_END_HYPHEN = re.compile(r"(?<=[^\W\d_])[-\u2010][ \t]*\r?\n\s*(?=[^\W\d_])")
_SOFT_HYPHEN = re.compile(r"\u00ad(?:[ \t]*\r?\n\s*)?")

VERBATIM_MIN_WORDS = 4
"""A reasoning answer of at least this many words (CJK: twice as many characters) that is
printed on its evidence pages was copied, not reasoned."""


class Verdict(StrEnum):
    """What the check found; the validator turns the last two into rejections."""

    GROUNDED = "grounded"
    UNVERIFIED = "unverified"
    REASONED = "reasoned"
    """A reasoning answer, which is derived, not printed: nothing to find, nothing copied."""
    NOT_FOUND = "not-found"
    VERBATIM = "verbatim"


def _words(chunk: str) -> str:
    chunk = unicodedata.normalize("NFKC", chunk).casefold()
    return "".join(" " if unicodedata.category(c)[0] in "PSZC" else c for c in chunk)


def _join_broken_word(match: re.Match[str]) -> str:
    after = match.string[match.end()]
    return "" if after.islower() else match.group(0)


def normalize_text(text: str, lang: str | None = None, *, join_broken_words: bool = True) -> str:
    """``text`` as the grounding check compares it (see the module docstring);
    ``join_broken_words=False`` keeps a line-end hyphen as a word break."""
    text = _SOFT_HYPHEN.sub("", text)
    if join_broken_words:
        text = _LINE_END_HYPHEN.sub(_join_broken_word, text)
    parts = []
    position = 0
    for number in find_numbers(text, lang):
        parts.append(_words(text[position : number.start]))
        parts.append(f" {canonical_number(number.value)} ")
        position = number.end
    parts.append(_words(text[position:]))
    return _SPACE_IN_CJK.sub("", " ".join("".join(parts).split()))


def contains(haystack: str, needle: str) -> bool:
    """Whether normalised ``needle`` occurs in normalised ``haystack`` as whole words (CJK
    characters need no word boundary)."""
    if not needle:
        return False
    start = haystack.find(needle)
    while start >= 0:
        end = start + len(needle)
        before = haystack[start - 1] if start else " "
        after = haystack[end] if end < len(haystack) else " "
        left = before == " " or _HAS_CJK.match(before) or _HAS_CJK.match(needle[0])
        right = after == " " or _HAS_CJK.match(after) or _HAS_CJK.match(needle[-1])
        if left and right:
            return True
        start = haystack.find(needle, start + 1)
    return False


def page_text(page: Page) -> str:
    """Every text of a page: block texts in reading order and table cells, cell by cell."""
    texts = [page.text()]
    for block in page.blocks:
        for row in block.rows or []:
            texts.append(" | ".join(row))
    return "\n".join(t for t in texts if t.strip())


def _shows_figure(block: Block) -> bool:
    return block.label is BlockLabel.PICTURE or (
        block.label is BlockLabel.CAPTION and is_figure_caption(block.text)
    )


@dataclass(frozen=True)
class EvidenceText:
    """The text layer of a document's pages, as the grounding check reads it."""

    lang: str | None
    texts: dict[int, str]
    checkable: frozenset[int]
    """Pages whose text can show an answer is absent: a text layer that is not OCR."""
    pictured: frozenset[int]
    """Pages holding a figure, whose answers a Figure source may have read off the drawing:
    a picture block (an image the layout found) or a figure caption (a chart drawn as vector
    paths has no picture block, but has its caption)."""

    @classmethod
    def of(cls, doc: Document) -> EvidenceText:
        texts = {page.number: page_text(page) for page in doc.pages}
        checkable = frozenset(
            page.number
            for page in doc.pages
            if texts[page.number].strip() and page.has_text_layer and "ocr" not in page.flags
        )
        pictured = frozenset(
            page.number for page in doc.pages if any(_shows_figure(block) for block in page.blocks)
        )
        return cls(doc.lang, texts, checkable, pictured)

    def numbers(self, pages: Sequence[int]) -> list[Number]:
        """Every number printed on ``pages``, in the document's reading and in English's
        (a misdetected language must not hide a printed value)."""
        found: list[Number] = []
        for page in pages:
            text = self.texts.get(page, "")
            for lang in dict.fromkeys((self.lang, None)):
                found.extend(n.value for n in find_numbers(text, lang))
        return found

    def normalized(self, pages: Sequence[int]) -> str:
        """The pages' normalised texts, each also with its line-end hyphens kept where it has
        any (a compound broken at a line end is found either way)."""
        readings = []
        for page in pages:
            text = self.texts.get(page, "")
            readings.append(normalize_text(text, self.lang))
            if _LINE_END_HYPHEN.search(text):
                readings.append(normalize_text(text, self.lang, join_broken_words=False))
        return " \n ".join(readings)


def _same(a: Number, b: Number) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def _item_found(item: object, evidence: EvidenceText, pages: Sequence[int], text: str) -> bool:
    if isinstance(item, int | float) and not isinstance(item, bool):
        return any(_same(item, n) for n in evidence.numbers(pages))
    value = str(item)
    number = parse_number(value, evidence.lang, decorated=True)
    if number is not None and any(_same(number, n) for n in evidence.numbers(pages)):
        return True
    return contains(text, normalize_text(value, evidence.lang))


def _long_enough_to_copy(normalized: str) -> bool:
    if _HAS_CJK.search(normalized):
        return len(normalized.replace(" ", "")) >= 2 * VERBATIM_MIN_WORDS
    return len(normalized.split()) >= VERBATIM_MIN_WORDS


def check_grounding(
    answer: object,
    answer_format: AnswerFormat,
    task: Task,
    pages: Sequence[int],
    sources: Sequence[EvidenceSource],
    evidence: EvidenceText,
) -> tuple[Verdict, str]:
    """The verdict for one answer on its evidence pages, and what was not found or copied."""
    text = evidence.normalized(pages)
    items = answer if isinstance(answer, list) else [answer]
    if task is Task.REASONING:
        for item in items if answer_format in (AnswerFormat.STRING, AnswerFormat.LIST) else ():
            normalized = normalize_text(str(item), evidence.lang)
            if _long_enough_to_copy(normalized) and contains(text, normalized):
                return Verdict.VERBATIM, f"the answer {str(item)[:80]!r} is printed on the pages"
        return Verdict.REASONED, ""
    missing = [item for item in items if not _item_found(item, evidence, pages, text)]
    if not missing:
        return Verdict.GROUNDED, ""
    shown = ", ".join(repr(m) for m in missing[:5])
    blind = [p for p in pages if p not in evidence.checkable]
    if blind:
        return Verdict.UNVERIFIED, f"{shown} not found (pages {blind} have no checkable text)"
    pictured = [p for p in pages if p in evidence.pictured]
    if pictured and EvidenceSource.FIGURE in sources:
        return Verdict.UNVERIFIED, f"{shown} not found (a Figure source, pictures on {pictured})"
    figure = (
        " (a Figure source, but no picture on them)" if EvidenceSource.FIGURE in sources else ""
    )
    return Verdict.NOT_FOUND, f"{shown} not found on pages {list(pages)}{figure}"


NOT_CHECKED = "not-checked"


def grounding_table(counts: Counter[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """Per task: pairs by grounding (grounded, unverified, not-checked) and the grounding rate,
    the share of checked pairs whose answer was found on their pages (None: none checked)."""
    table: dict[str, dict[str, Any]] = {}
    for task in sorted({task for task, _ in counts}):
        row: dict[str, Any] = {
            status: counts[(task, status)]
            for status in ("grounded", "unverified", NOT_CHECKED)
            if counts[(task, status)]
        }
        checked = counts[(task, "grounded")] + counts[(task, "unverified")]
        row["grounding_rate"] = counts[(task, "grounded")] / checked if checked else None
        table[task] = row
    return table


def grounding_rates(pairs: Iterable[QAPair]) -> dict[str, dict[str, dict[str, Any]]]:
    """``grounding_table`` of every teacher: teacher -> task -> counts and grounding rate."""
    counts: dict[str, Counter[tuple[str, str]]] = {}
    for pair in pairs:
        teacher = counts.setdefault(pair.teacher, Counter())
        teacher[(pair.task.value, pair.grounding or NOT_CHECKED)] += 1
    return {teacher: grounding_table(counts[teacher]) for teacher in sorted(counts)}
