"""Held-out items over a real docpool pool: load, count tokens, render a page."""

from __future__ import annotations

from pathlib import Path

import pytest

from lvlm_judge.context import ContextResolver, open_pool
from lvlm_judge.datasets import load_data
from lvlm_judge.prompting import build_prompt
from mmprolong_schemas import AnswerFormat, PageRange, QAPair, Task, page_tokens, write_jsonl
from mmprolong_schemas.vision_tokens import pixels_at_dpi

pytestmark = pytest.mark.slow


def test_heldout_items_from_a_docpool_pool(tmp_path: Path) -> None:
    docpool = pytest.importorskip("docpool")
    testing = pytest.importorskip("docpool.testing")
    testing.make_corpus(tmp_path / "corpus", n_docs=2, pages=(6, 7), langs=("en",))
    docpool.ingest([tmp_path / "corpus"], tmp_path / "pool", min_pages=5)
    pool = open_pool(tmp_path / "pool")
    doc_id = pool.doc_ids()[0]  # type: ignore[attr-defined]  # beyond PoolLike
    document = pool.get(doc_id)
    qa = QAPair(
        qa_id="qa-0", doc_id=doc_id, segment=PageRange(first=1, last=3),
        task=Task.EXTRACT_SINGLE, question="What is the title?", answer="A title",
        answer_format=AnswerFormat.STRING, evidence_pages=[1], evidence_sources=["Text"],
        teacher="rules", prompt_version="t",
    )  # fmt: skip
    write_jsonl(tmp_path / "heldout.jsonl", [qa])
    (item,) = load_data([tmp_path / "heldout.jsonl"], pool=pool)
    assert len(item.context) == document.num_pages
    assert item.est_tokens == sum(page_tokens(p.width, p.height) for p in document.pages)
    prompt = build_prompt(item, "lvlm-judge-v1-page-index")
    assert f"Document {doc_id[:15]} (page 2): <image>" in prompt.text()
    image = ContextResolver(pool=pool).load(prompt.images[0])
    page = document.page(1)
    assert image.size == (pixels_at_dpi(page.width, 144), pixels_at_dpi(page.height, 144))
