"""The ``fast`` layout parser: blocks from PyMuPDF text dicts and a few typographic rules.

Extraction (per page, needs the open PDF) and classification (needs a document-wide style
profile) are separate, so a long document can be profiled once from a sample of pages and
then classified chunk by chunk in different processes with the same rules:

- the body font size is the most common size, weighted by characters;
- lines clearly larger than the body, or short bold lines, are section headers; the largest
  line on the first page is the title;
- lines repeated at the top or bottom of many pages (digits ignored) are page headers/footers,
  and so are lone page numbers there;
- lines starting "Figure N"/"Table N" (and their French, German, Spanish, Chinese and
  Japanese forms) are captions;
- images are pictures; ruled grids are tables (see ``docpool.tables``).
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import pymupdf

from docpool.captions import CAPTION
from docpool.language import is_cjk
from docpool.render import PIXEL_BUDGET, budget_zoom
from docpool.tables import (
    FoundTable,
    find_ruled_tables,
    find_tables_thorough,
    segments_from_vectors,
)
from docpool.textpage import TEXTPAGE_FLAGS, StyledLine, read_textpage, vector_boxes
from mmprolong_schemas import BBox, Block, BlockLabel, Page

Rect = tuple[float, float, float, float]

BAND = 0.1  # top and bottom tenth of the page: where running headers and footers live
HEADING_RATIO = 1.12
TITLE_RATIO = 1.6
MIN_PICTURE_AREA = 0.005  # of the page area; smaller images are decoration
# A ruled grid (three rulings each way) takes at least three vector paths: a frame and one
# inner line each way. Pages with fewer skip table detection (most text pages have 0-2).
MIN_TABLE_VECTORS = 3
# Lone page labels: "Page 3 of 40", "Seite 3 von 40", "Página 3 de 40", "p. 3", "3/40",
# "第 3 页", "第3頁", "3 ページ", "- 3 -".
PAGE_NUMBER = re.compile(
    r"^\W*((page|seite|p[aá]gina|p[aá]g\.|p\.|s\.)\s*)?[0-9ivxlc]+"
    r"(\s*(of|/|von|sur|de)\s*[0-9]+)?\W*$"
    r"|^\W*(第\s*)?[0-9０-９]+\s*(页|頁|ページ)(\s*[/／]\s*[0-9０-９]+\s*(页|頁|ページ)?)?\W*$",
    re.IGNORECASE,
)
LIST_ITEM = re.compile(r"^\s*([•·▪◦‣\-–*]|\(?[0-9a-z]{1,2}[).])\s+\S")
_TWO_LETTERS = re.compile(r"[^\W\d_].*?[^\W\d_]")
NUMBERED_HEADING = re.compile(r"^\s*((?:[0-9]+|[A-Z])(?:\.[0-9]+)*)\.?\s+\S")


RawLine = StyledLine
"""A text line as extraction leaves it: the text page's own line objects, passed on as they
are unless their text needs cleaning or the page is rotated (no copy of every line)."""


@dataclass
class RawPage:
    number: int
    width: float
    height: float
    rotation: int
    lines: list[RawLine]
    pictures: list[Rect]
    tables: list[FoundTable]
    flags: list[str] = field(default_factory=list)

    def to_page(self, blocks: list[Block]) -> Page:
        """The schema page of this raw page, with the blocks a layout parser labelled."""
        return Page(
            number=self.number,
            width=self.width,
            height=self.height,
            rotation=self.rotation,
            blocks=blocks,
            has_text_layer="no-text-layer" not in self.flags and "ocr" not in self.flags,
            flags=list(self.flags),
        )


@dataclass(frozen=True)
class StyleProfile:
    """What the document's typography looks like, learnt from (a sample of) its pages."""

    body_size: float
    heading_sizes: tuple[float, ...]
    title_size: float | None
    furniture: frozenset[tuple[str, str]]  # (band, normalised text)


@dataclass(frozen=True)
class HeadingHit:
    page: int
    order: int
    text: str
    level: int


