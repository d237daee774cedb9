"""The paper's ablations as sweeps: a base recipe and one set of overrides per run.

Every run names the row of the paper's tables it reproduces, so a report can put our score
beside the published one. ``write_sweep`` writes one recipe TOML per run plus an index.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmprolong.recipes import apply_overrides, load_recipe, recipe_to_toml
from mmprolong_schemas import MixtureSpec, Recipe, Task
from mmprolong_schemas.io import atomic_path
from mmprolong_schemas.qa import VQA_TASKS

INDEX = "sweep.json"


@dataclass(frozen=True)
class SweepRun:
    name: str
    overrides: dict[str, Any]
    paper_row: tuple[str, str] | None = None
    """(table, row) in the paper's tables (paper-tables.json) this run reproduces."""


@dataclass(frozen=True)
class Sweep:
    name: str
    description: str
    runs: tuple[SweepRun, ...]
    base: str = "mmprolong-qwen2.5-vl-7b"

    def recipes(self, base: Recipe | None = None) -> list[tuple[SweepRun, Recipe]]:
        """Each run's full recipe: the base with the run's overrides, validated. The paper
        scores its ablations on MMLongBench only, so a run leaves out the base's generalization
        suite unless its overrides name one."""
        start = base if base is not None else load_recipe(self.base)
        built = []
        for run in self.runs:
            overrides = {
                "name": f"{self.name}-{run.name}",
                "description": f"{self.description} Run {run.name}.",
                "eval.suite": [],
                **run.overrides,
            }
            built.append((run, apply_overrides(start, overrides, f"sweep {self.name}/{run.name}")))
        return built


def _single_task(task: Task) -> dict[str, Any]:
    return {"synth.tasks": [task.value], "mixture.task_ratios": {task.value: 1.0}}


def _ratio(extraction: int, reasoning: int) -> dict[str, Any]:
    ratios = MixtureSpec.extraction_reasoning(extraction, reasoning).task_ratios
    return {
        "synth.tasks": [task.value for task in ratios],
        "mixture.task_ratios": {task.value: share for task, share in ratios.items()},
    }


_DOC_PAGES = {"pool-native": [32, 50], "long-biased": [50, 100]}

SWEEPS: dict[str, Sweep] = {
    sweep.name: sweep
    for sweep in (
        Sweep(
            name="ablation-tasks",
            description="Each long-document VQA task alone vs OCR transcription, with and without "
            "a 5B-token SFT stage after the OCR LongPT (paper Table 1).",
            runs=(
                *(
                    SweepRun(task.value, _single_task(task), ("table1_vqa_vs_ocr", task.value))
                    for task in VQA_TASKS
                ),
                *(
                    SweepRun(
                        f"{task.value}{'-sft' if sft else ''}",
                        {**_single_task(task), "train.extra_sft": sft},
                        ("table1_vqa_vs_ocr", f"{label}{' (SFT)' if sft else ''}"),
                    )
                    for task, label in (
                        (Task.OCR_FULL, "OCR-full"),
                        (Task.OCR_NEEDLE, "OCR-needle"),
                    )
                    for sft in (False, True)
                ),
            ),
        ),
        Sweep(
            name="ablation-length",
            description="Pool-native (32-50 page documents) vs long-biased (50-100 pages) length "
            "distributions, per VQA task (paper Table 14).",
            runs=tuple(
                SweepRun(
                    f"{task.value}-{distribution}",
                    {
                        **_single_task(task),
                        "mixture.length_distribution": distribution,
                        "mixture.doc_pages": pages,
                    },
                    ("table14_length_distribution", f"{task.value}/{distribution}"),
                )
                for task in VQA_TASKS
                for distribution, pages in _DOC_PAGES.items()
            ),
        ),
        Sweep(
            name="ablation-ratio",
            description="Extraction:reasoning token ratio from 0:10 to 10:0, extraction split "
            "evenly between single- and multi-page (paper Table 2).",
            runs=tuple(
                SweepRun(
                    f"{extraction}-{10 - extraction}",
                    _ratio(extraction, 10 - extraction),
                    ("table2_extraction_reasoning_ratio", f"{extraction}:{10 - extraction}"),
                )
                for extraction in range(0, 11, 2)
            ),
        ),
        Sweep(
            name="ablation-short-data",
            description="Share of short-context instruction data mixed into the final recipe, "
            "0% to 80% of all tokens (paper Tables 3 and 15).",
            runs=tuple(
                SweepRun(
                    f"short-{percent}",
                    {"mixture.short_share": percent / 100},
                    ("table15_short_data_long_vqa", f"{percent}%"),
                )
                for percent in range(0, 100, 20)
            ),
        ),
        Sweep(
            name="ablation-mrope-base",
            description="mRoPE base 2e6, 4e6 (Dynamic-NTK) and 8e6 for the 32K -> 128K "
            "extension, per VQA task (paper Table 16).",
            runs=tuple(
                SweepRun(
                    f"{task.value}-{label}",
                    {**_single_task(task), "rope.base": base},
                    ("table16_mrope_base", f"{task.value}/{label}"),
                )
                for task in VQA_TASKS
                for label, base in (("2e6", 2e6), ("4e6", 4e6), ("8e6", 8e6))
            ),
        ),
    )
}


def get_sweep(name: str) -> Sweep:
    if name not in SWEEPS:
        raise KeyError(f"unknown sweep {name!r}; sweeps: {', '.join(SWEEPS)}")
    return SWEEPS[name]


def write_sweep(sweep: Sweep, out_dir: Path, base: Recipe | None = None) -> list[Path]:
    """Write ``<run>.toml`` for every run and a ``sweep.json`` index; returns the TOML paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, index = [], []
    for run, recipe in sweep.recipes(base):
        path = out_dir / f"{run.name}.toml"
        with atomic_path(path) as tmp:
            tmp.write_text(recipe_to_toml(recipe), encoding="utf-8")
        paths.append(path)
        index.append(
            {
                "run": run.name,
                "recipe": path.name,
                "run_dir": run.name,
                "overrides": run.overrides,
                "paper_row": list(run.paper_row) if run.paper_row else None,
            }
        )
    with atomic_path(out_dir / INDEX) as tmp:
        document = {"sweep": sweep.name, "description": sweep.description, "runs": index}
        tmp.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return paths
