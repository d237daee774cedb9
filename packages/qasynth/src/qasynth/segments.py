"""Choosing documents by length and cutting section-coherent segments out of them.

A segment is what the teacher sees: 8-15 consecutive pages made of whole sections when the
document has a usable structure (one or more consecutive sections of one outline level), else
a fixed window of pages. The QA written about it is later put back into the whole document,
so documents are chosen by the length of the whole document (pages and estimated tokens) and
never exceed the sample's maximum length.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from mmprolong_schemas import Document, PageRange, Section, Segment, VisionTokenSpec
from mmprolong_schemas.sample import HistogramBin, LengthDistribution

QA_TEXT_ALLOWANCE = 1024
"""Tokens kept free for the question, the answer and chat markers when checking that a
whole document fits the maximum length (long questions and List answers stay far below)."""


@dataclass(frozen=True)
class DocInfo:
    """What document selection needs to know about one pooled document."""

    doc_id: str
    num_pages: int
    est_tokens: int

    @classmethod
    def of(cls, doc: Document, spec: VisionTokenSpec | None = None) -> DocInfo:
        return cls(doc.doc_id, doc.num_pages, doc.tokens(spec))


@dataclass(frozen=True)
class DocumentSelection:
    """Which documents become training contexts, and how often.

    ``pool-native`` takes every document of 32-50 pages once (natural frequencies);
    ``long-biased`` every document of 50-100 pages; ``custom`` draws ``draws`` documents
    (default: as many as are eligible) with replacement so that the share of draws per token
    bin follows the histogram's weights. ``doc_pages`` overrides the page range.
    """

    distribution: LengthDistribution = LengthDistribution.POOL_NATIVE
    doc_pages: tuple[int, int] | None = None
    histogram: tuple[HistogramBin, ...] = ()
    max_length: int = 131072
    draws: int | None = None

    def __post_init__(self) -> None:
        if self.distribution is LengthDistribution.CUSTOM and not self.histogram:
            raise ValueError("document selection 'custom' needs a histogram of token bins")
        if self.distribution is not LengthDistribution.CUSTOM and self.histogram:
            raise ValueError("a token histogram is only used with the 'custom' distribution")
        if self.max_length <= QA_TEXT_ALLOWANCE:
            raise ValueError(f"max_length {self.max_length} leaves no room for page images")

    @property
    def page_range(self) -> tuple[int, int] | None:
        return self.doc_pages or self.distribution.default_doc_pages


@dataclass
class SelectionResult:
    chosen: list[DocInfo]
    skipped: Counter[str] = field(default_factory=Counter)


def select_documents(
    docs: Iterable[DocInfo], selection: DocumentSelection, seed: int = 0
) -> SelectionResult:
    """Documents to sample segments from, with repeats for ``custom`` draws; the reasons
    others were left out are counted (``pages-out-of-range``, ``over-max-length``, ...)."""
    skipped: Counter[str] = Counter()
    eligible: list[DocInfo] = []
    page_range = selection.page_range
    for info in docs:
        if page_range and not page_range[0] <= info.num_pages <= page_range[1]:
            skipped["pages-out-of-range"] += 1
        elif info.est_tokens + QA_TEXT_ALLOWANCE > selection.max_length:
            skipped["over-max-length"] += 1
        else:
            eligible.append(info)
    eligible.sort(key=lambda info: info.doc_id)
    if selection.distribution is not LengthDistribution.CUSTOM:
        return SelectionResult(eligible, skipped)
    return SelectionResult(_draw_by_histogram(eligible, selection, seed, skipped), skipped)


def _draw_by_histogram(
    eligible: list[DocInfo], selection: DocumentSelection, seed: int, skipped: Counter[str]
) -> list[DocInfo]:
    bins: list[list[DocInfo]] = [[] for _ in selection.histogram]
    for info in eligible:
        for index, hbin in enumerate(selection.histogram):
            if hbin.low <= info.est_tokens < hbin.high:
                bins[index].append(info)
                break
        else:
            skipped["outside-histogram"] += 1
    weights = [
        hbin.weight if members else 0.0
        for hbin, members in zip(selection.histogram, bins, strict=True)
    ]
    if not any(weights):
        return []
    draws = selection.draws if selection.draws is not None else sum(len(b) for b in bins)
    rng = random.Random(f"select:{seed}")
    chosen_bins = rng.choices(range(len(bins)), weights=weights, k=draws)
    return [rng.choice(bins[index]) for index in chosen_bins]


class Outline(Protocol):
    """What segment sampling reads of a document: a Document, or a light DocOutline."""

    @property
    def doc_id(self) -> str: ...
    @property
    def num_pages(self) -> int: ...
    @property
    def sections(self) -> list[Section]: ...


@dataclass(frozen=True)
class DocOutline:
    """A document's id, length and sections, without its pages: kept for every pooled
    document while the pool is scanned once."""

    doc_id: str
    num_pages: int
    sections: list[Section]
    est_tokens: int

    @classmethod
    def of(cls, doc: Document, spec: VisionTokenSpec | None = None) -> DocOutline:
        return cls(doc.doc_id, doc.num_pages, list(doc.sections), doc.tokens(spec))

    @property
    def info(self) -> DocInfo:
        return DocInfo(self.doc_id, self.num_pages, self.est_tokens)


def segment_id(doc_id: str, pages: PageRange) -> str:
    return f"{doc_id[:16]}:{pages}"


def _spans_at_level(sections: Sequence[Section], level: int) -> list[Section]:
    return sorted((s for s in sections if s.level == level), key=lambda s: s.start_page)


def section_candidates(
    doc: Outline, pages: tuple[int, int] = (8, 15)
) -> list[tuple[PageRange, list[str]]]:
    """Every run of consecutive sections of one outline level spanning ``pages`` pages,
    from the top level down to the first level that has any."""
    low, high = pages
    for level in sorted({s.level for s in doc.sections}):
        units = _spans_at_level(doc.sections, level)
        found: list[tuple[PageRange, list[str]]] = []
        for first in range(len(units)):
            for last in range(first, len(units)):
                start, end = (
                    units[first].start_page,
                    max(u.end_page for u in units[first : last + 1]),
                )
                length = end - start + 1
                if length > high:
                    break
                if length >= low:
                    titles = [u.title for u in units[first : last + 1]]
                    found.append((PageRange(first=start, last=end), titles))
        if found:
            return found
    return []


def window_candidates(doc: Outline, length: int) -> list[PageRange]:
    """Consecutive fixed windows of ``length`` pages; the whole document if it is shorter."""
    if doc.num_pages <= length:
        return [PageRange(first=1, last=doc.num_pages)]
    return [
        PageRange(first=start, last=start + length - 1)
        for start in range(1, doc.num_pages - length + 2, length)
    ]


def _titles_overlapping(doc: Outline, pages: PageRange) -> list[str]:
    if not doc.sections:
        return []
    top = min(s.level for s in doc.sections)
    return [
        s.title
        for s in _spans_at_level(doc.sections, top)
        if s.start_page <= pages.last and s.end_page >= pages.first
    ]


def sample_segments(
    doc: Outline, count: int = 1, seed: int = 0, pages: tuple[int, int] = (8, 15)
) -> list[Segment]:
    """Up to ``count`` distinct segments of ``doc``, non-overlapping while possible.

    Deterministic for (seed, document), whatever else is sampled in the same run.
    """
    if count < 1:
        return []
    rng = random.Random(f"segment:{seed}:{doc.doc_id}")
    by_sections = section_candidates(doc, pages)
    if by_sections:
        candidates = by_sections
    else:
        length = rng.randint(pages[0], pages[1])
        candidates = [(r, _titles_overlapping(doc, r)) for r in window_candidates(doc, length)]
    order = list(range(len(candidates)))
    rng.shuffle(order)
    chosen: list[int] = []
    for allow_overlap in (False, True):
        for index in order:
            if len(chosen) == count:
                break
            if index in chosen:
                continue
            span = candidates[index][0]
            overlaps = any(
                span.first <= candidates[c][0].last and span.last >= candidates[c][0].first
                for c in chosen
            )
            if allow_overlap or not overlaps:
                chosen.append(index)
    return [
        Segment(
            segment_id=segment_id(doc.doc_id, candidates[i][0]),
            doc_id=doc.doc_id,
            pages=candidates[i][0],
            section_titles=candidates[i][1],
            doc_pages=doc.num_pages,
        )
        for i in sorted(chosen, key=lambda i: candidates[i][0].first)
    ]
