import json
from importlib import metadata

import pytest
from typer.testing import CliRunner

from mmprolong_schemas import Sample, read_parquet
from mmprolong_schemas.io import write_jsonl
from mmprolong_schemas.vision_tokens import VisionTokenSpec
from qasynth import __version__
from qasynth.cli import app

runner = CliRunner()


def test_version_matches_distribution() -> None:
    assert __version__ == metadata.version("qasynth")
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"qasynth {__version__}"


def test_help_lists_every_stage() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("segment", "generate", "assemble", "mix", "review", "stats"):
        assert command in result.output


def _ok(args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.mark.slow
def test_the_whole_pipeline_from_the_command_line(corpus_pool, tmp_path) -> None:
    pool, truth, root = corpus_pool
    run, mix = tmp_path / "run", tmp_path / "mix"
    _ok(["segment", root / "pool", run, "--per-doc", "2"])
    _ok(["generate", root / "pool", run])
    first = json.loads((run / "qa" / "stats.json").read_text())
    assert first["requests_sent"] == first["units"] and first["accepted_total"] > 0
    _ok(["generate", root / "pool", run])
    again = json.loads((run / "qa" / "stats.json").read_text())
    assert again["requests_sent"] == 0 and again["cache_hits"] >= first["units"]
    _ok(["assemble", root / "pool", run, "--ocr"])
    samples = list(read_parquet(run / "samples" / "vqa.parquet", Sample))
    assert len(samples) == first["accepted_total"]
    assert all(
        len(s.pages) == next(d.num_pages for d in truth.documents if d.doc_id == s.doc_id)
        for s in samples
    )
    ocr = list(read_parquet(run / "samples" / "ocr.parquet", Sample))
    assert {s.task.value for s in ocr} == {"ocr-full", "ocr-needle"}
    result = _ok(
        [
            "mix",
            mix,
            run / "samples" / "vqa.parquet",
            "--budget",
            "2M",
            "--extraction-reasoning",
            "8:2",
            "--doc-pages",
            "32-50",
        ]
    )
    assert "budget error" in result.output or "mixture" in result.output
    report = json.loads((mix / "mixture.json").read_text())
    assert report["shards"] and report["total"]["samples"] > 0
    _ok(["review", root / "pool", run, "--out", tmp_path / "review.html", "-n", "5"])
    page = (tmp_path / "review.html").read_text()
    assert page.count('class="pair"') == 5 and "data:image/jpeg;base64," in page
    verdicts = {"review_id": "x", "verdicts": {"a": "correct", "b": "correct", "c": "wrong-answer"}}
    (tmp_path / "v.json").write_text(json.dumps(verdicts))
    result = _ok(["review", "--ingest", tmp_path / "v.json"])
    assert "66.7%" in result.output
    result = _ok(["stats", run])
    assert "QA pairs" in result.output
    _ok(["stats", mix])


def test_bad_inputs_are_named(tmp_path) -> None:
    result = runner.invoke(app, ["review"])
    assert result.exit_code != 0
    result = runner.invoke(app, ["mix", str(tmp_path / "m"), str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in _words(result.output)


def _words(output: str) -> str:
    return " ".join(output.replace("│", " ").split())


def test_stages_out_of_order_say_what_to_run(tmp_path) -> None:
    (tmp_path / "pool").mkdir()
    result = runner.invoke(app, ["generate", str(tmp_path / "pool"), str(tmp_path / "run")])
    assert result.exit_code != 0 and "qasynth segment" in _words(result.output)
    result = runner.invoke(app, ["assemble", str(tmp_path / "pool"), str(tmp_path / "run")])
    assert result.exit_code != 0 and "qasynth generate" in _words(result.output)
    result = runner.invoke(app, ["segment", str(tmp_path / "pool"), str(tmp_path / "run")])
    assert result.exit_code != 0 and "not a docpool pool" in _words(result.output)


def test_executor_options_are_checked(tmp_path) -> None:
    (tmp_path / "pool").mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "segments.jsonl").write_text("")
    (run / "qa").mkdir()
    (run / "qa" / "pairs.jsonl").write_text("")
    for stage in ("generate", "assemble"):
        args = [stage, str(tmp_path / "pool"), str(run)]
        result = runner.invoke(app, [*args, "--executor", "dask"])
        assert result.exit_code != 0 and "local or ray" in _words(result.output)
        result = runner.invoke(app, [*args, "--ray-address", "auto"])
        assert result.exit_code != 0 and "needs --executor ray" in _words(result.output)


_THREADS_AT_FORK: list[list[str]] = []
_WATCH_FORKS = [False]


def _record_threads_at_fork() -> None:
    import threading

    if _WATCH_FORKS[0]:
        _THREADS_AT_FORK.append(
            [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        )


def test_no_thread_runs_while_the_cli_forks(tmp_path) -> None:
    """`qasynth generate` shows its bar while a teacher may fork (vLLM's engine), and `mix`
    while local workers fork: no refresh or spinner thread may be running then."""
    import hashlib
    import os
    import threading

    from mmprolong_schemas import Message, PagePart, Task, TextPart, write_parquet
    from qasynth.cli import _progress

    before = threading.active_count()
    with _progress("x", 3) as tick:
        tick(1)
        assert threading.active_count() == before
    samples = []
    for index in range(60):
        task = (Task.EXTRACT_SINGLE, Task.EXTRACT_MULTI, Task.REASONING)[index % 3]
        doc = hashlib.sha256(str(index).encode()).hexdigest()
        pages = list(range(1, 33))
        content = [PagePart(doc_id=doc, page=p) for p in pages] + [TextPart(text="Q?")]
        samples.append(
            Sample(
                sample_id=f"s{index}",
                task=task,
                doc_id=doc,
                pages=pages,
                messages=[Message(role="user", content=content)],
                target="A",
                est_tokens=40_000,
                source="t",
            )
        )
    write_parquet(tmp_path / "in" / "a.parquet", samples[:30], Sample)
    write_parquet(tmp_path / "in" / "b.parquet", samples[30:], Sample)
    os.register_at_fork(before=_record_threads_at_fork)
    _WATCH_FORKS[0] = True
    try:
        result = runner.invoke(
            app,
            [
                "mix",
                str(tmp_path / "mix"),
                str(tmp_path / "in"),
                "--budget",
                "1M",
                "--workers",
                "2",
                "--shard-size",
                "10",
                "--min-tokens",
                "1K",
            ],
        )
    finally:
        _WATCH_FORKS[0] = False
    assert result.exit_code == 0, result.output
    assert _THREADS_AT_FORK and all(names == [] for names in _THREADS_AT_FORK), _THREADS_AT_FORK


def test_family_qwen3_vl_sizes_segment_and_assemble_estimates(
    corpus_pool, pair_factory, tmp_path
) -> None:
    """``--family qwen3-vl`` counts page tokens with Qwen3-VL's pixel limits (factor 32,
    fewer tokens per page than Qwen2.5-VL's 28 at 144 DPI): documents too long for one
    family fit the other, and samples are estimated with the family's spec."""
    from qasynth.pipeline import PAIRS_FILE, SEGMENTS_SUMMARY
    from qasynth.segments import QA_TEXT_ALLOWANCE

    pool, _, root = corpus_pool
    qwen3, qwen25 = (VisionTokenSpec.for_family(f) for f in ("qwen3-vl", "qwen2.5-vl"))
    assert (qwen3.factor, qwen3.max_pixels) == (32, 16777216)
    docs = list(pool.documents())
    # Every document is too long under Qwen2.5-VL's estimate; those short enough under
    # Qwen3-VL's are chosen.
    limit = min(d.tokens(qwen25) for d in docs) + QA_TEXT_ALLOWANCE - 1
    fitting = [d for d in docs if d.tokens(qwen3) + QA_TEXT_ALLOWANCE <= limit]
    assert fitting
    for family, chosen in (("qwen3-vl", len(fitting)), ("qwen2.5-vl", 0)):
        run = tmp_path / family
        _ok(["segment", root / "pool", run, "--family", family, "--max-length", limit])
        summary = json.loads((run / SEGMENTS_SUMMARY).read_text())
        assert summary["documents_chosen"] == chosen, summary

    doc = fitting[0]
    pair = pair_factory(doc.doc_id, 8)
    estimates = {}
    for family in ("qwen3-vl", "qwen2.5-vl"):
        run = tmp_path / f"assemble-{family}"
        (run / PAIRS_FILE).parent.mkdir(parents=True)
        write_jsonl(run / PAIRS_FILE, [pair])
        _ok(["assemble", root / "pool", run, "--family", family])
        (sample,) = read_parquet(run / "samples" / "vqa.parquet", Sample)
        estimates[family] = sample.est_tokens
    assert estimates["qwen2.5-vl"] - estimates["qwen3-vl"] == doc.tokens(qwen25) - doc.tokens(qwen3)
