from __future__ import annotations

import hashlib
import json
import random

import pytest

from mmprolong_runtime import config_hash
from mmprolong_schemas import (
    Message,
    MixtureSpec,
    PagePart,
    Sample,
    Task,
    TextPart,
    read_parquet,
    write_parquet,
)
from mmprolong_schemas.sample import HistogramBin, LengthDistribution
from mmprolong_schemas.units import K, M
from qasynth.mix import (
    MixtureError,
    _fingerprint,
    _sample_files,
    build_mixture,
    load_index,
    select,
)

LONG = (Task.EXTRACT_SINGLE, Task.EXTRACT_MULTI, Task.REASONING)


def make_pool(path, per_task: int = 600, short: int = 0, seed: int = 0) -> None:
    """Samples with 32-50 pages and 32K-128K tokens, plus short samples of 0.5K-3K tokens."""
    rng = random.Random(seed)
    samples = []
    for task in LONG:
        for index in range(per_task):
            doc = hashlib.sha256(f"{task}{index}".encode()).hexdigest()
            pages = list(range(1, rng.randint(32, 50) + 1))
            tokens = min(len(pages) * rng.randint(1000, 2600), 128 * K)
            content = [PagePart(doc_id=doc, page=p) for p in pages] + [TextPart(text="Q?")]
            samples.append(
                Sample(
                    sample_id=f"{task.value}-{index}",
                    task=task,
                    doc_id=doc,
                    pages=pages,
                    messages=[Message(role="user", content=content)],
                    target="A",
                    est_tokens=max(tokens, 32 * K),
                    qa_id=f"qa{index}",
                )
            )
    for index in range(short):
        samples.append(
            Sample(
                sample_id=f"short-{index}",
                task=Task.SHORT,
                messages=[Message(role="user", content=[TextPart(text="hi")])],
                target="ok",
                est_tokens=rng.randint(512, 3072),
                source="llava",
            )
        )
    rng.shuffle(samples)
    half = len(samples) // 2
    write_parquet(path / "a.parquet", samples[:half], Sample)
    write_parquet(path / "b.parquet", samples[half:], Sample)


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    path = tmp_path_factory.mktemp("pool")
    make_pool(path, short=3000)
    return path


def test_budget_and_ratios_hold_within_one_percent(pool, tmp_path) -> None:
    spec = MixtureSpec(token_budget=80 * M, seed=1)
    report = build_mixture([pool], tmp_path / "mix", spec, shard_size=150)
    for task, share in (
        (Task.EXTRACT_SINGLE, 0.4),
        (Task.EXTRACT_MULTI, 0.4),
        (Task.REASONING, 0.2),
    ):
        stats = report["tasks"][task.value]
        assert stats["total_tokens"] == pytest.approx(80 * M * share, rel=0.01)
        assert stats["budget_error"] < 0.01
        assert report["token_shares"][task.value] == pytest.approx(share, abs=0.01)
        assert stats["page_range"][0] >= 32 and stats["page_range"][1] <= 50
    assert report["total"]["total_tokens"] == pytest.approx(80 * M, rel=0.01)
    assert report["budget_scale"] == 1.0
    assert (tmp_path / "mix" / "token_histogram.png").stat().st_size > 1000
    shards = sorted((tmp_path / "mix").glob("samples-*.parquet"))
    assert [s.name for s in shards] == report["shards"]
    samples = [s for shard in shards for s in read_parquet(shard, Sample)]
    assert len(samples) == report["total"]["samples"]
    assert len({s.sample_id for s in samples}) == len(samples)
    assert sum(s.est_tokens for s in samples) == report["total"]["total_tokens"]
    saved = json.loads((tmp_path / "mix" / "mixture.json").read_text())
    assert saved["tasks"] == report["tasks"]
    assert 0 <= report["total"]["share_at_least_100k"] <= 1


def test_short_share_and_grid(pool, tmp_path) -> None:
    spec = MixtureSpec.extraction_reasoning(8, 2, token_budget=10 * M, short_share=0.4, seed=2)
    report = build_mixture([pool], tmp_path / "mix", spec)
    totals = {t: s["total_tokens"] for t, s in report["tasks"].items()}
    assert report["budget_scale"] == 1.0
    assert totals["short"] == pytest.approx(4 * M, rel=0.01)
    assert totals["extract-single"] == pytest.approx(2.4 * M, rel=0.01)
    assert totals["extract-multi"] == pytest.approx(2.4 * M, rel=0.01)
    assert totals["reasoning"] == pytest.approx(1.2 * M, rel=0.01)


