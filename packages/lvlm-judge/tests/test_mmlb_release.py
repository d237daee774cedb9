"""MMLongBench as released: the download layout, NIAH file names, the seeded subsets its
configs score, VLMEvalKit's MMLongBench_<n>K.tsv, missing lengths, and our padding option.

Fixtures are written here in the released layout (EdinburghNLP/MMLongBench README, "Data":
mmlb_data/ beside mmlb_image/; configs/docqa_all.yaml and mm_niah_*_all.yaml for file names)
and in the TSV layout of VLMEvalKit's scripts/build_mmlongbench_tsv.py, with generated images.
"""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lvlm_judge.context import ContextResolver
from lvlm_judge.datasets import (
    TSV_NOT_SCORED,
    DatasetError,
    LoadReport,
    hf_shuffle_first,
    load_data,
    load_mmlb_tsv,
    seeded_ids,
)
from lvlm_judge.extend import Extender
from lvlm_judge.testing import make_doc_benchmark, make_niah_file
from mmprolong_schemas import EvalItem, ImagePart, NiahMetric
from mmprolong_schemas.units import K


def test_folder_as_downloaded_finds_documents_niah_and_sibling_images(tmp_path: Path) -> None:
    data = make_doc_benchmark(tmp_path, datasets=("mmlongdoc", "slidevqa"), docs=1)
    make_niah_file(tmp_path, "retrieval", "text", depth=6)
    make_niah_file(tmp_path, "counting", "image", depth=3)
    make_niah_file(tmp_path, "retrieval", "image", depth=6)
    names = ["mmlongdoc", "slidevqa", "mm-niah-retrieval-text", "mm-niah-counting-image",
             "mm-niah-retrieval-image"]  # fmt: skip
    report = LoadReport()
    # No --image-root: mmlb_image/ beside mmlb_data/ is used; the parent folder works too.
    for given in (data, tmp_path):
        items = load_data([given], lengths=[8 * K], datasets=names, report=report)
        assert len(items) == 2 * 5 + 3 * 3
    assert report.skipped == []
    # "all" names every set; a set the folder lacks is an error naming what is there.
    with pytest.raises(
        DatasetError, match=r"no longdocurl file for 8K .*no longdocurl file at any"
    ):
        load_data([data], lengths=[8 * K], datasets=["all"])
    by_set = {item.dataset: item for item in items}
    assert by_set["mm-niah-retrieval-text"].metric is NiahMetric.SUB_EM
    assert by_set["mm-niah-counting-image"].metric is NiahMetric.SOFT_ACC
    mc = by_set["mm-niah-retrieval-image"]
    assert mc.metric is NiahMetric.MC_ACC
    assert mc.question.endswith("\nA. <image>\nB. <image>")
    resolver = ContextResolver(tmp_path / "mmlb_image")
    for item in items:  # every image resolves under the sibling image folder
        for part in item.context:
            if isinstance(part, ImagePart):
                resolver.check(part)


def test_missing_length_is_an_error_naming_the_lengths_there_are(tmp_path: Path) -> None:
    data = make_doc_benchmark(tmp_path, datasets=("mmlongdoc",), lengths=(8, 128), docs=1)
    with pytest.raises(
        DatasetError, match=r"no mmlongdoc file for 64K .*has mmlongdoc at 8K, 128K"
    ):
        load_data([data], lengths=[64 * K], datasets=["mmlongdoc"])
    # 256K is beyond the JSONL release: without a TSV it is an error, never silently dropped.
    with pytest.raises(DatasetError, match=r"no item at 256K: the data given has 128K"):
        load_data([data], lengths=[128 * K, 256 * K], datasets=["mmlongdoc"])


def _doc_rows(data: Path, count: int) -> list[str]:
    path = data / "documentQA" / "mmlongdoc_K8.jsonl"
    first = json.loads(path.read_text().splitlines()[0])
    rows = [json.dumps({**first, "id": f"mmlongdoc_{n}"}) for n in range(count)]
    path.write_text("\n".join(rows) + "\n")
    return [f"mmlongdoc:8K:mmlongdoc_{n}" for n in range(count)]


