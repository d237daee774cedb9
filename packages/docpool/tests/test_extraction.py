"""The fast text-page reader (MuPDF's JSON export) against PyMuPDF's text dicts, the table
pre-check, and JPEG files written straight from pixmaps."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from docpool import render_pages, write_pages
from docpool.layout_fast import MIN_TABLE_VECTORS, extract_page
from docpool.tables import find_ruled_tables, segments_from_vectors
from docpool.testing import CorpusTruth
from docpool.textpage import (
    TEXTPAGE_FLAGS,
    _decode,
    _from_dict,
    _from_json,
    read_textpage,
    vector_boxes,
)


def _styled(content):  # type: ignore[no-untyped-def]
    return [(line.text, line.size, line.bold, line.block) for line in content.lines]


def test_json_reader_agrees_with_text_dicts(corpus: tuple[Path, CorpusTruth]) -> None:
    folder, truth = corpus
    checked = 0
    for doc_truth in truth.documents[:3]:
        with pymupdf.open(folder / doc_truth.file) as doc:
            for page in doc:
                textpage = page.get_textpage(flags=TEXTPAGE_FLAGS)
                fast, slow = _from_json(textpage), _from_dict(page, textpage)
                assert _styled(fast) == _styled(slow), (doc_truth.file, page.number)
                for a, b in zip(fast.lines, slow.lines, strict=True):
                    # Integer eighths of a point, truncated.
                    assert all(abs(x - y) <= 0.25 for x, y in zip(a.bbox, b.bbox, strict=True))
                assert len(fast.images) == len(slow.images)
                for a, b in zip(fast.images, slow.images, strict=True):
                    assert all(abs(x - y) <= 0.25 for x, y in zip(a, b, strict=True))
                checked += 1
    assert checked > 60


def test_runs_of_mixed_style_join_into_one_line_with_weighted_style() -> None:
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 100), "Bold", fontname="hebo", fontsize=11)
    page.insert_text(
        (72 + pymupdf.get_text_length("Bold ", "hebo", 11), 100),
        'plain text with "quotes", a back\\slash and a tab\there',
        fontname="helv",
        fontsize=11,
    )
    page.insert_text((72, 160), "Chapter heading", fontname="hebo", fontsize=18)
    content = read_textpage(page, page.get_textpage(flags=TEXTPAGE_FLAGS))
    texts = [line.text for line in content.lines]
    assert texts[0].startswith('Bold plain text with "quotes", a back\\slash')
    first, heading = content.lines[0], content.lines[-1]
    assert first.size == 11 and not first.bold, "4 bold characters of 50 do not make a bold line"
    assert heading.text == "Chapter heading" and heading.size == 18 and heading.bold


def test_unreadable_json_falls_back_to_text_dicts(
    corpus: tuple[Path, CorpusTruth], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, truth = corpus
    doc_truth = truth.documents[0]
    with pymupdf.open(folder / doc_truth.file) as doc:
        page = doc[doc_truth.pictures[0].page - 1]
        expected = extract_page(page)

        def broken(textpage: pymupdf.TextPage) -> None:
            raise ValueError("unexpected JSON from MuPDF")

        monkeypatch.setattr("docpool.textpage._from_json", broken)
        fallback = extract_page(page)
    assert [(ln.text, ln.size, ln.bold) for ln in fallback.lines] == [
        (ln.text, ln.size, ln.bold) for ln in expected.lines
    ]
    assert fallback.pictures and len(fallback.pictures) == len(expected.pictures)


def test_export_with_invalid_utf8_or_raw_control_characters_is_read_leniently() -> None:
    # What MuPDF writes for glyphs mapped to lone surrogates (CESU bytes) or to control
    # characters: not strict JSON, so the typed decoder refuses it and the lenient path reads it.
    record = b'{"bbox":{"x":8,"y":16,"w":80,"h":8},"font":{"name":"F","size":80},"text":"%s"}'
    raw = b'{"blocks":[{"type":"text","bbox":{"x":8,"y":16,"w":80,"h":8},"lines":[%s,%s]},'
    raw += b'{"type":"struct","bbox":{"x":0,"y":0,"w":1,"h":1}}]}'
    export = _decode(raw % (record % b"a\xed\xa0\x80b", record % b"c\x01d"))
    texts = [line.text for line in export.blocks[0].lines]
    assert texts == ["a\ufffd\ufffd\ufffdb", "c\x01d"]
    assert [block.type for block in export.blocks] == ["text", "struct"]
    with pytest.raises(ValueError, match="unexpected JSON"):
        _decode(b'{"pages":[]}')
    with pytest.raises(ValueError, match="unexpected JSON"):
        _decode(b'{"blocks":[{"type":"text","lines":[{"text":"a run with no box"}]}]}')


def _grid_page(doc: pymupdf.Document, one_path: bool) -> pymupdf.Page:
    page = doc.new_page()
    shape = page.new_shape()
    if one_path:  # a frame and one inner ruling each way, stroked as one path
        shape.draw_rect((72, 100, 272, 140))
        shape.draw_line((72, 120), (272, 120))
        shape.draw_line((172, 100), (172, 140))
    else:
        for y in (100, 120, 140):
            shape.draw_line((72, y), (272, y))
            shape.finish(width=0.5)
        for x in (72, 172, 272):
            shape.draw_line((x, 100), (x, 140))
            shape.finish(width=0.5)
    shape.finish(width=0.5)
    shape.commit()
    for (x, y), word in zip(((80, 115), (180, 115), (80, 135), (180, 135)), "abcd", strict=True):
        page.insert_text((x, y), f"cell {word}", fontname="helv", fontsize=10)
    return page


@pytest.mark.parametrize("one_path", [True, False])
def test_smallest_ruled_grid_passes_the_table_precheck(one_path: bool) -> None:
    doc = pymupdf.open()
    page = _grid_page(doc, one_path)
    content = read_textpage(page, page.get_textpage(flags=TEXTPAGE_FLAGS))
    assert content.vectors is not None and content.vectors >= MIN_TABLE_VECTORS
    [table] = extract_page(page).tables
    assert table.rows == [["cell a", "cell b"], ["cell c", "cell d"]]


def _cell_reads(page: pymupdf.Page) -> tuple[list[list[list[str]]], list[list[list[str]]], bool]:
    """The page's tables with cells read from its lines and from PyMuPDF's word list, and
    whether reading from lines needed the word list after all."""
    textpage = page.get_textpage(flags=TEXTPAGE_FLAGS)
    content = read_textpage(page, textpage)
    strokes = segments_from_vectors(vector_boxes(textpage), content.rectangles)
    words_read = []
    get_text = page.get_text
    page.get_text = lambda *args, **kwargs: words_read.append(1) or get_text(*args, **kwargs)  # type: ignore[method-assign]
    by_lines = find_ruled_tables(page, textpage, strokes, content.lines)
    page.get_text = get_text  # type: ignore[method-assign]
    by_words = find_ruled_tables(page, textpage, strokes)
    return [t.rows for t in by_lines], [t.rows for t in by_words], bool(words_read)


def test_cells_read_from_lines_equal_cells_read_from_words(
    corpus: tuple[Path, CorpusTruth],
) -> None:
    folder, truth = corpus
    tables = from_lines = 0
    for doc_truth in truth.documents:
        with pymupdf.open(folder / doc_truth.file) as doc:
            for number in sorted({t.page for t in doc_truth.tables}):
                by_lines, by_words, words_read = _cell_reads(doc[number - 1])
                assert by_lines == by_words, (doc_truth.file, number)
                tables += len(by_lines)
                from_lines += not words_read
    assert tables >= 10 and from_lines >= tables // 2


def test_a_line_across_a_column_ruling_is_split_by_its_words() -> None:
    doc = pymupdf.open()
    page = _grid_page(doc, one_path=False)
    assert _cell_reads(page) == ([[["cell a", "cell b"], ["cell c", "cell d"]]],) * 2 + (False,)
    # One line from the first column into the second: its words go to two cells.
    page.insert_text((150, 135), "left right", fontname="helv", fontsize=10)
    by_lines, by_words, words_read = _cell_reads(page)
    assert words_read
    assert by_lines == by_words == [[["cell a", "cell b"], ["cell c left", "cell d right"]]]


def test_table_precheck_skips_no_table_the_finder_sees(corpus: tuple[Path, CorpusTruth]) -> None:
    """Every ruled table on the corpus pages is still found with the pre-check on, and the
    pre-check does skip pages."""
    folder, truth = corpus
    skipped = 0
    for doc_truth in truth.documents[:4]:
        with pymupdf.open(folder / doc_truth.file) as doc:
            for page in doc:
                everything = find_ruled_tables(page)
                found = extract_page(page).tables
                assert [t.rows for t in found] == [t.rows for t in everything], page.number
                skipped += not found and not everything
        table_pages = {t.page for t in doc_truth.tables}
        assert table_pages, doc_truth.file
    assert skipped > 0


def test_jpeg_files_match_the_rendered_pages(
    corpus: tuple[Path, CorpusTruth], tmp_path: Path
) -> None:
    folder, truth = corpus
    pdf = folder / truth.documents[0].file
    written = write_pages(pdf, [1, 4], tmp_path, dpi=144, fmt="jpeg", quality=90, color="rgb")
    rendered = render_pages(pdf, [1, 4], dpi=144)
    for path, image in zip(written, rendered, strict=True):
        with Image.open(path) as jpeg:
            assert jpeg.format == "JPEG" and jpeg.mode == "RGB" and jpeg.size == image.size
            decoded = jpeg.convert("RGB")
        # q90 keeps every pixel close: compare mean absolute error per channel.
        a, b = decoded.tobytes(), image.tobytes()
        mean_error = sum(abs(x - y) for x, y in zip(a[::97], b[::97], strict=True)) / len(a[::97])
        assert mean_error < 2.0


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_pipelined_encoding_writes_what_one_thread_writes(
    corpus: tuple[Path, CorpusTruth], tmp_path: Path, fmt: str
) -> None:
    folder, truth = corpus
    pdf = folder / truth.documents[0].file
    pages = [5, 1, 2, 3, 4, 6]  # more pages than the encoders' queue holds, in any order
    serial = write_pages(pdf, pages, tmp_path / "serial", dpi=72, fmt=fmt, encoders=0)
    threaded = write_pages(pdf, pages, tmp_path / "threaded", dpi=72, fmt=fmt, encoders=2)
    assert [p.name for p in threaded] == [p.name for p in serial]
    assert [p.name for p in serial][0].endswith("p0005." + ("jpg" if fmt == "jpeg" else fmt))
    assert [p.read_bytes() for p in threaded] == [p.read_bytes() for p in serial]
    assert not list((tmp_path / "threaded").glob(".*.tmp"))  # no temporary file left


def test_a_missing_page_stops_the_writer_and_leaves_no_partial_file(
    corpus: tuple[Path, CorpusTruth], tmp_path: Path
) -> None:
    folder, truth = corpus
    pdf = folder / truth.documents[0].file
    with pytest.raises(IndexError, match="has no page 999"):
        write_pages(pdf, [1, 999], tmp_path, dpi=72)
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["page-p0001.jpg"])
