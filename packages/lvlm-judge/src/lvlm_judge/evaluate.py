"""One evaluation run: generate what is missing, judge, tabulate, plot. Resumable.

Layout of a run directory:
    predictions.jsonl   one Prediction per finished item, appended as items finish
    results.jsonl       one ItemResult per judged item (prediction, parsed answer, scores,
                        judge rationale)
    scores.json         the ScoreTable of document QA; scores.md / scores.csv the paper-style
                        table; scores.png score against context length
    niah-scores.*       the same for MM-NIAH items
    run.json            the RunManifest (redacted settings, versions, counts), the protocol
                        and item set, judge cost (calls made / cached / skipped / failed,
                        tokens) and errors, failures and exclusions, doc accuracy and F1
Every table, the manifest and the summary name the protocol: ``lvlm-judge-v1`` (our prompts
and judge) or ``mmlb-v1.1`` (MMLongBench's, read from the user's checkout). Under mmlb-v1.1 an
empty output is left out of the means, as MMLongBench v1.1 does; under ours it scores 0. Both
count them. A run with
failures (runner errors, judge failures, skipped records) ends "done" with them counted in
run.json and said in its summary line. A rerun reuses every prediction without an error; the
judge cache makes re-judging free.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lvlm_judge.answer_nll import run_answer_nll
from lvlm_judge.judge.llm import LLMJudge
from lvlm_judge.prompting import (
    MMLB_FORMAT,
    OUR_FORMAT,
    OUR_TEMPLATES,
    PromptTemplates,
    build_prompt,
    shipped_templates,
)
from lvlm_judge.results import (
    ItemResult,
    csv_text,
    markdown,
    plot,
    score_table,
    table_label,
    table_row,
    write_text,
)
from lvlm_judge.runners.base import GenerationRequest, Runner
from lvlm_judge.scoring import JudgeName, doc_summary, judge_predictions
from mmprolong_runtime import RunManifest
from mmprolong_runtime.executor import Executor
from mmprolong_schemas import EvalItem, Prediction, ScoreTable, read_jsonl, write_jsonl
from mmprolong_schemas.io import append_jsonl, atomic_path


@dataclass
class RunSummary:
    out_dir: Path
    tables: dict[str, ScoreTable]
    generated: int
    reused: int
    failed_items: list[str]
    judge_stats: dict[str, int] = field(default_factory=dict)
    doc_scores: dict[str, dict[str, float]] = field(default_factory=dict)
    protocol: str = OUR_FORMAT
    item_set: str = "given items"
    judge_failed: list[str] = field(default_factory=list)
    empty_outputs: list[str] = field(default_factory=list)
    skipped_records: list[str] = field(default_factory=list)
    judge_errors: list[str] = field(default_factory=list)
    answer_nll: dict[str, Any] | None = None

    @property
    def failures(self) -> int:
        """Runner errors, judge failures and skipped records: what makes a run incomplete."""
        return len(self.failed_items) + len(self.judge_failed) + len(self.skipped_records)

    def as_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "item_set": self.item_set,
            "complete": self.failures == 0,
            "generated": self.generated,
            "reused": self.reused,
            "failed_items": self.failed_items,
            "judge_failed": self.judge_failed,
            "judge_errors": self.judge_errors,
            "empty_outputs": self.empty_outputs,
            "skipped_records": self.skipped_records,
            "answer_nll": self.answer_nll,
            "judge": self.judge_stats,
            "doc_scores": self.doc_scores,
            "tables": {stem: table_row(table) for stem, table in self.tables.items()},
        }


def drop_torn_tail(path: Path) -> None:
    """Cut a half-written last line (a run killed mid-append) so new lines start cleanly."""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    with atomic_path(path) as tmp:
        tmp.write_bytes(data[: data.rfind(b"\n") + 1])


def read_predictions(path: Path, model: str) -> dict[str, Prediction]:
    """Finished predictions of ``model`` (the last line per item wins; errors are not finished)."""
    if not path.exists():
        return {}
    drop_torn_tail(path)
    found: dict[str, Prediction] = {}
    for prediction in read_jsonl(path, Prediction, tolerate_torn_tail=True):
        if prediction.model != model:
            raise ValueError(
                f"{path} holds predictions of {prediction.model!r}, not {model!r}: "
                "use another output directory"
            )
        found[prediction.item_id] = prediction
    return found


def _check_unique(items: Sequence[EvalItem]) -> None:
    seen: set[str] = set()
    for item in items:
        if item.item_id in seen:
            raise ValueError(f"item id {item.item_id!r} appears twice in the data")
        seen.add(item.item_id)


def run_eval(
    items: Sequence[EvalItem],
    runner: Runner,
    out_dir: str | Path,
    *,
    prompt_format: PromptTemplates | str = OUR_TEMPLATES,
    judge: JudgeName = "rules",
    llm_judge: LLMJudge | None = None,
    console: Console | None = None,
    settings: dict[str, Any] | None = None,
    executor: Executor | None = None,
    item_set: str = "given items",
    skipped_records: Sequence[str] = (),
    answer_nll: bool = False,
) -> RunSummary:
    """Evaluate ``runner`` on ``items`` into ``out_dir``; items already predicted are skipped.
    ``prompt_format`` is a PromptTemplates (ours, or MMLongBench's from mmlb_source) or the
    name of one we ship. ``item_set`` and ``skipped_records`` (from the LoadReport) are
    recorded. ``answer_nll`` adds the judge-free answer-nll metric (transformers runner).
    ``executor`` (such as a RayExecutor) runs the per-item rule scoring; the driver writes
    every output."""
    console = console or Console(stderr=True)
    templates = (
        shipped_templates(prompt_format) if isinstance(prompt_format, str) else prompt_format
    )
    protocol = run_protocol(templates, judge, llm_judge)
    manifest = RunManifest.start(
        "lvlm-judge run",
        {**(settings or {}), "model": runner.model_name, "prompt_format": templates.name,
         "prompt_source": templates.source, "protocol": protocol, "item_set": item_set,
         "judge": judge, "items": len(items),
         "judge_prompts": llm_judge.prompts.version if llm_judge else None},
        command=sys.argv,
    )  # fmt: skip
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_unique(items)
    predictions_path = out / "predictions.jsonl"
    predictions = read_predictions(predictions_path, runner.model_name)
    done = {key for key, p in predictions.items() if p.error is None}
    todo = [item for item in items if item.item_id not in done]
    reused = len(items) - len(todo)
    requests = [GenerationRequest(item.item_id, build_prompt(item, templates)) for item in todo]
    with Progress(
        TextColumn("[bold]generate"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False, disable=not requests,
    ) as progress:  # fmt: skip
        task = progress.add_task("generate", total=len(requests))
        for prediction in runner.generate(requests):
            append_jsonl(predictions_path, [prediction])
            predictions[prediction.item_id] = prediction
            progress.advance(task)

    with Progress(
        TextColumn("[bold]judge"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=llm_judge is None or judge != "llm",
    ) as progress:  # fmt: skip
        judged = progress.add_task("judge", total=sum(1 for i in items if i.metric is None))
        results = judge_predictions(
            items, predictions, judge, llm_judge, lambda n: progress.advance(judged, n),
            executor, templates, exclude_empty=protocol == MMLB_FORMAT,
        )  # fmt: skip
    write_jsonl(out / "results.jsonl", results)
    tables: dict[str, ScoreTable] = {}
    rows: list[tuple[str, dict[str, float]]] = []
    for stem, members in (
        ("scores", [r for r in results if r.metric is None]),
        ("niah-scores", [r for r in results if r.metric is not None]),
    ):
        if not members:
            continue
        table = score_table(
            members, runner.model_name, judge, templates.name,
            protocol=protocol, item_set=item_set,
        )  # fmt: skip
        tables[stem] = table
        row = [(table_label(table), table_row(table))]
        rows += row
        write_text(out / f"{stem}.json", table.model_dump_json(indent=1) + "\n")
        write_text(out / f"{stem}.md", markdown(row))
        write_text(out / f"{stem}.csv", csv_text(row))
        plot([table], out / f"{stem}.png")
    nll_table = run_answer_nll(items, runner, out, templates) if answer_nll else None
    summary = RunSummary(
        out_dir=out,
        tables=tables,
        generated=len(requests),
        reused=reused,
        failed_items=sorted(r.item_id for r in results if r.judge_source == "error"),
        judge_stats=llm_judge.stats.as_dict() if llm_judge else {},
        doc_scores=doc_summary(results),
        protocol=protocol,
        item_set=item_set,
        judge_failed=sorted(r.item_id for r in results if r.judge_source == "judge-failed"),
        empty_outputs=sorted(r.item_id for r in results if r.judge_source == "empty"),
        skipped_records=list(skipped_records),
        judge_errors=list(llm_judge.stats.errors) if llm_judge else [],
        answer_nll=nll_table,
    )
    manifest = manifest.finish(
        "done", items=len(items), generated=len(requests), reused=reused,
        runner_errors=len(summary.failed_items), judge_failures=len(summary.judge_failed),
        empty_outputs=len(summary.empty_outputs), skipped_records=len(skipped_records),
        failures=summary.failures,
        **{f"judge_{k}": v for k, v in summary.judge_stats.items()},
    )  # fmt: skip
    run_record = {"manifest": manifest.model_dump(mode="json"), **summary.as_dict()}
    write_text(out / "run.json", _json(run_record))
    _print_summary(console, summary, rows)
    return summary


def run_protocol(templates: PromptTemplates, judge: str, llm_judge: LLMJudge | None) -> str:
    """The label of what produces the scores. ``mmlb-v1.1`` only when MMLongBench's own
    prompts (and, with the LLM judge, its judge prompts) were read from its checkout."""
    mmlb_prompts = templates.name == MMLB_FORMAT
    mmlb_judge = llm_judge is not None and llm_judge.prompts.version.startswith(MMLB_FORMAT)
    if judge == "llm" and mmlb_prompts != mmlb_judge:
        return (
            f"mixed: {MMLB_FORMAT if mmlb_prompts else templates.name} prompts, "
            f"{MMLB_FORMAT if mmlb_judge else OUR_FORMAT} judge"
        )
    return MMLB_FORMAT if mmlb_prompts else templates.name


def _json(data: dict[str, Any]) -> str:
    import json

    return json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n"


def read_results(out_dir: str | Path) -> list[ItemResult]:
    return list(read_jsonl(Path(out_dir) / "results.jsonl", ItemResult))


def _print_summary(
    console: Console, summary: RunSummary, rows: list[tuple[str, dict[str, float]]]
) -> None:
    from rich.table import Table

    for label, row in rows:
        table = Table(title=f"lvlm-judge: {label}")
        for column in row:
            table.add_column(column, justify="right")
        table.add_row(*(f"{value:.2f}" for value in row.values()))
        console.print(table)
    stats = summary.judge_stats
    cost = (
        f"; judge calls made {stats['made']}, cached {stats['cached']}, skipped "
        f"{stats['skipped']}, failed {stats['failed']}, unparsed replies {stats['unparsed']}, "
        f"scores outside 0-1 (kept, as MMLongBench keeps them) {stats['out_of_range']}, tokens "
        f"{stats['prompt_tokens'] + stats['completion_tokens']}"
        if stats
        else ""
    )
    console.print(
        f"protocol {summary.protocol}; items: {summary.item_set}; generated "
        f"{summary.generated}, reused {summary.reused}, runner errors "
        f"{len(summary.failed_items)}, judge failures {len(summary.judge_failed)}, empty "
        f"outputs {len(summary.empty_outputs)}, skipped records "
        f"{len(summary.skipped_records)}{cost}; results in {summary.out_dir}",
        markup=False,
    )
    if summary.failures:
        console.print(
            f"[red]incomplete:[/red] {summary.failures} failures (see run.json); "
            "rerun into the same folder to retry them"
        )
