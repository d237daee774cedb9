"""Stage suite: the paper's generalization groups (``eval.suite``) on the base and the trained
checkpoint, after training, through lvlm-judge's suite.

``video`` and ``short`` run lmms-eval in the interpreter ``eval.lmms_python`` names (a separate
environment, so its pins stay out of ours); ``niah`` runs MM-NIAH from the NIAH/ files of
``eval.data_dir`` through lvlm-judge's own loaders and scorer; ``vtc`` runs VTCBench-Wild from
``eval.vtc_data``: the instructions from ``eval.vtc_instructions`` or the VTCBench checkout
``eval.vtc_source``, and Memory judged by ``eval.judge_model`` (VTCBench's judge prompt when
``eval.vtc_source`` is set, else ours; the verdicts are cached in the stage folder, shared by
both checkpoints). Each checkpoint gets a ``suite.json``; a failing task is recorded there
(and in the report's notes), the others go on.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mmprolong.orchestrator import StageContext
from mmprolong.report import ReportData
from mmprolong.stages._require import require
from mmprolong.stages.evaluate import MODELS, final_checkpoint
from mmprolong.stages.report import Contributor
from mmprolong.stages.rope import base_checkpoint
from mmprolong_schemas import Recipe

SUITE_FILE = "suite.json"


class SuiteStage(Contributor):
    name = "suite"

    def config(self, recipe: Recipe) -> dict[str, Any]:
        keys: tuple[str, ...] = (
            "suite", "lmms_python", "max_num_frames", "attn_implementation", "data_dir",
            "lengths", "runner", "max_new_tokens", "vtc_data", "vtc_instructions", "vtc_source",
        )  # fmt: skip
        if "vtc" in recipe.eval.suite:  # the Memory judge; other groups do not use it
            keys += ("judge_model", "judge_base_url")
        evaluation = recipe.eval.model_dump(mode="json")
        return {
            "eval": {key: evaluation[key] for key in keys},
            "vision": recipe.vision.model_dump(mode="json"),
        }

    def run(self, ctx: StageContext) -> dict[str, int]:
        recipe = ctx.recipe
        run_suite, mm_niah, vtc_wild = require(
            self.name, "lvlm_judge.suite", "run_suite", "mm_niah", "vtc_wild"
        )
        (qwen2_5_vl_model,) = require(self.name, "lvlm_judge.lmms", "qwen2_5_vl_model")
        import torch

        device_map = "auto" if torch.cuda.is_available() else "cpu"
        trained, _ = final_checkpoint(ctx)
        memory_judge = None
        evaluation = recipe.eval
        if "vtc" in evaluation.suite and (evaluation.judge_model or evaluation.vtc_source):
            (make_memory_judge,) = require(self.name, "lvlm_judge.vtc_judge", "make_memory_judge")
            memory_judge = make_memory_judge(
                evaluation.judge_model, ctx.dir / "judge-cache.sqlite",
                base_url=evaluation.judge_base_url, vtc_source=evaluation.vtc_source,
            )  # fmt: skip
        counts: dict[str, int] = {}
        for label, path in zip(MODELS, (base_checkpoint(ctx), trained), strict=True):
            model = qwen2_5_vl_model(
                path, min_pixels=recipe.vision.min_pixels, max_pixels=recipe.vision.max_pixels,
                max_num_frames=recipe.eval.max_num_frames,
                attn_implementation=recipe.eval.attn_implementation, device_map=device_map,
            )  # fmt: skip
            runner = "transformers" if recipe.eval.runner == "openai" else recipe.eval.runner
            niah = None
            if "niah" in recipe.eval.suite and recipe.eval.data_dir is not None:
                niah = mm_niah(
                    path, recipe.eval.data_dir, lengths=recipe.eval.lengths, runner=runner,
                    max_new_tokens=recipe.eval.max_new_tokens, device_map=device_map,
                )  # fmt: skip
            vtc = None
            if "vtc" in recipe.eval.suite and recipe.eval.vtc_data is not None:
                vtc = vtc_wild(
                    path, recipe.eval.vtc_data, recipe.eval.vtc_instructions,
                    vtc_source=recipe.eval.vtc_source, memory_judge=memory_judge,
                    runner=runner, max_new_tokens=recipe.eval.max_new_tokens,
                    device_map=device_map,
                )  # fmt: skip
            report = run_suite(
                recipe.eval.suite, path, ctx.dir / label, lmms_model=model,
                lmms_python=recipe.eval.lmms_python or sys.executable, niah=niah, vtc=vtc,
                log=ctx.log,
            )  # fmt: skip
            counts[f"{label}_scores"] = len(report.scores)
            counts[f"{label}_failed_tasks"] = len(report.failures)
        return counts

    def contribute(self, ctx: StageContext, data: ReportData) -> None:
        reports = _reports(ctx.dir)
        if not reports:
            return
        suite_row, provenance = require(self.name, "lvlm_judge.suite", "suite_row", "provenance")
        for label, report in reports.items():
            data.generalization[label] = suite_row(report)
            data.notes += [
                f"suite, {label}: {task} produced no score: {why}"
                for task, why in report.failures.items()
            ]
            data.notes += [
                f"suite, {label}: {column} by {what}" for column, what in provenance(report)
            ]


def _reports(folder: Path) -> dict[str, Any]:
    found = {}
    for label in MODELS:
        path = folder / label / SUITE_FILE
        if path.exists():
            (report_class,) = require(SuiteStage.name, "lvlm_judge.suite", "SuiteReport")
            found[label] = report_class.model_validate_json(path.read_text(encoding="utf-8"))
    return found