def test_doc_qa_subset_is_hf_shuffle_seed_42_first_100(tmp_path: Path) -> None:
    data = make_doc_benchmark(tmp_path, datasets=("mmlongdoc",), docs=1, pages=1)
    ids = _doc_rows(data, 130)
    # Hugging Face datasets, src/datasets/arrow_dataset.py, Dataset.shuffle: with a seed it
    # draws generator = np.random.default_rng(seed) and selects generator.permutation(len(self));
    # MMLongBench's load_doc_qa then keeps .select(range(100)) (data.py, max_test_samples).
    expected = [ids[i] for i in np.random.default_rng(42).permutation(130)[:100]]
    assert hf_shuffle_first(130) == [
        int(i) for i in np.random.default_rng(42).permutation(130)[:100]
    ]
    assert hf_shuffle_first(130)[:4] == [33, 2, 105, 78]  # numpy's PCG64 stream, pinned
    report = LoadReport()
    items = load_data([data], lengths=[8 * K], datasets=["mmlongdoc"], report=report)
    assert [item.item_id for item in items] == expected
    assert "seed 42" in report.item_set
    everything = load_data([data], lengths=[8 * K], datasets=["mmlongdoc"], subset="all")
    assert [item.item_id for item in everything] == ids
    assert hf_shuffle_first(7) == [int(i) for i in np.random.default_rng(42).permutation(7)]


def test_doc_qa_subset_is_what_hugging_face_datasets_picks(tmp_path: Path) -> None:
    """Against the real package: MMLongBench's data.py (load_doc_qa_with_llm_judge, the v1.1
    document-QA loader) reads a file with load_dataset("json", data_files=path)["train"] and,
    as configs/docqa_all.yaml sets max_test_samples 100, keeps
    data.shuffle(seed=args.seed).select(range(min(len(data), 100))), seed 42 (arguments.py)."""
    import datasets

    data = make_doc_benchmark(tmp_path, datasets=("mmlongdoc",), docs=1, pages=1)
    ids = _doc_rows(data, 317)
    path = data / "documentQA" / "mmlongdoc_K8.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    in_memory = datasets.Dataset.from_list(rows).shuffle(seed=42).select(range(100))
    from_file = datasets.load_dataset("json", data_files=str(path), cache_dir=str(tmp_path))
    picked = from_file["train"].shuffle(seed=42).select(range(min(len(rows), 100)))
    assert picked["id"] == in_memory["id"]
    items = load_data([data], lengths=[8 * K], datasets=["mmlongdoc"], report=LoadReport())
    assert [item.item_id for item in items] == [f"mmlongdoc:8K:{i}" for i in picked["id"]]
    assert len(set(ids) - {item.item_id for item in items}) == 217
    few = datasets.Dataset.from_list(rows[:37]).shuffle(seed=42)  # fewer rows than 100
    assert hf_shuffle_first(37) == [int(row["id"].split("_")[1]) for row in few]


def test_niah_subset_is_50_ids_sampled_after_seeding_42_in_file_order(tmp_path: Path) -> None:
    path = make_niah_file(tmp_path, "reasoning", "text", depth=3, records=1)
    record = json.loads(path.read_text())
    order = list(range(70))
    random.Random(5).shuffle(order)  # ids out of order in the file
    path.write_text("".join(json.dumps({**record, "id": n}) + "\n" for n in order))
    # MMLongBench data.py, load_mm_niah_text: after set_seed(42) (eval.py, run_test),
    # key_list = random.sample(sorted(set(ids)), min(50, n)); data.filter keeps file order.
    state = random.getstate()
    random.seed(42)
    key_list = set(random.sample(sorted(set(order)), min(50, len(order))))
    random.setstate(state)
    assert seeded_ids(order) == key_list
    items = load_data([path], lengths=[8 * K], report=LoadReport())
    assert [int(item.item_id.rsplit(":", 1)[1]) for item in items] == [
        n for n in order if n in key_list
    ]


def _tsv_image(root: Path, name: str) -> None:
    target = root / name
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (56, 56), "white").save(target)


TSV_COLUMNS = ["index", "question_id", "question", "answer", "image_path", "mmlb_subset", "task",
               "source_dataset", "question_type", "tags", "extra_info"]  # fmt: skip
"""VLMEvalKit's MMLongBench_<n>K.tsv columns (scripts/build_mmlongbench_tsv.py, make_tsv_row)."""