def _transform(rect: Sequence[float], matrix: pymupdf.Matrix | None) -> Rect:
    if matrix is None:
        return (float(rect[0]), float(rect[1]), float(rect[2]), float(rect[3]))
    r = pymupdf.Rect(rect) * matrix
    r.normalize()
    return (r.x0, r.y0, r.x1, r.y1)


def ocr_available() -> bool:
    """Tesseract is installed and PyMuPDF can find its language data."""
    if shutil.which("tesseract") is None:
        return False
    try:
        return bool(pymupdf.get_tessdata())
    except (RuntimeError, OSError):
        return False


def extract_page(
    page: pymupdf.Page, *, tables: str = "grid", ocr: bool = True, ocr_language: str = "eng"
) -> RawPage:
    """Lines, pictures and tables of one page, in displayed coordinates."""
    rect = page.rect
    rotation = page.rotation  # read once: each read looks the page's /Rotate up again
    matrix = page.rotation_matrix if rotation else None
    flags: list[str] = []
    textpage = page.get_textpage(flags=TEXTPAGE_FLAGS)
    content = read_textpage(page, textpage)
    if not content.lines:
        if ocr and ocr_available():
            # Tesseract reads the page rendered at 72 DPI, or less for a page too large for
            # the pixel budget (a 200-inch page would otherwise take 600 MB of pixels).
            dpi = max(1, int(72.0 * budget_zoom(rect.width, rect.height, 72.0, PIXEL_BUDGET)))
            textpage = page.get_textpage_ocr(
                flags=TEXTPAGE_FLAGS, language=ocr_language, dpi=dpi, full=True
            )
            content = read_textpage(page, textpage)
            flags.append("ocr")
        else:
            flags.append("no-text-layer")
    page_area = max(rect.width * rect.height, 1.0)
    pictures: list[Rect] = []
    for box in content.images:
        x0, y0, x1, y1 = _transform(box, matrix)
        if (x1 - x0) * (y1 - y0) >= MIN_PICTURE_AREA * page_area:
            pictures.append((x0, y0, x1, y1))
    lines: list[RawLine] = []
    search_control = _CONTROL_CHARS.search
    for line in content.lines:
        text = line.text
        if not text:
            continue
        if search_control(text) or "  " in text:
            line = RawLine(_clean(text), line.bbox, line.size, line.bold, line.block)
        if matrix is not None:
            line = RawLine(
                line.text, _transform(line.bbox, matrix), line.size, line.bold, line.block
            )
        lines.append(line)
    found: list[FoundTable] = []
    if (
        tables != "off"
        and (content.vectors is None or content.vectors >= MIN_TABLE_VECTORS)
        and _may_hold_table(lines, rect.height)
    ):
        if tables == "finder":
            found = find_tables_thorough(page)
        else:
            strokes = None
            if content.rectangles:
                strokes = segments_from_vectors(
                    vector_boxes(textpage, len(content.rectangles)), content.rectangles
                )
            found = find_ruled_tables(page, textpage, strokes, content.lines)
        if matrix is not None:
            found = [FoundTable(_transform(t.bbox, matrix), t.rows) for t in found]
    return RawPage(
        number=page.number + 1,
        width=rect.width,
        height=rect.height,
        rotation=rotation,
        lines=lines,
        pictures=pictures,
        tables=found,
        flags=flags,
    )


_CONTROL = dict.fromkeys(range(32), " ")


_CONTROL_CHARS = re.compile(r"[\x00-\x1f]")


def _may_hold_table(lines: list[RawLine], height: float) -> bool:
    """Cheap gate before looking for tables: at least two rows (outside the header and footer
    bands) where two or more separate text lines share a baseline, as table cells do."""
    rows = Counter(
        round(line.bbox[3])
        for line in lines
        if height * BAND < line.bbox[1] and line.bbox[3] < height * (1 - BAND)
    )
    return sum(1 for count in rows.values() if count >= 2) >= 2


