"""`lvlm-judge` command line: run, extend, report, score."""

from __future__ import annotations

import json
import tomllib
from collections import defaultdict
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from lvlm_judge import __version__
from lvlm_judge.factory import make_llm_judge, make_runner, text_token_counter
from mmprolong_runtime.cli_app import fail, option_value, package_app
from mmprolong_schemas import (
    EvalItem,
    ModelFamily,
    ScoreTable,
    VisionTokenSpec,
    format_tokens,
    parse_tokens,
    write_jsonl,
)
from mmprolong_schemas.base import validate_record

app = package_app(
    "lvlm-judge",
    __version__,
    help="Evaluate long-context VLMs on MMLongBench documents (8K-512K) and MM-NIAH, "
    "with MMLongBench's rule scorer or a cached LLM judge.",
    pretty_exceptions_show_locals=False,  # a traceback never prints locals (API keys)
)
console = Console(stderr=True)


class RunnerName(StrEnum):
    TRANSFORMERS = "transformers"
    OPENAI = "openai"
    VLLM = "vllm"


class JudgeChoice(StrEnum):
    RULES = "rules"
    LLM = "llm"


RUN_DEFAULTS: dict[str, Any] = {
    "runner": "transformers",
    "lengths": "64K,128K",
    "datasets": "mmlongdoc,longdocurl,slidevqa",
    "judge": "rules",
    "prompt_format": "lvlm-judge-v1",
    "max_new_tokens": 128,
    "out": "lvlm-judge-run",
    "pre_judge": True,
    "family": "qwen2.5-vl",
    "device_map": "auto",
    "concurrency": 8,
    "executor": "local",
}


def _score_table(path: Path) -> ScoreTable:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        fail(f"{path}: not a scores.json ({error})")
    return validate_record(ScoreTable, data, str(path))


def _lengths(text: str) -> list[int]:
    """Token counts written as a comma list, e.g. "64K,128K"."""
    return [parse_tokens(part) for part in text.split(",") if part.strip()]


def _spec(
    family: str, dpi: float | None, min_pixels: int | None, max_pixels: int | None
) -> VisionTokenSpec:
    overrides: dict[str, float] = {}
    if dpi is not None:
        overrides["dpi"] = dpi
    if min_pixels is not None:
        overrides["min_pixels"] = min_pixels
    if max_pixels is not None:
        overrides["max_pixels"] = max_pixels
    return VisionTokenSpec.for_family(ModelFamily(family), **overrides)


