from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from transformers import PreTrainedModel, ProcessorMixin

from longctx_rope.tiny import build_tiny_model, save_tiny_checkpoint
from mmprolong_schemas import (
    Document,
    Message,
    Page,
    PagePart,
    Sample,
    Task,
    TextPart,
    write_parquet,
)

FAMILIES = ("qwen2.5-vl", "qwen3-vl")


@pytest.fixture(scope="session", params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


_MODELS: dict[str, tuple[PreTrainedModel, ProcessorMixin]] = {}


@pytest.fixture
def tiny(family: str) -> tuple[PreTrainedModel, ProcessorMixin]:
    """One tiny model per family for the whole session (tests must not mutate it)."""
    if family not in _MODELS:
        _MODELS[family] = build_tiny_model(family, seed=0)
    return _MODELS[family]


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny saved checkpoints, one per family, shared read-only by the session."""
    root = tmp_path_factory.mktemp("checkpoints")
    return {name: save_tiny_checkpoint(name, root / name) for name in FAMILIES}


PAGE_SIZES = {"letter": (612.0, 792.0), "a4": (595.0, 842.0), "slide": (720.0, 405.0)}


def make_document(index: int, pages: int, size: str) -> Document:
    width, height = PAGE_SIZES[size]
    return Document(
        doc_id=hashlib.sha256(f"doc-{index}".encode()).hexdigest(),
        source_path=f"doc-{index}.pdf",
        file_size=1000,
        num_pages=pages,
        pages=[Page(number=n, width=width, height=height) for n in range(1, pages + 1)],
    )


def make_sample(doc: Document, pages: list[int], question: str, target: str = "42") -> Sample:
    content = [PagePart(doc_id=doc.doc_id, page=p) for p in pages]
    return Sample(
        sample_id=f"{doc.doc_id[:8]}-{len(pages)}",
        task=Task.EXTRACT_SINGLE,
        doc_id=doc.doc_id,
        pages=pages,
        messages=[Message(role="user", content=[*content, TextPart(text=question)])],
        target=target,
        est_tokens=1,
    )


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A docpool pool (the layout docpool's pool.py writes: a pool.json marker and
    documents/part-<run>-<n>.parquet shards) and a samples shard over it."""
    root = tmp_path_factory.mktemp("corpus")
    docs = [
        make_document(0, 50, "letter"),
        make_document(1, 12, "a4"),
        make_document(2, 30, "slide"),
    ]
    write_parquet(root / "pool/documents/part-0-0.parquet", docs, Document)
    (root / "pool/pool.json").write_text('{"format": "docpool", "version": 1}\n')
    samples = [
        make_sample(docs[0], list(range(1, 51)), "Which table lists the totals?"),
        make_sample(docs[1], [1, 2, 3], "x" * 40_000),
        make_sample(docs[2], list(range(1, 31)), "Quelle diapositive ?"),
    ]
    write_parquet(root / "samples/part-0.parquet", samples, Sample)
    return root / "pool", root / "samples"
