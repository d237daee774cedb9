"""Reading a pool: lookup, iteration, rendering, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pymupdf
import pytest

from docpool import IngestReport, NotAPool, Pool, ingest, render_pages
from docpool.testing import CorpusTruth


def test_lookup_and_iteration(ingested: tuple[Pool, IngestReport]) -> None:
    pool, _ = ingested
    ids = pool.doc_ids()
    assert len(pool) == len(ids) == 8
    assert [d.doc_id for d in pool.documents()] != [] and sorted(
        d.doc_id for d in pool.documents()
    ) == ids
    assert ids[0] in pool and "0" * 64 not in pool
    with pytest.raises(KeyError, match="not in the pool"):
        pool.get("0" * 64)
    with pytest.raises(KeyError):
        pool.pdf_path("0" * 64)


def test_render_matches_pymupdf(ingested: tuple[Pool, IngestReport]) -> None:
    pool, _ = ingested
    doc = pool.get(pool.doc_ids()[0])
    images = pool.render(doc.doc_id, [2, 1], dpi=144)
    pixmap = pymupdf.open(pool.pdf_path(doc.doc_id))[1].get_pixmap(dpi=144)
    assert images[0].size == (pixmap.width, pixmap.height)
    assert images[0].tobytes() == pixmap.samples
    assert images[1].mode == "RGB"
    with pytest.raises(IndexError, match="no page"):
        render_pages(pool.pdf_path(doc.doc_id), [doc.num_pages + 1])


def test_not_a_pool(tmp_path: Path) -> None:
    with pytest.raises(NotAPool):
        Pool(tmp_path)


def test_ingest_refuses_a_foreign_folder(corpus: tuple[Path, CorpusTruth], tmp_path: Path) -> None:
    from docpool import ingest

    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(NotAPool, match="not empty"):
        ingest([corpus[0]], tmp_path)


def test_long_documents_are_parsed_in_chunks(
    corpus: tuple[Path, CorpusTruth], tmp_path: Path
) -> None:
    """Chunked parsing (with a sampled style profile) gives the same pages as one piece."""
    from docpool import ingest

    folder, truth = corpus
    doc = truth.documents[0]
    whole = tmp_path / "whole"
    chunked = tmp_path / "chunked"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / doc.file).write_bytes((folder / doc.file).read_bytes())
    ingest([tmp_path / "in"], whole, min_pages=5)
    ingest([tmp_path / "in"], chunked, min_pages=5, chunk_pages=7, workers=2)
    a, b = Pool(whole).get(doc.doc_id), Pool(chunked).get(doc.doc_id)
    assert a.pages == b.pages
    assert a.sections == b.sections


def test_pool_files_follow_the_umask(corpus: tuple[Path, CorpusTruth], tmp_path: Path) -> None:
    import os
    import stat

    folder, truth = corpus
    bogus = tmp_path / "bogus.pdf"
    bogus.write_bytes(b"not a pdf")
    previous = os.umask(0o027)
    try:
        ingest([folder / truth.documents[0].file, bogus], tmp_path / "p", workers=1)
    finally:
        os.umask(previous)
    files = [p for p in (tmp_path / "p").rglob("*") if p.is_file() and p.name != "ingest.lock"]
    kinds = {p.relative_to(tmp_path / "p").parts[0] for p in files}
    assert {"pool.json", "pdfs", "documents", "hashes", "rejects", "runs"} <= kinds
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o640}


def test_get_reads_one_document_not_its_shard(
    ingested: tuple[Pool, IngestReport], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    import docpool.pool as pool_module

    pool, _ = ingested
    expected = {doc.doc_id: doc for doc in pool.documents()}
    shards = {shard for shard, _ in Pool(pool.root)._index.values()}
    assert len(shards) == 1 and pq.ParquetFile(next(iter(shards))).metadata.num_row_groups > 1

    def whole_shard(*args: object) -> None:
        raise AssertionError("get read a whole shard")

    rows_read: list[int] = []
    original = pq.ParquetFile.read_row_group

    def counted(self: pq.ParquetFile, index: int, *args: object, **kwargs: object) -> object:
        table = original(self, index, *args, **kwargs)
        rows_read.append(table.num_rows)
        return table

    # pool.py reads whole shards of records only through read_pool_documents (documents()).
    monkeypatch.setattr(pool_module, "read_pool_documents", whole_shard)
    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counted)
    fresh = Pool(pool.root)
    for doc_id in reversed(fresh.doc_ids()):
        assert fresh.get(doc_id) == expected[doc_id]
    assert len(rows_read) == len(expected)
    assert max(rows_read) <= pool_module.DOCUMENT_ROW_GROUP
