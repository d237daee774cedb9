"""Stage train: LongPT of the extended checkpoint on the mixture (seqpar-train), then export.

seqpar-train launches one process per device of the recipe's node (gloo on CPU), checkpoints
every ``train.checkpoint_every`` steps and resumes from the latest complete checkpoint on a
rerun; the app adds nothing to that but the paths. The trained weights are exported as a
Hugging Face folder (``hf/``) for evaluation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mmprolong.orchestrator import StageContext
from mmprolong.report import ReportData
from mmprolong.stages._require import require
from mmprolong.stages.mix import MixStage
from mmprolong.stages.pool import pool_path
from mmprolong.stages.report import Contributor
from mmprolong.stages.rope import extended_checkpoint
from mmprolong_schemas import Recipe

HF_DIR = "hf"
CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
LOSS_CURVE = "loss_curve.png"
_STEP = re.compile(r"step-(\d+)$")


def trained_checkpoint(ctx: StageContext) -> Path:
    return ctx.stage_dir(TrainStage.name) / HF_DIR


def _step_of(checkpoint: Path | None) -> int:
    match = _STEP.search(checkpoint.name) if checkpoint is not None else None
    return int(match.group(1)) if match else 0


class TrainStage(Contributor):
    name = "train"

    def config(self, recipe: Recipe) -> dict[str, Any]:
        return {
            "train": recipe.train.model_dump(mode="json"),
            "vision": recipe.vision.model_dump(mode="json"),
        }

    def run(self, ctx: StageContext) -> dict[str, int]:
        train_config, launch_local, latest_checkpoint, export_hf = require(
            self.name,
            "seqpar_train",
            "TrainConfig",
            "launch_local",
            "latest_checkpoint",
            "export_hf",
        )
        recipe = ctx.recipe
        parallel = recipe.train.parallel
        if parallel.nodes > 1:
            raise ValueError(
                f"the recipe trains on {parallel.nodes} nodes; `mmprolong run` launches one: run "
                "`mmprolong train train` on every node instead (see docs/mmprolong.md)"
            )
        config = train_config.from_recipe(
            recipe,
            output_dir=str(ctx.dir),
            model={"path": str(extended_checkpoint(ctx)), "rope": None},
            data={
                "mixture": str(ctx.stage_dir(MixStage.name)),
                "pool": str(pool_path(ctx)),
                "vision": recipe.vision.model_dump(mode="json"),
                # A demo shares two cores between the ranks: render pages in-process.
                "num_workers": 0 if recipe.demo is not None else 2,
            },
        )
        resumed_from = _step_of(latest_checkpoint(ctx.dir / CHECKPOINTS))
        if resumed_from:
            ctx.log(f"train: resuming from step {resumed_from} of {config.steps}")
        results = launch_local(config, parallel.gpus_per_node)
        result = results[0]
        if result.stopped_early:
            raise RuntimeError(f"training stopped at step {result.steps_done} of {config.steps}")
        if not trained_checkpoint(ctx).exists():
            # The export appears atomically after the last step: an existing one is final.
            import torch

            dtype = torch.float32 if recipe.train.dtype == "float32" else torch.bfloat16
            export_hf(config, trained_checkpoint(ctx), dtype=dtype)
        return {
            "steps": result.steps_done,
            "resumed_from_step": resumed_from,
            "skipped_samples": result.skipped_samples,
        }

    def progress(self, ctx: StageContext) -> dict[str, int]:
        try:
            (latest_checkpoint,) = require(self.name, "seqpar_train", "latest_checkpoint")
        except RuntimeError:
            return {}
        return {"checkpoint_step": _step_of(latest_checkpoint(ctx.dir / CHECKPOINTS))}

    def contribute(self, ctx: StageContext, data: ReportData) -> None:
        (read_metrics,) = require(self.name, "seqpar_train.metrics", "read_metrics")
        data.loss = [
            (int(record["step"]), float(record["loss"]))
            for record in read_metrics(ctx.dir / METRICS)
            if "loss" in record and "step" in record
        ]
        if (ctx.dir / LOSS_CURVE).exists():
            data.package_figures["loss"] = (
                "Training loss and learning rate (drawn by seqpar-train)",
                ctx.dir / LOSS_CURVE,
            )
