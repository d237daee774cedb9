"""Lines and image boxes of a PyMuPDF text page, read through MuPDF's own JSON export.

``page.get_text("dict")`` builds a Python dict for every span, and MuPDF splits spans at each
synthetic space, so TeX-made PDFs yield a dozen dicts per line: building them costs more than
extracting the text. MuPDF's JSON export (``fz_print_stext_page_as_json``) writes one record
per style run, in C, and msgspec decodes it in C too, straight into typed structs holding only
the fields read here: several times cheaper (and a quarter of ``json.loads`` into dicts).

The export gives each record the style of its first character, so the text page is built with
``TEXT_PRESERVE_SPANS``: MuPDF then cuts a line wherever the style changes, every record has
one style, and the runs are joined back into lines here (same block, overlapping vertically,
no wider gap than half the font size). Image blocks (``TEXT_PRESERVE_IMAGES``, which keeps a
reference to each image without decoding it) give picture boxes from the same pass.
Coordinates come as integers of ``SCALE`` units per point (1/8 pt).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import msgspec
import pymupdf
from pymupdf import mupdf

SCALE = 8.0
TEXTPAGE_FLAGS = (
    pymupdf.TEXT_PRESERVE_WHITESPACE
    | pymupdf.TEXT_PRESERVE_LIGATURES
    | pymupdf.TEXT_MEDIABOX_CLIP
    | pymupdf.TEXT_PRESERVE_SPANS
    | pymupdf.TEXT_PRESERVE_IMAGES
    | pymupdf.TEXT_COLLECT_VECTORS
)
_JOIN_GAP = 0.5  # font sizes: a wider horizontal gap starts a new line, as MuPDF does
_JOIN_BACK = 1.0  # font sizes: runs may step back this far (kerned logos, combining marks)
_JOIN_OVERLAP = 0.3
_BOLD_FLAG = 16  # share of the lower run's height two runs of one line overlap by

Rect = tuple[float, float, float, float]


@dataclass(slots=True)
class StyledLine:
    """One text line: its text, box, and its style weighted by characters."""

    text: str
    bbox: Rect
    size: float  # the most common size (rounded to half points), weighted by characters
    bold: bool  # at least 90% of the characters are bold
    block: int


@dataclass
class TextPageContent:
    lines: list[StyledLine]
    images: list[Rect] = field(default_factory=list)
    vectors: int | None = 0  # vector paths (strokes, fills) on the page; None: not counted
    rectangles: list[bool] = field(default_factory=list)  # per vector path: is it a rectangle


def vector_boxes(textpage: pymupdf.TextPage, count: int | None = None) -> list[Rect]:
    """The boxes of the text page's vector paths (``TEXT_COLLECT_VECTORS``), in page order;
    stroked paths include half their line width. Read from MuPDF's structures, as the JSON
    export leaves them out; ``count`` (the paths the export listed) ends the walk at the last
    one instead of at the last block."""
    boxes: list[Rect] = []
    vector = mupdf.FZ_STEXT_BLOCK_VECTOR
    block = textpage.this.m_internal.first_block
    while block and len(boxes) != count:
        if block.type == vector:
            r = block.bbox
            boxes.append((r.x0, r.y0, r.x1, r.y1))
        block = block.next
    return boxes


def _continues(y0: float, x1: float, y1: float, box: Rect, size: float) -> bool:
    """Whether a run with ``box`` continues a line ending at ``x1`` between ``y0`` and ``y1``:
    they overlap vertically and the gap between them is a space at most."""
    bx0, by0, _, by1 = box
    overlap = min(by1, y1) - max(by0, y0)
    if overlap <= _JOIN_OVERLAP * min(by1 - by0, y1 - y0):
        return False
    gap = bx0 - x1
    return -_JOIN_BACK * size <= gap <= _JOIN_GAP * max(size, 1.0)


class _Line:
    __slots__ = ("parts", "x0", "y0", "x1", "y1", "sizes", "bold_chars", "chars", "block")

    def __init__(self, text: str, box: Rect, size: float, bold: bool, block: int):
        self.parts = [text]
        self.x0, self.y0, self.x1, self.y1 = box
        n = len(text.strip())
        self.sizes = {size: n}
        self.chars = n
        self.bold_chars = n if bold else 0
        self.block = block

    def accepts(self, box: Rect, size: float) -> bool:
        return _continues(self.y0, self.x1, self.y1, box, size)

    def add(self, text: str, box: Rect, size: float, bold: bool) -> None:
        self.parts.append(text)
        self.x0 = min(self.x0, box[0])
        self.y0 = min(self.y0, box[1])
        self.x1 = max(self.x1, box[2])
        self.y1 = max(self.y1, box[3])
        n = len(text.strip())
        self.sizes[size] = self.sizes.get(size, 0) + n
        self.chars += n
        if bold:
            self.bold_chars += n

    def finish(self) -> StyledLine:
        text = self.parts[0] if len(self.parts) == 1 else "".join(self.parts)
        size = (
            max(self.sizes, key=self.sizes.__getitem__)
            if len(self.sizes) > 1
            else next(iter(self.sizes))
        )
        bold = self.chars > 0 and self.bold_chars >= 0.9 * self.chars
        return StyledLine(
            text.strip(), (self.x0, self.y0, self.x1, self.y1), size, bold, self.block
        )


class _Box(msgspec.Struct):
    x: float
    y: float
    w: float
    h: float


class _Font(msgspec.Struct):
    name: str = ""
    weight: str = "normal"
    size: float = 0.0


class _Record(msgspec.Struct):
    """One style run (a "line" of the export, cut at style changes by TEXT_PRESERVE_SPANS)."""

    bbox: _Box
    font: _Font
    text: str


class _Block(msgspec.Struct):
    type: str  # "text", "image", "vector"; other kinds (newer MuPDF) are skipped
    bbox: _Box | None = None
    lines: list[_Record] = []
    rectangle: int = 0


class _Export(msgspec.Struct):
    blocks: list[_Block]


_decode_export = msgspec.json.Decoder(_Export).decode


def _export(textpage: pymupdf.TextPage) -> _Export:
    buffer = mupdf.FzBuffer(1 << 14)
    out = mupdf.FzOutput(buffer)
    mupdf.fz_print_stext_page_as_json(out, textpage.this, SCALE)
    out.fz_close_output()
    return _decode(buffer.fz_buffer_extract())


def _decode(raw: bytes) -> _Export:
    """The export's blocks; ValueError when it does not have the shape read here."""
    try:
        return _decode_export(raw)
    except msgspec.ValidationError as error:
        raise ValueError(f"unexpected JSON from MuPDF: {error}") from None
    except msgspec.DecodeError:
        # Broken PDFs can map glyphs to lone surrogates or carry control characters, which
        # MuPDF writes as invalid UTF-8 or unescaped: read such pages leniently.
        data = json.loads(raw.decode("utf-8", errors="replace"), strict=False)
        try:
            return msgspec.convert(data, _Export)
        except msgspec.ValidationError as error:
            raise ValueError(f"unexpected JSON from MuPDF: {error}") from None