def _clean(text: str) -> str:
    """Drop control characters (some PDFs carry them in text) and collapse whitespace."""
    return " ".join(text.translate(_CONTROL).split())


_DIGITS = re.compile(r"[0-9]+")


def _normalise(text: str) -> str:
    return _DIGITS.sub("#", text.lower()).strip()


def _band(line: RawLine, height: float) -> str | None:
    if line.bbox[3] <= height * BAND:
        return "top"
    if line.bbox[1] >= height * (1 - BAND):
        return "bottom"
    return None


def build_profile(pages: Sequence[RawPage]) -> StyleProfile:
    sizes = Counter[float]()
    for page in pages:
        for line in page.lines:
            sizes[line.size] += len(line.text)
    body = sizes.most_common(1)[0][0] if sizes else 10.0
    heading_sizes = sorted(
        {
            line.size
            for page in pages
            for line in page.lines
            if line.size >= body * HEADING_RATIO and len(line.text) <= 150
        },
        reverse=True,
    )
    first = [page for page in pages if page.number == 1]
    title_size = None
    if first and first[0].lines:
        largest = max(line.size for line in first[0].lines)
        if largest >= body * TITLE_RATIO:
            title_size = largest
    # A line is page furniture when its normalised text recurs in the same band on many pages.
    seen = Counter[tuple[str, str]]()
    with_text = 0
    for page in pages:
        if not page.lines:
            continue
        with_text += 1
        keys = {
            (band, _normalise(line.text))
            for line in page.lines
            if (band := _band(line, page.height)) is not None
        }
        seen.update(keys)
    threshold = max(2, int(0.3 * with_text))
    furniture = frozenset(key for key, count in seen.items() if count >= threshold)
    return StyleProfile(
        body_size=body,
        heading_sizes=tuple(size for size in heading_sizes if size != title_size),
        title_size=title_size,
        furniture=furniture,
    )


def heading_level(text: str, size: float, profile: StyleProfile) -> int:
    """Numbering depth when the heading is numbered ('2.3 ...' is level 2), else size rank."""
    match = NUMBERED_HEADING.match(text)
    if match and len(text) > len(match.group(1)) + 1:
        return match.group(1).count(".") + 1
    for rank, heading_size in enumerate(profile.heading_sizes, start=1):
        if size >= heading_size - 0.25:
            return rank
    return len(profile.heading_sizes) + 1


def _line_label(
    line: RawLine, page: RawPage, profile: StyleProfile, block_lines: int
) -> BlockLabel:
    text = line.text
    band = _band(line, page.height)
    if band is not None and (
        (band, _normalise(text)) in profile.furniture or PAGE_NUMBER.match(text)
    ):
        return BlockLabel.PAGE_HEADER if band == "top" else BlockLabel.PAGE_FOOTER
    if CAPTION.match(text):
        return BlockLabel.CAPTION
    if (
        page.number == 1
        and profile.title_size is not None
        and line.size >= profile.title_size - 0.25
    ):
        return BlockLabel.TITLE
    larger = line.size >= profile.body_size * HEADING_RATIO
    # Only larger or bold lines can be headings: most lines stop at this cheap test.
    if (
        (larger or line.bold)
        and len(text) <= 150
        and not (text.endswith(".") and len(text.split()) >= 6)  # reads like a sentence
        and _TWO_LETTERS.search(text)
    ):
        # Larger lines on a title page (subtitle, authors) are not headings unless numbered.
        on_title_page = page.number == 1 and profile.title_size is not None
        if larger and (not on_title_page or NUMBERED_HEADING.match(text)):
            return BlockLabel.SECTION_HEADER
        if (
            line.bold
            and block_lines <= 2
            and len(text) <= 100
            and not text.endswith((".", ",", ";"))
        ):
            return BlockLabel.SECTION_HEADER
    if LIST_ITEM.match(text):
        return BlockLabel.LIST_ITEM
    return BlockLabel.TEXT


