"""Ruled tables found from a page's vector drawings, in about a millisecond per page.

PyMuPDF's ``find_tables`` is thorough but costs hundreds of milliseconds a page, far more than
the text extraction itself, so the default detector looks only for ruled grids: horizontal and
vertical strokes (or rectangle edges) that meet. Cell texts come from the words whose centres
fall in each cell: read from the page's text lines when no line crosses a ruling of the grid
(a line then lies in one cell, words and all), else from PyMuPDF's word list. ``find_tables``
stays available as the thorough option.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import pymupdf

Rect = tuple[float, float, float, float]
_SNAP = 1.5  # points: strokes closer than this are the same ruling
_MIN_CELL = 4.0


class TextLine(Protocol):
    """A text line as the table finder reads it (``docpool.textpage.StyledLine``)."""

    @property
    def text(self) -> str: ...

    @property
    def bbox(self) -> Rect: ...


@dataclass(frozen=True)
class FoundTable:
    bbox: Rect
    rows: list[list[str]]


def _segments(page: pymupdf.Page) -> tuple[list[Rect], list[Rect]]:
    """Horizontal and vertical strokes as thin rectangles (x0, y0, x1, y1)."""
    horizontal: list[Rect] = []
    vertical: list[Rect] = []
    for path in page.get_cdrawings():
        for item in path.get("items", ()):
            kind = item[0]
            if kind == "re":
                x0, y0, x1, y1 = item[1]
                if x1 - x0 < _MIN_CELL or y1 - y0 < _MIN_CELL:
                    continue
                horizontal += [(x0, y0, x1, y0), (x0, y1, x1, y1)]
                vertical += [(x0, y0, x0, y1), (x1, y0, x1, y1)]
            elif kind == "l":
                (ax, ay), (bx, by) = item[1], item[2]
                if abs(ay - by) <= _SNAP and abs(ax - bx) > _MIN_CELL:
                    horizontal.append((min(ax, bx), ay, max(ax, bx), ay))
                elif abs(ax - bx) <= _SNAP and abs(ay - by) > _MIN_CELL:
                    vertical.append((ax, min(ay, by), ax, max(ay, by)))
    return horizontal, vertical


def segments_from_vectors(
    boxes: Sequence[Rect], rectangles: Sequence[bool]
) -> tuple[list[Rect], list[Rect]] | None:
    """Strokes from the text page's vector paths (no second pass over the page): a thin box
    is a ruling, a rectangle gives its four edges. None when a path is neither (a curve, a
    polyline), which only ``get_cdrawings`` can take apart."""
    if len(boxes) != len(rectangles):
        return None
    horizontal: list[Rect] = []
    vertical: list[Rect] = []
    for (x0, y0, x1, y1), rectangle in zip(boxes, rectangles, strict=True):
        width, height = x1 - x0, y1 - y0
        if height <= _SNAP and width > _MIN_CELL:
            y = (y0 + y1) / 2
            horizontal.append((x0, y, x1, y))
        elif width <= _SNAP and height > _MIN_CELL:
            x = (x0 + x1) / 2
            vertical.append((x, y0, x, y1))
        elif rectangle:
            if width < _MIN_CELL or height < _MIN_CELL:
                continue
            horizontal += [(x0, y0, x1, y0), (x0, y1, x1, y1)]
            vertical += [(x0, y0, x0, y1), (x1, y0, x1, y1)]
        elif width > _SNAP and height > _SNAP:
            return None
    return horizontal, vertical


def _snap(values: Sequence[float]) -> list[float]:
    result: list[float] = []
    for value in sorted(values):
        if not result or value - result[-1] > _SNAP:
            result.append(value)
    return result


def _merge(strokes: list[Rect], axis: int) -> list[Rect]:
    """Collinear overlapping strokes as one (adjacent cells share edges). ``axis`` 1 merges
    horizontal strokes (same y), 0 vertical ones (same x)."""
    other = 1 - axis
    merged: list[list[float]] = []
    for stroke in sorted(strokes, key=lambda s: (round(s[axis]), s[other])):
        last = merged[-1] if merged else None
        if (
            last is not None
            and abs(last[axis] - stroke[axis]) <= _SNAP
            and stroke[other] <= last[other + 2] + _SNAP
        ):
            last[other + 2] = max(last[other + 2], stroke[other + 2])
        else:
            merged.append(list(stroke))
    return [(m[0], m[1], m[2], m[3]) for m in merged]


def _grids(horizontal: list[Rect], vertical: list[Rect]) -> list[tuple[list[float], list[float]]]:
    """Connected groups of crossing strokes, each as its column xs and row ys."""
    horizontal = _merge(horizontal, 1)
    vertical = _merge(vertical, 0)
    if len(horizontal) * len(vertical) > 250_000:  # a drawing, not a table: do not go quadratic
        return []
    parent = list(range(len(horizontal) + len(vertical)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    offset = len(horizontal)
    for i, (hx0, hy, hx1, _) in enumerate(horizontal):
        for j, (vx, vy0, _, vy1) in enumerate(vertical):
            if hx0 - _SNAP <= vx <= hx1 + _SNAP and vy0 - _SNAP <= hy <= vy1 + _SNAP:
                parent[find(i)] = find(offset + j)
    groups: dict[int, list[int]] = {}
    for index in range(len(parent)):
        groups.setdefault(find(index), []).append(index)
    grids = []
    for members in groups.values():
        ys = _snap([horizontal[i][1] for i in members if i < offset])
        xs = _snap([vertical[i - offset][0] for i in members if i >= offset])
        if len(ys) >= 3 and len(xs) >= 3:
            grids.append((xs, ys))
    return grids


def _cell_texts(
    words: Sequence[tuple[float, float, float, float, str]], xs: list[float], ys: list[float]
) -> list[list[str]]:
    cells: list[list[list[str]]] = [[[] for _ in xs[:-1]] for _ in ys[:-1]]
    for x0, y0, x1, y1, text in words:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        row = next((r for r in range(len(ys) - 1) if ys[r] <= cy < ys[r + 1]), None)
        col = next((c for c in range(len(xs) - 1) if xs[c] <= cx < xs[c + 1]), None)
        if row is not None and col is not None:
            cells[row][col].append(text)
    return [[" ".join(cell) for cell in row] for row in cells]


def _cells_from_lines(
    lines: Sequence[TextLine], xs: list[float], ys: list[float]
) -> list[list[str]] | None:
    """The grid's cell texts from whole lines (in text-page order, as words come), or None
    when a line reaching into the grid crosses one of its rulings, frame included: its words
    may then belong to different cells, or some to none, and only a word list can tell."""
    cells: list[list[list[str]]] = [[[] for _ in xs[:-1]] for _ in ys[:-1]]
    left, top, right, bottom = xs[0], ys[0], xs[-1], ys[-1]
    for line in lines:
        x0, y0, x1, y1 = line.bbox
        if x1 <= left or x0 >= right or y1 <= top or y0 >= bottom:
            continue
        if any(x0 < x < x1 for x in xs) or any(y0 < y < y1 for y in ys):
            return None
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        row = next((r for r in range(len(ys) - 1) if ys[r] <= cy < ys[r + 1]), None)
        col = next((c for c in range(len(xs) - 1) if xs[c] <= cx < xs[c + 1]), None)
        if row is not None and col is not None:
            cells[row][col] += line.text.split()
    return [[" ".join(cell) for cell in row] for row in cells]


def find_ruled_tables(
    page: pymupdf.Page,
    textpage: pymupdf.TextPage | None = None,
    strokes: tuple[list[Rect], list[Rect]] | None = None,
    lines: Sequence[TextLine] | None = None,
) -> list[FoundTable]:
    """Ruled grids with at least two rows and two columns, with their cell texts (words are
    read from ``textpage`` when given, to avoid a second text extraction). ``strokes``
    (horizontal, vertical) replace reading the page's drawings when given; ``lines`` (the
    text page's lines, in its coordinates) give the cell texts when no line crosses a
    ruling, so most pages build no word list."""
    horizontal, vertical = strokes if strokes is not None else _segments(page)
    if len(horizontal) < 3 or len(vertical) < 3:
        return []
    grids = _grids(horizontal, vertical)
    if not grids:
        return []
    words = None
    tables = []
    for xs, ys in grids:
        bbox = (xs[0], ys[0], xs[-1], ys[-1])
        rows = _cells_from_lines(lines, xs, ys) if lines is not None else None
        if rows is None:
            if words is None:
                words = page.get_text("words", textpage=textpage)
            x0, y0, x1, y1 = bbox
            inside = [
                (w[0], w[1], w[2], w[3], w[4])
                for w in words
                if x0 <= (w[0] + w[2]) / 2 <= x1 and y0 <= (w[1] + w[3]) / 2 <= y1
            ]
            rows = _cell_texts(inside, xs, ys)
        if any(any(cell for cell in row) for row in rows):
            tables.append(FoundTable(bbox=bbox, rows=rows))
    return tables


def find_tables_thorough(page: pymupdf.Page) -> list[FoundTable]:
    """PyMuPDF's table finder (slow; for pages where quality matters more than speed)."""
    found = []
    words = [(w[0], w[1], w[2], w[3], w[4]) for w in page.get_text("words")]
    for table in page.find_tables().tables:
        bbox = tuple(table.bbox)
        rows = []
        for row in table.rows:
            texts = []
            for cell in row.cells:
                if cell is None:
                    texts.append("")
                    continue
                texts.append(" ".join(w[4] for w in words if _within(w, tuple(cell))))
            rows.append(texts)
        found.append(FoundTable(bbox=bbox, rows=rows))
    return found


def _within(word: tuple[float, float, float, float, str] | Sequence[object], box: Rect) -> bool:
    x0, y0, x1, y1 = (float(v) for v in word[:4])  # type: ignore[arg-type]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return box[0] <= cx <= box[2] and box[1] <= cy <= box[3]


def rows_from_lines(lines: Sequence[tuple[Rect, str]]) -> list[list[str]]:
    """Rows of a table region without rulings: one row per text line, cells split where
    PyMuPDF split the line into separate spans (tab stops, column gaps)."""
    rows: list[list[str]] = []
    last_y: float | None = None
    for bbox, text in sorted(lines, key=lambda item: (round(item[0][1]), item[0][0])):
        if last_y is not None and abs(bbox[1] - last_y) <= 2 and rows:
            rows[-1].append(text)
        else:
            rows.append([text])
        last_y = bbox[1]
    return rows
