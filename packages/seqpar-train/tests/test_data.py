"""Packing, and rows built from a mixture over a real (generated) docpool pool."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmprolong_schemas import (
    Message,
    PagePart,
    Sample,
    Task,
    TextPart,
    VisionTokenSpec,
    write_parquet,
)
from seqpar_train.batch import IGNORE_INDEX
from seqpar_train.data.packing import pack_ffd, packing_stats


def _naive_ffd(lengths, capacity):
    rows, free = [], []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        for r, space in enumerate(free):
            if space >= lengths[i]:
                rows[r].append(i)
                free[r] -= lengths[i]
                break
        else:
            rows.append([i])
            free.append(capacity - lengths[i])
    return rows


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 100), max_size=60), st.integers(100, 250))
def test_ffd_is_first_fit_decreasing_and_valid(lengths, capacity):
    rows = pack_ffd(lengths, capacity)
    assert rows == _naive_ffd(lengths, capacity)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= capacity for row in rows)


def test_ffd_rejects_items_longer_than_a_row():
    with pytest.raises(ValueError, match="longer than the row"):
        pack_ffd([5, 11], 10)


def test_packing_beats_one_sample_per_row():
    lengths = [70, 60, 40, 30, 20, 20, 10]
    rows = pack_ffd(lengths, 100)
    assert packing_stats(lengths, rows, 100).utilization == 250 / 300
    assert packing_stats(lengths, [[i] for i in range(7)], 100).utilization == 250 / 700


@pytest.fixture(scope="module")
def pool_and_samples(tmp_path_factory):
    from docpool import Pool, ingest, make_corpus

    root = tmp_path_factory.mktemp("mixture")
    make_corpus(root / "corpus", n_docs=2, pages=(5, 6), langs=("en",))
    ingest([root / "corpus"], root / "pool", min_pages=1, workers=1)
    pool = Pool(root / "pool")
    doc_ids = pool.doc_ids()
    samples = []
    for n, doc_id in enumerate([*doc_ids, "f" * 64]):
        pages = [1, 2] if n != 1 else [3]
        content = [PagePart(doc_id=doc_id, page=p) for p in pages]
        samples.append(
            Sample(
                sample_id=f"s{n}",
                task=Task.EXTRACT_SINGLE,
                doc_id=doc_id,
                pages=pages,
                messages=[
                    Message(role="user", content=[*content, TextPart(text=f"Question {n}?")])
                ],
                target=f"Answer {n}",
                est_tokens=100,
            )
        )
    mixture = root / "mixture"
    write_parquet(mixture / "samples-00000.parquet", samples, Sample)
    return root, pool, samples


def _rows(root, samples, max_length=4096):
    from longctx_rope import tiny_config, tiny_processor
    from seqpar_train.data.encode import SampleEncoder
    from seqpar_train.data.mixture import MixtureRows, read_mixture

    spec = VisionTokenSpec(dpi=36, factor=28, min_pixels=3136, max_pixels=80_000)
    processor = tiny_processor("qwen2.5-vl", spec.min_pixels, spec.max_pixels)
    encoder = SampleEncoder(processor, spec, root / "pool")
    config = tiny_config("qwen2.5-vl")
    return MixtureRows(
        read_mixture(root / "mixture"), encoder, config, max_length=max_length, window=8, seed=0
    ), encoder


@pytest.mark.slow
def test_rows_from_a_mixture_render_pages_and_skip_broken_samples(pool_and_samples):
    root, pool, samples = pool_and_samples
    rows, encoder = _rows(root, samples)
    # Planned lengths are exact: they equal the encoded lengths, rendering nothing.
    for sample in samples[:2]:
        assert encoder.length(sample) == encoder.encode(sample).input_ids.numel()
    row, reasons = rows.row(0)
    assert any("not in the pool" in r for r in reasons)  # the unknown document: skipped, counted
    assert sorted(row.sample_ids) == ["s0", "s1"]
    assert row.image_grid_thw.shape[0] == 3
    merge = 4
    assert int((row.input_ids == 268).sum()) == int(row.image_grid_thw.prod(-1).sum()) // merge
    # Answer-only labels: each document's labels are its target and end of turn.
    labelled = row.labels[row.labels != IGNORE_INDEX]
    text = encoder.processor.tokenizer.decode(labelled)
    assert "Answer 0" in text and "Answer 1" in text and "Question" not in text
    assert row.position_ids.shape == (4, row.num_tokens)
    assert row.position_ids[0, row.doc_lens[0]] == 0  # text positions restart per document


@pytest.mark.slow
def test_a_broken_pdf_skips_its_sample_and_keeps_the_rest(pool_and_samples, tmp_path):
    import shutil

    root, pool, samples = pool_and_samples
    broken_root = tmp_path / "copy"
    shutil.copytree(root, broken_root)
    from docpool import Pool

    pdf = Pool(broken_root / "pool").pdf_path(samples[0].doc_id)
    pdf.write_bytes(b"%PDF-1.7 this is not a pdf any more")
    rows, _ = _rows(broken_root, samples)
    row, reasons = rows.row(0)
    assert row.sample_ids == ["s1"]
    assert any("cannot be rendered" in r for r in reasons)
    assert torch.isfinite(row.position_ids.float()).all()


def test_rows_longer_than_max_length_are_skipped(pool_and_samples):
    root, _, samples = pool_and_samples
    rows, encoder = _rows(root, samples, max_length=40)
    plan, reasons = rows.plan(0)
    assert plan == [] and sum("more than a row" in r for r in reasons) == 2


@pytest.mark.slow
def test_training_on_a_mixture_renders_in_workers_and_counts_skips(pool_and_samples, tmp_path):
    from seqpar_train.config import load_config
    from seqpar_train.metrics import read_metrics
    from seqpar_train.trainer import train

    root, _, _ = pool_and_samples
    config = load_config(
        None,
        [
            f"output_dir={tmp_path / 'run'}",
            "model.tiny=qwen2.5-vl",
            "max_length=2048",
            "global_batch_tokens=2048",
            "max_steps=2",
            "parallel.param_dtype=float32",
            f"data.mixture={root / 'mixture'}",
            f"data.pool={root / 'pool'}",
            'data.vision={"dpi": 36, "factor": 28, "min_pixels": 3136, "max_pixels": 80000}',
            "data.num_workers=1",
            "data.pack_window=3",
        ],
    )
    result = train(config)
    assert result.steps_done == 2 and result.skipped_samples >= 1
    records = read_metrics(result.metrics_path)
    assert all(r["label_tokens"] > 0 and r["loss"] > 0 for r in records)
    assert records[-1]["skipped_samples"] == result.skipped_samples
