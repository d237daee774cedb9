"""`qasynth` command line: segment, generate, assemble, mix, review, stats."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mmprolong_runtime.cli_app import option_value, package_app
from mmprolong_schemas import (
    MixtureSpec,
    ModelFamily,
    PageRange,
    QAPair,
    Task,
    VisionTokenSpec,
    parse_tokens,
    read_jsonl,
)
from mmprolong_schemas.sample import HistogramBin, LengthDistribution
from qasynth import __version__

app = package_app(
    "qasynth",
    __version__,
    help="Long-document VQA synthesis, OCR baselines and token-budgeted mixtures from a "
    "docpool pool. Stages: segment -> generate -> assemble -> mix; review and stats inspect.",
)
console = Console(stderr=True)


@contextlib.contextmanager
def _progress(label: str, total: int | None) -> Iterator[Any]:
    # No auto-refresh thread: teachers (vLLM's engine) and local executors fork processes
    # while the bar is shown, and a fork must not copy a thread holding the console's lock.
    # The bar is redrawn from the calling thread as work is counted.
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        auto_refresh=False,
    ) as progress:
        task = progress.add_task(label, total=total)
        progress.refresh()

        def tick(n: int) -> None:
            progress.advance(task, n)
            progress.refresh()

        yield tick


def _open_pool(path: Path) -> Any:
    from docpool import Pool

    try:
        return Pool(path)
    except FileNotFoundError as error:
        raise typer.BadParameter(str(error), param_hint="POOL") from None


def _need(path: Path, stage: str) -> None:
    if not path.exists():
        raise typer.BadParameter(f"{path} does not exist; run `qasynth {stage}` first")


def _summary(title: str, data: dict[str, Any]) -> None:
    table = Table(title=title, show_header=False)
    for key, value in data.items():
        if key in ("key", "outputs"):  # the completion record, not a result
            continue
        table.add_row(str(key), json.dumps(value) if isinstance(value, dict | list) else str(value))
    console.print(table)


def _check_executor(executor: str, ray_address: str | None) -> None:
    if executor not in ("local", "ray"):
        raise typer.BadParameter("--executor is local or ray", param_hint="--executor")
    if ray_address is not None and executor != "ray":
        raise typer.BadParameter("--ray-address needs --executor ray", param_hint="--ray-address")


def _pages(text: str) -> tuple[int, int]:
    try:
        pages = PageRange.parse(text)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return pages.first, pages.last


@app.command()
def segment(
    pool: Path = typer.Argument(..., help="docpool pool directory."),
    run: Path = typer.Argument(..., help="Run directory; segments.jsonl is written here."),
    distribution: LengthDistribution = typer.Option(
        LengthDistribution.POOL_NATIVE,
        help="Document lengths: pool-native (32-50 pages), "
        "long-biased (50-100 pages) or custom (a token histogram, see --histogram).",
    ),
    doc_pages: str | None = typer.Option(None, help="Override the page range, e.g. 32-50."),
    histogram: Path | None = typer.Option(
        None, help='JSON list of {"low": "32K", "high": "64K", "weight": 1} bins for custom.'
    ),
    draws: int | None = typer.Option(None, help="Documents drawn for custom (default: all)."),
    max_length: str = typer.Option("128K", help="Maximum sample length in tokens."),
    per_doc: int = typer.Option(1, min=1, help="Segments per chosen document."),
    min_pages: int = typer.Option(8, min=1, help="Fewest pages of a segment."),
    max_pages: int = typer.Option(15, min=1, help="Most pages of a segment."),
    dpi: float = typer.Option(144, help="Render resolution the token estimates assume."),
    family: ModelFamily = typer.Option(
        ModelFamily.QWEN2_5_VL, help="Model whose image limits the token estimates use."
    ),
    seed: int = typer.Option(0, help="Seed of document draws and segment choice."),
) -> None:
    """Choose documents by length and sample section-coherent segments of 8-15 pages."""
    from qasynth.pipeline import segment_pool
    from qasynth.segments import DocumentSelection

    bins: tuple[HistogramBin, ...] = ()
    if histogram:
        bins = tuple(HistogramBin.model_validate(b) for b in json.loads(histogram.read_text()))
    selection = DocumentSelection(
        distribution,
        _pages(doc_pages) if doc_pages else None,
        bins,
        option_value(parse_tokens, max_length, "--max-length"),
        draws,
    )
    opened = _open_pool(pool)
    total = len(opened) if hasattr(opened, "__len__") else None
    with _progress("scanning pool", total) as tick:
        summary = segment_pool(
            opened,
            run,
            selection,
            per_doc=per_doc,
            seed=seed,
            pages=(min_pages, max_pages),
            spec=VisionTokenSpec.for_family(family, dpi=dpi),
            tick=tick,
        )
    _summary("segments", summary)


@app.command()
def generate(
    pool: Path = typer.Argument(..., help="docpool pool directory."),
    run: Path = typer.Argument(..., help="Run directory holding segments.jsonl."),
    teacher: str = typer.Option(
        "rules", help="rules (offline bootstrap teacher, not a VLM), openai, vllm, transformers."
    ),
    model: str | None = typer.Option(None, help="Model name (openai, vllm) or path/hub id."),
    base_url: str | None = typer.Option(
        None,
        help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1. The API key is "
        "read from OPENAI_API_KEY.",
    ),
    tasks: str = typer.Option(
        "extract-single,extract-multi,reasoning",
        help="Comma-separated tasks; one QA pair per segment and task.",
    ),
    max_attempts: int = typer.Option(3, min=1, help="Requests per segment and task at most."),
    concurrency: int = typer.Option(8, min=1, help="Parallel requests (openai)."),
    batch_size: int = typer.Option(64, min=1, help="Requests handed to the teacher at once."),
    max_tokens: int = typer.Option(1024, min=16, help="Reply length limit."),
    structured: bool = typer.Option(True, help="Ask for JSON-schema structured output."),
    dpi: float = typer.Option(144, help="Render resolution of page images."),
    seed: int = typer.Option(0, help="Seed of exemplar choice, sampling and cache keys."),
    executor: str = typer.Option(
        "local",
        help="'local': the teacher runs in this process; 'ray': copies of it run as Ray "
        "actors (vllm/transformers: one per GPU) and the cache stays with the run.",
    ),
    ray_address: str | None = typer.Option(
        None, help="Ray cluster to join with --executor ray; default: a local Ray instance."
    ),
    actors: int = typer.Option(
        0, min=0, help="Teacher actors with --executor ray; 0 = one per GPU (or CPU)."
    ),
    actor_gpus: float | None = typer.Option(
        None, min=0, help="GPUs per teacher actor [default: 1 for vllm/transformers, else 0]."
    ),
    engine_option: list[str] = typer.Option(
        [],
        help="vllm engine option KEY=VALUE (repeatable), passed to vllm.LLM / EngineArgs; "
        'VALUE is read as JSON when it parses (2, 0.85, true, {"image": 20}), else as text. '
        "E.g. tensor_parallel_size=2, gpu_memory_utilization=0.85, max_model_len=65536. "
        "max_model_len and limit_mm_per_prompt default to the largest request of the job.",
    ),
) -> None:
    """Ask a teacher for one anchored QA pair per segment and task; resumable by cache."""
    from mmprolong_schemas import Segment
    from qasynth.generate import GenerateConfig
    from qasynth.pipeline import SEGMENTS_FILE, generate_pairs
    from qasynth.teachers.base import Teacher
    from qasynth.teachers.factory import make_teacher

    _need(run / SEGMENTS_FILE, "segment")
    try:
        chosen = tuple(Task(t.strip()) for t in tasks.split(",") if t.strip())
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--tasks") from None
    _check_executor(executor, ray_address)
    opened = _open_pool(pool)
    options: dict[str, Any] = {
        "model": model,
        "base_url": base_url,
        "concurrency": concurrency,
        "dpi": dpi,
        "structured": structured,
        "max_tokens": max_tokens,
    }
    if engine_option:
        options["engine_kwargs"] = _engine_options(engine_option)
    built: Teacher
    try:
        if executor == "ray":
            from qasynth.teachers.actors import make_actor_teacher

            built = make_actor_teacher(
                teacher,
                pool,
                actors=actors,
                num_gpus=actor_gpus,
                address=ray_address,
                **options,
            )
        else:
            built = make_teacher(teacher, opened, **options)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--teacher/--model/--base-url") from None
    units = sum(1 for _ in read_jsonl(run / SEGMENTS_FILE, Segment)) * len(chosen)
    config = GenerateConfig(
        tasks=chosen, seed=seed, max_attempts=max_attempts, batch_size=batch_size
    )
    try:
        with _progress(f"generating with {built.name}", units) as tick:
            stats = generate_pairs(opened, run, built, config, tick)
    finally:
        built.close()
    _summary("QA generation", stats)


def _engine_options(items: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise typer.BadParameter(
                f"{item!r} is not KEY=VALUE with KEY an option name", param_hint="--engine-option"
            )
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


@app.command()
def assemble(
    pool: Path = typer.Argument(..., help="docpool pool directory."),
    run: Path = typer.Argument(..., help="Run directory holding qa/pairs.jsonl."),
    page_labels: bool = typer.Option(
        False, help='Put "Page N:" text before each page image (off in the recipe).'
    ),
    ocr: bool = typer.Option(False, help="Also write OCR-full and OCR-needle samples."),
    short: list[Path] = typer.Option(
        [], help="LLaVA-OneVision-style JSON/JSONL/Parquet files of short-context data."
    ),
    max_length: str = typer.Option("128K", help="Samples longer than this are skipped."),
    dpi: float = typer.Option(144, help="Render resolution the token estimates assume."),
    family: ModelFamily = typer.Option(
        ModelFamily.QWEN2_5_VL, help="Model whose image limits the token estimates use."
    ),
    seed: int = typer.Option(0, help="Seed of OCR-needle page choice."),
    executor: str = typer.Option(
        "local",
        help="'local': assemble in this process; 'ray': one Ray task per document "
        "(same samples, same order).",
    ),
    ray_address: str | None = typer.Option(
        None, help="Ray cluster to join with --executor ray; default: a local Ray instance."
    ),
) -> None:
    """Put every QA pair back into its whole document as a training Sample."""
    from mmprolong_runtime.executor import make_executor
    from qasynth.assemble import AssembleConfig
    from qasynth.pipeline import PAIRS_FILE, assemble_samples

    _check_executor(executor, ray_address)
    steps = make_executor("ray", ray_address=ray_address) if executor == "ray" else None

    config = AssembleConfig(
        spec=VisionTokenSpec.for_family(family, dpi=dpi),
        page_labels=page_labels,
        max_length=option_value(parse_tokens, max_length, "--max-length"),
    )
    _need(run / PAIRS_FILE, "generate")
    total = sum(1 for _ in read_jsonl(run / PAIRS_FILE, QAPair))
    with _progress("assembling", total) as tick:
        summary = assemble_samples(
            _open_pool(pool),
            run,
            config,
            ocr=ocr,
            seed=seed,
            short_inputs=short,
            tick=tick,
            executor=steps,
        )
    _summary("samples", summary)


def _ratio_pair(text: str) -> tuple[int, int]:
    parts = text.split(":")
    if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
        raise ValueError(f"{text!r} is not two whole numbers EXTRACTION:REASONING, e.g. 7:3")
    return int(parts[0]), int(parts[1])


def _ratios(text: str) -> dict[Task, float]:
    parts = [float(x) for x in text.split(",")]
    if len(parts) != 3:
        raise typer.BadParameter(
            "--ratios needs three numbers: extract-single,extract-multi,reasoning"
        )
    total = sum(parts)
    tasks = (Task.EXTRACT_SINGLE, Task.EXTRACT_MULTI, Task.REASONING)
    return {t: p / total for t, p in zip(tasks, parts, strict=True) if p > 0}


@app.command()
def mix(
    out: Path = typer.Argument(..., help="Mixture directory (shards, mixture.json, histogram)."),
    inputs: list[Path] = typer.Argument(..., help="Sample Parquet files or folders of them."),
    budget: str = typer.Option("5B", help="Token budget (binary prefixes: 5B = 5*2^30)."),
    ratios: str | None = typer.Option(
        None, help="Token shares extract-single,extract-multi,reasoning (default 40,40,20)."
    ),
    extraction_reasoning: str | None = typer.Option(
        None, help="Extraction:reasoning grid point such as 8:2 (extraction split evenly)."
    ),
    short_share: float = typer.Option(0.0, min=0.0, max=0.8, help="Share of short data."),
    distribution: LengthDistribution = typer.Option(
        LengthDistribution.POOL_NATIVE, help="Length distribution of long samples."
    ),
    doc_pages: str | None = typer.Option(None, help="Document page range, e.g. 32-50."),
    histogram: Path | None = typer.Option(None, help="Token histogram JSON for custom."),
    min_tokens: str = typer.Option("32K", help="Shortest long sample."),
    max_length: str = typer.Option("128K", help="Longest sample."),
    shard_size: int = typer.Option(2000, min=1, help="Samples per Parquet shard."),
    shortfall: str = typer.Option(
        "shrink", help="When the pool is too small: shrink (keep ratios), repeat, error."
    ),
    seed: int = typer.Option(0, help="Seed of selection and order."),
    executor: str = typer.Option(
        "local",
        help="Where input files are indexed and shards written: 'local' (this process, or "
        "--workers processes) or 'ray' (one Ray task per file and per shard). Selection runs "
        "here either way; the mixture is the same.",
    ),
    ray_address: str | None = typer.Option(
        None, help="Ray cluster to join with --executor ray; default: a local Ray instance."
    ),
    workers: int = typer.Option(
        0,
        min=0,
        help="Local worker processes (0 = this process) or Ray tasks in flight "
        "(0 = the cluster's CPUs).",
    ),
) -> None:
    """Select samples until the token budget is met, by task ratio; write shards + report.
    A killed mix resumes: shards already written for the same selection are kept."""
    from mmprolong_runtime.executor import Executor, make_executor
    from qasynth.mix import MixtureError, build_mixture

    _check_executor(executor, ray_address)

    fields: dict[str, Any] = {
        "token_budget": option_value(parse_tokens, budget, "--budget"),
        "short_share": short_share,
        "length_distribution": distribution,
        "min_tokens": option_value(parse_tokens, min_tokens, "--min-tokens"),
        "max_length": option_value(parse_tokens, max_length, "--max-length"),
        "seed": seed,
    }
    if doc_pages:
        fields["doc_pages"] = _pages(doc_pages)
    if histogram:
        fields["histogram"] = json.loads(histogram.read_text())
    if extraction_reasoning:
        extraction, reasoning = option_value(
            _ratio_pair, extraction_reasoning, "--extraction-reasoning"
        )
        spec = MixtureSpec.extraction_reasoning(extraction, reasoning, **fields)
    else:
        if ratios:
            fields["task_ratios"] = option_value(_ratios, ratios, "--ratios")
        spec = MixtureSpec(**fields)
    if shortfall not in ("shrink", "repeat", "error"):
        raise typer.BadParameter("--shortfall is shrink, repeat or error")
    steps: Executor | None = None
    if executor == "ray":
        steps = make_executor("ray", workers or None, ray_address=ray_address)
    elif workers:
        steps = make_executor("local", workers)
    try:
        # A plain line, not a spinner: a spinner's thread must not run while workers fork.
        console.print(f"mixing {len(inputs)} input(s) into {out} ...")
        report = build_mixture(
            inputs,
            out,
            spec,
            shard_size=shard_size,
            shortfall=shortfall,  # type: ignore[arg-type]
            executor=steps,
        )
    except MixtureError as error:
        raise typer.BadParameter(str(error), param_hint="INPUTS") from None
    _print_mixture(report)


def _print_mixture(report: dict[str, Any]) -> None:
    table = Table(title="mixture")
    for column in (
        "task",
        "samples",
        "avg pages",
        "avg K tokens",
        "total B tokens",
        "page range",
        "token range (K)",
        ">=100K",
        "budget error",
    ):
        table.add_column(column)
    rows = [*report["tasks"].items(), ("total", report["total"])]
    for name, stats in rows:
        if not stats.get("samples"):
            continue
        error = stats.get("budget_error")
        table.add_row(
            name,
            str(stats["samples"]),
            str(stats["avg_pages"]),
            str(stats["avg_tokens_k"]),
            f"{stats['total_tokens_b']:.4f}",
            str(stats["page_range"]),
            str(stats["token_range_k"]),
            f"{stats['share_at_least_100k']:.1%}",
            "" if error is None else f"{error:.3%}",
        )
    console.print(table)
    state = ""
    if report.get("reused"):
        state = "; reused"
    elif "shards_reused" in report:
        state = f"; written, {report['shards_reused']} kept from an interrupted run"
    console.print(f"{len(report['shards'])} shards; scale {report['budget_scale']}{state}")


@app.command()
def review(
    pool: Path | None = typer.Argument(None, help="docpool pool directory."),
    run: Path | None = typer.Argument(None, help="Run directory holding qa/pairs.jsonl."),
    out: Path = typer.Option(Path("review.html"), help="The HTML page to write."),
    count: int = typer.Option(100, "-n", "--count", min=1, help="Pairs to draw."),
    seed: int = typer.Option(0, help="Seed of the draw."),
    ingest: Path | None = typer.Option(
        None, help="A downloaded verdicts JSON: report accuracy with a 95% interval instead."
    ),
) -> None:
    """Write a self-contained HTML page to check N pairs by hand, or ingest its verdicts."""
    from qasynth.review import ingest_review, write_review

    if ingest:
        summary = ingest_review(ingest)
        _summary("review", summary.as_dict())
        low, high = summary.interval
        console.print(
            f"accuracy {summary.accuracy:.1%} (95% CI {low:.1%}-{high:.1%}) "
            f"over {summary.judged} judged pairs; the paper found 97/100 correct"
        )
        return
    if pool is None or run is None:
        raise typer.BadParameter("give POOL and RUN, or --ingest VERDICTS.json")
    from qasynth.pipeline import PAIRS_FILE

    _need(run / PAIRS_FILE, "generate")
    pairs = list(read_jsonl(run / PAIRS_FILE, QAPair))
    drawn = write_review(pairs, _open_pool(pool), out, count, seed)
    console.print(f"wrote {out} with {len(drawn)} pairs; open it, judge, and download verdicts")


@app.command()
def stats(
    run: Path = typer.Argument(..., help="Run directory or mixture directory."),
) -> None:
    """Print the statistics of a run (segments, QA, samples) or of a mixture."""
    from qasynth.run_stats import run_statistics

    found = run_statistics(run)
    if not found:
        raise typer.BadParameter(f"{run} holds no qasynth outputs")
    for title, data in found.items():
        if title == "mixture":
            _print_mixture(data)
        else:
            _summary(title, data)


if __name__ == "__main__":
    app()
