"""The ``model`` layout parser: the layout model bundled with PyMuPDF (pymupdf-layout, an
ONNX graph network run on CPU, no download) labels regions; text comes from the same lines
the ``fast`` parser extracts, so both parsers produce identical text and differ only in labels.

Install with the ``layout`` extra: ``pip install docpool[layout]``.
"""

from __future__ import annotations

import importlib

import pymupdf
from mmprolong_schemas import BBox, Block, BlockLabel, Page

from docpool.layout_fast import (
    HeadingHit,
    RawLine,
    RawPage,
    StyleProfile,
    _inside,
    _join,
    _transform,
    heading_level,
)
from docpool.tables import rows_from_lines

_LABELS = {
    "title": BlockLabel.TITLE,
    "section-header": BlockLabel.SECTION_HEADER,
    "text": BlockLabel.TEXT,
    "list-item": BlockLabel.LIST_ITEM,
    "table": BlockLabel.TABLE,
    "caption": BlockLabel.CAPTION,
    "footnote": BlockLabel.FOOTNOTE,
    "formula": BlockLabel.FORMULA,
    "picture": BlockLabel.PICTURE,
    "page-header": BlockLabel.PAGE_HEADER,
    "page-footer": BlockLabel.PAGE_FOOTER,
}


class LayoutModelUnavailable(RuntimeError):
    """pymupdf-layout is not installed."""


def ensure_layout_model() -> None:
    """Load the layout model once per process (PyMuPDF activates it on import)."""
    if callable(getattr(pymupdf, "_get_layout", None)):
        return
    try:
        importlib.import_module("pymupdf.layout")  # registers the model with PyMuPDF
    except ImportError as error:
        raise LayoutModelUnavailable(
            "the 'model' layout needs pymupdf-layout: pip install 'docpool[layout]'"
        ) from error
    if not callable(getattr(pymupdf, "_get_layout", None)):
        raise LayoutModelUnavailable("pymupdf-layout is installed but did not register a model")


def model_regions(page: pymupdf.Page) -> list[tuple[tuple[float, float, float, float], BlockLabel]]:
    ensure_layout_model()
    page.get_layout()
    matrix = page.rotation_matrix if page.rotation else None
    regions = []
    for item in getattr(page, "layout_information", None) or ():
        x0, y0, x1, y1, name = item[:5]
        regions.append((_transform((x0, y0, x1, y1), matrix), _LABELS.get(str(name), BlockLabel.TEXT)))
    return regions


def classify_page_model(
    raw: RawPage,
    regions: list[tuple[tuple[float, float, float, float], BlockLabel]],
    profile: StyleProfile,
) -> tuple[Page, list[HeadingHit]]:
    """Blocks from the model's regions in its order; text lines outside every region are kept
    as text blocks so no text is lost."""
    assigned: set[int] = set()
    items: list[tuple[BlockLabel, tuple[float, float, float, float], list[RawLine]]] = []
    for box, label in regions:
        members = [
            i for i, line in enumerate(raw.lines) if i not in assigned and _inside(line.bbox, box)
        ]
        assigned.update(members)
        items.append((label, box, [raw.lines[i] for i in members]))
    for index, line in enumerate(raw.lines):
        if index not in assigned:
            items.append((BlockLabel.TEXT, line.bbox, [line]))
    blocks: list[Block] = []
    headings: list[HeadingHit] = []
    for order, (label, box, lines) in enumerate(items):
        rows = None
        if label is BlockLabel.TABLE:
            grid = next((t for t in raw.tables if _inside(t.bbox, box)), None)
            rows = grid.rows if grid else rows_from_lines([(ln.bbox, ln.text) for ln in lines])
            text = "\n".join(" | ".join(row) for row in rows)
        else:
            text = _join([ln.text for ln in lines])
        blocks.append(Block(
            label=label, bbox=BBox(x0=box[0], y0=box[1], x1=box[2], y1=box[3]), text=text,
            order=order, rows=rows,
        ))
        if label is BlockLabel.SECTION_HEADER and lines and text:
            headings.append(HeadingHit(raw.number, order, text, heading_level(text, lines[0].size, profile)))
    page = Page(
        number=raw.number, width=raw.width, height=raw.height, rotation=raw.rotation,
        blocks=blocks, has_text_layer="no-text-layer" not in raw.flags and "ocr" not in raw.flags,
        flags=list(raw.flags),
    )
    return page, headings