Run = tuple[str, Rect, float, bool]  # text, box, size (half points), bold


def _lone(run: Run, block: int) -> StyledLine:
    """The line of a single run: what ``_Line(*run, block).finish()`` gives, without it."""
    text, box, size, bold = run
    text = text.strip()
    return StyledLine(text, box, size, bold and bool(text), block)


def _join_runs(blocks: list[tuple[int, list[Run]]]) -> list[StyledLine]:
    """Lines from the style runs of each text block, in order. Most lines are one run: a run
    becomes a ``_Line`` only when the next one joins it."""
    lines: list[StyledLine] = []
    append = lines.append
    for index, runs in blocks:
        current: _Line | None = None
        pending: Run | None = None  # the last run, while nothing has joined it
        for run in runs:
            text, box, size, bold = run
            if current is not None:
                if current.accepts(box, size):
                    current.add(text, box, size, bold)
                    continue
                append(current.finish())
                current = None
            elif pending is not None:
                _, (_, y0, x1, y1), _, _ = pending
                if _continues(y0, x1, y1, box, size):
                    current = _Line(*pending, index)
                    current.add(text, box, size, bold)
                    pending = None
                    continue
                append(_lone(pending, index))
            pending = run
        if current is not None:
            append(current.finish())
        elif pending is not None:
            append(_lone(pending, index))
    return lines


def _from_json(textpage: pymupdf.TextPage) -> TextPageContent:
    scale = SCALE
    blocks: list[tuple[int, list[Run]]] = []
    images: list[Rect] = []
    rectangles: list[bool] = []
    for index, block in enumerate(_export(textpage).blocks):
        kind = block.type
        if kind == "text":
            runs: list[Run] = []
            for run in block.lines:
                b = run.bbox
                x0, y0 = b.x / scale, b.y / scale
                font = run.font
                runs.append(
                    (
                        run.text,
                        (x0, y0, x0 + b.w / scale, y0 + b.h / scale),
                        round((font.size + 0.5) / scale * 2) / 2,  # centre of the truncated unit
                        font.weight == "bold" or "Bold" in font.name,
                    )
                )
            blocks.append((index, runs))
        elif kind == "vector":
            rectangles.append(bool(block.rectangle))
        elif kind == "image" and block.bbox is not None:
            b = block.bbox
            x0, y0 = b.x / scale, b.y / scale
            images.append((x0, y0, x0 + b.w / scale, y0 + b.h / scale))
    return TextPageContent(
        lines=_join_runs(blocks), images=images, vectors=len(rectangles), rectangles=rectangles
    )


def _from_dict(page: pymupdf.Page, textpage: pymupdf.TextPage) -> TextPageContent:
    """The same content from PyMuPDF's text dicts (slower; vector paths are not counted)."""
    data = page.get_text("dict", textpage=textpage, sort=False)
    blocks: list[tuple[int, list[Run]]] = []
    images: list[Rect] = []
    for index, block in enumerate(data["blocks"]):
        if block.get("type") == 1:
            x0, y0, x1, y1 = block["bbox"]
            images.append((x0, y0, x1, y1))
            continue
        runs: list[Run] = []
        for line in block.get("lines", ()):
            for span in line["spans"]:
                x0, y0, x1, y1 = span["bbox"]
                bold = bool(span["flags"] & _BOLD_FLAG) or "Bold" in span["font"]
                runs.append((span["text"], (x0, y0, x1, y1), round(span["size"] * 2) / 2, bold))
        blocks.append((index, runs))
    return TextPageContent(lines=_join_runs(blocks), images=images, vectors=None)


def read_textpage(page: pymupdf.Page, textpage: pymupdf.TextPage) -> TextPageContent:
    """Lines (style runs joined) and image boxes of ``textpage`` (made from ``page`` with
    ``TEXTPAGE_FLAGS``), in text-page coordinates. Falls back to text dicts when MuPDF's JSON
    cannot be read."""
    try:
        return _from_json(textpage)
    except ValueError:
        return _from_dict(page, textpage)