def _write_tsv(path: Path, rows: list[dict[str, object]]) -> Path:
    """As the build script writes it: pandas to_csv(sep="\t", index=False), which quotes a
    field holding a newline or a quote (csv's QUOTE_MINIMAL)."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(TSV_COLUMNS)
        for index, row in enumerate(rows):
            writer.writerow([index if c == "index" else row.get(c, "") for c in TSV_COLUMNS])
    return path


def _tsv_row(task: str, source: str, question_id: str, prompt: str, answer: object,
             images: list[str], extra: dict[str, object]) -> dict[str, object]:  # fmt: skip
    return {
        "question_id": question_id, "question": prompt, "answer": str(answer),
        "image_path": json.dumps(images), "mmlb_subset": f"{task}_256_sr50", "task": task,
        "source_dataset": source, "question_type": "open", "tags": json.dumps(["multi"]),
        "extra_info": json.dumps(extra),
    }  # fmt: skip


def _niah_tsv_row(record: dict[str, object], source: str) -> dict[str, object]:
    """A TSV row made from an MM-NIAH record as build_mmlongbench_tsv.py's convert_niah makes
    it: the prompt is <instruction>\n\n<haystack>\n\nQuestion: <question>, with <image token>
    where the record has <image>; image_path is the haystack images, then the needle images
    (counting) or option images (multiple choice, whose letters end the question); extra_info
    is the record less id and ctxs, with that question. Our instruction text stands in for
    VLMEvalKit's (one paragraph, one newline inside, as its are)."""
    sample = dict(record)
    question_id = str(sample.pop("id"))
    ctxs = sample.pop("ctxs")
    haystack = "\n\n".join(
        "<image token>" if c["text"] == "<image>" else c["text"]  # type: ignore[index]
        for c in ctxs  # type: ignore[attr-defined]
    )
    images = list(sample.pop("image_list"))  # type: ignore[call-overload]
    question = str(sample["question"])
    if source == "counting-image":
        images += sample["needle_image_list"]  # type: ignore[operator]
        question = question.replace("<image>", "<image token>")
    elif source.endswith("-image"):
        choices = sample["choices_image"]
        question += "".join(f"\n{chr(65 + i)}. <image token>" for i in range(len(choices)))  # type: ignore[arg-type]
        images += choices  # type: ignore[operator]
    sample["question"] = question
    sample["dataset_name"] = source
    prompt = f"Read what follows.\nEnd with the answer.\n\n{haystack}\n\nQuestion: {question}"
    return _tsv_row("NIAH", source, question_id, prompt, sample["answer"], images, sample)


def _mmlb_tsv(tmp_path: Path, length: str) -> Path:
    """A document-QA row, a malformed one, and rows of the categories we do not score."""
    images = tmp_path / "images" / "mmlb_image"
    pages = ["doc-a/doc-a_page0.jpg", "doc-b/doc-b_page3.jpg"]
    for page in pages:
        _tsv_image(images / length, page)
    extra = {
        "doc_name": "doc-a", "question": "Based on Document doc-a, answer the following "
        "question. How many rows?", "answer": 12, "answer_format": "Integer",
        "ans_page_list": [0], "answer_sources": ["Table"], "length": 262144,
        "dataset_name": "longdocurl",
    }  # fmt: skip
    prompt = "<filled prompt>\n\nDocument doc-a: <image token>\n\nQuestion: ..."
    rows = [
        _tsv_row("documentQA", "longdocurl", "longdocurl_7", prompt, 12, pages, extra),
        _tsv_row("NIAH", "vh_single", "5", "<vh prompt>", 1, pages, {"answer": 1}),
        _tsv_row("ICL", "cars196", "9", "<icl prompt>", 3, pages, {"answer": 3}),
        _tsv_row("summ", "gov", "2", "<summ prompt>", "a summary", pages, {}),
        _tsv_row("vrag", "infoseek", "4", "<vrag prompt>", "['x']", pages[:1], {}),
        {**_tsv_row("documentQA", "longdocurl", "longdocurl_8", "q", "x", pages, {}),
         "extra_info": "{not json"},
    ]  # fmt: skip
    return _write_tsv(tmp_path / f"MMLongBench_{length}.tsv", rows)


def test_vlmevalkit_mmlongbench_tsv_gives_the_official_256k_items(tmp_path: Path) -> None:
    path = _mmlb_tsv(tmp_path, "256K")
    report = LoadReport()
    (item,) = load_mmlb_tsv(path, report=report)  # images/mmlb_image beside the TSV
    assert item.item_id == "longdocurl:256K:longdocurl_7"
    assert item.length == 256 * K
    assert item.dataset == "longdocurl"
    assert item.question == "How many rows?"  # the stored prefix is the prompt's, not the data's
    assert item.answer == 12  # extra_info keeps the typed answer
    assert item.evidence_pages == [1]
    assert item.context == [
        ImagePart(path="256K/doc-a/doc-a_page0.jpg"),
        ImagePart(path="256K/doc-b/doc-b_page3.jpg"),
    ]  # under <root>/<length>/ first, as VLMEvalKit's _resolve_image_path looks
    # vlmeval/dataset/mmlongbench.py, _metric_for: vh_* -> binary_acc, ICL -> cls_acc,
    # summ -> rouge, vrag -> sub_em on its own prompt; none of them is scored here, each counted
    assert report.not_scored == {
        f"MMLongBench_256K.tsv: NIAH vh_single ({TSV_NOT_SCORED['vh']})": 1,
        f"MMLongBench_256K.tsv: ICL cars196 ({TSV_NOT_SCORED['ICL']})": 1,
        f"MMLongBench_256K.tsv: summ gov ({TSV_NOT_SCORED['summ']})": 1,
        f"MMLongBench_256K.tsv: vrag infoseek ({TSV_NOT_SCORED['vrag']})": 1,
    }
    assert "4 rows not scored" in report.item_set
    assert (
        len(report.skipped) == 1
        and "MMLongBench_256K.tsv:11: column extra_info" in (report.skipped[0])
    )  # the line its row starts on: the first row's quoted prompt spans lines 2-6


