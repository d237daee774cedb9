"""Per-item results, score tables, and their Markdown / CSV / PNG forms.

Tables follow the paper's layout: one row per model, a column per (length, dataset), the macro
average of the datasets per length (the paper's "AVG"), and an overall macro average. The
micro average (items weigh equally, as VLMEvalKit reports) is given alongside.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from mmprolong_schemas import AnswerFormat, NiahMetric, ScoreCell, ScoreTable, format_tokens
from mmprolong_schemas.base import Model
from mmprolong_schemas.io import atomic_path
from mmprolong_schemas.qa import Answer

SHORT_NAMES = {"mmlongdoc": "MMLB-D", "longdocurl": "LD-URL", "slidevqa": "SLIDE"}
"""Column names of the paper's tables."""


class ItemResult(Model):
    """Everything known about one item after judging, one JSONL line per item."""

    item_id: str
    dataset: str
    length: int
    question: str
    answer: Answer
    answer_format: AnswerFormat | None = None
    metric: NiahMetric | None = None
    model: str
    prompt_format: str
    prediction: str
    parsed_answer: str
    score: float = Field(
        allow_inf_nan=False,
        description="The headline score of the item: in [0, 1] but for an LLM judge's score "
        "outside it, kept as MMLongBench v1.1 keeps it.",
    )
    scores: dict[str, float] = Field(default_factory=dict)
    judge: Literal["rules", "llm"]
    judge_source: str
    judge_model: str | None = None
    rationale: str = ""
    error: str | None = None
    excluded: str | None = Field(
        default=None,
        description="Why the item is left out of the means (a runner or judge failure; an "
        "empty output under mmlb-v1.1, as MMLongBench v1.1 leaves it out); counted in the table.",
    )


def column_name(dataset: str, length: int) -> str:
    return f"{format_tokens(length)}.{SHORT_NAMES.get(dataset, dataset)}"


def score_table(
    results: Iterable[ItemResult],
    model: str,
    judge: str,
    prompt_format: str,
    *,
    protocol: str | None = None,
    item_set: str | None = None,
) -> ScoreTable:
    """Mean headline score (percent) per (dataset, length) over the items not excluded; the
    excluded ones are counted."""
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    excluded = 0
    for result in results:
        if result.excluded is not None:
            excluded += 1
            continue
        groups[(result.dataset, result.length)].append(result.score)
    cells = [
        ScoreCell(dataset=dataset, length=length, n=len(scores),
                  score=100.0 * sum(scores) / len(scores))
        for (dataset, length), scores in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]  # fmt: skip
    return ScoreTable(
        model=model, judge=judge, prompt_format=prompt_format, cells=cells,
        protocol=protocol, item_set=item_set, excluded=excluded,
    )  # fmt: skip


def table_label(table: ScoreTable) -> str:
    """How a table's row is named everywhere: model, protocol and judge."""
    protocol = table.protocol or table.prompt_format
    return f"{table.model} [{protocol}, {table.judge} judge]"


def table_row(table: ScoreTable) -> dict[str, float]:
    """The paper's columns for one table: per length each dataset and AVG, then AVG."""
    row: dict[str, float] = {}
    for length in table.lengths:
        for dataset in _ordered(table.datasets):
            cell = table.cell(dataset, length)
            if cell is not None:
                row[column_name(dataset, length)] = cell.score
        macro = table.macro(length)
        if macro is not None:
            row[f"{format_tokens(length)}.AVG"] = macro
    lengths = table.lengths
    per_length = [table.macro(length) for length in lengths]
    values = [value for value in per_length if value is not None]
    if values:
        row["AVG"] = sum(values) / len(values)
    micro = table.micro()
    if micro is not None:
        row["MICRO"] = micro
    return row


def _ordered(datasets: Iterable[str]) -> list[str]:
    known = [name for name in SHORT_NAMES if name in set(datasets)]
    return known + sorted(set(datasets) - set(known))


def _columns(rows: Sequence[dict[str, float]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    tail = [c for c in ("AVG", "MICRO") if c in columns]
    return [c for c in columns if c not in tail] + tail


def comparison_rows(
    named: Sequence[tuple[str, dict[str, float]]], *, differences: bool = True
) -> list[tuple[str, dict[str, float]]]:
    """Rows side by side; with ``differences``, each later row's change from the first."""
    rows = list(named)
    if differences and len(rows) > 1:
        base_name, base = rows[0]
        for name, row in list(rows[1:]):
            delta = {key: row[key] - base[key] for key in row if key in base}
            rows.append((f"Δ {name} - {base_name}", delta))
    return rows


def markdown(rows: Sequence[tuple[str, dict[str, float]]]) -> str:
    columns = _columns([row for _, row in rows])
    lines = [
        "| model | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name, row in rows:
        cells = [f"{row[c]:.2f}" if c in row else "" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[tuple[str, dict[str, float]]]) -> str:
    columns = _columns([row for _, row in rows])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["model", *columns])
    for name, row in rows:
        writer.writerow([name, *(f"{row[c]:.4f}" if c in row else "" for c in columns)])
    return buffer.getvalue()


def paper_row(path: str | Path, table: str, row: str) -> tuple[str, dict[str, float]]:
    """A row of the paper's published tables (paper-tables.json), labelled as the paper's."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    try:
        values = data[table][row]
    except KeyError:
        raise KeyError(f"{path} has no row {row!r} in table {table!r}") from None
    numbers = {k: float(v) for k, v in values.items() if isinstance(v, int | float)}
    return f"paper: {row} ({table})", numbers


def plot(tables: Sequence[ScoreTable], path: str | Path) -> Path:
    """Score against context length, one line per dataset (and run), macro average dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for table in tables:
        prefix = f"{table.model}: " if len(tables) > 1 else ""
        for dataset in _ordered(table.datasets):
            points = [(c.length, c.score) for c in table.cells if c.dataset == dataset and c.n]
            points.sort()
            if points:
                xs, ys = zip(*points, strict=True)
                axes.plot(xs, ys, marker="o", label=prefix + SHORT_NAMES.get(dataset, dataset))
        macro = [(length, table.macro(length)) for length in table.lengths]
        macro_points = [(x, y) for x, y in macro if y is not None]
        if len(table.datasets) > 1 and macro_points:
            xs, ys = zip(*macro_points, strict=True)
            axes.plot(xs, ys, linestyle="--", color="black", label=prefix + "AVG (macro)")
    lengths = sorted({c.length for t in tables for c in t.cells})
    axes.set_xscale("log", base=2)
    axes.set_xticks(lengths, [format_tokens(length) for length in lengths])
    axes.set_xlabel("context length (tokens)")
    axes.set_ylabel("score (%)")
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title("Score against context length")
    figure.tight_layout()
    target = Path(path)
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)
    return target


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