def test_deterministic_for_a_seed(pool, tmp_path) -> None:
    spec = MixtureSpec(token_budget=30 * M, seed=5)
    index = load_index([pool])
    first, again = select(index, spec).rows, select(index, spec).rows
    assert first.tolist() == again.tolist()
    other = select(index, MixtureSpec(token_budget=30 * M, seed=6)).rows
    assert sorted(first.tolist()) != sorted(other.tolist())
    build_mixture([pool], tmp_path / "a", spec, plot=False)
    build_mixture([pool], tmp_path / "b", spec, plot=False)
    ids = [
        [s.sample_id for s in read_parquet(d / "samples-00000.parquet", Sample)]
        for d in (tmp_path / "a", tmp_path / "b")
    ]
    assert ids[0] == ids[1]


def test_rerun_reuses_the_mixture(pool, tmp_path) -> None:
    spec = MixtureSpec(token_budget=10 * M)
    build_mixture([pool], tmp_path / "mix", spec, plot=False)
    shard = tmp_path / "mix" / "samples-00000.parquet"
    written = shard.stat().st_mtime_ns
    assert build_mixture([pool], tmp_path / "mix", spec, plot=False)["reused"] is True
    assert shard.stat().st_mtime_ns == written


def test_a_mixture_report_from_before_the_completion_record_is_reused(pool, tmp_path) -> None:
    # The old report: "key" held the config parts themselves, and no "outputs" list.
    spec = MixtureSpec(token_budget=10 * M)
    out = tmp_path / "mix"
    build_mixture([pool], out, spec, plot=False)
    report = json.loads((out / "mixture.json").read_text())
    report.pop("outputs")
    report["key"] = {
        "spec": config_hash(spec.model_dump(mode="json")),
        "inputs": _fingerprint(_sample_files([pool])),
        "shard_size": 2000,
        "shortfall": "shrink",
    }
    (out / "mixture.json").write_text(json.dumps(report))
    assert build_mixture([pool], out, spec, plot=False)["reused"] is True
    (out / report["shards"][0]).unlink()
    assert "reused" not in build_mixture([pool], out, spec, plot=False)


def test_small_pool_shrinks_repeats_or_fails(pool, tmp_path) -> None:
    spec = MixtureSpec(token_budget=2000 * M)
    shrunk = build_mixture([pool], tmp_path / "s", spec, plot=False)
    assert shrunk["budget_scale"] < 1
    shares = shrunk["token_shares"]
    assert shares["extract-single"] == pytest.approx(0.4, abs=0.01)
    assert shares["reasoning"] == pytest.approx(0.2, abs=0.01)
    repeated = build_mixture([pool], tmp_path / "r", spec, shortfall="repeat", plot=False)
    assert repeated["repeats"] > 1
    assert repeated["total"]["total_tokens"] == pytest.approx(2000 * M, rel=0.01)
    with pytest.raises(MixtureError, match="too small"):
        build_mixture([pool], tmp_path / "e", spec, shortfall="error", plot=False)


def test_custom_histogram_weights_bins(pool) -> None:
    bins = [
        HistogramBin(low=32 * K, high=64 * K, weight=3),
        HistogramBin(low=64 * K, high=128 * K + 1, weight=1),
    ]
    spec = MixtureSpec(
        token_budget=15 * M, length_distribution=LengthDistribution.CUSTOM, histogram=bins, seed=3
    )
    index = load_index([pool])
    rows = select(index, spec).rows
    long_rows = rows[index.task[rows] != "short"]
    low = (index.tokens[long_rows] < 64 * K).mean()
    natural = ((index.tokens < 64 * K) & (index.task != "short")).sum() / (
        index.task != "short"
    ).sum()
    assert low > natural + 0.1


def test_missing_or_foreign_input_is_named(tmp_path) -> None:
    with pytest.raises(MixtureError, match="does not exist"):
        build_mixture([tmp_path / "nope"], tmp_path / "mix")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    with pytest.raises(MixtureError, match="not Sample"):
        build_mixture([tmp_path / "other.parquet"], tmp_path / "mix")


