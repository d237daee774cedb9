"""The paper's generalization benchmarks on one checkpoint, by named group.

    video  long video through lmms-eval: videomme, mlvu_dev, longvideobench_val_v
    short  short-context skills through lmms-eval: the paper's MMBench, RealWorldQA, MMMU,
           MMMU-Pro (standard and vision), MathVista, OCRBench
    niah   MM-NIAH through lvlm-judge's own MMLongBench loaders, runners and scorer

Each group's scores land in ``<out>/suite.json`` (a SuiteReport), labelled with what produced
them; a task that fails is recorded there with its reason and the others go on.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from lvlm_judge.lmms import (
    LMMS_TASKS,
    LmmsEvalError,
    LmmsModel,
    SuiteScore,
    lmms_version,
    run_tasks,
)
from mmprolong_schemas import Model, ScoreTable, atomic_path, format_tokens

LMMS_GROUPS: dict[str, tuple[str, ...]] = {
    "video": ("videomme", "mlvu_dev", "longvideobench_val_v"),
    "short": (
        "mmbench_en_dev", "realworldqa", "mmmu_val", "mmmu_pro_standard", "mmmu_pro_vision",
        "mathvista_testmini_format", "ocrbench",
    ),
}  # fmt: skip
GROUPS: tuple[str, ...] = (*LMMS_GROUPS, "niah")
PAPER_SET: tuple[str, ...] = ("video", "short", "niah")
"""The groups the paper reports (VTCBench-Wild is not yet runnable here)."""

NIAH_COLUMNS = {"retrieval": "Ret", "counting": "Count", "reasoning": "Reas"}
"""MM-NIAH task -> the paper's column (table17_mm_niah); text and image needles are averaged."""


class SuiteReport(Model):
    checkpoint: str
    rope: dict[str, Any] = Field(default_factory=dict)
    groups: list[str]
    scores: list[SuiteScore] = Field(default_factory=list)
    failures: dict[str, str] = Field(default_factory=dict)
    """'group/task' -> why it produced no score."""

    def write(self, out_dir: str | Path) -> Path:
        path = Path(out_dir) / "suite.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        return path


def read_rope(checkpoint: str | Path) -> dict[str, Any]:
    """The rope settings a checkpoint's config.json carries, in both the transformers 5 form
    (text_config.rope_parameters) and the 4.x / vLLM form (rope_theta, rope_scaling)."""
    import json

    path = Path(checkpoint) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise LmmsEvalError(f"{path}: cannot read the checkpoint's config ({error})") from None
    text = config.get("text_config") or {}
    rope: dict[str, Any] = {}
    for source in (config, text):
        for key in ("rope_parameters", "rope_theta", "rope_scaling", "max_position_embeddings"):
            if key in source and key not in rope:
                rope[key] = source[key]
    return rope


def niah_scores(table: ScoreTable, source: str) -> list[SuiteScore]:
    """The paper's MM-NIAH columns per length (the mean of text and image needles) from
    lvlm-judge's niah-scores table."""
    by_column: dict[tuple[int, str], list[tuple[float, int]]] = defaultdict(list)
    for cell in table.cells:
        match = re.fullmatch(r"mm-niah-(retrieval|counting|reasoning)-(text|image)", cell.dataset)
        if match and cell.n:
            by_column[(cell.length, NIAH_COLUMNS[match.group(1)])].append((cell.score, cell.n))
    return [
        SuiteScore(
            group="niah", task=f"{format_tokens(length)}.{column}", metric="mean over needles",
            value=sum(s for s, _ in cells) / len(cells),
            score=sum(s for s, _ in cells) / len(cells), n=sum(n for _, n in cells),
            source=source, paper_table="table17_mm_niah", paper_column=column,
        )
        for (length, column), cells in sorted(by_column.items())
    ]  # fmt: skip


def run_suite(
    groups: Sequence[str],
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    lmms_model: LmmsModel | None = None,
    lmms_python: str | None = None,
    limit: int | None = None,
    include_path: str | Path | None = None,
    env: dict[str, str] | None = None,
    niah: Callable[[Path], ScoreTable] | None = None,
    niah_source: str = "lvlm-judge MM-NIAH (MMLongBench scorer)",
    log: Callable[[str], None] = print,
) -> SuiteReport:
    """Run ``groups`` on ``checkpoint`` into ``out_dir``. ``niah(out)`` evaluates MM-NIAH and
    returns its niah-scores table (the CLI builds it from lvlm-judge's loaders and runner)."""
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise LmmsEvalError(f"unknown suite groups {unknown}; known: {list(GROUPS)}")
    out = Path(out_dir)
    report = SuiteReport(
        checkpoint=str(checkpoint), rope=read_rope(checkpoint), groups=list(groups)
    )
    lmms_groups = [g for g in groups if g in LMMS_GROUPS]
    if lmms_groups:
        if lmms_model is None or lmms_python is None:
            raise LmmsEvalError("the video and short groups need an lmms-eval model and python")
        log(f"lmms-eval {lmms_version(lmms_python)} in {lmms_python}")
        for group in lmms_groups:
            log(f"suite: {group}: {', '.join(LMMS_GROUPS[group])}")
            scores, failures = run_tasks(
                LMMS_GROUPS[group], lmms_model, out / group, group=group, python=lmms_python,
                include_path=include_path, limit=limit, env=env, specs=LMMS_TASKS,
            )  # fmt: skip
            report.scores += scores
            report.failures.update({f"{group}/{task}": why for task, why in failures.items()})
            for task, why in failures.items():
                log(f"suite: {group}/{task} failed: {why}")
            report.write(out)
    if "niah" in groups:
        if niah is None:
            report.failures["niah/mm-niah"] = "no MM-NIAH data given (--niah-data)"
        else:
            try:
                report.scores += niah_scores(niah(out / "niah"), niah_source)
            except Exception as error:  # one failing group is recorded; the others stand
                report.failures["niah/mm-niah"] = f"{type(error).__name__}: {error}"
        report.write(out)
    report.write(out)
    return report


def suite_row(report: SuiteReport) -> dict[str, float]:
    """Scores under the paper's column names where there is one, else the task name."""
    return {
        (score.paper_column or score.task)
        if score.group != "niah" else score.task: score.score
        for score in report.scores
        if score.score is not None
    }  # fmt: skip
