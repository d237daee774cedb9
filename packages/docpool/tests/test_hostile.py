"""A hostile corpus: every bad file is rejected with its own reason, every good one gets in."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pymupdf
import pytest

from docpool import Pool, ingest
from docpool.testing import CorpusTruth


def simple_pdf(pages: int, text: str = "page") -> bytes:
    doc = pymupdf.open()
    for number in range(pages):
        doc.new_page().insert_text((72, 72), f"{text} {number + 1}", fontname="helv")
    return doc.tobytes()


def encrypted_pdf() -> bytes:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "secret", fontname="helv")
    for _ in range(4):
        doc.new_page()
    return doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="u", owner_pw="o")


def zero_page_pdf() -> bytes:
    body = b"%PDF-1.4\n1 0 obj <</Type/Catalog/Pages 2 0 R>> endobj\n"
    body += b"2 0 obj <</Type/Pages/Kids[]/Count 0>> endobj\n"
    return body + b"trailer <</Root 1 0 R/Size 3>>\n%%EOF\n"


def corrupt_pdf() -> bytes:
    return b"%PDF-1.7\n" + os.urandom(4000) + b"\n%%EOF\n"


def hanging_pdf(pages: int = 40, operations: int = 4_000_000) -> bytes:
    """A small file whose pages all share one content stream of four million path operations:
    seconds of work per page for any text extraction, far past a short timeout."""
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "Hello", fontname="helv")
    xref = page.get_contents()[0]
    doc.update_stream(
        xref, b"BT /helv 12 Tf 72 72 Td (Hello) Tj ET " + b"0 0 m 1 1 l n " * operations
    )
    for _ in range(pages - 1):
        other = doc.new_page()
        doc.xref_set_key(other.xref, "Contents", f"{xref} 0 R")
    return doc.tobytes(deflate=True)


def exploding_pdf(pages: int = 20, rectangles: int = 3_000_000) -> bytes:
    """Text laid out like table cells (so rulings are looked for) over three million
    stroked rectangles: reading the drawings needs gigabytes."""
    doc = pymupdf.open()
    page = doc.new_page()
    for number, (x, y) in enumerate([(72, 300), (300, 300), (72, 330), (300, 330)]):
        page.insert_text((x, y), f"cell {number}", fontname="helv")
    xref = page.get_contents()[0]
    doc.update_stream(xref, doc.xref_stream(xref) + b"\n0.5 w " + b"10 10 5 5 re S " * rectangles)
    for _ in range(pages - 1):
        doc.new_page().insert_text((72, 72), "filler", fontname="helv")
    return doc.tobytes(deflate=True)


def oversized_pdf(pages: int, padding: int) -> bytes:
    """A valid PDF carrying ``padding`` bytes of incompressible junk in an unused stream."""
    doc = pymupdf.open()
    for _ in range(pages):
        doc.new_page().insert_text((72, 72), "big", fontname="helv")
    xref = doc.get_new_xref()
    doc.update_object(xref, "<<>>")
    doc.update_stream(xref, os.urandom(padding), compress=False)
    return doc.tobytes()


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.mark.slow
def test_hostile_corpus(corpus: tuple[Path, CorpusTruth], tmp_path: Path) -> None:
    folder, truth = corpus
    src = tmp_path / "src"
    src.mkdir()
    good = truth.documents[:2]
    for doc in good:
        shutil.copy(folder / doc.file, src / doc.file)
    complete = (folder / good[0].file).read_bytes()
    expected = {
        "encrypted.pdf": "encrypted",
        "truncated.pdf": "truncated",
        "corrupt.pdf": "corrupt",
        "zero.pdf": "zero_pages",
        "picture.pdf": "not_pdf",
        "notes.txt": "not_pdf",
        "empty.pdf": "not_pdf",
        "short.pdf": "too_few_pages",
        "long.pdf": "too_many_pages",
        "huge.pdf": "too_large",
        "hang.pdf": "timeout",
        "explode.pdf": "memory",
    }
    write(src, "encrypted.pdf", encrypted_pdf())
    write(src, "truncated.pdf", complete[: len(complete) // 2])
    write(src, "corrupt.pdf", corrupt_pdf())
    write(src, "zero.pdf", zero_page_pdf())
    write(src, "picture.pdf", b"\x89PNG\r\n\x1a\n" + b"\x00" * 200)
    write(src, "notes.txt", b"just some notes\n")
    write(src, "empty.pdf", b"")
    write(src, "short.pdf", simple_pdf(2))
    write(src, "long.pdf", simple_pdf(45))
    write(src, "huge.pdf", oversized_pdf(20, 3 << 20))
    write(src, "hang.pdf", hanging_pdf())
    write(src, "explode.pdf", exploding_pdf())

    report = ingest(
        [src],
        tmp_path / "pool",
        workers=2,
        min_pages=5,
        max_pages=40,
        max_file_bytes=2 << 20,
        # The exploding file must reach the memory cap well before the deadline even on a busy
        # machine (about 2 s on an idle core).
        timeout=20,
        memory_bytes=256 << 20,
    )
    pool = Pool(tmp_path / "pool")
    assert sorted(pool.doc_ids()) == sorted(d.doc_id for d in good)
    got = {Path(r.path).name: r.reason for r in pool.rejects()}
    assert got == expected
    assert all(r.detail for r in pool.rejects())
    assert report.added == 2
    assert sum(report.rejected.values()) == len(expected)
    # Nothing of a rejected file is stored.
    stored = {p.stem for p in (tmp_path / "pool" / "pdfs").rglob("*.pdf")}
    assert stored == {d.doc_id for d in good}

    # A rerun finds nothing new to do and changes nothing.
    again = ingest(
        [src],
        tmp_path / "pool",
        workers=2,
        min_pages=5,
        max_pages=40,
        max_file_bytes=2 << 20,
        # The exploding file must reach the memory cap well before the deadline even on a busy
        # machine (about 2 s on an idle core).
        timeout=20,
        memory_bytes=256 << 20,
    )
    # A rerun judges again only the transient failures (timeout, memory: on a busy machine
    # the exploding file may now time out first) and changes nothing else.
    assert again.added == 0 and again.retried == 2
    assert sum(again.rejected.values()) == 2 and set(again.rejected) <= {"timeout", "memory"}
    assert again.already_in_pool == len(expected) - 2 + 2
    latest = {Path(r.path).name: r.reason for r in Pool(tmp_path / "pool").rejects()}
    assert latest.pop("explode.pdf") in ("memory", "timeout")
    assert latest == {name: reason for name, reason in expected.items() if name != "explode.pdf"}


def test_rejects_are_judged_again_when_the_verdict_may_change(tmp_path: Path) -> None:
    src = tmp_path / "src"
    short = write(src, "short.pdf", simple_pdf(3))
    long = write(src, "long.pdf", simple_pdf(12))
    notes = write(src, "notes.txt", b"just some notes\n")
    hang = write(src, "hang.pdf", hanging_pdf(pages=6))
    pool = tmp_path / "pool"
    first = ingest([src], pool, workers=1, min_pages=5, max_pages=10, timeout=2)
    assert first.rejected == {
        "too_few_pages": 1,
        "too_many_pages": 1,
        "not_pdf": 1,
        "timeout": 1,
    }
    rejects = {Path(r.path).name: r for r in Pool(pool).rejects()}
    assert (rejects["short.pdf"].num_pages, rejects["long.pdf"].num_pages) == (3, 12)

    # Same limits: only the timeout is retried (and times out again).
    same = ingest([short, long, notes, hang], pool, workers=1, min_pages=5, max_pages=10, timeout=2)
    assert (same.retried, same.already_in_pool, same.added) == (1, 3, 0)
    assert same.rejected == {"timeout": 1}

    # Wider limits: the short file is judged again and gets in; the long one still would not.
    wider = ingest([short, long, notes], pool, workers=1, min_pages=2, max_pages=11)
    assert (wider.retried, wider.added, wider.already_in_pool) == (1, 1, 2)
    assert {Path(r.path).name for r in Pool(pool).rejects()} == {
        "long.pdf",
        "notes.txt",
        "hang.pdf",
    }

    # --retry-rejects judges every rejected file again, whatever the verdict was.
    again = ingest([long, notes], pool, workers=1, min_pages=2, max_pages=20, retry_rejects=True)
    assert again.retried == 2
    assert again.added == 1 and again.rejected == {"not_pdf": 1}
    assert {Path(r.path).name for r in Pool(pool).rejects()} == {"notes.txt", "hang.pdf"}


def test_failures_map_to_reject_reasons() -> None:
    from docpool.ingest import _verdict
    from docpool.parse import DocumentRejected, DocumentRejectReason
    from mmprolong_runtime.executor import TaskCrashed, TaskMemoryExceeded, TaskTimeout

    assert _verdict(TaskTimeout("x"))[0] is DocumentRejectReason.TIMEOUT
    assert _verdict(TaskMemoryExceeded("x"))[0] is DocumentRejectReason.MEMORY
    assert _verdict(TaskCrashed("x"))[0] is DocumentRejectReason.CRASHED
    assert _verdict(DocumentRejected("encrypted", "pw")) == (DocumentRejectReason.ENCRYPTED, "pw")
    reason, detail = _verdict(KeyError("boom"))
    assert reason is DocumentRejectReason.PARSE_ERROR and "KeyError" in detail


def test_mupdf_allocation_failures_count_as_memory() -> None:
    from docpool.parse import allocation_failed

    assert allocation_failed(RuntimeError("code=2: realloc (183873363 bytes) failed"))
    assert allocation_failed(RuntimeError("malloc (1024 bytes) failed"))
    assert allocation_failed(RuntimeError("out of memory"))
    assert not allocation_failed(RuntimeError("code=7: syntax error in content stream"))
    assert not allocation_failed(RuntimeError("cannot find object in xref (12 0 R)"))
