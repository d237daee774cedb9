"""The stages on disk over an in-memory pool: outputs, summaries, reruns."""

from __future__ import annotations

import io
import json

from PIL import Image

from mmprolong_schemas import QAPair, Sample, Segment, read_jsonl, read_parquet
from qasynth.assemble import AssembleConfig
from qasynth.pipeline import (
    PAIRS_FILE,
    SEGMENTS_FILE,
    assemble_samples,
    generate_pairs,
    segment_pool,
)
from qasynth.prompts import PROMPT_VERSION
from qasynth.run_stats import run_statistics
from qasynth.short import short_source
from qasynth.teachers.rules import RulesTeacher


class MemoryPool:
    def __init__(self, docs, renderer):
        self.docs = {d.doc_id: d for d in docs}
        self.renderer = renderer

    def documents(self):
        return iter(self.docs.values())

    def get(self, doc_id):
        return self.docs[doc_id]

    def render(self, doc_id, pages, dpi=144):
        return self.renderer.render(doc_id, pages, dpi)


def _as_before_the_completion_record(summary) -> None:
    """Rewrite a stage summary in its old form: "key" and facts, no "outputs" list."""
    data = json.loads(summary.read_text())
    data.pop("outputs")
    summary.write_text(json.dumps(data))


def test_stages_write_their_layout_and_reuse_it(doc_factory, renderer, tmp_path) -> None:
    docs = [doc_factory(f"p{i}", num_pages=36 + i) for i in range(3)]
    docs.append(doc_factory("too-short", num_pages=20, section_pages=None))
    pool = MemoryPool(docs, renderer)
    run = tmp_path / "run"
    summary = segment_pool(pool, run, per_doc=2)
    assert summary["documents_chosen"] == 3 and summary["skipped"] == {"pages-out-of-range": 1}
    assert summary["segments"] == 6
    assert segment_pool(pool, run, per_doc=2)["reused"] is True
    _as_before_the_completion_record(run / "segments.json")
    assert segment_pool(pool, run, per_doc=2)["reused"] is True
    assert len(list(read_jsonl(run / SEGMENTS_FILE, Segment))) == 6

    stats = generate_pairs(pool, run, RulesTeacher(pool.get))
    assert stats["accepted_total"] == 18 and stats["requests_sent"] == 18
    assert stats["prompt_version"] == PROMPT_VERSION
    assert all(p.prompt_version == PROMPT_VERSION for p in read_jsonl(run / PAIRS_FILE, QAPair))

    image = io.BytesIO()
    Image.new("RGB", (40, 40)).save(image, format="PNG")
    (tmp_path / "a.png").write_bytes(image.getvalue())
    short = tmp_path / "short.json"
    short.write_text(
        json.dumps(
            [
                {
                    "id": 1,
                    "image": "a.png",
                    "conversations": [
                        {"from": "human", "value": "<image>What?"},
                        {"from": "gpt", "value": "Black."},
                    ],
                }
            ]
        )
    )
    result = assemble_samples(
        pool, run, AssembleConfig(page_labels=True), ocr=True, short_inputs=[short]
    )
    assert result["samples"] == {"vqa": 18, "ocr": 6, "short": 1}
    assert result["short_image_roots"] == {short_source(short): str(tmp_path)}
    vqa = list(read_parquet(run / "samples" / "vqa.parquet", Sample))
    assert all(s.messages[0].content[0].type == "text" for s in vqa)
    again = assemble_samples(
        pool, run, AssembleConfig(page_labels=True), ocr=True, short_inputs=[short]
    )
    assert again["reused"] is True
    _as_before_the_completion_record(run / "samples" / "summary.json")
    again = assemble_samples(
        pool, run, AssembleConfig(page_labels=True), ocr=True, short_inputs=[short]
    )
    assert again["reused"] is True
    found = run_statistics(run)
    assert set(found) == {"segments", "QA generation", "QA pairs", "samples"}
    assert found["QA pairs"]["pairs"] == 18


def test_assembly_through_an_executor_writes_the_same_samples(
    doc_factory, renderer, tmp_path
) -> None:
    from mmprolong_runtime.executor import LocalExecutor
    from qasynth.teachers.actors import complete_slice

    pool = MemoryPool([doc_factory(f"e{i}", num_pages=36 + i) for i in range(3)], renderer)
    inline, executed = tmp_path / "inline", tmp_path / "executed"
    segment_pool(pool, inline, per_doc=2)
    segments = list(read_jsonl(inline / SEGMENTS_FILE, Segment))
    (executed / SEGMENTS_FILE).parent.mkdir(parents=True)
    (executed / SEGMENTS_FILE).write_bytes((inline / SEGMENTS_FILE).read_bytes())
    for run in (inline, executed):
        generate_pairs(pool, run, RulesTeacher(pool.get))
    assemble_samples(pool, inline, ocr=True)
    assemble_samples(pool, executed, ocr=True, executor=LocalExecutor(2, timeout=60))
    for name in ("vqa.parquet", "ocr.parquet"):
        expected = list(read_parquet(inline / "samples" / name, Sample))
        assert expected and expected == list(read_parquet(executed / "samples" / name, Sample))

    # The actor-side step answers every request in order, as the teacher would.
    from mmprolong_schemas import Task
    from qasynth.prompts import build_prompt
    from qasynth.teachers.base import TeacherRequest

    requests = [
        TeacherRequest(f"k{i}", build_prompt(segment, Task.EXTRACT_SINGLE, 0), 0)
        for i, segment in enumerate(segments)
    ]
    replies = complete_slice(RulesTeacher(pool.get), requests)
    assert len(replies) == len(requests) and all(reply.ok for reply in replies)
