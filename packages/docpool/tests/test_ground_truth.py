"""The fast parser against the generator's ground truth."""

from __future__ import annotations

import re
from pathlib import Path

import pymupdf

from docpool import IngestReport, Pool
from docpool.testing import CorpusTruth, DocTruth, load_truth, make_corpus
from mmprolong_schemas import BlockLabel, Document
from mmprolong_schemas.document import SectionSource


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _doc(pool: Pool, truth: DocTruth) -> Document:
    return pool.get(truth.doc_id)


def test_corpus_is_deterministic_and_matches_its_files(tmp_path: Path) -> None:
    first = make_corpus(tmp_path / "a", n_docs=3, seed=5, pages=(8, 10))
    second = make_corpus(tmp_path / "b", n_docs=3, seed=5, pages=(8, 10))
    assert [d.doc_id for d in first.documents] == [d.doc_id for d in second.documents]
    assert load_truth(tmp_path / "a") == first
    for truth in first.documents:
        with pymupdf.open(tmp_path / "a" / truth.file) as doc:
            assert doc.page_count == truth.num_pages
            assert bool(doc.get_toc()) == truth.has_outline
            texts = [_norm(page.get_text()) for page in doc]
        for fact in truth.facts:
            assert fact.sentence in texts[fact.page - 1]
            assert fact.value_text in fact.sentence
        for section in truth.sections:
            assert texts[section.start_page - 1].count(section.title) >= 1
        for table in truth.tables:
            for row in table.rows:
                for cell in row:
                    assert cell in texts[table.page - 1]


def test_corpus_covers_the_required_features(corpus: tuple[Path, CorpusTruth]) -> None:
    _, truth = corpus
    langs = {d.lang for d in truth.documents}
    assert langs == {"en", "fr", "de"}
    assert [d.has_outline for d in truth.documents].count(False) == 2
    for doc in truth.documents:
        assert 20 <= doc.num_pages <= 30
        assert doc.facts and doc.tables and doc.captions and doc.pictures
        assert {s.level for s in doc.sections} == {1, 2}
        top = [s for s in doc.sections if s.level == 1]
        assert all(s.end_page > s.start_page for s in top), "level-1 sections span pages"
        assert len({(f.subject, f.attribute) for f in doc.facts}) == len(doc.facts)
        assert any(isinstance(f.value, float) for f in doc.facts)
        assert any(isinstance(f.value, str) for f in doc.facts)


def test_pool_native_length_range(tmp_path: Path) -> None:
    truth = make_corpus(tmp_path, n_docs=2, seed=1, pages=(32, 50), langs=("en",))
    assert all(32 <= d.num_pages <= 50 for d in truth.documents)


def test_everything_ingested(
    corpus: tuple[Path, CorpusTruth], ingested: tuple[Pool, IngestReport]
) -> None:
    _, truth = corpus
    pool, report = ingested
    assert report.added == len(truth.documents)
    # ground_truth.json is in the folder too: rejected as not a PDF, with its reason.
    assert [(Path(r.path).name, r.reason) for r in pool.rejects()] == [
        ("ground_truth.json", "not_pdf")
    ]
    for doc_truth in truth.documents:
        doc = _doc(pool, doc_truth)
        assert doc.num_pages == doc_truth.num_pages
        assert doc.lang == doc_truth.lang
        assert doc.metadata.title == doc_truth.title
        assert doc.metadata.author == doc_truth.author
        assert all(
            (p.width, p.height) == (doc_truth.page_width, doc_truth.page_height) for p in doc.pages
        )
        assert pool.pdf_path(doc.doc_id).read_bytes()[:5] == b"%PDF-"


def test_sections_match(
    corpus: tuple[Path, CorpusTruth], ingested: tuple[Pool, IngestReport]
) -> None:
    _, truth = corpus
    pool, _ = ingested
    for doc_truth in truth.documents:
        doc = _doc(pool, doc_truth)
        expected = [(s.title, s.level, s.start_page, s.end_page) for s in doc_truth.sections]
        got = [(s.title, s.level, s.start_page, s.end_page) for s in doc.sections]
        assert got == expected, doc_truth.file
        source = SectionSource.OUTLINE if doc_truth.has_outline else SectionSource.HEADINGS
        assert {s.source for s in doc.sections} == {source}


def test_headers_footers_title_and_captions(
    corpus: tuple[Path, CorpusTruth], ingested: tuple[Pool, IngestReport]
) -> None:
    _, truth = corpus
    pool, _ = ingested
    for doc_truth in truth.documents:
        doc = _doc(pool, doc_truth)
        titles = [b for b in doc.pages[0].blocks if b.label is BlockLabel.TITLE]
        assert _norm(" ".join(b.text for b in titles)) == doc_truth.title
        for page in doc.pages[doc_truth.furniture_from_page - 1 :]:
            headers = [b.text for b in page.blocks if b.label is BlockLabel.PAGE_HEADER]
            footers = [b.text for b in page.blocks if b.label is BlockLabel.PAGE_FOOTER]
            assert headers == [doc_truth.running_header]
            assert sorted(footers) == sorted(
                [doc_truth.running_footer, doc_truth.page_number_format.format(n=page.number)]
            )
            body = page.text({BlockLabel.TEXT})
            assert doc_truth.running_header not in body
            # Reading order: the header opens the page, footers close it.
            ordered = sorted(page.blocks, key=lambda b: b.order)
            assert ordered[0].label is BlockLabel.PAGE_HEADER
            assert {b.label for b in ordered[-2:]} == {BlockLabel.PAGE_FOOTER}
        for caption in doc_truth.captions:
            page = doc.page(caption.page)
            assert caption.text in [b.text for b in page.blocks if b.label is BlockLabel.CAPTION]
        for caption in doc_truth.captions:
            # A figure's picture comes right before its caption, a table right after its own.
            blocks = sorted(doc.page(caption.page).blocks, key=lambda b: b.order)
            index = next(i for i, b in enumerate(blocks) if b.text == caption.text)
            neighbour = blocks[index - 1] if caption.kind == "figure" else blocks[index + 1]
            expected = BlockLabel.PICTURE if caption.kind == "figure" else BlockLabel.TABLE
            assert neighbour.label is expected, caption
        for picture in doc_truth.pictures:
            boxes = [b.bbox for b in doc.page(picture.page).blocks if b.label is BlockLabel.PICTURE]
            assert any(
                abs(b.x0 - picture.bbox[0]) < 1 and abs(b.y0 - picture.bbox[1]) < 1 for b in boxes
            )


def test_facts_are_in_text_blocks_and_tables_have_cells(
    corpus: tuple[Path, CorpusTruth], ingested: tuple[Pool, IngestReport]
) -> None:
    _, truth = corpus
    pool, _ = ingested
    for doc_truth in truth.documents:
        doc = _doc(pool, doc_truth)
        for fact in doc_truth.facts:
            blocks = [
                _norm(b.text) for b in doc.page(fact.page).blocks if b.label is BlockLabel.TEXT
            ]
            assert any(fact.sentence in block for block in blocks), fact
        for table in doc_truth.tables:
            found = [b.rows for b in doc.page(table.page).blocks if b.label is BlockLabel.TABLE]
            assert table.rows in found
