"""OCR settings: Tesseract language codes, the default from the detected language, and OCR
and parse-error pages flagged in the statistics. Most tests use a contract fake of PyMuPDF's
``Page.get_textpage_ocr``; one reads a scanned page with the real Tesseract where it is
installed (Debian: ``apt-get install -y tesseract-ocr tesseract-ocr-eng``)."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest
from typer.testing import CliRunner

import docpool.layout_fast as layout_fast
import docpool.ocr as ocr
import docpool.parse as parse
from docpool.cli import app
from docpool.ocr import OcrLanguageError, check_ocr_language, ocr_language_for
from docpool.parse import ParseOptions, probe_document
from docpool.stats import compute_stats, stats_table
from docpool.testing import make_mixed_script_pdf
from mmprolong_schemas import Document, Page


def test_ocr_language_takes_tesseract_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ocr, "installed_languages", lambda: frozenset({"eng", "jpn", "chi_sim"}))
    for value in ("eng", "jpn+eng", "chi_sim"):
        assert check_ocr_language(value) == value
    with pytest.raises(OcrLanguageError, match="'en' is not Tesseract language codes"):
        check_ocr_language("en")
    with pytest.raises(OcrLanguageError, match="no data for deu"):
        check_ocr_language("deu+eng")


def test_default_ocr_language_follows_the_detected_language(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ocr, "installed_languages", lambda: frozenset({"eng", "jpn", "fra"}))
    assert ocr_language_for("ja") == "jpn+eng"
    assert ocr_language_for("fr") == "fra+eng"
    assert ocr_language_for("en") == "eng"
    assert ocr_language_for("zh") == "eng"  # chi_sim is not installed
    assert ocr_language_for(None) == "eng"


def _fake_ocr(calls: list[str]):  # type: ignore[no-untyped-def]
    def get_textpage_ocr(
        page: pymupdf.Page,
        flags: int = 0,
        language: str = "eng",
        dpi: int = 72,
        full: bool = False,
        tessdata: str | None = None,
    ) -> pymupdf.TextPage:
        # PyMuPDF's signature (pymupdf/utils.py get_textpage_ocr); Tesseract would read the
        # page image in ``language``: here it reads nothing.
        calls.append(language)
        return page.get_textpage(flags=flags)

    return get_textpage_ocr


@pytest.mark.parametrize(("option", "expected"), [(None, "jpn+eng"), ("deu", "deu")])
def test_pages_without_text_are_ocrd_in_the_documents_language(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str | None, expected: str
) -> None:
    path = tmp_path / "manual.pdf"
    make_mixed_script_pdf(path, "ja", english_pages=3, cjk_pages=5)
    with pymupdf.open(path) as doc:
        doc.new_page()  # a page with no text layer (a scan would look the same)
        doc.save(tmp_path / "scanned.pdf")
    calls: list[str] = []
    monkeypatch.setattr(ocr, "installed_languages", lambda: frozenset({"eng", "jpn", "deu"}))
    monkeypatch.setattr(parse, "ocr_available", lambda: True)
    monkeypatch.setattr(layout_fast, "ocr_available", lambda: True)
    monkeypatch.setattr(pymupdf.Page, "get_textpage_ocr", _fake_ocr(calls))
    probe = probe_document(
        str(tmp_path / "scanned.pdf"), ParseOptions(min_pages=1, ocr_language=option)
    )
    assert probe.lang == "ja" and calls == [expected] and probe.ocr_language == expected
    assert probe.parsed is not None
    last = probe.parsed.pages[-1]
    assert last.flags == ["ocr"] and not last.has_text_layer


@pytest.mark.skipif(
    not layout_fast.ocr_available() or "eng" not in (ocr.installed_languages() or ()),
    reason="Tesseract with its English data is not installed",
)
def test_real_tesseract_reads_a_scanned_page(tmp_path: Path) -> None:
    doc = pymupdf.open()
    for _ in range(2):  # text pages, from which the document's language is detected
        page = doc.new_page()
        sentence = "The annual report describes the operations of the company in detail. "
        page.insert_textbox(pymupdf.Rect(72, 72, 540, 720), sentence * 12, fontsize=11)
    printed = pymupdf.open()
    original = printed.new_page()
    original.insert_text((72, 120), "Invoice total for the Lisbon warehouse", fontsize=22)
    original.insert_text((72, 170), "was 4512 euros in March", fontsize=22)
    scan = doc.new_page()  # the printed page as pixels only: a scan
    scan.insert_image(scan.rect, pixmap=original.get_pixmap(dpi=150))
    doc.save(tmp_path / "scanned.pdf")
    probe = probe_document(str(tmp_path / "scanned.pdf"), ParseOptions(min_pages=1))
    assert probe.lang == "en" and probe.ocr_language == "eng"
    assert probe.parsed is not None
    read = probe.parsed.pages[-1]
    assert read.flags == ["ocr"] and not read.has_text_layer
    words = read.text().split()
    for word in ("Invoice", "Lisbon", "warehouse", "4512", "euros", "March"):
        assert word in words, f"{word!r} not in the OCR text {read.text()!r}"


def test_ingest_refuses_iso_codes_as_ocr_language(tmp_path: Path) -> None:
    pdf = tmp_path / "a.pdf"
    make_mixed_script_pdf(pdf, "zh")
    result = CliRunner().invoke(
        app, ["ingest", str(pdf), "--out", str(tmp_path / "p"), "--ocr-language", "zh"]
    )
    assert result.exit_code == 2
    assert "not Tesseract language codes" in " ".join(result.output.split())


class _FlaggedPool:
    """What compute_stats reads of a pool: documents and rejects."""

    def __init__(self, documents: list[Document]):
        self._documents = documents

    def documents(self):  # type: ignore[no-untyped-def]
        return iter(self._documents)

    def rejects(self) -> list[object]:
        return []


def test_stats_flag_ocr_and_parse_error_pages() -> None:
    def doc(index: int, flags: list[list[str]]) -> Document:
        pages = [
            Page(number=n + 1, width=612, height=792, flags=f, has_text_layer="ocr" not in f)
            for n, f in enumerate(flags)
        ]
        return Document(
            doc_id=f"{index:064x}",
            source_path=f"{index}.pdf",
            file_size=1,
            num_pages=len(pages),
            pages=pages,
        )

    pool = _FlaggedPool(
        [
            doc(1, [[], ["ocr"], ["ocr"]]),
            doc(2, [["parse-error: bad page"], [], ["no-text-layer"]]),
            doc(3, [[], []]),
        ]
    )
    stats = compute_stats(pool)  # type: ignore[arg-type]
    assert stats.flagged_pages == {"ocr": 2, "parse-error": 1, "no-text-layer": 1}
    assert stats.flagged_documents == {"ocr": 1, "parse-error": 1, "no-text-layer": 1}
    assert "Flagged pages" in str(stats_table(stats).columns[0]._cells)
