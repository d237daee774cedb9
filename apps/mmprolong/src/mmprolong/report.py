"""The run report: one Markdown file and its PNG figures.

It shows what the run produced (pool statistics, the mixture's length histogram, the loss
curve, score against context length for the base and the trained model), what produced it
(the recipe, every stage's manifest) and, clearly apart, the paper's published numbers for
context. Figures a package already draws (its own stats plots) are linked as they are.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt

from mmprolong.orchestrator import failures_note
from mmprolong.paper import PaperRow
from mmprolong.recipes import recipe_to_toml
from mmprolong_runtime import RunManifest
from mmprolong_schemas import Recipe, ScoreTable, format_tokens
from mmprolong_schemas.io import atomic_path

REPORT_FILE = "report.md"
MIXTURE_PNG = "mixture_lengths.png"
LOSS_PNG = "loss.png"
SCORES_PNG = "score_vs_length.png"


@dataclass
class ReportData:
    recipe: Recipe
    run_dir: Path
    manifests: dict[str, RunManifest] = field(default_factory=dict)
    pool_stats: dict[str, float | int | str] = field(default_factory=dict)
    sample_tokens: list[int] = field(default_factory=list)
    task_tokens: dict[str, int] = field(default_factory=dict)
    loss: list[tuple[int, float]] = field(default_factory=list)
    sft_loss: list[tuple[int, float]] = field(default_factory=list)
    """Loss of the SFT stage after LongPT, when the recipe has one."""
    training_books: dict[str, str] = field(default_factory=dict)
    """What the run trained, from its last metrics record: tokens trained against the budget,
    MFU in both conventions, ..."""
    validation_loss: dict[str, list[tuple[int, float, int]]] = field(default_factory=dict)
    """Held-out answer loss while training: length bucket ("32K-64K", ..., "all") ->
    (step, loss, samples) of every validation pass."""
    scores: dict[str, ScoreTable] = field(default_factory=dict)
    """Label ("base", "trained") -> the model's score table."""
    generalization: dict[str, dict[str, float]] = field(default_factory=dict)
    """Label ("base", "trained") -> the lvlm-judge suite's scores under the paper's columns."""
    evaluated: dict[str, str] = field(default_factory=dict)
    """Label -> the checkpoint evaluated under it, in words (which stage's export)."""
    answer_nll: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Label -> lvlm-judge's answer-nll table (mean nats per gold-answer token per length)."""
    paper_rows: list[PaperRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Parts of the report that could not be filled, and why."""
    package_figures: dict[str, tuple[str, Path]] = field(default_factory=dict)
    """Section ("pool", "mixture", "loss", "scores") -> (caption, PNG) drawn by a package's
    own writer; it replaces the report's own figure for that section."""


def _save(figure: plt.Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def _loss_summary(loss: list[tuple[int, float]]) -> str:
    (first_step, first), (last_step, last) = loss[0], loss[-1]
    return (
        f"{len(loss)} logged steps; loss {first:.4f} at step {first_step} -> "
        f"{last:.4f} at step {last_step}."
    )


def _figure(
    data: ReportData, section: str, out_dir: Path, own: tuple[str, str] | None
) -> list[str]:
    """Markdown for a section's figure: the package's own when it drew one, else ours
    (``own`` = caption and file name in ``out_dir``), or nothing when neither exists."""
    if section in data.package_figures:
        caption, figure = data.package_figures[section]
        target = out_dir / figure.name
        if figure.resolve() != target.resolve():
            shutil.copyfile(figure, target)
        return [f"![{caption}]({target.name})", ""]
    if own is None:
        return []
    caption, name = own
    return [f"![{caption}]({name})", ""] if (out_dir / name).exists() else []


def _histogram(values: Sequence[int], title: str, xlabel: str, path: Path) -> Path:
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.hist(values, bins=min(30, max(5, len(values) // 2)), color="#4472c4", edgecolor="white")
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("count")
    return _save(figure, path)


def _validation_markdown(validation: dict[str, list[tuple[int, float, int]]]) -> list[str]:
    """Held-out answer loss per length bucket at the first and the last validation pass."""
    first_step, last_step = (
        min(p[0] for v in validation.values() for p in v),
        max(p[0] for v in validation.values() for p in v),
    )
    md = [
        "Held-out answer loss (teacher-forced, answer tokens only, per sample length):",
        "",
        f"| length bucket (tokens) | samples | step {first_step} | step {last_step} |",
        "|---|---|---|---|",
    ]
    for bucket, points in validation.items():
        at = {step: loss for step, loss, _ in points}
        cells = [f"{at[s]:.4f}" if s in at else "-" for s in (first_step, last_step)]
        md.append(f"| {bucket} | {points[-1][2]} | {cells[0]} | {cells[1]} |")
    return [*md, ""]


def loss_figure(
    loss: Sequence[tuple[int, float]],
    path: Path,
    validation: dict[str, list[tuple[int, float, int]]] | None = None,
) -> Path:
    figure, axes = plt.subplots(figsize=(6, 3.5))
    steps, values = zip(*loss, strict=True)
    axes.plot(steps, values, marker="." if len(loss) < 60 else None, color="#c0504d")
    for bucket, points in (validation or {}).items():
        axes.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            marker="o",
            ms=3,
            lw=0.8,
            label=f"held-out {bucket}",
        )
    if validation:
        axes.legend(fontsize=7)
    axes.set_title("Training loss")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss (answer tokens)")
    axes.grid(alpha=0.3)
    return _save(figure, path)


def score_figure(scores: dict[str, ScoreTable], path: Path) -> Path:
    """Macro-average score per context length, one line per model."""
    figure, axes = plt.subplots(figsize=(6, 3.5))
    for label, table in scores.items():
        lengths = table.lengths
        values = [table.macro(length) or 0.0 for length in lengths]
        axes.plot(range(len(lengths)), values, marker="o", label=f"{label} ({table.model})")
        axes.set_xticks(range(len(lengths)), [format_tokens(length) for length in lengths])
    axes.set_title("Score vs context length")
    axes.set_xlabel("context length (tokens)")
    axes.set_ylabel("score (%)")
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)


def _generalization_markdown(rows: dict[str, dict[str, float]]) -> list[str]:
    """Base and trained side by side, plus the paper's rows for the same columns (labelled as
    the paper's)."""
    from mmprolong.paper import paper_tables

    columns = list(dict.fromkeys(column for row in rows.values() for column in row))
    named = list(rows.items())
    try:
        from lvlm_judge.suite import paper_generalization_row

        tables = paper_tables()
        for name in ("Qwen2.5-VL-7B", "MMProLong"):
            paper = {
                k: v for k, v in paper_generalization_row(tables, name).items() if k in columns
            }
            if paper:
                named.append((f"paper: {name}", paper))
    except ImportError:
        pass
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, row in named:
        cells = [f"{row[c]:.2f}" if c in row else "" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _score_markdown(scores: dict[str, ScoreTable]) -> list[str]:
    lengths = sorted({length for table in scores.values() for length in table.lengths})
    datasets = sorted({name for table in scores.values() for name in table.datasets})
    header = [
        "model", "protocol", *(f"{format_tokens(n)} {d}" for n in lengths for d in datasets),
        "macro", "excluded",
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, table in scores.items():
        cells = []
        for length in lengths:
            for dataset in datasets:
                cell = table.cell(dataset, length)
                cells.append(f"{cell.score:.2f} (n={cell.n})" if cell else "-")
        macro = table.macro()
        protocol = f"{table.protocol or table.prompt_format}, {table.judge} judge"
        lines.append(
            f"| {label}: {table.model} | {protocol} | " + " | ".join(cells)
            + f" | {_fmt(macro)} | {table.excluded} |"
        )  # fmt: skip
    return lines


def _nll_markdown(tables: dict[str, dict[str, Any]]) -> list[str]:
    keys = sorted({(c["length"], c["dataset"]) for t in tables.values() for c in t["cells"]})
    header = ["model", *(f"{format_tokens(n)} {d}" for n, d in keys)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, table in tables.items():
        found = {(c["length"], c["dataset"]): c for c in table["cells"]}
        cells = [f"{found[k]['nll']:.3f} (n={found[k]['n']})" if k in found else "-" for k in keys]
        lines.append(f"| {label}: {table['model']} | " + " | ".join(cells) + " |")
    return lines


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _paper_markdown(rows: list[PaperRow]) -> list[str]:
    lines: list[str] = []
    for title in dict.fromkeys(row.title for row in rows):
        group = [row for row in rows if row.title == title]
        columns = list(dict.fromkeys(key for row in group for key in row.values))
        lines += [f"**{title}** (paper)", ""]
        lines.append("| model / setting | " + " | ".join(columns) + " |")
        lines.append("|" + "---|" * (len(columns) + 1))
        for row in group:
            values = [_fmt(row.values.get(column)) for column in columns]
            lines.append(f"| {row.row} | " + " | ".join(values) + " |")
        lines.append("")
    return lines


def write_report(data: ReportData, out_dir: Path) -> Path:
    """Write ``report.md`` and its figures into ``out_dir``; returns the Markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    recipe = data.recipe
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    md = [
        f"# MMProLong run report: {recipe.name}",
        "",
        f"{recipe.description}" if recipe.description else "",
        "",
        f"- run directory: `{data.run_dir}`",
        f"- model: {recipe.init_model} ({recipe.family.value})"
        + (
            ", tiny random-weight stand-in built from config"
            if recipe.demo and recipe.demo.tiny_model
            else ""
        ),
        f"- written: {when}",
        "",
    ]
    if recipe.demo is not None:
        md += [
            "> This is a self-contained run on generated PDFs and a tiny model with random",
            "> weights. Its numbers show that the pipeline works end to end; they say nothing",
            "> about the quality of a real model.",
            "",
        ]
    md += [
        "## Stages",
        "",
        "| stage | status | counts | config hash | took |",
        "|---|---|---|---|---|",
    ]
    for name, manifest in data.manifests.items():
        counts = ", ".join(f"{key} {value}" for key, value in manifest.counts.items()) or "-"
        took = (
            f"{(manifest.finished_at - manifest.started_at).total_seconds():.1f} s"
            if manifest.finished_at
            else "-"
        )
        note = failures_note(manifest.counts) if manifest.status == "done" else ""
        status = f"{manifest.status} ({note})" if note else manifest.status
        md.append(f"| {name} | {status} | {counts} | `{manifest.config_hash[:12]}` | {took} |")
    md.append("")

    md += ["## Document pool", ""]
    if data.pool_stats:
        md += ["| statistic | value |", "|---|---|"]
        md += [f"| {key} | {value} |" for key, value in data.pool_stats.items()]
        md.append("")
    md += _figure(data, "pool", out_dir, None)

    md += ["## Training mixture", ""]
    if data.task_tokens:
        total = sum(data.task_tokens.values()) or 1
        md += ["| task | tokens | share |", "|---|---|---|"]
        md += [
            f"| {task} | {tokens} | {tokens / total:.1%} |"
            for task, tokens in data.task_tokens.items()
        ]
        md.append("")
    if data.sample_tokens:
        md += [f"{len(data.sample_tokens)} samples, {sum(data.sample_tokens)} tokens.", ""]
        if "mixture" not in data.package_figures:
            _histogram(data.sample_tokens, "Tokens per sample", "tokens", out_dir / MIXTURE_PNG)
    md += _figure(
        data, "mixture", out_dir, ("Length histogram of the training mixture", MIXTURE_PNG)
    )

    md += ["## Training", ""]
    if data.training_books:
        md += ["| quantity | value |", "|---|---|"]
        md += [f"| {key} | {value} |" for key, value in data.training_books.items()]
        md.append("")
    if data.loss:
        md += [_loss_summary(data.loss), ""]
        if data.validation_loss:
            md += _validation_markdown(data.validation_loss)
        if "loss" not in data.package_figures:
            loss_figure(data.loss, out_dir / LOSS_PNG, data.validation_loss)
        md += _figure(data, "loss", out_dir, ("Training loss", LOSS_PNG))
    else:
        md += ["No training log found.", ""]
    if data.sft_loss:
        md += ["SFT after LongPT: " + _loss_summary(data.sft_loss), ""]

    md += ["## Evaluation (this run)", ""]
    if data.evaluated:
        md += [
            "Checkpoints evaluated:",
            "",
            *(f"- {label}: {what}" for label, what in data.evaluated.items()),
            "",
        ]
    if data.scores:
        first_table = next(iter(data.scores.values()))
        protocol = first_table.protocol or first_table.prompt_format
        md += [
            f"Protocol: {protocol} ({first_table.judge} judge; prompt format "
            f"{first_table.prompt_format}); items: {first_table.item_set or 'not recorded'}. "
            "lvlm-judge-v1 is this toolkit's wording, not MMLongBench's; mmlb-v1.1 is "
            "MMLongBench's, read from its checkout. Excluded items (runner or judge failures; "
            "empty outputs under mmlb-v1.1) are counted, not scored.",
            "",
        ]
        md += [*_score_markdown(data.scores), ""]
        if "scores" not in data.package_figures:
            score_figure(data.scores, out_dir / SCORES_PNG)
        md += _figure(
            data, "scores", out_dir, ("Score vs context length, base vs trained", SCORES_PNG)
        )
    else:
        md += ["No evaluation scores found.", ""]
    if data.answer_nll:
        md += [
            "Answer likelihood (answer-nll): the teacher-forced negative log-likelihood of the "
            "gold answer, in nats per answer token; lower is better. It needs no judge.",
            "",
            *_nll_markdown(data.answer_nll),
            "",
        ]

    if data.generalization:
        md += ["## Generalization (lvlm-judge suite, this run)", ""]
        md += [*_generalization_markdown(data.generalization), ""]

    if data.notes:
        md += ["## Notes", "", *(f"- {note}" for note in data.notes), ""]

    if data.paper_rows:
        md += [
            "## Reference: the paper's published numbers",
            "",
            "These figures are copied from the MMProLong paper's tables for context. They were",
            "measured by the paper's authors on MMLongBench with full-size models; they are not",
            "results of this run.",
            "",
        ]
        md += _paper_markdown(data.paper_rows)

    md += ["## Recipe", "", "```toml", recipe_to_toml(recipe).rstrip(), "```", ""]
    md += ["## Run manifests", ""]
    for name, manifest in data.manifests.items():
        md += [
            "<details>",
            f"<summary>{name}</summary>",
            "",
            "```json",
            json.dumps(manifest.model_dump(mode="json"), indent=2),
            "```",
            "</details>",
            "",
        ]
    path = out_dir / REPORT_FILE
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(md), encoding="utf-8")
    return path
