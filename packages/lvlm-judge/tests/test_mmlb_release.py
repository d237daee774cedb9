"""MMLongBench as released: the download layout, NIAH file names, the seeded subsets its
configs score, VLMEvalKit's MMLongBench_<n>K.tsv, missing lengths, and our padding option.

Fixtures are written here in the released layout (EdinburghNLP/MMLongBench README, "Data":
mmlb_data/ beside mmlb_image/; configs/docqa_all.yaml and mm_niah_*_all.yaml for file names)
and in the TSV layout of VLMEvalKit's scripts/build_mmlongbench_tsv.py, with generated images.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lvlm_judge.context import ContextResolver
from lvlm_judge.datasets import (
    DatasetError,
    LoadReport,
    hf_shuffle_first,
    load_data,
    load_mmlb_tsv,
    seeded_ids,
)
from lvlm_judge.extend import Extender
from lvlm_judge.testing import make_doc_benchmark, make_niah_file
from mmprolong_schemas import EvalItem, ImagePart, K, NiahMetric


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


def _mmlb_tsv(tmp_path: Path, length: str) -> Path:
    """MMLongBench_<n>K.tsv rows as VLMEvalKit's scripts/build_mmlongbench_tsv.py writes them
    (make_tsv_row): question is the filled prompt, image_path and extra_info are JSON, and
    extra_info holds the record with its typed answer and the prefixed question."""
    columns = ["index", "question_id", "question", "answer", "image_path", "mmlb_subset",
               "task", "source_dataset", "question_type", "tags", "extra_info"]  # fmt: skip
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
    rows = [
        ["0", "longdocurl_7", "<filled prompt with <image token> places>", "12",
         json.dumps(pages), "documentQA_256_sr50", "documentQA", "longdocurl", "open",
         json.dumps(["multi"]), json.dumps(extra)],
        ["1", "3", "<niah prompt>", "42", json.dumps([]), "NIAH_256_sr25", "NIAH",
         "retrieval-text", "open", json.dumps(["multi"]), json.dumps({"answer": "42"})],
        ["2", "longdocurl_8", "q", "x", json.dumps(pages), "documentQA_256_sr50", "documentQA",
         "longdocurl", "open", "[]", "{not json"],
    ]  # fmt: skip
    path = tmp_path / f"MMLongBench_{length}.tsv"
    path.write_text("".join("\t".join(row) + "\n" for row in [columns, *rows]))
    return path


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
    assert report.not_loaded == {"MMLongBench_256K.tsv:NIAH": 1}
    assert (
        len(report.skipped) == 1
        and "MMLongBench_256K.tsv:4: column extra_info" in (report.skipped[0])
    )


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
