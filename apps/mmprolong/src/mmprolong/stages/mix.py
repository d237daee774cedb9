"""Stage mix: training samples -> token-budgeted mixture shards (qasynth.build_mixture)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from mmprolong.orchestrator import StageContext
from mmprolong.report import ReportData
from mmprolong.stages._require import require
from mmprolong.stages.report import Contributor
from mmprolong.stages.synth import TRAIN_RUN, SynthStage
from mmprolong_schemas import Recipe

MIXTURE_REPORT = "mixture.json"
HISTOGRAM = "token_histogram.png"


def shards(ctx: StageContext) -> list[Path]:
    return sorted(ctx.stage_dir(MixStage.name).glob("samples-*.parquet"))


def _shortfall(recipe: Recipe) -> str:
    """A demo pool is small by design: its samples repeat (epochs) to fill the budget; a real
    pool short of the budget shrinks it, keeping the task ratios (qasynth says so)."""
    return "repeat" if recipe.demo is not None else "shrink"


class MixStage(Contributor):
    name = "mix"

    def config(self, recipe: Recipe) -> dict[str, Any]:
        return {"mixture": recipe.mixture.model_dump(mode="json"), "shortfall": _shortfall(recipe)}

    def run(self, ctx: StageContext) -> dict[str, int]:
        (build_mixture,) = require(self.name, "qasynth", "build_mixture")
        inputs = ctx.stage_dir(SynthStage.name) / TRAIN_RUN / "samples"
        report = build_mixture(
            [inputs],
            ctx.dir,
            ctx.recipe.mixture,
            shortfall=_shortfall(ctx.recipe),
            executor=ctx.execution.steps(),
        )
        samples = int(report["total"].get("samples", 0))
        tokens = int(report["total"].get("total_tokens", 0))
        ctx.log(
            f"mix: {samples} samples, {tokens} tokens in {len(report['shards'])} shards "
            f"(budget {ctx.recipe.mixture.token_budget})"
        )
        if not samples:
            raise ValueError("the mixture is empty: no synthesized sample fits its spec")
        return {"samples": samples, "tokens": tokens, "shards": len(report["shards"])}

    def progress(self, ctx: StageContext) -> dict[str, int]:
        return {"shards": len(shards(ctx))}

    def contribute(self, ctx: StageContext, data: ReportData) -> None:
        report_path = ctx.dir / MIXTURE_REPORT
        if not report_path.exists():
            return
        report = json.loads(report_path.read_text(encoding="utf-8"))
        data.task_tokens = {
            task: int(stats["total_tokens"]) for task, stats in report.get("tasks", {}).items()
        }
        data.sample_tokens = [
            int(value)
            for shard in shards(ctx)
            for value in pq.read_table(shard, columns=["est_tokens"])
            .column("est_tokens")
            .to_pylist()
        ]
        if (ctx.dir / HISTOGRAM).exists():
            data.package_figures["mixture"] = (
                "Length histogram of the training mixture by task (drawn by qasynth)",
                ctx.dir / HISTOGRAM,
            )
