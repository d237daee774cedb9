"""The ground truth the generators write next to their PDFs: what was placed on which page
(1-based), so a parser, a teacher or a judge can be checked against it exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from mmprolong_schemas.base import Model

GROUND_TRUTH_FILE = "ground_truth.json"


class SectionTruth(Model):
    title: str = Field(description="The heading exactly as printed, number included.")
    level: int = Field(ge=1)
    start_page: int = Field(ge=1)
    end_page: int = Field(ge=1, description="Last page holding content of the section.")


class Fact(Model):
    """One sentence stating one value, e.g. subject 'Lyon facility', attribute
    'samples processed in 2019', value 4512, unit 'samples'."""

    page: int = Field(ge=1)
    sentence: str = Field(description="The sentence exactly as printed (single spaces).")
    subject: str
    attribute: str = Field(description="What the value measures, in English.")
    value: int | float | str
    value_text: str = Field(description="The value as printed, e.g. '4,512' or '4 512'.")
    unit: str | None = None


class TableTruth(Model):
    page: int = Field(ge=1)
    caption: str
    rows: list[list[str]] = Field(description="Cell texts as printed, header row first.")


class CaptionTruth(Model):
    page: int = Field(ge=1)
    kind: Literal["figure", "table"]
    number: int = Field(ge=1)
    text: str = Field(description="The caption line as printed, e.g. 'Figure 3: ...'.")


class PictureTruth(Model):
    page: int = Field(ge=1)
    bbox: tuple[float, float, float, float]


class DocTruth(Model):
    file: str = Field(description="File name inside the corpus directory.")
    doc_id: str = Field(description="SHA-256 of the file bytes.")
    num_pages: int
    page_width: float
    page_height: float
    lang: str
    has_outline: bool
    title: str
    author: str
    sections: list[SectionTruth]
    running_header: str = Field(description="Top line of every page after the title page.")
    running_footer: str = Field(description="Bottom-left line of every page after the title page.")
    page_number_format: str = Field(
        description="Bottom-right page label of every page after the title page, e.g. 'Page {n}'."
    )
    furniture_from_page: int = 2
    facts: list[Fact]
    tables: list[TableTruth]
    captions: list[CaptionTruth]
    pictures: list[PictureTruth]


class CorpusTruth(Model):
    seed: int
    documents: list[DocTruth]

    def by_file(self, name: str) -> DocTruth:
        for doc in self.documents:
            if doc.file == name:
                return doc
        raise KeyError(f"no document named {name!r} in the ground truth")


def load_truth(corpus_dir: Path) -> CorpusTruth:
    """Read ``corpus_dir/ground_truth.json``."""
    return CorpusTruth.model_validate_json((Path(corpus_dir) / GROUND_TRUTH_FILE).read_bytes())


class ParagraphTruth(Model):
    page: int = Field(ge=1)
    text: str = Field(description="The paragraph as written, lines joined without breaks.")


class MixedScriptTruth(Model):
    file: str
    doc_id: str
    lang: Literal["zh", "ja"] = Field(description="The language of most pages.")
    num_pages: int
    english_pages: list[int] = Field(description="Pages written in English (commands).")
    paragraphs: list[ParagraphTruth] = Field(description="CJK paragraphs, wrapped over lines.")
    captions: list[CaptionTruth]
    page_label: str = Field(description="Bottom-right page label, e.g. '{n} ページ'.")