def test_output_inside_an_input_folder_is_refused(tmp_path) -> None:
    (tmp_path / "samples").mkdir()
    make_pool(tmp_path / "samples", per_task=5, short=0)
    for out in (tmp_path / "samples" / "mix", tmp_path / "samples"):
        with pytest.raises(MixtureError, match="inside input folder"):
            build_mixture([tmp_path / "samples"], out, MixtureSpec(token_budget=1 * M))
    with pytest.raises(MixtureError, match="inside output folder"):
        build_mixture([tmp_path / "samples" / "a.parquet"], tmp_path, plot=False)
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["a.parquet", "b.parquet"]


def test_shards_keep_the_selected_order(pool, tmp_path) -> None:
    import pyarrow.parquet as pq

    spec = MixtureSpec(token_budget=12 * M, seed=9)
    index = load_index([pool])
    rows = select(index, spec).rows
    ids = {
        n: pq.read_table(f, columns=["sample_id"]).column("sample_id").to_pylist()
        for n, f in enumerate(index.files)
    }
    expected = [ids[int(index.file[r])][int(index.row[r])] for r in rows]
    build_mixture([pool], tmp_path / "mix", spec, shard_size=37, plot=False)
    shards = sorted((tmp_path / "mix").glob("samples-*.parquet"))
    written = [s.sample_id for shard in shards for s in read_parquet(shard, Sample)]
    assert written == expected


def _written(folder) -> list[dict]:
    import pyarrow.parquet as pq

    return [
        row
        for shard in sorted(folder.glob("samples-*.parquet"))
        for row in pq.read_table(shard).to_pylist()
    ]


def test_executors_write_the_same_mixture(pool, tmp_path) -> None:
    from mmprolong_runtime.executor import LocalExecutor

    spec = MixtureSpec.extraction_reasoning(8, 2, token_budget=12 * M, short_share=0.2, seed=4)
    runs = {
        "here": None,
        "one-worker": LocalExecutor(1),
        "two-workers": LocalExecutor(2),
    }
    reports = {
        name: build_mixture([pool], tmp_path / name, spec, shard_size=90, plot=False, executor=ex)
        for name, ex in runs.items()
    }
    expected = _written(tmp_path / "here")
    assert len(expected) == reports["here"]["total"]["samples"] > 90
    for name in ("one-worker", "two-workers"):
        assert _written(tmp_path / name) == expected
        assert reports[name]["tasks"] == reports["here"]["tasks"]
        assert reports[name]["shards"] == reports["here"]["shards"]


def test_an_interrupted_mix_rewrites_only_missing_shards(pool, tmp_path) -> None:
    spec = MixtureSpec(token_budget=10 * M, seed=7)
    out = tmp_path / "mix"
    first = build_mixture([pool], out, spec, shard_size=40, plot=False)
    expected = _written(out)
    assert first["shards_reused"] == 0 and len(first["shards"]) >= 3
    # As if killed before the report and the second shard were written.
    (out / "mixture.json").unlink()
    (out / first["shards"][1]).unlink()
    kept = out / first["shards"][0]
    written = kept.stat().st_mtime_ns
    again = build_mixture([pool], out, spec, shard_size=40, plot=False)
    assert again["shards_reused"] == len(first["shards"]) - 1
    assert kept.stat().st_mtime_ns == written
    assert _written(out) == expected
    # Another selection into the same folder rewrites every shard and drops the extra ones.
    other = build_mixture([pool], out, MixtureSpec(token_budget=5 * M, seed=8), plot=False)
    assert other["shards_reused"] == 0
    assert sorted(p.name for p in out.glob("samples-*.parquet")) == other["shards"]


def test_mix_command_with_worker_processes(pool, tmp_path) -> None:
    from typer.testing import CliRunner

    from qasynth.cli import app

    runner = CliRunner()
    common = ["--budget", "6M", "--shard-size", "50", "--seed", "2", str(pool)]
    here = runner.invoke(app, ["mix", str(tmp_path / "here"), *common])
    assert here.exit_code == 0, here.output
    spread = runner.invoke(app, ["mix", str(tmp_path / "spread"), *common, "--workers", "2"])
    assert spread.exit_code == 0, spread.output
    assert _written(tmp_path / "spread") == _written(tmp_path / "here")
    wrong = runner.invoke(app, ["mix", str(tmp_path / "x"), *common, "--ray-address", "auto"])
    assert wrong.exit_code == 2 and "--executor ray" in wrong.output
