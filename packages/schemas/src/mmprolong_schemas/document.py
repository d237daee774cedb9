"""A parsed PDF: pages with layout blocks, sections, metadata.

Page numbers are 1-based everywhere in the toolkit (the first page is page 1), because they
end up in questions ("on Page 10") and in benchmark files, which count the same way.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from mmprolong_schemas.base import Model, Record
from mmprolong_schemas.vision_tokens import VisionTokenSpec, page_tokens

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _check_doc_id(value: str) -> str:
    if not _SHA256.match(value):
        raise ValueError(f"doc_id {value!r} is not a lowercase hex SHA-256 of the file bytes")
    return value


DocId = Annotated[str, AfterValidator(_check_doc_id)]
PageNumber = Annotated[int, Field(ge=1, description="1-based page number.")]


class BlockLabel(StrEnum):
    TITLE = "title"
    SECTION_HEADER = "section_header"
    TEXT = "text"
    LIST_ITEM = "list_item"
    TABLE = "table"
    CAPTION = "caption"
    FOOTNOTE = "footnote"
    FORMULA = "formula"
    PICTURE = "picture"
    PAGE_HEADER = "page_header"
    PAGE_FOOTER = "page_footer"


class BBox(Model):
    """A rectangle in PDF points, origin top-left of the displayed page."""

    x0: float
    y0: float
    x1: float
    y1: float

    @model_validator(mode="before")
    @classmethod
    def _from_sequence(cls, data: Any) -> Any:
        """Accept (x0, y0, x1, y1), the form PyMuPDF returns."""
        if isinstance(data, list | tuple):
            if len(data) != 4:
                raise ValueError(f"a bbox has 4 numbers, got {len(data)}")
            return dict(zip(("x0", "y0", "x1", "y1"), data, strict=True))
        return data

    @model_validator(mode="after")
    def _ordered(self) -> BBox:
        if self.x1 < self.x0 or self.y1 < self.y0:
            raise ValueError(
                f"bbox ({self.x0}, {self.y0}, {self.x1}, {self.y1}) has x1 < x0 or y1 < y0"
            )
        return self


class Block(Model):
    label: BlockLabel
    bbox: BBox
    text: str = ""
    order: int = Field(ge=0, description="Position in the page's reading order, from 0.")
    rows: list[list[str]] | None = Field(
        default=None, description="Cell texts of a table block, row by row."
    )

    @model_validator(mode="after")
    def _rows_only_for_tables(self) -> Block:
        if self.rows is not None and self.label is not BlockLabel.TABLE:
            raise ValueError(f"a {self.label.value} block cannot carry table rows")
        return self


class Page(Model):
    number: PageNumber
    width: float = Field(gt=0, description="Displayed width in points (rotation applied).")
    height: float = Field(gt=0, description="Displayed height in points (rotation applied).")
    rotation: int = Field(default=0, description="The page's /Rotate value: 0, 90, 180 or 270.")
    blocks: list[Block] = Field(default_factory=list)
    has_text_layer: bool = True
    flags: list[str] = Field(
        default_factory=list, description="Notes such as 'ocr' or 'no-text-layer'."
    )

    @model_validator(mode="after")
    def _check(self) -> Page:
        if self.rotation not in (0, 90, 180, 270):
            raise ValueError(
                f"page {self.number} rotation {self.rotation} is not 0, 90, 180 or 270"
            )
        orders = [block.order for block in self.blocks]
        if len(set(orders)) != len(orders):
            raise ValueError(f"page {self.number} has two blocks with the same reading order")
        return self

    def text(self, labels: set[BlockLabel] | None = None) -> str:
        """The page's block texts in reading order, optionally only some labels."""
        chosen = sorted(
            (b for b in self.blocks if labels is None or b.label in labels), key=lambda b: b.order
        )
        return "\n".join(b.text for b in chosen if b.text)


class SectionSource(StrEnum):
    OUTLINE = "outline"
    HEADINGS = "headings"


class Section(Model):
    title: str
    level: int = Field(ge=1)
    start_page: PageNumber
    end_page: PageNumber
    source: SectionSource = SectionSource.OUTLINE

    @model_validator(mode="after")
    def _ordered(self) -> Section:
        if self.end_page < self.start_page:
            raise ValueError(
                f"section {self.title!r} ends on page {self.end_page} before it starts "
                f"on page {self.start_page}"
            )
        return self


class DocumentMetadata(Model):
    title: str | None = None
    author: str | None = None
    producer: str | None = None


class Document(Record):
    doc_id: DocId
    source_path: str = Field(description="The path the file was first ingested from.")
    aliases: list[str] = Field(default_factory=list, description="Other paths of the same bytes.")
    file_size: int = Field(ge=0)
    num_pages: int = Field(ge=1)
    pages: list[Page]
    sections: list[Section] = Field(default_factory=list)
    metadata: DocumentMetadata = Field(default_factory=DocumentMetadata)
    lang: str | None = Field(default=None, description="ISO 639-1 code, detected from text.")
    domain: str | None = None
    layout: str = Field(default="fast", description="The layout parser that made the blocks.")

    @model_validator(mode="after")
    def _consistent(self) -> Document:
        if len(self.pages) != self.num_pages:
            raise ValueError(
                f"num_pages is {self.num_pages} but {len(self.pages)} pages are listed"
            )
        for expected, page in enumerate(self.pages, start=1):
            if page.number != expected:
                raise ValueError(f"page {page.number} is listed where page {expected} belongs")
        for section in self.sections:
            if section.end_page > self.num_pages:
                raise ValueError(
                    f"section {section.title!r} ends on page {section.end_page}, "
                    f"after the last page {self.num_pages}"
                )
        return self

    def page_tokens(self, spec: VisionTokenSpec | None = None) -> list[int]:
        """Vision tokens of every page (wrappers included), in page order, from the page sizes
        alone: nothing is rendered."""
        spec = spec or VisionTokenSpec()
        return [page_tokens(page.width, page.height, spec) for page in self.pages]

    def tokens(self, spec: VisionTokenSpec | None = None) -> int:
        """Vision tokens of the whole document: the bulk of a long-document sample."""
        return sum(self.page_tokens(spec))

    def page(self, number: int) -> Page:
        if not 1 <= number <= self.num_pages:
            raise IndexError(
                f"document {self.doc_id[:12]} has no page {number} (1-{self.num_pages})"
            )
        return self.pages[number - 1]