def _load_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        fail(f"config {path}: {error}")
    section = data.get("run", data)
    known = set(RUN_DEFAULTS) | {
        "model", "data", "image_root", "pool", "base_url", "judge_model", "judge_base_url",
        "judge_cache", "limit", "model_name", "rope_spec", "all", "mmlb_source", "max_model_len",
        "answer_nll",
    }  # fmt: skip
    unknown = set(section) - known
    if unknown:
        fail(f"config {path}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    return dict(section)


def _limit(items: list[EvalItem], limit: int | None) -> list[EvalItem]:
    if not limit:
        return items
    seen: dict[tuple[str, int], int] = defaultdict(int)
    kept = []
    for item in items:
        key = (item.dataset, item.length)
        if seen[key] < limit:
            seen[key] += 1
            kept.append(item)
    return kept


@app.command()
def run(
    config: Path | None = typer.Argument(
        None,
        help="TOML file with any of the options below as keys (optionally under [run]); "
        "options given on the command line win.",
        exists=True,
        dir_okay=False,
    ),
    model: str | None = typer.Option(
        None, help="Checkpoint folder (transformers, vllm) or the served model name (openai)."
    ),
    model_name: str | None = typer.Option(
        None, help="Name recorded in results [default: --model]."
    ),
    runner: RunnerName | None = typer.Option(
        None, help="How to run the model [default: transformers]."
    ),
    base_url: str | None = typer.Option(
        None,
        help="openai runner: server URL, e.g. "
        "http://127.0.0.1:8000/v1 [default: $OPENAI_BASE_URL].",
    ),
    data: list[Path] | None = typer.Option(
        None,
        help="Data, repeatable: an MMLongBench folder "
        "(with documentQA/), NIAH .jsonl, VLMEvalKit .tsv, QA "
        "pairs (.jsonl/.parquet, with --pool) or extended items.",
    ),
    image_root: Path | None = typer.Option(
        None,
        help="Root of page/needle images [default: mmlb_image/ beside the data folder, else "
        "the data folder].",
    ),
    pool: Path | None = typer.Option(None, help="docpool pool of held-out QA pairs."),
    lengths: str | None = typer.Option(
        None,
        help="Context lengths, e.g. 64K,128K [default: 64K,128K]. MMLongBench's JSONL has "
        "8K-128K; 256K/512K come from VLMEvalKit's MMLongBench_256K/_512K.tsv given with --data.",
    ),
    datasets: str | None = typer.Option(
        None,
        help="MMLongBench sets: mmlongdoc, longdocurl, slidevqa, the MM-NIAH "
        "mm-niah-{retrieval,counting,reasoning}-{text,image}, or the groups documents, niah, "
        "all [default: the three documents].",
    ),
    judge: JudgeChoice | None = typer.Option(
        None, help="rules (MMLongBench v1.0) or llm (v1.1) [default: rules]."
    ),
    judge_model: str | None = typer.Option(None, help="LLM judge model name."),
    judge_base_url: str | None = typer.Option(
        None, help="LLM judge server [default: $OPENAI_BASE_URL]."
    ),
    judge_cache: Path | None = typer.Option(
        None, help="Judge cache (SQLite), shareable across runs [default: OUT/judge-cache.sqlite]."
    ),
    pre_judge: bool | None = typer.Option(
        None,
        "--pre-judge/--no-pre-judge",
        help="Skip the LLM call when a rule proves the answer right [default: on; off with "
        "--mmlb-source, whose official score judges every document-QA item].",
    ),
    prompt_format: str | None = typer.Option(
        None,
        help="Our prompts: lvlm-judge-v1 or lvlm-judge-v1-page-index [default: lvlm-judge-v1; "
        "mmlb-v1.1 with --mmlb-source].",
    ),
    mmlb_source: Path | None = typer.Option(
        None,
        help="Your checkout of github.com/EdinburghNLP/MMLongBench: its instruction templates "
        "and v1.1 judge prompts are read from it at run time (protocol mmlb-v1.1). This "
        "package ships none of MMLongBench's wording.",
        file_okay=False,
    ),
    all_items: bool | None = typer.Option(
        None,
        "--all/--mmlb-subset",
        help="Every item, or MMLongBench's seeded subsets (document QA: shuffled with seed 42 "
        "as Hugging Face datasets shuffles, first 100; NIAH: 50 ids sampled after seeding 42) "
        "[default: --mmlb-subset]. Results record which set ran.",
    ),
    max_new_tokens: int | None = typer.Option(None, help="Greedy answer length [default: 128]."),
    limit: int | None = typer.Option(None, help="At most this many items per dataset and length."),
    family: str | None = typer.Option(
        None, help="qwen2.5-vl or qwen3-vl: image token formula for sizing [default: qwen2.5-vl]."
    ),
    device_map: str | None = typer.Option(
        None, help="transformers runner: accelerate device_map [default: auto]."
    ),
    concurrency: int | None = typer.Option(None, help="Parallel HTTP requests [default: 8]."),
    rope_spec: Path | None = typer.Option(
        None,
        help="A longctx-rope RopeSpec JSON: applied after loading (transformers) or passed as "
        "hf_overrides with max_position_embeddings raised (vllm) [default: the checkpoint's "
        "rope settings].",
    ),
    max_model_len: int | None = typer.Option(
        None,
        help="vllm runner: cap the engine's max_model_len (GPU memory); a longer prompt fails "
        "its own item [default: the longest prompt's estimate plus the answer].",
    ),
    answer_nll: bool | None = typer.Option(
        None,
        "--answer-nll/--no-answer-nll",
        help="transformers runner: also write answer-nll.json, the teacher-forced likelihood of "
        "the gold answer per length (nats per token; no judge needed) [default: off].",
    ),
    out: Path | None = typer.Option(
        None, help="Run folder; rerunning into it resumes [default: lvlm-judge-run]."
    ),
    executor: str | None = typer.Option(
        None,
        help="'local': everything in this process; 'ray': transformers/vllm runners as Ray "
        "actors (one per GPU) and rule scoring as Ray tasks; outputs stay with the driver "
        "[default: local].",
    ),
    ray_address: str | None = typer.Option(
        None, help="Ray cluster to join with --executor ray [default: a local Ray instance]."
    ),
    actors: int | None = typer.Option(
        None, help="Runner actors with --executor ray [default: one per GPU of the cluster]."
    ),
    actor_gpus: float | None = typer.Option(None, help="GPUs per runner actor [default: 1]."),
) -> None:
    """Generate answers for every item, judge them, and write tables and a plot. Resumable."""
    given = {k: v for k, v in locals().items() if k != "config" and v is not None}
    if "all_items" in given:
        given["all"] = given.pop("all_items")
    settings = {**RUN_DEFAULTS, **_load_config(config), **given}
    settings = {k: (v.value if isinstance(v, StrEnum) else v) for k, v in settings.items()}
    if not settings.get("model"):
        fail("no model: pass --model or set model in the config")
    if not settings.get("data"):
        fail("no data: pass --data or set data in the config")
    from lvlm_judge.context import ContextResolver, open_pool
    from lvlm_judge.datasets import DatasetError, LoadReport, load_data
    from lvlm_judge.evaluate import run_eval

    templates = _templates(settings)
    spec = VisionTokenSpec.for_family(ModelFamily(settings["family"]))
    opened_pool = open_pool(settings["pool"]) if settings.get("pool") else None
    report = LoadReport()
    try:
        items = load_data(
            [Path(p) for p in settings["data"]],
            image_root=_image_root(settings),
            pool=opened_pool,
            lengths=option_value(_lengths, str(settings["lengths"]), "--lengths"),
            datasets=[d.strip() for d in str(settings["datasets"]).split(",") if d.strip()],
            spec=spec,
            subset="all" if settings.get("all") else "mmlb",
            report=report,
        )
    except DatasetError as error:
        fail(str(error))
    for problem in report.skipped:
        console.print(f"[yellow]skipped:[/yellow] {problem}", highlight=False)
    for category, count in report.not_scored.items():
        console.print(f"not scored: {count} rows of {category}", highlight=False)
    items = _limit(items, settings.get("limit"))
    if not items:
        fail("the data holds no item at the requested lengths")
    resolver = ContextResolver(_image_root(settings), opened_pool, spec)
    out_dir = Path(settings["out"])
    name = settings.get("model_name") or str(settings["model"])
    steps = None
    if settings["executor"] == "ray":
        from mmprolong_runtime.executor import make_executor

        try:
            steps = make_executor("ray", ray_address=settings.get("ray_address"))
        except ImportError as error:
            fail(str(error))
        model_runner = _actor_runner(settings, name, items)
    elif settings["executor"] == "local":
        if settings.get("ray_address"):
            fail("--ray-address needs --executor ray")
        model_runner = _make_runner(settings, name, resolver, items)
    else:
        fail(f"--executor is local or ray, not {settings['executor']!r}")
    llm_judge = None
    if settings["judge"] == "llm":
        if not settings.get("judge_model"):
            fail("--judge llm needs --judge-model")
        official = settings.get("mmlb_source") is not None
        if official and given.get("pre_judge"):
            fail("--pre-judge is off for the official mmlb-v1.1 score: it judges every item")
        try:
            llm_judge = make_llm_judge(
                settings.get("judge_model"),
                settings.get("judge_cache") or out_dir / "judge-cache.sqlite",
                base_url=settings.get("judge_base_url"),
                concurrency=int(settings["concurrency"]),
                pre_judge=bool(settings["pre_judge"]) and not official,
                mmlb_source=settings.get("mmlb_source"),
            )
        except ValueError as error:
            fail(f"--judge llm: {error}")
    run_eval(
        items, model_runner, out_dir,
        prompt_format=templates, judge=settings["judge"], llm_judge=llm_judge,
        console=console, settings={k: str(v) for k, v in settings.items()}, executor=steps,
        item_set=report.item_set, skipped_records=report.skipped,
        answer_nll=bool(settings.get("answer_nll")),
    )  # fmt: skip
    close = getattr(model_runner, "close", None)
    if callable(close):
        close()


def _templates(settings: dict[str, Any]) -> Any:
    """The prompt templates: MMLongBench's from --mmlb-source, else ours by name."""
    from lvlm_judge.mmlb_source import MMLBSourceError, read_templates
    from lvlm_judge.prompting import MMLB_FORMAT, shipped_templates

    source = settings.get("mmlb_source")
    if source is not None:
        if settings["prompt_format"] not in (MMLB_FORMAT, RUN_DEFAULTS["prompt_format"]):
            fail(f"--mmlb-source reads MMLongBench's prompts; not {settings['prompt_format']!r}")
        try:
            return read_templates(source)
        except MMLBSourceError as error:
            fail(f"--mmlb-source: {error}")
    try:
        return shipped_templates(str(settings["prompt_format"]))
    except ValueError as error:
        fail(str(error))


def _image_root(settings: dict[str, Any]) -> Path:
    """Where page images are: --image-root, else mmlb_image/ beside the first data folder
    (MMLongBench's download layout), else the data folder (or a TSV's image folder)."""
    from lvlm_judge.datasets import data_folder, image_folder_for, is_mmlb_tsv, tsv_image_root

    image_root = settings.get("image_root")
    if image_root is None:
        first = Path(settings["data"][0])
        if first.is_dir():
            folder = data_folder(first)
            image_root = image_folder_for(folder) or folder
        elif is_mmlb_tsv(first):
            image_root = tsv_image_root(first) or first.parent
        else:
            image_root = image_folder_for(first.parent.parent) or first.parent
    return Path(image_root)


def _runner_on_actor(settings: dict[str, Any], name: str, items: list[EvalItem]) -> Any:
    """Build the runner inside a Ray actor: the pool and images are opened there (every node
    must see them)."""
    from lvlm_judge.context import ContextResolver, open_pool

    spec = VisionTokenSpec.for_family(ModelFamily(settings["family"]))
    opened_pool = open_pool(settings["pool"]) if settings.get("pool") else None
    resolver = ContextResolver(_image_root(settings), opened_pool, spec)
    return _make_runner(settings, name, resolver, items)


def _actor_runner(settings: dict[str, Any], name: str, items: list[EvalItem]) -> Any:
    import functools

    from lvlm_judge.runners.actors import ActorRunner, actor_count

    if settings["runner"] == "openai":
        fail("the openai runner calls a server; --executor ray runs transformers/vllm runners")
    gpus = float(settings.get("actor_gpus", 1.0))
    try:
        count = int(settings.get("actors") or actor_count(settings.get("ray_address"), gpus))
    except ValueError as error:
        fail(f"{error}; pass --actor-gpus 0 to run runners on CPUs")
    factory = functools.partial(_runner_on_actor, settings, name, items)
    return ActorRunner(factory, count, num_gpus=gpus, address=settings.get("ray_address"))


def _make_runner(settings: dict[str, Any], name: str, resolver: Any, items: list[EvalItem]) -> Any:
    rope_spec = None
    if settings.get("rope_spec"):
        from lvlm_judge.runners.transformers_runner import read_rope_spec

        rope_spec = read_rope_spec(settings["rope_spec"])
    return make_runner(
        settings["runner"],
        settings["model"],
        resolver,
        items,
        max_new_tokens=int(settings["max_new_tokens"]),
        model_name=name,
        device_map=settings["device_map"],
        rope_spec=rope_spec,
        base_url=settings.get("base_url"),
        concurrency=int(settings["concurrency"]),
        log=console.print,
        templates=_templates(settings),
        max_model_len=int(settings["max_model_len"]) if settings.get("max_model_len") else None,
    )


@app.command()
def extend(
    data: list[Path] = typer.Argument(
        ..., help="MMLongBench document files or folders, QA pairs or EvalItem JSONL to extend."
    ),
    to: str = typer.Option("256K,512K", "--to", help="Target lengths."),
    tokenizer: str = typer.Option(
        ...,
        help="Tokenizer (checkpoint folder) of the model under "
        "test, for the text part of the count.",
    ),
    image_root: Path | None = typer.Option(
        None, help="Root of the page images [default: the data folder]."
    ),
    pool: Path | None = typer.Option(None, help="docpool pool (for QA pairs)."),
    source_lengths: str = typer.Option("128K", help="Which MMLongBench lengths to start from."),
    datasets: str = typer.Option(
        "mmlongdoc,longdocurl,slidevqa", help="MMLongBench document sets to extend."
    ),
    family: str = typer.Option("qwen2.5-vl", help="Image token formula: qwen2.5-vl or qwen3-vl."),
    dpi: float | None = typer.Option(None, help="Render DPI of pool pages [default: 144]."),
    min_pixels: int | None = typer.Option(None, help="Image processor min_pixels [default: 3136]."),
    max_pixels: int | None = typer.Option(
        None, help="Image processor max_pixels [default: 12845056]."
    ),
    seed: int = typer.Option(0, help="Seed of the choice of padding documents."),
    out: Path = typer.Option(
        Path("extended"), help="Folder for <dataset>_K<n>.jsonl EvalItem files."
    ),
) -> None:
    """Our padding option: pad document items with pages of other documents up to 256K /
    512K tokens (each image at most once). MMLongBench's own 256K/512K items are VLMEvalKit's
    MMLongBench_256K/_512K.tsv, which `run --data` reads directly."""
    from lvlm_judge.context import ContextResolver, open_pool
    from lvlm_judge.datasets import DatasetError, load_data
    from lvlm_judge.extend import Extender, ExtensionError, donor_documents

    spec = _spec(family, dpi, min_pixels, max_pixels)
    opened_pool = open_pool(pool) if pool else None
    root = _image_root({"image_root": image_root, "data": data})
    lengths = option_value(_lengths, source_lengths, "--source-lengths")
    targets = option_value(_lengths, to, "--to")
    try:
        items = load_data(
            data, image_root=root, pool=opened_pool, lengths=lengths,
            datasets=[d.strip() for d in datasets.split(",") if d.strip()], spec=spec,
            subset="all",
        )  # fmt: skip
    except DatasetError as error:
        fail(str(error))
    items = [item for item in items if item.metric is None]
    if not items:
        fail("no document items to extend")
    try:
        text_tokens = text_token_counter(tokenizer)
    except ImportError as error:
        fail(str(error))
    extender = Extender(ContextResolver(root, opened_pool, spec), text_tokens, seed)
    by_dataset: dict[str, list[EvalItem]] = defaultdict(list)
    for item in items:
        by_dataset[item.dataset].append(item)
    donors = donor_documents(items)  # padding may come from any loaded document
    for target in targets:
        for dataset, group in by_dataset.items():
            try:
                extended = [extender.extend(item, target, donors) for item in group]
            except ExtensionError as error:
                fail(str(error))
            path = out / f"{dataset}_K{target // 1024}.jsonl"
            write_jsonl(path, extended)
            console.print(f"{dataset} {format_tokens(target)}: {len(extended)} items -> {path}")


@app.command("render-tsv")
def render_tsv(
    tsv: Path = typer.Argument(..., help="VLMEvalKit MMLongBench_DOC.tsv."),
    image_root: Path = typer.Option(..., help="Where the page images go (image_path names)."),
    dpi: float = typer.Option(144, help="Render resolution, VLMEvalKit's default 144."),
) -> None:
    """Render the page images a VLMEvalKit TSV names from the PDFs inside it (needs the
    ``pdf`` extra); pages already on disk are kept."""
    from lvlm_judge.datasets import DatasetError, render_tsv_pages

    try:
        written = render_tsv_pages(tsv, image_root, dpi=dpi)
    except (DatasetError, ImportError) as error:
        fail(str(error))
    console.print(f"{written} page images written under {image_root}")


@app.command()
def report(
    results: list[Path] = typer.Argument(
        ..., help="Run folders (their scores.json and niah-scores.json) or score files."
    ),
    compare: bool = typer.Option(
        True,
        "--compare/--no-compare",
        help="Add rows with the difference of each run from the first.",
    ),
    paper_table: Path | None = typer.Option(
        None, help="paper-tables.json of the paper's published numbers, to print next to ours."
    ),
    paper_section: str = typer.Option(
        "table4_long_document_vqa", help="Table in paper-tables.json."
    ),
    paper_row: list[str] = typer.Option([], help="Rows of that table to show, e.g. MMProLong."),
    out: Path | None = typer.Option(None, help="Write report.md, report.csv and report.png here."),
    generalization: bool = typer.Option(
        False,
        "--generalization",
        help="Show the paper rows' generalization scores (long video, short context, MM-NIAH, "
        "VTCBench-Wild) even without a suite folder; with one they are shown anyway.",
    ),
) -> None:
    """Print runs side by side in the paper's layout (macro and micro averages). Suite folders
    (their suite.json) are shown in a second table of generalization scores."""
    from lvlm_judge.results import (
        comparison_rows,
        csv_text,
        markdown,
        plot,
        table_label,
        table_row,
        write_text,
    )
    from lvlm_judge.results import paper_row as read_paper_row
    from lvlm_judge.suite import generalization_rows, provenance, read_suite_reports

    suites, results = read_suite_reports(results)
    tables = []
    for folder in results:
        paths = sorted(folder.glob("*scores.json")) if folder.is_dir() else [folder]
        if not paths or not all(path.is_file() for path in paths):
            fail(f"{folder}: no scores.json (is it a run folder?)")
        tables += [_score_table(path) for path in paths]
    rows = comparison_rows([(table_label(t), table_row(t)) for t in tables], differences=compare)
    if paper_table is not None:
        try:
            rows += [read_paper_row(paper_table, paper_section, name) for name in paper_row]
        except KeyError as error:
            fail(str(error))
    text = markdown(rows) if rows else ""
    if suites or generalization:
        extra = comparison_rows(generalization_rows(suites), differences=compare)
        if paper_table is not None:
            extra += generalization_rows([], paper_table, paper_row)
        text += ("\n" if text else "") + markdown(extra)
        for report in suites:
            text += f"\nWhat produced each score of {Path(report.checkpoint).name} [suite]:\n"
            text += "".join(f"- {column}: {label}\n" for column, label in provenance(report))
    typer.echo(text)
    if out is not None:
        write_text(out / "report.md", text)
        write_text(out / "report.csv", csv_text(rows))
        if tables:
            plot(tables, out / "report.png")
        console.print(f"report written to {out}")


@app.command()
def score(
    file: Path = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        help="JSONL of predictions: question, answer, answer_format (or metric), prediction.",
    ),
    judge: JudgeChoice = typer.Option(JudgeChoice.RULES, help="rules or llm."),
    out: Path = typer.Option(..., help="Output JSONL: every record with 'score' added."),
    judge_model: str | None = typer.Option(None, help="LLM judge model name."),
    judge_base_url: str | None = typer.Option(
        None, help="LLM judge server [default: $OPENAI_BASE_URL]."
    ),
    judge_cache: Path = typer.Option(Path("judge-cache.sqlite"), help="Judge cache (SQLite)."),
    pre_judge: bool = typer.Option(
        True,
        "--pre-judge/--no-pre-judge",
        help="Skip the LLM call when a rule proves the answer right.",
    ),
) -> None:
    """Score predictions made elsewhere; OUT repeats every record with a numeric score."""
    from lvlm_judge.score_file import RecordError, read_records, score_records, write_records

    llm_judge = None
    if judge is JudgeChoice.LLM:
        if not judge_model:
            fail("--judge llm needs --judge-model")
        try:
            llm_judge = make_llm_judge(
                judge_model, judge_cache, base_url=judge_base_url, pre_judge=pre_judge
            )
        except ValueError as error:
            fail(f"--judge llm: {error}")
    try:
        records = read_records(file)
        scored = score_records(records, judge.value, llm_judge)
    except (RecordError, ValueError) as error:
        fail(str(error))
    write_records(out, scored)
    mean = sum(r["score"] for r in scored) / len(scored) if scored else 0.0
    stats = f"; judge {json.dumps(llm_judge.stats.as_dict())}" if llm_judge else ""
    console.print(f"scored {len(scored)} records, mean {100 * mean:.2f}{stats} -> {out}")


from lvlm_judge import suite_cli  # noqa: E402, F401  (registers `suite`)

if __name__ == "__main__":
    app()