def _inside(bbox: Rect, box: Rect) -> bool:
    cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    return box[0] - 1 <= cx <= box[2] + 1 and box[1] - 1 <= cy <= box[3] + 1


def _join(texts: list[str]) -> str:
    """Join wrapped lines, undoing end-of-line hyphenation before a lowercase letter; lines
    meeting at a Chinese or Japanese character join without a space (those scripts put none
    between words, so a line break there is no word break)."""
    out = ""
    for text in texts:
        if out.endswith("-") and text[:1].islower() and len(out) > 1 and out[-2].isalpha():
            out = out[:-1] + text
        elif out and text and (is_cjk(out[-1]) or is_cjk(text[0])):
            out += text
        else:
            out = f"{out} {text}" if out else text
    return out


def _union(boxes: Sequence[Rect]) -> Rect:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def classify_page(raw: RawPage, profile: StyleProfile) -> tuple[Page, list[HeadingHit]]:
    """Blocks in reading order, and the page's headings with their levels."""
    per_block = Counter(line.block for line in raw.lines)
    groups: list[tuple[BlockLabel, list[RawLine]]] = []
    tables = raw.tables
    for line in raw.lines:
        if tables and any(_inside(line.bbox, table.bbox) for table in tables):
            continue
        label = _line_label(line, raw, profile, per_block[line.block])
        last = groups[-1] if groups else None
        # Consecutive lines of one PyMuPDF block with one label make one Block; headers and
        # footers stay line by line (a footer line and a page number are different things).
        if (
            last is not None
            and last[0] is label
            and last[1][-1].block == line.block
            and label not in (BlockLabel.PAGE_HEADER, BlockLabel.PAGE_FOOTER, BlockLabel.LIST_ITEM)
            and not (label is BlockLabel.SECTION_HEADER and last[1][-1].size != line.size)
        ):
            last[1].append(line)
        else:
            groups.append((label, [line]))
    # Text groups keep PyMuPDF's order; tables and pictures slot in by their top edge.
    Item = tuple[BlockLabel, Rect, str, list[list[str]] | None, float | None]
    items: list[Item] = [
        (
            label,
            lines[0].bbox if len(lines) == 1 else _union([ln.bbox for ln in lines]),
            lines[0].text if len(lines) == 1 else _join([ln.text for ln in lines]),
            None,
            lines[0].size,
        )
        for label, lines in groups
    ]
    extras: list[Item] = [
        (BlockLabel.TABLE, t.bbox, _table_text(t.rows), t.rows, None) for t in raw.tables
    ]
    extras += [(BlockLabel.PICTURE, box, "", None, None) for box in raw.pictures]
    # Running headers open the page and footers close it, wherever the producer drew them;
    # tables and pictures go before the first body block that starts below them.
    furniture = (BlockLabel.PAGE_HEADER, BlockLabel.PAGE_FOOTER)
    body = [item for item in items if item[0] not in furniture]
    for extra in sorted(extras, key=lambda e: e[1][1]):
        position = next((i for i, item in enumerate(body) if item[1][1] > extra[1][1]), len(body))
        body.insert(position, extra)
    items = (
        [item for item in items if item[0] is BlockLabel.PAGE_HEADER]
        + body
        + [item for item in items if item[0] is BlockLabel.PAGE_FOOTER]
    )
    blocks: list[Block] = []
    headings: list[HeadingHit] = []
    for order, (label, box, text, rows, size) in enumerate(items):
        blocks.append(
            Block(
                label=label,
                bbox=BBox(x0=box[0], y0=box[1], x1=box[2], y1=box[3]),
                text=text,
                order=order,
                rows=rows,
            )
        )
        if label is BlockLabel.SECTION_HEADER and size is not None:
            headings.append(HeadingHit(raw.number, order, text, heading_level(text, size, profile)))
    return raw.to_page(blocks), headings


def _table_text(rows: list[list[str]]) -> str:
    return "\n".join(" | ".join(row) for row in rows)
