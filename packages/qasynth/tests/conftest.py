"""Shared fixtures: small in-memory documents with known facts, and a fake page renderer."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from PIL import Image

from mmprolong_schemas import BBox, Block, BlockLabel, Document, Page, Section
from mmprolong_schemas.qa import AnswerFormat, EvidenceSource, PageRange, QAPair, Task

SITES = ["Lyon", "Porto", "Gdansk", "Utrecht", "Bergen", "Ghent", "Tartu", "Aarhus"]


def doc_id_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _box(y: float) -> BBox:
    return BBox(x0=72, y0=y, x1=540, y1=y + 40)


def make_document(
    name: str = "doc",
    num_pages: int = 40,
    section_pages: Sequence[int] | None = (1, 4, 9, 15, 22, 27, 33),
    width: float = 612,
    height: float = 792,
    tables_every: int = 3,
) -> Document:
    """A report whose page p states '... processed {p*100+7} samples in 2019.' and, every
    ``tables_every`` pages, holds a captioned table of three sites."""
    pages = []
    for number in range(1, num_pages + 1):
        site = SITES[number % len(SITES)]
        blocks = [
            Block(label=BlockLabel.PAGE_HEADER, bbox=_box(20), text="Report header", order=0),
            Block(
                label=BlockLabel.TEXT,
                bbox=_box(80),
                order=1,
                text=(
                    f"Work continued as planned. The {site} facility processed "
                    f"{number * 100 + 7:,} samples in 2019.\nEnergy use at the {site} facility "
                    f"reached {number + 0.5} MWh in 2020. Teams met often."
                ),
            ),
        ]
        if number % tables_every == 0:
            blocks.append(
                Block(
                    label=BlockLabel.CAPTION,
                    bbox=_box(200),
                    order=2,
                    text=f"Table {number // tables_every}: Employees by site",
                )
            )
            rows = [["Site", "2019", "2020"]] + [
                [SITES[(number + i) % len(SITES)], str(number + i), str(number * 2 + i)]
                for i in range(3)
            ]
            blocks.append(
                Block(
                    label=BlockLabel.TABLE,
                    bbox=_box(250),
                    order=3,
                    text="\n".join(" ".join(r) for r in rows),
                    rows=rows,
                )
            )
        blocks.append(
            Block(
                label=BlockLabel.PAGE_FOOTER,
                bbox=_box(740),
                text=f"Page {number}",
                order=len(blocks),
            )
        )
        pages.append(Page(number=number, width=width, height=height, blocks=blocks))
    sections = []
    if section_pages:
        starts = list(section_pages)
        for index, start in enumerate(starts):
            end = (starts[index + 1] - 1) if index + 1 < len(starts) else num_pages
            sections.append(
                Section(
                    title=f"{index + 1} Part {index + 1}", level=1, start_page=start, end_page=end
                )
            )
    return Document(
        doc_id=doc_id_of(name),
        source_path=f"/data/{name}.pdf",
        file_size=1000,
        num_pages=num_pages,
        pages=pages,
        sections=sections,
        lang="en",
    )


class FakeRenderer:
    """Renders a page as a small grey image; counts pages rendered."""

    def __init__(self, size: tuple[int, int] = (64, 80)):
        self.size = size
        self.rendered = 0

    def render(self, doc_id: str, pages: Sequence[int], dpi: float = 144) -> list[Image.Image]:
        self.rendered += len(pages)
        return [Image.new("RGB", self.size, (200, 200, 200 - p % 50)) for p in pages]


def page_question(doc_id: str, last_page: int) -> QAPair:
    """One extract-single pair about Page 2 of a segment of pages 1..``last_page``."""
    return QAPair(
        qa_id="q1",
        doc_id=doc_id,
        segment=PageRange(first=1, last=last_page),
        task=Task.EXTRACT_SINGLE,
        question="What is on Page 2?",
        answer="x",
        answer_format=AnswerFormat.STRING,
        evidence_pages=[2],
        evidence_sources=[EvidenceSource.TEXT],
        teacher="t",
        prompt_version="v",
    )


@pytest.fixture
def document() -> Document:
    return make_document()


@pytest.fixture
def renderer() -> FakeRenderer:
    return FakeRenderer()


@pytest.fixture
def doc_factory():
    return make_document


@pytest.fixture
def pair_factory():
    return page_question


@pytest.fixture(scope="session")
def corpus_pool(tmp_path_factory):
    """A docpool pool of generated reports (32-40 pages; en/fr/de; some without outline)
    and its ground truth: (pool, CorpusTruth, root)."""
    corpus = pytest.importorskip("docpool.testing")
    from docpool.ingest import ingest
    from docpool.pool import Pool

    root = tmp_path_factory.mktemp("corpus")
    truth = corpus.make_corpus(root / "pdfs", n_docs=8, seed=11, pages=(32, 40))
    ingest([root / "pdfs"], root / "pool", min_pages=5)
    return Pool(root / "pool"), truth, root
