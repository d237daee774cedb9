"""Packing, and rows built from a mixture over a real (generated) docpool pool."""

import json

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
from seqpar_train.data.packing import (
    min_rows_bound,
    pack_cut,
    pack_ffd,
    packing_stats,
    placed_tokens,
)


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


def _fewest_rows(lengths, capacity):
    """Exact optimum by exhaustive search (tiny inputs only)."""
    best = len(lengths)

    def place(index, free):
        nonlocal best
        if len(free) >= best:
            return
        if index == len(lengths):
            best = len(free)
            return
        for row, space in enumerate(free):
            if space >= lengths[index]:
                free[row] -= lengths[index]
                place(index + 1, free)
                free[row] += lengths[index]
        place(index + 1, [*free, capacity - lengths[index]])

    place(0, [])
    return best


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 20), max_size=9), st.integers(20, 40))
def test_min_rows_bound_never_exceeds_the_optimum(lengths, capacity):
    bound = min_rows_bound(lengths, capacity)
    assert bound <= _fewest_rows(sorted(lengths, reverse=True), capacity)
    assert bound >= -(-sum(lengths) // capacity)
    assert bound >= sum(n > capacity / 2 for n in lengths)


def test_min_rows_bound_sees_what_counting_misses():
    # Every pair of 60s overflows a 100-token row and each 45 fits only next to a 45:
    # total/capacity says 3 rows and 3 samples exceed half a row, the optimum is 4.
    lengths = [60, 60, 60, 45, 45]
    assert min_rows_bound(lengths, 100) == 4 == _fewest_rows(lengths, 100)
    assert len(pack_ffd(lengths, 100)) == 4


def test_ffd_rejects_items_longer_than_a_row():
    with pytest.raises(ValueError, match="longer than the row"):
        pack_ffd([5, 11], 10)


def test_packing_beats_one_sample_per_row():
    lengths = [70, 60, 40, 30, 20, 20, 10]
    rows = pack_ffd(lengths, 100)
    assert packing_stats(lengths, rows, 100).utilization == 250 / 300
    assert packing_stats(lengths, [[i] for i in range(7)], 100).utilization == 250 / 700


@st.composite
def _cuttable(draw):
    lengths = draw(st.lists(st.integers(2, 100), max_size=40))
    cuts = [
        sorted(draw(st.sets(st.integers(1, n - 1), max_size=6))) if draw(st.booleans()) else []
        for n in lengths
    ]
    return lengths, cuts


@settings(max_examples=150, deadline=None)
@given(_cuttable(), st.integers(100, 180), st.sampled_from([0.01, 0.5, 0.8, 1.0]))
def test_cut_packing_places_every_sample_once_within_its_allowed_cuts(data, capacity, keep):
    lengths, cuts = data
    rows = pack_cut(lengths, cuts, capacity, min_keep=keep)
    assert sorted(i for row in rows for i, _ in row) == list(range(len(lengths)))
    for row in rows:
        assert sum(placed_tokens(lengths, cuts, p) for p in row) <= capacity
        assert sum(c is not None for _, c in row) <= 2  # the first sample and one partner
        for index, cut in row:
            if cut is not None:
                assert cuts[index][cut] >= keep * lengths[index]
    assert rows == pack_cut(lengths, cuts, capacity, min_keep=keep)  # deterministic
    # Without cut points it is first-fit-decreasing: filling one row at a time with the
    # largest sample that fits places every sample where FFD does.
    whole = pack_cut(lengths, [[] for _ in lengths], capacity)
    assert whole == [[(i, None) for i in row] for row in pack_ffd(lengths, capacity)]


def test_cutting_fills_rows_that_whole_samples_cannot_share():
    # Four 70-token samples: whole, one per row (70%). Each may be cut after every
    # 5 tokens from 35 on; pairs of cuts fill rows.
    lengths = [70, 70, 70, 70]
    cuts = [list(range(35, 70, 5))] * 4
    rows = pack_cut(lengths, cuts, 100)
    assert len(pack_ffd(lengths, 100)) == 4 and len(rows) == 2
    for row in rows:
        kept = [placed_tokens(lengths, cuts, p) for p in row]
        assert sum(kept) == 100 and kept == [50, 50]  # each keeps the same share of itself
    # min_keep forbids cuts below it: 0.8 of 70 is 56, two of them overflow a row.
    assert len(pack_cut(lengths, cuts, 100, min_keep=0.8)) == 4
    # A sample without cut points can still share a row with a cut partner.
    rows = pack_cut([70, 40], [[], list(range(5, 40, 5))], 100)
    assert rows == [[(0, None), (1, 5)]]  # 70 whole and the 40 cut to 30 (its index 5)
    with pytest.raises(ValueError, match="must increase"):
        pack_cut([10], [[12]], 100)


def _sample(sample_id, doc_id, pages, content, **fields):
    """A one-turn sample over ``pages`` of ``doc_id``, answered "Answer <n>" (n: the id's
    last character)."""
    return Sample(
        sample_id=sample_id,
        task=Task.EXTRACT_SINGLE,
        doc_id=doc_id,
        pages=pages,
        messages=[Message(role="user", content=content)],
        target=f"Answer {sample_id[-1]}",
        est_tokens=100,
        **fields,
    )


@pytest.fixture(scope="module")
def pool_and_samples(tmp_path_factory):
    from docpool import Pool, ingest
    from docpool.testing import make_corpus

    root = tmp_path_factory.mktemp("mixture")
    make_corpus(root / "corpus", n_docs=2, pages=(5, 6), langs=("en",))
    ingest([root / "corpus"], root / "pool", min_pages=1, workers=1)
    pool = Pool(root / "pool")
    doc_ids = pool.doc_ids()
    samples = []
    for n, doc_id in enumerate([*doc_ids, "f" * 64]):
        pages = [1, 2] if n != 1 else [3]
        content = [PagePart(doc_id=doc_id, page=p) for p in pages]
        samples.append(_sample(f"s{n}", doc_id, pages, [*content, TextPart(text=f"Question {n}?")]))
    mixture = root / "mixture"
    write_parquet(mixture / "samples-00000.parquet", samples, Sample)
    return root, pool, samples


def _rows(root, samples, max_length=4096):
    from longctx_rope.tiny import tiny_config, tiny_processor
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


def test_window_plans_are_deterministic_and_cover_every_sample(pool_and_samples):
    root, _, samples = pool_and_samples
    _, encoder = _rows(root, samples)
    longest = max(encoder.length(s) for s in samples[:2])
    first, _ = _rows(root, samples, max_length=longest)  # one sample per row
    again, _ = _rows(root, samples, max_length=longest)
    plans = [first.plan(i)[0] for i in range(2)]
    assert plans == [again.plan(i)[0] for i in range(2)]  # a resumed run replans alike
    assert sorted(m.sample for plan in plans for m in plan) == [0, 1]
    assert all(m.cut_page is None for plan in plans for m in plan)  # fill="whole" cuts nothing


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


def test_planned_tokens_and_grids_equal_the_processor_and_shares_render_only_theirs(
    pool_and_samples,
):
    root, _, samples = pool_and_samples
    _, encoder = _rows(root, samples)
    for sample in samples[:2]:
        full = encoder.encode(sample)
        plan = encoder.plan(sample)
        assert torch.equal(plan.input_ids, full.input_ids)
        assert torch.equal(plan.labels, full.labels)
        assert torch.equal(plan.image_grid_thw, full.image_grid_thw)
        images = plan.image_grid_thw.shape[0]
        assert torch.equal(encoder.pixels(sample, [True] * images, plan), full.pixel_values)
        if images > 1:
            # The second image alone: exactly its rows of the whole sample's pixel_values.
            first = int(plan.image_grid_thw[0].prod())
            alone = encoder.pixels(sample, [False, True], plan)
            assert torch.equal(alone, full.pixel_values[first:])
        assert encoder.pixels(sample, [False] * images, plan) is None


@pytest.mark.slow
@pytest.mark.distributed
def test_sp_ranks_render_only_their_images_and_train_as_one_process(pool_and_samples, tmp_path):
    import shutil

    from docpool import Pool
    from seqpar_train.distributed import spawn_local
    from seqpar_train.selfcheck import compare, source_rows
    from seqpar_train.vision import image_owners

    root, _, samples = pool_and_samples
    broken_root = tmp_path / "broken"
    shutil.copytree(root, broken_root)
    Pool(broken_root / "pool").pdf_path(samples[1].doc_id).write_bytes(b"%PDF-1.7 broken")
    sources = [_rows(root, samples)[0], _rows(broken_root, samples)[0]]

    single, single_broken = source_rows(sources, 0, "qwen2.5-vl")  # whole rows, as before
    ranks = spawn_local(source_rows, 2, sources, 0, "qwen2.5-vl")

    # Each rank rendered exactly the pages of the images it encodes: together, the row once.
    owners = image_owners(single.image_grid_thw, 2)
    assert set(owners) == {0, 1}
    assert [good.pages_rendered for good, _ in ranks] == [owners.count(0), owners.count(1)]
    assert single.pages_rendered == len(owners)
    # Same loss and every gradient as the whole row in one process.
    got = {"loss": torch.tensor([ranks[0][0].loss]), **ranks[0][0].grads}
    want = {"loss": torch.tensor([single.loss]), **single.grads}
    comparison = compare("SP=2 rendering its share vs single", got, want, 1e-5)
    assert comparison.passed, comparison.line()
    assert ranks[0][0].loss == ranks[1][0].loss

    # samples[1]'s only page is rendered by one rank: only that rank sees the broken PDF,
    # and the group agrees to ignore that document's labels.
    broken = [r[1] for r in ranks]
    doc = broken[0].sample_ids.index("s1")
    assert sorted(r.local_failed_docs for r in broken) == [[], [doc]]
    assert sorted(sum("cannot be rendered" in m for m in r.reasons) for r in broken) == [0, 1]
    assert all(r.failed_docs == [doc] for r in broken)
    # The one-process path drops s1; the SP path keeps it unlabelled: the same labels remain.
    assert broken[0].label_tokens == broken[1].label_tokens == single_broken.label_tokens > 0
    assert broken[0].loss == pytest.approx(single_broken.loss, rel=1e-5)


@pytest.mark.slow
@pytest.mark.distributed
def test_training_on_a_mixture_with_sp2_follows_the_single_process_run(pool_and_samples, tmp_path):
    from seqpar_train.config import load_config
    from seqpar_train.metrics import read_metrics
    from seqpar_train.trainer import launch_local, train

    root, _, _ = pool_and_samples

    def config(name, sp):
        return load_config(
            None,
            [
                f"output_dir={tmp_path / name}",
                "model.tiny=qwen2.5-vl",
                "max_length=2048",
                "global_batch_tokens=2048",
                "max_steps=1",
                "parallel.param_dtype=float32",
                f"parallel.sp={sp}",
                f"parallel.nproc_per_node={sp}",
                "parallel.attention=sdpa",
                f"data.mixture={root / 'mixture'}",
                f"data.pool={root / 'pool'}",
                'data.vision={"dpi": 36, "factor": 28, "min_pixels": 3136, "max_pixels": 80000}',
                "data.num_workers=0",
                "optimizer.eps=1e-5",
            ],
        )

    single = train(config("single", 1))
    ranks = launch_local(config("sp2", 2), nproc=2)
    assert ranks[0].losses == pytest.approx(single.losses, rel=1e-5)
    # The unknown document: both SP ranks see the skip, it is counted once.
    assert ranks[0].skipped_samples == single.skipped_samples == 1
    norms = [r["grad_norm"] for r in read_metrics(ranks[0].metrics_path)]
    assert norms == pytest.approx(
        [r["grad_norm"] for r in read_metrics(single.metrics_path)], rel=1e-5
    )


def test_short_samples_read_their_images_under_the_image_root(tmp_path):
    from PIL import Image

    from longctx_rope.tiny import tiny_processor
    from mmprolong_schemas import ImagePart
    from seqpar_train.data.encode import SampleEncoder, SampleError

    spec = VisionTokenSpec(dpi=36, factor=28, min_pixels=3136, max_pixels=80_000)
    processor = tiny_processor("qwen2.5-vl", spec.min_pixels, spec.max_pixels)
    (tmp_path / "images").mkdir()
    picture = Image.new("RGB", (120, 90), (200, 40, 40))
    picture.save(tmp_path / "images" / "red.png")
    picture.save(tmp_path / "outside.png")

    def short(path):
        return Sample(
            sample_id=path,
            task=Task.SHORT,
            messages=[
                Message(role="user", content=[ImagePart(path=path), TextPart(text="Colour?")])
            ],
            target="Red",
            est_tokens=60,
        )

    encoder = SampleEncoder(processor, spec, tmp_path / "no-pool", tmp_path / "images")
    encoded = encoder.encode(short("red.png"))
    expected = processor.image_processor(images=[picture], return_tensors="pt")
    assert torch.equal(encoded.image_grid_thw, expected["image_grid_thw"])
    assert torch.allclose(encoded.pixel_values, expected["pixel_values"])
    assert encoder.length(short("red.png")) == encoded.input_ids.numel()
    with pytest.raises(SampleError, match="leaves the image root"):
        encoder.encode(short("../outside.png"))
    with pytest.raises(SampleError, match="needs data.image_root"):
        SampleEncoder(processor, spec, tmp_path / "no-pool").encode(short("red.png"))


def test_the_image_root_setting_reaches_the_sample_encoder(pool_and_samples, tmp_path):
    from longctx_rope.tiny import tiny_config
    from seqpar_train.config import load_config
    from seqpar_train.data.mixture import MixtureRows

    root, _, _ = pool_and_samples
    path = tmp_path / "run.toml"
    path.write_text(
        "[model]\ntiny = 'qwen2.5-vl'\n"
        f"[data]\nmixture = '{root / 'mixture'}'\npool = '{root / 'pool'}'\n"
        f"image_root = '{tmp_path}'\n",
        encoding="utf-8",
    )
    config = load_config(path)
    rows = MixtureRows.from_config(config, tiny_config("qwen2.5-vl"))
    assert rows.encoder.image_root == tmp_path


def _whole_document_samples(pool, labels):
    """A sample per pooled document showing every page (optionally labelled), which may be
    cut after page 2."""
    samples = []
    for n, doc_id in enumerate(pool.doc_ids()):
        pages = list(range(1, len(pool.get(doc_id).pages) + 1))
        content = []
        for page in pages:
            if labels:
                content.append(TextPart(text=f"Page {page}:"))
            content.append(PagePart(doc_id=doc_id, page=page))
        content.append(TextPart(text=f"What does Page 2 say, {n}?"))
        samples.append(_sample(f"long{n}", doc_id, pages, content, cut_after=2))
    return samples


@pytest.mark.parametrize("labels", [False, True])
@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl"])
def test_cut_lengths_are_the_exact_lengths_of_the_cut_samples(pool_and_samples, family, labels):
    from longctx_rope.tiny import tiny_processor
    from seqpar_train.data.encode import SampleEncoder

    root, pool, _ = pool_and_samples
    factor = 28 if family == "qwen2.5-vl" else 32
    spec = VisionTokenSpec(dpi=36, factor=factor, min_pixels=3136, max_pixels=80_000)
    encoder = SampleEncoder(tiny_processor(family, 3136, 80_000), spec, root / "pool")
    for sample in _whole_document_samples(pool, labels):
        whole, cuts = encoder.length_and_cuts(sample)
        assert whole == encoder.length(sample)
        assert [page for page, _ in cuts] == list(range(2, len(sample.pages)))
        assert all(
            a[1] < b[1] < encoder.length(sample) for a, b in zip(cuts, cuts[1:], strict=False)
        )
        for page, tokens in cuts:
            assert encoder.length(sample.cut(page, tokens)) == tokens
    page, tokens = cuts[0]
    assert encoder.encode(sample.cut(page, tokens)).input_ids.numel() == tokens  # rendered
    uncuttable = sample.model_copy(update={"cut_after": None})
    assert encoder.length_and_cuts(uncuttable)[1] == []


@pytest.mark.slow
def test_filling_rows_by_cutting_builds_the_planned_rows(pool_and_samples, tmp_path):
    from longctx_rope.tiny import tiny_config, tiny_processor
    from seqpar_train.data.encode import SampleEncoder
    from seqpar_train.data.mixture import MixtureRows

    root, pool, _ = pool_and_samples
    spec = VisionTokenSpec(dpi=36, factor=28, min_pixels=3136, max_pixels=80_000)
    encoder = SampleEncoder(tiny_processor("qwen2.5-vl", 3136, 80_000), spec, root / "pool")
    samples = _whole_document_samples(pool, labels=True)
    lengths = [encoder.length(s) for s in samples]
    row_length = int(0.8 * sum(lengths))  # the two whole samples overflow a row

    def rows(fill):
        return MixtureRows(
            samples,
            encoder,
            tiny_config("qwen2.5-vl"),
            max_length=row_length,
            window=8,
            seed=0,
            fill=fill,
        )

    assert [len(rows("whole").plan(i)[0]) for i in range(2)] == [1, 1]
    cut = rows("cut")
    members, _ = cut.plan(0)
    assert sorted(m.sample for m in members) == [0, 1]
    assert any(m.cut_page is not None for m in members)
    planned = sum(m.tokens for m in members)
    assert row_length - max(lengths) / 4 < planned <= row_length
    row, reasons = cut.row(0)
    assert reasons == [] and row.num_tokens == planned
    assert row.left_out_tokens == sum(lengths) - planned == sum(m.left_out for m in members)
    assert row.doc_lens == [m.tokens for m in members]
    cut_ids = [i for i in row.sample_ids if ":1-" in i]
    assert cut_ids and all(i.split(":")[0] in {"long0", "long1"} for i in cut_ids)
    text = encoder.processor.tokenizer.decode(row.labels[row.labels != IGNORE_INDEX])
    assert "Answer 0" in text and "Answer 1" in text  # a cut keeps the answer and its labels
    shares = [cut.row(0, sp_rank=rank, sp=2)[0] for rank in range(2)]
    assert all(torch.equal(s.input_ids, row.input_ids) for s in shares)
    assert all(s.left_out_tokens == row.left_out_tokens for s in shares)
    assert (
        sum(s.pixel_values.shape[0] for s in shares if s.pixel_values is not None)
        == (row.pixel_values.shape[0])
    )


@pytest.mark.slow
def test_training_with_cut_rows_reports_the_fill_and_what_was_left_out(pool_and_samples, tmp_path):
    from longctx_rope.tiny import tiny_processor
    from seqpar_train.config import load_config
    from seqpar_train.data.encode import SampleEncoder
    from seqpar_train.metrics import read_metrics
    from seqpar_train.trainer import train

    root, pool, _ = pool_and_samples
    vision = {"dpi": 36, "factor": 28, "min_pixels": 3136, "max_pixels": 80000}
    samples = _whole_document_samples(pool, labels=False)
    write_parquet(tmp_path / "mixture" / "samples-00000.parquet", samples, Sample)
    encoder = SampleEncoder(
        tiny_processor("qwen2.5-vl", 3136, 80000), VisionTokenSpec(**vision), root / "pool"
    )
    lengths = [encoder.length(s) for s in samples]
    row_length = int(0.8 * sum(lengths))
    config = load_config(
        None,
        [
            f"output_dir={tmp_path / 'run'}",
            "model.tiny=qwen2.5-vl",
            f"max_length={row_length}",
            f"global_batch_tokens={row_length}",
            "max_steps=1",
            "parallel.param_dtype=float32",
            f"data.mixture={tmp_path / 'mixture'}",
            f"data.pool={root / 'pool'}",
            f"data.vision={json.dumps(vision)}",
            "data.num_workers=0",
            "data.fill=cut",
        ],
    )
    (record,) = read_metrics(train(config).metrics_path)
    kept = record["row_fill"] * row_length
    assert row_length - max(lengths) / 4 < kept <= row_length
    assert record["left_out_share"] == pytest.approx((sum(lengths) - kept) / sum(lengths))
    assert record["left_out_share"] > 0
