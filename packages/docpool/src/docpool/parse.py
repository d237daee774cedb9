"""Parsing one PDF (or one page range of it): the work that runs inside worker processes.

These functions open untrusted files, so ingest only ever calls them through an executor
(a separate process under a wall-clock timeout and a memory cap). They know nothing about
executors: they take a path and options and return plain data, or raise ``DocumentRejected``.
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

import pymupdf
from pymupdf import mupdf

from docpool.language import detect_document_language
from docpool.layout_fast import (
    HeadingHit,
    RawPage,
    StyleProfile,
    build_profile,
    classify_page,
    extract_page,
    ocr_available,
)
from docpool.ocr import DEFAULT_LANGUAGE, ocr_language_for
from mmprolong_schemas import Page
from mmprolong_schemas.document import DocumentMetadata

PROFILE_SAMPLE_PAGES = 24


class DocumentRejectReason(StrEnum):
    """Why a PDF was kept out of the pool (the ``reason`` written in ``rejects.parquet``)."""

    NOT_PDF = "not_pdf"
    UNREADABLE = "unreadable"
    TOO_LARGE = "too_large"
    TRUNCATED = "truncated"
    CORRUPT = "corrupt"
    ENCRYPTED = "encrypted"
    ZERO_PAGES = "zero_pages"
    TOO_FEW_PAGES = "too_few_pages"
    TOO_MANY_PAGES = "too_many_pages"
    EXCLUDED = "excluded"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    CRASHED = "crashed"
    PARSE_ERROR = "parse_error"


TRANSIENT_REASONS = frozenset(
    {DocumentRejectReason.TIMEOUT, DocumentRejectReason.MEMORY, DocumentRejectReason.CRASHED}
)
"""Verdicts a busier machine, a tighter cap or a bad moment can give: retried by a rerun."""
PAGE_LIMIT_REASONS = frozenset(
    {DocumentRejectReason.TOO_FEW_PAGES, DocumentRejectReason.TOO_MANY_PAGES}
)
"""Verdicts of the page limits: judged again by a run with other limits."""


class DocumentRejected(Exception):
    """The document cannot enter the pool; ``reason`` says why in one word."""

    def __init__(
        self, reason: DocumentRejectReason | str, detail: str = "", num_pages: int | None = None
    ):
        super().__init__(str(reason), detail, num_pages)  # all three survive pickling
        self.reason = DocumentRejectReason(reason)
        self.detail = detail
        self.num_pages = num_pages

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}" if self.detail else self.reason.value


@dataclass(frozen=True)
class ParseOptions:
    layout: str = "fast"  # "fast" or "model"
    layout_features: str = "rf"  # the model's inputs: "rf" or "imf+rf" (see layout_model)
    tables: str = "grid"  # "grid" (ruled tables, fast), "finder" (PyMuPDF find_tables), "off"
    min_pages: int = 20
    max_pages: int = 200
    chunk_pages: int = 128  # documents longer than this are parsed in page-range chunks
    ocr: bool = True
    # Tesseract codes ("eng", "jpn+eng"); None: from the document's detected language
    # (docpool.ocr.ocr_language_for), known once its text pages are read.
    ocr_language: str | None = None


@dataclass
class ParsedPages:
    pages: list[Page]
    headings: list[HeadingHit]


@dataclass
class Probe:
    """What opening a document tells: enough to decide, plan chunks and build the record."""

    num_pages: int
    metadata: DocumentMetadata
    toc: list[list[object]]
    profile: StyleProfile
    lang: str | None
    parsed: ParsedPages | None = None  # the first chunk: pages 1 to min(chunk_pages, num_pages)
    repaired: bool = False
    notes: list[str] = field(default_factory=list)
    # What pages without text were OCR'd in, and the other chunks' pages will be (None: no
    # OCR, or no page needed it).
    ocr_language: str | None = None


def warm_up(options: ParseOptions) -> None:
    """Load, once in the calling process, what every parse would otherwise load again:
    langdetect's language profiles and, for the model layout, the layout network. Workers
    forked afterwards share them."""
    from langdetect.detector_factory import init_factory

    init_factory()
    if options.layout == "model":
        from docpool.layout_model import ensure_layout_model

        ensure_layout_model(options.layout_features)


# MuPDF reports a failed allocation as an error such as "realloc (183873363 bytes) failed".
_ALLOCATION_FAILURE = re.compile(r"\b[a-z]*alloc\b.*\bfailed|out of memory", re.IGNORECASE)


def allocation_failed(error: BaseException) -> bool:
    """The error is MuPDF running out of memory (under the worker's address-space cap)."""
    return bool(_ALLOCATION_FAILURE.search(str(error)))


@contextlib.contextmanager
def _memory_errors() -> Iterator[None]:
    """Report MuPDF's allocation failures as MemoryError: the executor's memory verdict."""
    try:
        yield
    except (RuntimeError, mupdf.FzErrorBase) as error:
        if allocation_failed(error):
            raise MemoryError(str(error)[:500]) from None
        raise


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a document is parsed: parsing allocates hundreds of
    thousands of short-lived objects (freed by reference counting anyway), and each collection
    they trigger walks every line already extracted; that cost about a tenth of the parse."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _open(path: str) -> pymupdf.Document:
    try:
        doc = pymupdf.open(path, filetype="pdf")
    except (pymupdf.FileDataError, RuntimeError, ValueError) as error:
        raise DocumentRejected(DocumentRejectReason.CORRUPT, f"cannot open: {error}") from None
    if doc.needs_pass or doc.is_encrypted:
        doc.close()
        raise DocumentRejected(DocumentRejectReason.ENCRYPTED, "the PDF needs a password")
    return doc


def _metadata(doc: pymupdf.Document) -> DocumentMetadata:
    meta = doc.metadata or {}

    def clean(key: str) -> str | None:
        value = meta.get(key)
        text = " ".join(str(value).split())[:500] if value else ""
        return text or None

    return DocumentMetadata(
        title=clean("title"), author=clean("author"), producer=clean("producer")
    )


def _toc(doc: pymupdf.Document) -> list[list[object]]:
    try:
        toc = doc.get_toc(simple=True)
    except (RuntimeError, ValueError):
        return []
    return [[int(level), str(title)[:500], int(page)] for level, title, page, *_ in toc]


def _extract(
    doc: pymupdf.Document, numbers: list[int], options: ParseOptions, ocr_language: str | None
) -> list[RawPage]:
    """Raw pages; pages without text are OCR'd in ``ocr_language`` (None: not OCR'd, flagged
    ``no-text-layer``)."""
    raws = []
    ocr = options.ocr and ocr_language is not None
    for number in numbers:
        page = doc.load_page(number - 1)
        try:
            raws.append(
                extract_page(
                    page,
                    tables=options.tables,
                    ocr=ocr,
                    ocr_language=ocr_language or DEFAULT_LANGUAGE,
                )
            )
        except (RuntimeError, ValueError, mupdf.FzErrorBase) as error:
            if allocation_failed(error):
                raise MemoryError(str(error)[:500]) from None
            # One broken page does not sink the document: keep it empty and say so.
            rect = page.rect
            raws.append(
                RawPage(
                    number=number,
                    width=rect.width or 1.0,
                    height=rect.height or 1.0,
                    rotation=page.rotation if page.rotation in (0, 90, 180, 270) else 0,
                    lines=[],
                    pictures=[],
                    tables=[],
                    flags=[f"parse-error: {str(error)[:200]}"],
                )
            )
    return raws


def _classify(
    doc: pymupdf.Document, raws: list[RawPage], profile: StyleProfile, options: ParseOptions
) -> ParsedPages:
    pages: list[Page] = []
    headings: list[HeadingHit] = []
    if options.layout == "model":
        from docpool.layout_model import classify_page_model, model_regions

        for raw in raws:
            page_object = doc.load_page(raw.number - 1)
            regions = model_regions(page_object, options.layout_features) if raw.lines else []
            page, hits = classify_page_model(raw, regions, profile)
            pages.append(page)
            headings += hits
    else:
        for raw in raws:
            page, hits = classify_page(raw, profile)
            pages.append(page)
            headings += hits
    return ParsedPages(pages, headings)


def _evenly(numbers: list[int], head: int) -> list[int]:
    """Of the page numbers read (all of ``1..head``, then a sample of the rest, sorted), those
    that cover the document evenly: the first chunk thinned to the sample's spacing, so a
    long document's first pages do not outvote the rest."""
    tail = [number for number in numbers if number > head]
    if not tail:
        return numbers
    stride = max(1, round((tail[-1] - head) / len(tail)))
    return [number for number in numbers if number <= head and number % stride == 1 % stride] + tail


def _body_texts(raws: list[RawPage], profile: StyleProfile, head: int) -> list[str]:
    """Body text (lines at the body size) of pages spread evenly over the document, in page
    order: what the document's language is voted on."""
    by_number = {raw.number: raw for raw in raws}
    return [
        " ".join(
            line.text
            for line in by_number[number].lines
            if abs(line.size - profile.body_size) <= 0.5
        )
        for number in _evenly(sorted(by_number), head)
    ]


def _sample_numbers(first: int, last: int) -> list[int]:
    """Up to PROFILE_SAMPLE_PAGES page numbers spread evenly over ``first``..``last``."""
    count = last - first + 1
    if count <= PROFILE_SAMPLE_PAGES:
        return list(range(first, last + 1))
    step = count / PROFILE_SAMPLE_PAGES
    return sorted({first + int(i * step) for i in range(PROFILE_SAMPLE_PAGES)})


@_memory_errors()
@collector_paused()
def probe_document(path: str, options: ParseOptions) -> Probe:
    """Open, check and profile a document, and parse its first chunk (``chunk_pages`` pages,
    all of a document that fits in one). The style profile of a longer document comes from
    that chunk and pages sampled from the rest; ``Probe.parsed`` holds the first chunk."""
    doc = _open(path)
    try:
        num_pages = doc.page_count
        if num_pages == 0:
            raise DocumentRejected(DocumentRejectReason.ZERO_PAGES, "the PDF has no pages")
        if num_pages < options.min_pages:
            raise DocumentRejected(
                DocumentRejectReason.TOO_FEW_PAGES,
                f"{num_pages} pages, below {options.min_pages}",
                num_pages,
            )
        if num_pages > options.max_pages:
            raise DocumentRejected(
                DocumentRejectReason.TOO_MANY_PAGES,
                f"{num_pages} pages, above {options.max_pages}",
                num_pages,
            )
        head = min(num_pages, options.chunk_pages)
        samples = _sample_numbers(head + 1, num_pages) if head < num_pages else []
        # Text layers first: the language they show picks the OCR language of the others.
        raws = _extract(doc, [*range(1, head + 1), *samples], options, None)
        profile = build_profile(raws)
        lang = detect_document_language(_body_texts(raws, profile, head))
        ocr_language = options.ocr_language
        textless = [index for index, raw in enumerate(raws) if "no-text-layer" in raw.flags]
        if options.ocr and (textless or head < num_pages) and ocr_available():
            ocr_language = ocr_language or ocr_language_for(lang)
            for index in textless:
                (raws[index],) = _extract(doc, [raws[index].number], options, ocr_language)
        return Probe(
            num_pages=num_pages,
            metadata=_metadata(doc),
            toc=_toc(doc),
            profile=profile,
            lang=lang,
            parsed=_classify(doc, raws[:head], profile, options),
            repaired=bool(doc.is_repaired),
            ocr_language=ocr_language,
        )
    finally:
        doc.close()


@_memory_errors()
@collector_paused()
def parse_page_range(
    path: str, first: int, last: int, profile: StyleProfile, options: ParseOptions
) -> ParsedPages:
    """Parse pages ``first``..``last`` (1-based, inclusive) with a document-wide profile."""
    doc = _open(path)
    try:
        if not 1 <= first <= last <= doc.page_count:
            raise ValueError(f"pages {first}-{last} are outside 1-{doc.page_count}")
        language = options.ocr_language or DEFAULT_LANGUAGE
        raws = _extract(doc, list(range(first, last + 1)), options, language)
        return _classify(doc, raws, profile, options)
    finally:
        doc.close()


def chunk_ranges(num_pages: int, chunk_pages: int) -> list[tuple[int, int]]:
    return [
        (start, min(start + chunk_pages - 1, num_pages))
        for start in range(1, num_pages + 1, chunk_pages)
    ]
