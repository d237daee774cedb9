"""Validation errors are sentences that say what is wrong."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from schemas_strategies import example_qa

from mmprolong_schemas import (
    AnswerFormat,
    Document,
    EvalItem,
    MixtureSpec,
    PagePart,
    PageRange,
    QAPair,
    Recipe,
    Sample,
    SchemaError,
    ScoreCell,
    ScoreTable,
    Task,
    TextPart,
    VisionTokenSpec,
    read_jsonl,
    write_jsonl,
)
from mmprolong_schemas.base import explain, validate_record
from mmprolong_schemas.io import atomic_path
from mmprolong_schemas.qa import coerce_answer
from mmprolong_schemas.units import K

DOC = "ab" * 32


def qa(**changes: Any) -> QAPair:
    return example_qa(**changes)


def problems(**changes: Any) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        qa(**changes)
    return explain(caught.value)


def test_valid_pair_coerces_its_answer() -> None:
    assert qa().answer == 4512
    assert qa(answer="3.5", answer_format="Float").answer == 3.5
    assert qa(answer="['a', 'b']", answer_format="List").answer == ["a", "b"]
    assert qa(answer='["x", 2]', answer_format="List").answer == ["x", 2]
    assert qa(answer=None, answer_format="None").answer == "Not answerable"


def test_evidence_outside_segment_is_named() -> None:
    assert problems(evidence_pages=[41]) == ["evidence page 41 is outside segment 12-20"]


@pytest.mark.parametrize(
    ("answer", "answer_format", "message"),
    [
        ("abc", "Integer", "answer 'abc' is not an Integer"),
        ("4.5", "Integer", "answer '4.5' is not an Integer"),
        ("many", "Float", "answer 'many' is not a Float"),
        ("a, b", "List", "answer 'a, b' is not a List"),
        ([], "List", "answer is an empty List"),
        ("  ", "String", "answer '  ' is not a non-empty String"),
        ("Paris", "None", "answer 'Paris' is given for a question marked not answerable"),
        (True, "Integer", "answer True is not an Integer"),
    ],
)
def test_answer_format_messages(answer: object, answer_format: str, message: str) -> None:
    assert problems(answer=answer, answer_format=answer_format) == [message]


def test_field_errors_name_the_field_without_pydantic_jargon() -> None:
    found = problems(task="summarize", evidence_pages=[], colour="red")
    assert any(p.startswith("task: Input should be") and "'extract-single'" in p for p in found)
    assert "evidence_pages: List should have at least 1 item after validation, not 0" in found
    assert "colour: is not a known field" in found
    assert not any("https://" in p or "type=" in p for p in found)


def test_doc_id_must_be_a_sha256() -> None:
    assert problems(doc_id="doc-1") == [
        "doc_id: doc_id 'doc-1' is not a lowercase hex SHA-256 of the file bytes"
    ]


def test_repeated_evidence_page() -> None:
    assert problems(evidence_pages=[14, 14]) == ["evidence pages [14, 14] repeat a page"]


def test_coerce_answer_handles_mmlongbench_list_strings() -> None:
    assert coerce_answer("['Lyon', 'Graz']", AnswerFormat.LIST) == ["Lyon", "Graz"]
    assert coerce_answer("12 045", AnswerFormat.INTEGER) == 12045
    assert coerce_answer(7.0, AnswerFormat.INTEGER) == 7
    assert coerce_answer(12, AnswerFormat.STRING) == "12"


def page(number: int) -> dict[str, Any]:
    return {"number": number, "width": 612, "height": 792}


def test_document_page_and_section_consistency() -> None:
    base = {"doc_id": DOC, "source_path": "a.pdf", "file_size": 10}
    with pytest.raises(ValidationError, match="num_pages is 3 but 2 pages are listed"):
        Document(**base, num_pages=3, pages=[page(1), page(2)])
    with pytest.raises(ValidationError, match="page 3 is listed where page 2 belongs"):
        Document(**base, num_pages=2, pages=[page(1), page(3)])
    with pytest.raises(
        ValidationError, match="section 'Intro' ends on page 5, after the last page 2"
    ):
        Document(
            **base,
            num_pages=2,
            pages=[page(1), page(2)],
            sections=[{"title": "Intro", "level": 1, "start_page": 1, "end_page": 5}],
        )
    with pytest.raises(ValidationError, match="a text block cannot carry table rows"):
        Document(
            **base,
            num_pages=1,
            pages=[
                {
                    **page(1),
                    "blocks": [{"label": "text", "bbox": [0, 0, 1, 1], "order": 0, "rows": []}],
                }
            ],
        )


def test_document_page_lookup_is_one_based() -> None:
    doc = Document(
        doc_id=DOC, source_path="a.pdf", file_size=1, num_pages=2, pages=[page(1), page(2)]
    )
    assert doc.page(2).number == 2
    with pytest.raises(IndexError, match="has no page 3"):
        doc.page(3)


def _sample(pages: list[int], messages: list[Any], **fields: Any) -> Sample:
    return Sample(
        sample_id="s",
        task=Task.EXTRACT_SINGLE,
        doc_id=DOC,
        pages=pages,
        messages=messages,
        target="A",
        est_tokens=10,
        **fields,
    )


def test_sample_pages_must_match_messages() -> None:
    message = {"role": "user", "content": [PagePart(doc_id=DOC, page=1), TextPart(text="Q?")]}
    assert _sample([1], [message]).pages == [1]
    with pytest.raises(ValidationError, match=r"pages \[1, 2\] do not match the pages shown"):
        _sample([1, 2], [message])


def _labelled_sample(pages: int, cut_after: int | None) -> Sample:
    content: list[Any] = [TextPart(text="Read:")]
    for page in range(1, pages + 1):
        content += [TextPart(text=f"Page {page}:"), PagePart(doc_id=DOC, page=page)]
    content.append(TextPart(text="Q?"))
    system = {"role": "system", "content": [TextPart(text="sys")]}
    return _sample(
        list(range(1, pages + 1)),
        [system, {"role": "user", "content": content}],
        cut_after=cut_after,
    )


def test_a_cut_keeps_the_pages_up_to_it_and_the_question() -> None:
    sample = _labelled_sample(5, cut_after=2)
    cut = sample.cut(3, est_tokens=60)
    assert cut.pages == [1, 2, 3] and cut.est_tokens == 60 and cut.sample_id == "s:1-3"
    texts = [p.text if isinstance(p, TextPart) else p.page for p in cut.messages[1].content]
    assert texts == ["Read:", "Page 1:", 1, "Page 2:", 2, "Page 3:", 3, "Q?"]
    assert cut.messages[0] == sample.messages[0] and cut.cut_after == 2
    assert sample.cut(2, est_tokens=1).pages == [1, 2]
    for bad in (1, 5):  # before cut_after; at the last page (nothing to cut)
        with pytest.raises(ValueError, match=f"not after page {bad}"):
            sample.cut(bad, est_tokens=1)
    with pytest.raises(ValueError, match="cannot be cut"):
        _labelled_sample(5, cut_after=None).cut(3, est_tokens=1)


def test_cut_after_must_be_a_page_shown_in_order() -> None:
    with pytest.raises(ValidationError, match="cut_after page 9 is not a page shown"):
        _labelled_sample(5, cut_after=9)
    message = {
        "role": "user",
        "content": [PagePart(doc_id=DOC, page=2), PagePart(doc_id=DOC, page=1)],
    }
    with pytest.raises(ValidationError, match="increasing order in one message"):
        _sample([2, 1], [message], cut_after=1)
    twice = {"role": "user", "content": [PagePart(doc_id=DOC, page=1)] * 2}
    with pytest.raises(ValidationError, match="increasing order in one message"):
        _sample([1, 1], [twice], cut_after=1)


def test_mixture_spec_rules() -> None:
    spec = MixtureSpec()
    assert spec.token_budget == 5 * 2**30
    assert spec.doc_pages == (32, 50)
    assert spec.task_budget(Task.REASONING) == round(5 * 2**30 * 0.2)
    with pytest.raises(ValidationError, match="task ratios add up to 0.9, not 1"):
        MixtureSpec(task_ratios={"extract-single": 0.5, "reasoning": 0.4})
    with pytest.raises(ValidationError, match="needs a histogram"):
        MixtureSpec(length_distribution="custom")
    grid = MixtureSpec.extraction_reasoning(8, 2, short_share=0.4, token_budget="1M")
    assert grid.task_ratios == {
        Task.EXTRACT_SINGLE: 0.4,
        Task.EXTRACT_MULTI: 0.4,
        Task.REASONING: pytest.approx(0.2),
    }
    assert sum(grid.task_budgets().values()) == 2**20
    assert abs(grid.task_budget(Task.SHORT) - 0.4 * 2**20) < 1
    assert MixtureSpec(length_distribution="long-biased").doc_pages == (50, 100)


def test_recipe_defaults_are_the_papers_final_recipe() -> None:
    recipe = Recipe()
    assert recipe.init_model == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert recipe.rope.original_base == 1e6 and recipe.rope.base == 4e6
    assert recipe.train.max_length == 131072
    assert recipe.train.token_budget == 5 * 2**30
    assert recipe.train.global_batch_tokens == 4 * 2**20
    assert recipe.train.sequences_per_batch == 32
    assert recipe.train.steps == 1280
    assert recipe.train.optimizer.weight_decay == 0.1
    assert recipe.train.optimizer.betas == (0.9, 0.95)
    assert recipe.train.schedule.peak_lr == 1e-5 and recipe.train.schedule.final_lr == 1e-6
    assert recipe.train.schedule.warmup_fraction == 0.1
    assert (recipe.train.parallel.sp, recipe.train.parallel.fsdp) == (2, 4)
    assert recipe.train.parallel.dp_replicate == 8
    assert recipe.mixture.short_share == 0.0
    assert recipe.vision.dpi == 144 and recipe.vision.max_pixels == 12845056


def test_recipe_cross_checks() -> None:
    with pytest.raises(ValidationError, match="vision.factor 28 does not match qwen3-vl"):
        Recipe(family="qwen3-vl", vision={"factor": 28})
    with pytest.raises(ValidationError, match="vision.factor 28 does not match qwen3-vl"):
        Recipe(family="qwen3-vl", vision=VisionTokenSpec())
    assert Recipe(family="qwen3-vl", vision={"factor": 32}).vision.factor == 32
    assert Recipe(family="qwen3-vl").vision.factor == 32  # the family's, when left out
    with pytest.raises(ValidationError, match="does not divide 64 GPUs"):
        Recipe(train={"parallel": {"sp": 3}})
    with pytest.raises(ValidationError, match="is not a whole number of 131072-token sequences"):
        Recipe(train={"global_batch_tokens": 100 * K})
    with pytest.raises(ValidationError, match="mixture.max_length 262144 is longer"):
        Recipe(mixture={"max_length": "256K"})


def test_eval_item_needs_exactly_one_scoring_rule() -> None:
    context = [TextPart(text="ctx")]
    with pytest.raises(ValidationError, match="either by answer_format or by metric"):
        EvalItem(item_id="i", dataset="d", length=8192, context=context, question="q", answer="a")
    item = EvalItem(
        item_id="i",
        dataset="d",
        length=8192,
        context=context,
        question="q",
        answer="['a']",
        answer_format="List",
    )
    assert item.answer == "['a']"  # kept as released: the scorers read it as MMLongBench does


def test_score_table_macro_and_micro() -> None:
    table = ScoreTable(
        model="m",
        judge="rules",
        prompt_format="mmlb-v1.1",
        cells=[
            ScoreCell(dataset="a", length=65536, n=10, score=50.0),
            ScoreCell(dataset="b", length=65536, n=30, score=70.0),
            ScoreCell(dataset="a", length=131072, n=0, score=0.0),
        ],
    )
    assert table.macro(65536) == 60.0
    assert table.micro(65536) == 65.0
    assert table.macro(131072) is None
    assert table.lengths == [65536, 131072]
    with pytest.raises(ValidationError, match="appears twice"):
        ScoreTable(model="m", judge="r", prompt_format="p", cells=[table.cells[0], table.cells[0]])


def test_schema_version_major_mismatch_is_refused() -> None:
    with pytest.raises(
        SchemaError, match=r"schema version 2.0, this mmprolong-schemas reads 1.x: upgrade"
    ):
        validate_record(QAPair, {**qa().model_dump(), "schema_version": "2.0"}, "x.jsonl:1")
    assert (
        validate_record(QAPair, {**qa().model_dump(), "schema_version": "1.7"}, "x").schema_version
        == "1.7"
    )


def test_jsonl_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    write_jsonl(path, [qa(), qa(qa_id="q2")])
    lines = path.read_text().splitlines()
    bad = qa().model_dump(mode="json") | {"answer": "abc"}
    import json

    path.write_text("\n".join([lines[0], json.dumps(bad), "{not json", lines[1]]) + "\n")
    with pytest.raises(SchemaError, match=r"qa.jsonl:2: answer 'abc' is not an Integer"):
        list(read_jsonl(path, QAPair))
    errors: list[SchemaError] = []
    good = list(read_jsonl(path, QAPair, on_error=errors.append))
    assert [r.qa_id for r in good] == ["q1", "q2"]
    assert [e.source.rsplit(":", 1)[1] for e in errors] == ["2", "3"]
    assert "not valid JSON" in str(errors[1])


@pytest.mark.parametrize("durable", [True, False])
def test_atomic_path_replaces_only_a_finished_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool
) -> None:
    import os

    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd))
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def interrupted_write() -> None:
        with atomic_path(target, durable=durable) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        interrupted_write()
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]
    with atomic_path(target, durable=durable) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and list(tmp_path.iterdir()) == [target]
    assert len(synced) == (1 if durable else 0)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_atomic_files_follow_the_umask(tmp_path: Path, mask: int) -> None:
    import os
    import stat

    from mmprolong_schemas import write_parquet
    from mmprolong_schemas.base import Model

    class Row(Model):
        name: str

    previous = os.umask(mask)
    try:
        with atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("x")
        write_parquet(tmp_path / "b.parquet", [Row(name="a")], Row)
    finally:
        os.umask(previous)
    for name in ("a.txt", "b.parquet"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask


def test_a_taken_temporary_name_is_never_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mmprolong_schemas.io as schemas_io

    # A folder (atomic_dir's) and a file (atomic_path's) both step past a name in use.
    names = iter(["taken", "taken", "free", "taken", "also-free"])
    monkeypatch.setattr(schemas_io.secrets, "token_hex", lambda _: next(names))
    taken = tmp_path / ".out.taken.tmp"
    taken.write_text("another writer's")
    folder = schemas_io.temp_sibling(tmp_path / "out", Path.mkdir)
    assert folder.name == ".out.free.tmp" and folder.is_dir()
    with atomic_path(tmp_path / "out") as tmp:
        assert tmp.name == ".out.also-free.tmp"
        tmp.write_text("mine")
    assert (tmp_path / "out").read_text() == "mine"
    assert taken.read_text() == "another writer's"


def test_write_json_writes_one_document_atomically(tmp_path: Path) -> None:
    import json

    from mmprolong_schemas.io import write_json

    target = tmp_path / "run" / "summary.json"
    write_json(target, {"title": "长上下文", "source": tmp_path})
    text = target.read_text(encoding="utf-8")
    assert "长上下文" in text and text.endswith("}\n")
    assert json.loads(text) == {"title": "长上下文", "source": str(tmp_path)}
    assert sorted(p.name for p in target.parent.iterdir()) == ["summary.json"]


def test_torn_tail_is_tolerated_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    write_jsonl(path, [qa()])
    with open(path, "a") as handle:
        handle.write('{"qa_id": "q2", "doc')
    assert len(list(read_jsonl(path, QAPair, tolerate_torn_tail=True))) == 1
    with pytest.raises(SchemaError, match="not valid JSON"):
        list(read_jsonl(path, QAPair))


def test_read_parquet_row_reads_one_record(tmp_path: Path) -> None:
    from mmprolong_schemas import SchemaError
    from mmprolong_schemas.base import Model
    from mmprolong_schemas.io import read_parquet_row, record_to_row, write_parquet_rows

    class Item(Model):
        name: str
        tags: list[str]

    class Other(Model):
        name: str

    items = [Item(name=f"n{i}", tags=[str(i)] * i) for i in range(10)]
    path = tmp_path / "items.parquet"
    write_parquet_rows(path, [record_to_row(i, Item) for i in items], Item, row_group_size=3)
    assert [read_parquet_row(path, Item, row) for row in range(10)] == items
    with pytest.raises(IndexError, match="has no row 10"):
        read_parquet_row(path, Item, 10)
    with pytest.raises(SchemaError, match="holds Item records, not Other"):
        read_parquet_row(path, Other, 0)


def test_mmlb_prompt_format_needs_the_users_checkout() -> None:
    from mmprolong_schemas.recipe import EvalConfig

    with pytest.raises(ValidationError, match="set eval.mmlb_source"):
        EvalConfig(prompt_format="mmlb-v1.1")
    assert EvalConfig(prompt_format="mmlb-v1.1", mmlb_source="/src/MMLongBench").subset == "mmlb"


@pytest.mark.parametrize(("text", "pages"), [("12-14", [12, 13, 14]), (" 7 ", [7]), ("3-3", [3])])
def test_a_page_range_is_read_as_written(text: str, pages: list[int]) -> None:
    assert PageRange.parse(text).pages == pages


@pytest.mark.parametrize("text", ["5-2", "0-3", "a-b", "", "1-", "-4", "2-3-4"])
def test_a_page_range_that_is_none_names_its_text(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        PageRange.parse(text)
