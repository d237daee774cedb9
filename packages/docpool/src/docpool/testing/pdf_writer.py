"""Page geometry and a fast PDF page writer: text and rulings as raw content-stream operators
with the base-14 Helvetica fonts, plus the raster figure the reports carry."""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass

import pymupdf
from PIL import Image, ImageDraw

# Page geometry in points; fonts are PDF base-14 Helvetica (no embedding of large files).
MARGIN_X = 72.0
BODY_TOP = 72.0
HEADER_BASELINE = 42.0
FOOTER_OFFSET = 36.0
BODY_SIZE = 10.0
BODY_LEADING = 13.0
H1_SIZE = 16.0
H2_SIZE = 12.5
TITLE_SIZE = 26.0
TABLE_SIZE = 9.0
CAPTION_SIZE = 9.0
FURNITURE_SIZE = 8.0


_FONT_KEYS = {"Helvetica": "F1", "Helvetica-Bold": "F2", "Helvetica-Oblique": "F3"}


def _pdf_text(text: str) -> str:
    """A PDF literal string for a base-14 font with WinAnsiEncoding (cp1252)."""
    raw = text.encode("cp1252").decode("latin-1")
    return raw.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


@dataclass
class PageWriter:
    """Writes text and rulings as raw content-stream operators: an order of magnitude faster
    than PyMuPDF's text insertion, with the same base-14 fonts (not embedded)."""

    doc: pymupdf.Document
    width: float
    height: float
    regular: pymupdf.Font
    bold: pymupdf.Font
    italic: pymupdf.Font
    furniture: Callable[[int], None] | None = None
    page: pymupdf.Page | None = None
    y: float = BODY_TOP

    def __post_init__(self) -> None:
        self.ops: list[str] = []
        self.font_xrefs: dict[str, int] = {}
        for base, key in _FONT_KEYS.items():
            xref = self.doc.get_new_xref()
            self.doc.update_object(
                xref, f"<</Type/Font/Subtype/Type1/BaseFont/{base}/Encoding/WinAnsiEncoding>>"
            )
            self.font_xrefs[key] = xref

    @property
    def page_number(self) -> int:
        return self.doc.page_count

    @property
    def bottom(self) -> float:
        return self.height - 60.0

    @property
    def text_width(self) -> float:
        return self.width - 2 * MARGIN_X

    def new_page(self) -> None:
        self.finish()
        self.page = self.doc.new_page(width=self.width, height=self.height)
        self.y = BODY_TOP
        if self.furniture is not None and self.page_number >= 2:
            self.furniture(self.page_number)

    def fits(self, height: float) -> bool:
        return self.page is not None and self.y + height <= self.bottom

    def line(self, x: float, baseline: float, words: str, font: pymupdf.Font, size: float) -> None:
        """Text with its baseline at ``baseline`` points from the top of the page."""
        key = _FONT_KEYS[font.name]
        self.ops.append(
            f"BT /{key} {size:g} Tf {x:.2f} {self.height - baseline:.2f} Td "
            f"({_pdf_text(words)}) Tj ET"
        )

    def rule(self, x0: float, y0: float, x1: float, y1: float, gray: float, width: float) -> None:
        """A stroked segment, or a rectangle when both coordinates differ and ``x0 != x1``
        and ``y0 != y1`` describe its corners."""
        top, bottom = self.height - y0, self.height - y1
        if x0 != x1 and y0 != y1:
            path = f"{x0:.2f} {bottom:.2f} {x1 - x0:.2f} {top - bottom:.2f} re"
        else:
            path = f"{x0:.2f} {top:.2f} m {x1:.2f} {bottom:.2f} l"
        self.ops.append(f"q {gray:g} G {width:g} w {path} S Q")

    def wrap(self, words: str, font: pymupdf.Font, size: float) -> list[str]:
        lines: list[str] = []
        current = ""
        current_width = 0.0
        space = text_width_points(" ", font, size)
        for word in words.split():
            width = text_width_points(word, font, size)
            if current and current_width + space + width > self.text_width:
                lines.append(current)
                current, current_width = word, width
            elif current:
                current, current_width = f"{current} {word}", current_width + space + width
            else:
                current, current_width = word, width
        if current:
            lines.append(current)
        return lines

    def finish(self) -> None:
        """Attach the current page's operators as a content stream drawn before anything
        PyMuPDF added (pictures), and the fonts to its resources."""
        if self.page is None or not self.ops:
            return
        doc, page = self.doc, self.page
        stream = doc.get_new_xref()
        doc.update_object(stream, "<<>>")
        doc.update_stream(stream, "\n".join(self.ops).encode("latin-1"))
        self.ops = []
        contents = [stream, *page.get_contents()]
        doc.xref_set_key(page.xref, "Contents", "[" + " ".join(f"{x} 0 R" for x in contents) + "]")
        kind, value = doc.xref_get_key(page.xref, "Resources")
        holder = int(value.split()[0]) if kind == "xref" else page.xref
        prefix = "" if kind == "xref" else "Resources/"
        fonts = "".join(f"/{key} {xref} 0 R" for key, xref in self.font_xrefs.items())
        doc.xref_set_key(holder, f"{prefix}Font", f"<<{fonts}>>")


_ADVANCES: dict[str, dict[str, float]] = {}


def text_width_points(text: str, font: pymupdf.Font, size: float) -> float:
    """Width of ``text`` in points, from cached glyph advances (Font.text_length costs a
    round trip into MuPDF per character, which dominated generation time)."""
    advances = _ADVANCES.setdefault(font.name, {})
    total = 0.0
    for char in text:
        advance = advances.get(char)
        if advance is None:
            advance = advances[char] = font.text_length(char, fontsize=1.0)
        total += advance
    return total * size


def figure_png(rng: random.Random) -> bytes:
    """A small raster bar chart: the 'picture' blocks of the corpus."""
    image = Image.new("RGB", (320, 180), "white")
    draw = ImageDraw.Draw(image)
    draw.line((20, 160, 310, 160), fill="black", width=2)
    draw.line((20, 10, 20, 160), fill="black", width=2)
    for index in range(6):
        top = rng.randint(30, 150)
        color = (rng.randint(30, 200), rng.randint(60, 200), rng.randint(120, 230))
        draw.rectangle((35 + index * 45, top, 65 + index * 45, 159), fill=color)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
