"""The ``model`` layout parser: the layout model bundled with PyMuPDF (pymupdf-layout, an
ONNX graph network run on CPU, no download) labels regions (its ``predict(page)`` returns
``[x0, y0, x1, y1, label]`` boxes); text comes from the same lines
the ``fast`` parser extracts, so both parsers produce identical text and differ only in labels.

Install with the ``layout`` extra: ``pip install docpool[layout]``.
"""

from __future__ import annotations

import importlib
from typing import Any

import pymupdf

from docpool._pymupdf_layout import load_layout_package
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
from mmprolong_schemas import BBox, Block, BlockLabel, Page

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


FEATURE_SETS = ("rf", "imf+rf")
"""Inputs of the bundled network: ``rf`` uses text and geometry features only (about four
times faster on CPU); ``imf+rf`` adds features from a rendered page image (PyMuPDF's default)."""

_MODELS: dict[str, Any] = {}


def ensure_layout_model(features: str = "rf") -> Any:
    """The layout network for ``features``, loaded once per process."""
    if features not in FEATURE_SETS:
        raise ValueError(f"layout features must be one of {FEATURE_SETS}, not {features!r}")
    if features not in _MODELS:
        try:
            load_layout_package()
            analyzer = importlib.import_module("pymupdf.layout.DocumentLayoutAnalyzer")
        except ImportError as error:
            raise LayoutModelUnavailable(
                "the 'model' layout needs pymupdf-layout: pip install 'docpool[layout]'"
            ) from error
        _MODELS[features] = analyzer.get_model(feature_set_name=features)
    return _MODELS[features]


def model_regions(
    page: pymupdf.Page, features: str = "rf"
) -> list[tuple[tuple[float, float, float, float], BlockLabel]]:
    predictions = ensure_layout_model(features).predict(page) or []
    matrix = page.rotation_matrix if page.rotation else None
    regions = []
    for item in predictions:
        x0, y0, x1, y1, name = item[:5]
        regions.append(
            (_transform((x0, y0, x1, y1), matrix), _LABELS.get(str(name), BlockLabel.TEXT))
        )
    return regions


def classify_page_model(
    raw: RawPage,
    regions: list[tuple[tuple[float, float, float, float], BlockLabel]],
    profile: StyleProfile,
) -> tuple[Page, list[HeadingHit]]:
    """Blocks from the model's regions in its order; text lines outside every region are kept
    as text blocks so no text is lost, and images the model did not mark (the ``rf`` inputs
    do not see pixels) are added as pictures where they sit."""
    regions = list(regions)
    for picture in raw.pictures:
        if any(label is BlockLabel.PICTURE and _inside(picture, box) for box, label in regions):
            continue
        position = next(
            (
                i
                for i, (box, label) in enumerate(regions)
                if box[1] > picture[1]
                and label not in (BlockLabel.PAGE_HEADER, BlockLabel.PAGE_FOOTER)
            ),
            len(regions),
        )
        regions.insert(position, (picture, BlockLabel.PICTURE))
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
        blocks.append(
            Block(
                label=label,
                bbox=BBox(x0=box[0], y0=box[1], x1=box[2], y1=box[3]),
                text=text,
                order=order,
                rows=rows,
            )
        )
        if label is BlockLabel.SECTION_HEADER and lines and text:
            headings.append(
                HeadingHit(raw.number, order, text, heading_level(text, lines[0].size, profile))
            )
    return raw.to_page(blocks), headings
