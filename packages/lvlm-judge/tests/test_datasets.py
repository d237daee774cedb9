"""Loaders for MMLongBench documents, MM-NIAH, VLMEvalKit TSV and held-out QA pairs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from lvlm_judge.datasets import (
    DatasetError,
    LoadReport,
    length_bucket,
    length_from_name,
    load_doc_file,
    load_heldout,
    load_mmlb_folder,
    load_niah_file,
    load_vlmevalkit_tsv,
)
from lvlm_judge.testing import InMemoryPool, make_doc_benchmark, make_document
from mmprolong_schemas import (
    AnswerFormat,
    ImagePart,
    NiahMetric,
    PagePart,
    PageRange,
    QAPair,
    Task,
    TextPart,
    write_jsonl,
)


def test_doc_benchmark_loads_every_format(tmp_path: Path) -> None:
    data = make_doc_benchmark(tmp_path, lengths=(8, 16))
    items = load_mmlb_folder(data, lengths=[8 * 1024, 16 * 1024], subset="all")
    assert len(items) == 3 * 2 * 2 * 5
    first = items[0]
    assert first.item_id == "mmlongdoc:8K:mmlongdoc_0"
    assert first.length == 8192
    assert first.context == [
        ImagePart(path=f"mmlongdoc/mmlongdoc-doc0/mmlongdoc-doc0_page{p}.jpg") for p in (0, 1, 2)
    ]
    # Answers as released (MMLongBench's scorer reads "18.29%" and the JSON list itself).
    by_format = {item.answer_format: item.answer for item in items[:5]}
    assert by_format == {
        AnswerFormat.STRING: "apple",
        AnswerFormat.INTEGER: "12",
        AnswerFormat.FLOAT: "18.29%",
        AnswerFormat.LIST: '["red", "blue"]',
        AnswerFormat.NONE: "Not answerable",
    }
    assert first.evidence_pages == [1]  # ans_page_list [0] is 0-based (README tip 6)


def test_missing_page_image_is_reported_with_file_and_line_and_skipped(tmp_path: Path) -> None:
    data = make_doc_benchmark(tmp_path, datasets=("slidevqa",))
    (tmp_path / "mmlb_image" / "slidevqa" / "slidevqa-doc1" / "slidevqa-doc1-2-1024.jpg").unlink()
    report = LoadReport()
    items = load_doc_file(data / "documentQA" / "slidevqa_K8.jsonl", tmp_path / "mmlb_image",
                          report=report)  # fmt: skip
    assert len(items) == 5  # the five records of doc1 are skipped, doc0's load
    assert len(report.skipped) == 5
    assert re.match(r".*slidevqa_K8.jsonl:6: .*slidevqa-doc1-2-1024.jpg", report.skipped[0])


def test_bad_record_names_file_and_line_and_never_aborts(tmp_path: Path) -> None:
    data = make_doc_benchmark(tmp_path, datasets=("mmlongdoc",), docs=1)
    path = data / "documentQA" / "mmlongdoc_K8.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = '{"id": 1}'
    lines[2] = "not json"
    bad_float = json.loads(lines[3])
    bad_float.update(answer="about half", answer_format="Float")
    lines[3] = json.dumps(bad_float)
    path.write_text("\n".join(lines) + "\n")
    report = LoadReport()
    items = load_doc_file(path, tmp_path / "mmlb_image", report=report)
    assert [item.item_id for item in items] == [
        "mmlongdoc:8K:mmlongdoc_0",
        "mmlongdoc:8K:mmlongdoc_4",
    ]
    assert [problem.split(": ")[0].rsplit("/", 1)[-1] for problem in report.skipped] == [
        "mmlongdoc_K8.jsonl:3", "mmlongdoc_K8.jsonl:2", "mmlongdoc_K8.jsonl:4",
    ]  # fmt: skip
    assert "not valid JSON" in report.skipped[0]
    assert "field 'answer_format' is missing" in report.skipped[1]
    assert "'about half' (Float)" in report.skipped[2]


def test_length_from_name() -> None:
    assert length_from_name(Path("x/longdocurl_K128.jsonl")) == 131072
    assert length_from_name(Path("NIAH/retrieval-text_test_K8_dep6.jsonl")) == 8192
    assert length_from_name(Path("NIAH/counting-image_test_K64_dep3.jsonl")) == 65536
    with pytest.raises(DatasetError, match="_K<length>"):
        length_from_name(Path("x/longdocurl.jsonl"))
    assert length_bucket(9000) == 16384
    assert length_bucket(10**9) == 131072


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (56, 56), "white").save(path)


def _niah(tmp_path: Path, name: str, record: dict[str, object]) -> Path:
    for key in ("image_list", "needle_image_list", "choices_image"):
        for image in record.get(key, []):  # type: ignore[attr-defined]
            _image(tmp_path / image)
    path = tmp_path / name
    path.write_text(json.dumps(record) + "\n")
    return path


def test_niah_text_retrieval(tmp_path: Path) -> None:
    path = _niah(tmp_path, "retrieval-text_K8.jsonl", {
        "id": 0, "ctxs": [{"text": "Para one <image> more."}, {"text": "The key is 42."}],
        "image_list": ["h/0.png"], "needle_image_list": [], "choices_image": [],
        "depth": 0.5, "question": "What is the key?", "answer": "42",
    })  # fmt: skip
    (item,) = load_niah_file(path, tmp_path)
    assert item.dataset == "mm-niah-retrieval-text"
    assert item.metric is NiahMetric.SUB_EM
    assert item.context == [
        TextPart(text="Para one "), ImagePart(path="h/0.png"),
        TextPart(text=" more.\n\nThe key is 42."),
    ]  # fmt: skip


def test_niah_image_choices_and_counting(tmp_path: Path) -> None:
    path = _niah(tmp_path, "retrieval-image_K8.jsonl", {
        "id": 1, "ctxs": [{"text": "Text <image>"}], "image_list": ["h/1.png"],
        "needle_image_list": [], "choices_image": ["c/a.png", "c/b.png"], "depth": 0.2,
        "question": "Which image was in the text?", "answer": 1,
    })  # fmt: skip
    (item,) = load_niah_file(path, tmp_path)
    assert item.metric is NiahMetric.MC_ACC
    assert item.choices == ["c/a.png", "c/b.png"]
    assert item.question.endswith("\nA. <image>\nB. <image>")
    assert item.context[-2:] == [ImagePart(path="c/a.png"), ImagePart(path="c/b.png")]

    path = _niah(tmp_path, "counting-image_K16.jsonl", {
        "id": 2, "ctxs": ["Text <image>"], "image_list": ["h/2.png"],
        "needle_image_list": ["n/x.png"], "choices_image": [], "depth": [0.1, 0.5],
        "question": "How many times does <image> appear?", "answer": "[1, 0]",
    })  # fmt: skip
    (item,) = load_niah_file(path, tmp_path)
    assert item.metric is NiahMetric.SOFT_ACC
    assert item.answer == [1, 0]
    assert item.length == 16384
    assert item.context[-1] == ImagePart(path="n/x.png")


def test_niah_placeholder_mismatch_is_an_error(tmp_path: Path) -> None:
    path = _niah(tmp_path, "reasoning-text_K8.jsonl", {
        "id": 3, "ctxs": [{"text": "no images here"}], "image_list": ["h/3.png"],
        "needle_image_list": [], "choices_image": [], "question": "q", "answer": "a",
    })  # fmt: skip
    report = LoadReport()
    assert load_niah_file(path, tmp_path, report=report) == []
    assert (
        "reasoning-text_K8.jsonl:1: the text has 0 <image> places but 1 images"
        in (report.skipped[0])
    )


def test_vlmevalkit_tsv(tmp_path: Path) -> None:
    _image(tmp_path / "doc_1.png")
    _image(tmp_path / "doc_2.png")
    columns = ["index", "image", "image_path", "question", "answer", "answer_format",
               "doc_id", "evidence_pages", "evidence_sources", "doc_type"]  # fmt: skip
    rows = [
        ["0", "JVBERi0=", "['doc_1.png', 'doc_2.png']", "How many?", "3", "Int", "doc.pdf",
         "[2]", "['Table']", "Report"],
        ["1", "JVBERi0=", "['doc_1.png']", "Which?", "['a', 'b']", "List", "doc.pdf", "[1]",
         "['Chart']", "Report"],
        ["2", "JVBERi0=", "['doc_1.png']", "Who?", "Not answerable", "None", "doc.pdf", "[]",
         "[]", "Report"],
    ]  # fmt: skip
    path = tmp_path / "MMLongBench_DOC.tsv"
    path.write_text("".join("\t".join(row) + "\n" for row in [columns, *rows]))
    items = load_vlmevalkit_tsv(path, tmp_path)
    assert [item.answer for item in items] == ["3", ["a", "b"], "Not answerable"]
    assert items[0].context == [ImagePart(path="doc_1.png"), ImagePart(path="doc_2.png")]
    assert items[0].evidence_pages == [2]


def test_vlmevalkit_doc_tsv_reports_a_malformed_row_and_goes_on(tmp_path: Path) -> None:
    # MMLongBench_DOC.tsv's columns as VLMEvalKit's vlmeval/dataset/mmlongbenchdoc.py reads them
    _image(tmp_path / "doc_1.png")
    columns = ["index", "image", "image_path", "question", "answer", "answer_format",
               "doc_id", "evidence_pages", "evidence_sources", "doc_type"]  # fmt: skip
    good = ["0", "JVBERi0=", "['doc_1.png']", "How many?", "3", "Int", "doc.pdf", "[1]", "[]",
            "Report"]  # fmt: skip
    rows = [
        good,
        ["1", "JVBERi0=", "['doc_2.png']", *good[3:]],  # its page image is missing
        ["2", "JVBERi0=", "['doc_1.png']", "Who?", "x", "Text", *good[6:]],  # unknown format
        ["3", "JVBERi0=", "['doc_1.png']", "Short row"],  # fewer fields than the header
        ["4", "JVBERi0=", "['doc_1.png'", *good[3:]],  # image_path cut off
        ["5", *good[1:]],
    ]
    path = tmp_path / "MMLongBench_DOC.tsv"
    path.write_text("".join("\t".join(row) + "\n" for row in [columns, *rows]))
    report = LoadReport()
    items = load_vlmevalkit_tsv(path, tmp_path, report=report)
    assert [item.item_id for item in items] == ["mmlongdoc:vlmevalkit:0", "mmlongdoc:vlmevalkit:5"]
    assert [problem.split(": ", 1)[0] for problem in report.skipped] == [
        f"{path}:{line}" for line in (3, 4, 5, 6)
    ]
    assert "doc_2.png" in report.skipped[0] and "'Text'" in report.skipped[1]
    assert "header's 10 fields" in report.skipped[2] and "image_path" in report.skipped[3]


def test_heldout_pairs_over_a_pool(tmp_path: Path) -> None:
    document = make_document("held-out", 10)
    pool = InMemoryPool([document])
    qa = QAPair(
        qa_id="qa-1", doc_id=document.doc_id, segment=PageRange(first=2, last=5),
        task=Task.EXTRACT_SINGLE, question="What is on page 3?", answer="42",
        answer_format=AnswerFormat.INTEGER, evidence_pages=[3], evidence_sources=["Text"],
        teacher="rules", prompt_version="t1",
    )  # fmt: skip
    write_jsonl(tmp_path / "qa.jsonl", [qa])
    (item,) = load_heldout(tmp_path / "qa.jsonl", pool)
    assert item.context == [PagePart(doc_id=document.doc_id, page=n) for n in range(1, 11)]
    assert item.est_tokens == 10 * 2510  # letter pages at 144 DPI: 2508 + 2 wrapper tokens
    assert item.length == 32768
    assert item.answer == 42

    other = InMemoryPool([make_document("another", 3)])
    with pytest.raises(DatasetError, match="is not in the pool"):
        load_heldout(tmp_path / "qa.jsonl", other)


def test_vlmevalkit_pages_rendered_from_the_tsv_pdf(tmp_path: Path) -> None:
    pymupdf = pytest.importorskip("pymupdf")
    import base64

    document = pymupdf.open()
    for number in (1, 2, 3):
        page = document.new_page(width=200, height=300)
        page.insert_text((20, 40), f"page {number}")
    pdf = base64.b64encode(document.tobytes()).decode()
    columns = ["index", "image", "image_path", "question", "answer", "answer_format"]
    rows = [
        ["0", pdf, "['d_1.png', 'd_2.png', 'd_3.png']", "How many?", "3", "Int"],
        ["1", "bm90IGEgcGRm", "['x_1.png']", "Which?", "a", "Str"],
    ]
    path = tmp_path / "split.tsv"
    path.write_text("".join("\t".join(row) + "\n" for row in [columns, rows[0]]))
    root = tmp_path / "images"
    from lvlm_judge.datasets import render_tsv_pages

    assert render_tsv_pages(path, root) == 3
    assert Image.open(root / "d_2.png").size == (400, 600)  # 144 DPI
    assert render_tsv_pages(path, root) == 0  # already there
    (item,) = load_vlmevalkit_tsv(path, root, max_pages=2)
    assert item.context == [ImagePart(path="d_1.png"), ImagePart(path="d_2.png")]

    path.write_text("".join("\t".join(row) + "\n" for row in [columns, rows[1]]))
    with pytest.raises(DatasetError, match=r"split.tsv:2: the image column holds no readable PDF"):
        render_tsv_pages(path, root)
    rows[1][2] = "['../escape.png']"
    path.write_text("".join("\t".join(row) + "\n" for row in [columns, rows[1]]))
    with pytest.raises(DatasetError, match="leaves the image root"):
        render_tsv_pages(path, root)


def test_render_tsv_command(tmp_path: Path) -> None:
    pymupdf = pytest.importorskip("pymupdf")
    import base64

    from typer.testing import CliRunner

    from lvlm_judge.cli import app

    document = pymupdf.open()
    document.new_page(width=100, height=100)
    pdf = base64.b64encode(document.tobytes()).decode()
    path = tmp_path / "split.tsv"
    path.write_text(f"index\timage\timage_path\n0\t{pdf}\t['p_1.png']\n")
    result = CliRunner().invoke(app, ["render-tsv", str(path), "--image-root", str(tmp_path / "i")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "i" / "p_1.png").is_file()