def test_tsv_niah_rows_give_the_items_of_the_records_they_were_built_from(
    tmp_path: Path,
) -> None:
    sources = {"retrieval-text": 6, "counting-text": 3, "counting-image": 3,
               "reasoning-image": 6}  # fmt: skip
    from_folder: list[EvalItem] = []
    rows = []
    for source, depth in sources.items():
        task, modality = source.split("-")
        niah = make_niah_file(tmp_path, task, modality, length=32, depth=depth, records=2)
        from_folder += load_data([niah], subset="all")
        rows += [_niah_tsv_row(json.loads(line), source) for line in niah.read_text().splitlines()]
    broken = {**rows[0], "question": rows[0]["question"] + " (edited)"}  # type: ignore[operator]
    path = _write_tsv(tmp_path / "MMLongBench_32K.tsv", [*rows, broken])
    report = LoadReport()
    from_tsv = load_mmlb_tsv(path, datasets=["niah"], report=report)  # mmlb_image beside it
    assert from_tsv == from_folder
    # the metric of each category is VLMEvalKit's (mmlongbench.py, _metric_for) and
    # MMLongBench's (data.py): counting soft_acc, image retrieval/reasoning mc_acc, else sub_em
    assert {item.dataset: item.metric for item in from_tsv} == {
        "mm-niah-retrieval-text": NiahMetric.SUB_EM,
        "mm-niah-counting-text": NiahMetric.SOFT_ACC,
        "mm-niah-counting-image": NiahMetric.SOFT_ACC,
        "mm-niah-reasoning-image": NiahMetric.MC_ACC,
    }
    (problem,) = report.skipped  # named by the line its (multi-line, quoted) row starts on
    line = int(re.search(r"MMLongBench_32K.tsv:(\d+): the prompt is not", problem).group(1))  # type: ignore[union-attr]
    assert path.read_text().splitlines()[line - 1].startswith(f"{len(rows)}\t")
    only_docs = LoadReport()
    assert load_mmlb_tsv(path, datasets=["documents"], report=only_docs) == []
    assert only_docs.not_scored == {
        f"MMLongBench_32K.tsv: {name} (not asked for (--datasets))": 3 if name == "mm-niah-"
        "retrieval-text" else 2 for name in {item.dataset for item in from_folder}
    }  # fmt: skip


def test_folder_and_tsvs_together_cover_128k_to_512k(tmp_path: Path) -> None:
    data = make_doc_benchmark(tmp_path, datasets=("longdocurl",), lengths=(128,), docs=1)
    tsv_256 = _mmlb_tsv(tmp_path / "tsv", "256K")
    tsv_512 = _mmlb_tsv(tmp_path / "tsv", "512K")
    root = tmp_path / "tsv" / "images" / "mmlb_image"
    items = load_data(
        [tsv_256, tsv_512], image_root=root, lengths=[256 * K, 512 * K], report=LoadReport()
    )
    assert sorted({item.length for item in items}) == [256 * K, 512 * K]
    with pytest.raises(DatasetError, match=r"no item at 512K: the data given has 128K, 256K"):
        load_data([data, tsv_256], lengths=[128 * K, 256 * K, 512 * K], datasets=["longdocurl"])


def test_padding_never_puts_a_page_in_twice(tmp_path: Path) -> None:
    """Donor documents that share page images with the item (or each other) give each image
    once: the gold page of the item is not repeated as padding."""
    data = make_doc_benchmark(tmp_path, datasets=("mmlongdoc",), docs=3, pages=2)
    items = load_data([data], lengths=[8 * K], datasets=["mmlongdoc"], subset="all")
    shared = items[0].context[0]
    donors = {
        "other": [shared, ImagePart(path=items[5].context[1].path)],  # type: ignore[union-attr]
        "third": [ImagePart(path=items[10].context[0].path), shared, items[10].context[1]],  # type: ignore[union-attr]
    }
    resolver = ContextResolver(tmp_path / "mmlb_image")
    extender = Extender(resolver, lambda text: len(text.split()))
    item: EvalItem = items[0]
    target = extender.item_tokens(item) + 2 * extender.page_cost(shared, 0) + 1
    padded = extender.extend(item, target, donors)
    paths = [part.path for part in padded.context if isinstance(part, ImagePart)]
    assert len(paths) == len(set(paths)) == 4
    assert paths.count(shared.path) == 1  # type: ignore[union-attr]
