"""Layout details: the model parser, pages without text, rotation, outline edge cases,
language detection."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from docpool.language import detect_language
from docpool.layout_fast import build_profile, classify_page, extract_page, ocr_available
from docpool.parse import ParseOptions, parse_page_range, probe_document
from docpool.sections import sections_from_outline
from docpool.testing import CorpusTruth
from mmprolong_schemas import BlockLabel, Page
from mmprolong_schemas.document import SectionSource


def test_model_layout_labels_and_keeps_text(corpus: tuple[Path, CorpusTruth]) -> None:
    pytest.importorskip("pymupdf.layout")
    folder, truth = corpus
    doc_truth = truth.documents[0]
    path = str(folder / doc_truth.file)
    probe = probe_document(path, ParseOptions(min_pages=1, chunk_pages=1))
    fast = parse_page_range(path, 2, 3, probe.profile, ParseOptions())
    model = parse_page_range(path, 2, 3, probe.profile, ParseOptions(layout="model"))
    for fast_page, model_page in zip(fast.pages, model.pages, strict=True):
        labels = {b.label for b in model_page.blocks}
        assert {BlockLabel.PAGE_HEADER, BlockLabel.TEXT} <= labels
        # Same lines, different grouping: no text is lost.
        assert sorted(fast_page.text().split()) == sorted(model_page.text().split())
    assert model.headings, "the model finds the section heading on page 2"
    assert model.headings[0].text == doc_truth.sections[0].title
    for picture in doc_truth.pictures:
        if picture.page in (2, 3):
            labels = [b.label for b in model.pages[picture.page - 2].blocks]
            assert BlockLabel.PICTURE in labels
    # The image-feature variant runs too (slower; one page).
    rich = parse_page_range(
        path, 2, 2, probe.profile, ParseOptions(layout="model", layout_features="imf+rf")
    )
    assert BlockLabel.PAGE_HEADER in {b.label for b in rich.pages[0].blocks}


@pytest.mark.slow
def test_model_layout_ingest_in_forked_workers(
    corpus: tuple[Path, CorpusTruth], tmp_path: Path
) -> None:
    """The network is loaded in the parent and shared by forked workers without hanging."""
    from docpool import Pool, ingest

    folder, truth = corpus
    doc = truth.documents[1]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / doc.file).write_bytes((folder / doc.file).read_bytes())
    report = ingest(
        [tmp_path / "in"],
        tmp_path / "pool",
        layout="model",
        workers=2,
        min_pages=5,
        chunk_pages=12,
        timeout=300,
    )
    assert report.added == 1
    pooled = Pool(tmp_path / "pool").get(doc.doc_id)
    assert pooled.layout == "model" and pooled.num_pages == doc.num_pages
    assert [s.title for s in pooled.sections] == [s.title for s in doc.sections]


def _image_only_pdf(tmp_path: Path) -> Path:
    source = pymupdf.open()
    page = source.new_page()
    page.insert_text((72, 100), "Scanned page with words", fontname="helv", fontsize=24)
    pixmap = page.get_pixmap(dpi=150)
    out = pymupdf.open()
    scan = out.new_page()
    scan.insert_image(scan.rect, pixmap=pixmap)
    path = tmp_path / "scan.pdf"
    out.save(path)
    return path


def test_page_without_text_is_flagged_or_ocred(tmp_path: Path) -> None:
    path = _image_only_pdf(tmp_path)
    with pymupdf.open(path) as doc:
        flagged = extract_page(doc[0], ocr=False)
        assert flagged.flags == ["no-text-layer"] and not flagged.lines
        page, _ = classify_page(flagged, build_profile([flagged]))
        assert not page.has_text_layer and [b.label for b in page.blocks] == [BlockLabel.PICTURE]
        auto = extract_page(doc[0], ocr=True)
    if ocr_available():
        assert auto.flags == ["ocr"]
        assert "Scanned" in " ".join(line.text for line in auto.lines)
    else:
        assert auto.flags == ["no-text-layer"]


def test_rotated_page_boxes_are_in_displayed_coordinates() -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_text((72, 100), "Rotated words", fontname="helv", fontsize=12)
    page.set_rotation(90)
    raw = extract_page(page)
    assert (raw.width, raw.height, raw.rotation) == (842, 595, 90)
    x0, y0, x1, y1 = raw.lines[0].bbox
    assert 0 <= x0 < x1 <= 842 and 0 <= y0 < y1 <= 595
    assert y1 - y0 > x1 - x0, "horizontal text becomes a vertical box once rotated"


def test_outline_entries_pointing_nowhere_are_dropped() -> None:
    pages = [Page(number=n, width=100, height=100) for n in range(1, 6)]
    toc = [
        [1, "Intro", 1],
        [1, "  Broken  ", -1],
        [2, "Deep", 3],
        [1, "Past the end", 9],
        [1, "End", 4],
    ]
    sections = sections_from_outline(toc, pages)
    assert [(s.title, s.level, s.start_page, s.end_page) for s in sections] == [
        ("Intro", 1, 1, 4),
        ("Deep", 2, 3, 4),
        ("End", 1, 4, 5),
    ]
    assert {s.source for s in sections} == {SectionSource.OUTLINE}


def test_language_detection_is_deterministic() -> None:
    french = "Le site de Lyon a traité de nombreux échantillons pendant l'année écoulée. " * 3
    german = "Der Standort hat im vergangenen Jahr viele Proben bearbeitet und geprüft. " * 3
    assert [detect_language(french) for _ in range(5)] == ["fr"] * 5
    assert detect_language(german) == "de"
    assert detect_language("12 34") is None
