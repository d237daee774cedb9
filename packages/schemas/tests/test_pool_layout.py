"""The docpool pool layout read by ``mmprolong_schemas.io``: the fixture is laid out as
docpool's ``PoolWriter`` writes a pool (packages/docpool/src/docpool/pool.py: a pool.json
marker, then ``<table>/part-<run>-<n>.parquet`` shards)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mmprolong_schemas import Document, Page, write_parquet
from mmprolong_schemas.io import is_pool, pool_shards, read_pool_documents


def _document(index: int, pages: int) -> Document:
    return Document(
        doc_id=hashlib.sha256(f"doc-{index}".encode()).hexdigest(),
        source_path=f"doc-{index}.pdf",
        file_size=1000,
        num_pages=pages,
        pages=[Page(number=n, width=612.0, height=792.0) for n in range(1, pages + 1)],
    )


def test_a_pool_is_read_shard_by_shard_each_document_once(tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    first, second, third = _document(0, 3), _document(1, 2), _document(2, 5)
    write_parquet(pool / "documents/part-20260101-0.parquet", [first, second], Document)
    # A later run that wrote an already-pooled document again: the first copy is the one read.
    again = first.model_copy(update={"source_path": "copy.pdf"})
    write_parquet(pool / "documents/part-20260102-0.parquet", [again, third], Document)
    (pool / "documents/.part-20260103-0.parquet.tmp").write_bytes(b"half-written")
    assert not is_pool(pool)  # no marker yet
    with pytest.raises(FileNotFoundError, match=r"pool is not a docpool pool \(no pool.json\)"):
        list(read_pool_documents(pool))
    (pool / "pool.json").write_text('{"format": "docpool", "version": 1}\n')
    assert is_pool(pool)
    assert [p.name for p in pool_shards(pool)] == [
        "part-20260101-0.parquet",
        "part-20260102-0.parquet",
    ]
    assert pool_shards(pool, "aliases") == []
    documents = list(read_pool_documents(pool))
    assert [d.doc_id for d in documents] == [first.doc_id, second.doc_id, third.doc_id]
    assert documents[0].source_path == "doc-0.pdf"
