"""Stage train: LongPT of the extended checkpoint on the mixture (seqpar-train), then export.

seqpar-train launches one process per device of the recipe's node (gloo on CPU), checkpoints
every ``train.checkpoint_every`` steps and resumes from the latest complete checkpoint on a
rerun; the app adds nothing to that but the paths. The trained weights are exported as a
Hugging Face folder (``hf/``) for evaluation. A recipe on several nodes is trained by a
launched job instead (see ``stages._training`` and ``mmprolong.launch``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mmprolong.orchestrator import StageContext
from mmprolong.report import ReportData
from mmprolong.stages._require import require
from mmprolong.stages._training import (
    HF_DIR,
    checkpoint_progress,
    logged_losses,
    train_and_export,
    training_books,
    validation_losses,
)
from mmprolong.stages.mix import MixStage
from mmprolong.stages.pool import pool_path
from mmprolong.stages.report import Contributor
from mmprolong.stages.rope import extended_checkpoint
from mmprolong.stages.synth import HELD_OUT_RUN, TRAIN_RUN, run_dir
from mmprolong_schemas import Recipe

LOSS_CURVE = "loss_curve.png"


def trained_checkpoint(ctx: StageContext) -> Path:
    return ctx.stage_dir(TrainStage.name) / HF_DIR


def render_workers(recipe: Recipe) -> int:
    # A demo shares two cores between the ranks: render pages in-process.
    return 0 if recipe.demo is not None else 2


def image_root(roots: Iterable[str]) -> str | None:
    """The one folder short-context image paths resolve under (seqpar-train's
    data.image_root), or None when the data has no pictures."""
    distinct = sorted({str(Path(root).resolve()) for root in roots})
    if len(distinct) > 1:
        raise ValueError(
            f"the short data's images sit in several folders ({', '.join(distinct)}); "
            "put the short-data files beside one image folder"
        )
    return distinct[0] if distinct else None


def _short_image_root(ctx: StageContext) -> str | None:
    summary = run_dir(ctx, TRAIN_RUN) / "samples" / "summary.json"
    if not summary.exists():
        return None
    roots: dict[str, str] = json.loads(summary.read_text(encoding="utf-8")).get(
        "short_image_roots", {}
    )
    return image_root(roots.values())


def validation_settings(ctx: StageContext) -> dict[str, Any]:
    """seqpar-train's validation section: the training-format samples of the held-out
    documents, scored every ``train.eval_every`` steps; off when the recipe turns it off or
    the run holds no held-out samples (a pool without held-out documents, or a synth stage
    that predates them), which the log says."""
    train = ctx.recipe.train
    if train.eval_every is None:
        return {}
    samples = run_dir(ctx, HELD_OUT_RUN) / "samples"
    summary = samples / "summary.json"
    counts = json.loads(summary.read_text(encoding="utf-8"))["samples"] if summary.exists() else {}
    if not sum(int(n) for n in counts.values()):
        ctx.log(
            f"{ctx.name}: no validation loss: the run has no held-out samples (a pool without "
            "held-out documents, or a synth stage run before they were assembled)"
        )
        return {}
    return {"every": train.eval_every, "mixture": str(samples), "samples": train.eval_samples}


def _refuse_what_wont_fit(ctx: StageContext) -> None:
    """Before a first launch on GPUs: the planner's verdict on the recipe's step (a launched
    job's ranks already passed it, and a resumed run already fitted)."""
    from mmprolong.stages._training import in_launched_job

    if in_launched_job() or (ctx.dir / "checkpoints").is_dir():
        return
    import torch

    if not torch.cuda.is_available():
        return
    from mmprolong.memory_plan import ensure_fits

    # The plan is kept in the stage folder: a relaunch of the same setup plans nothing.
    result = ensure_fits(ctx.recipe, torch.cuda.get_device_name(0), cache_dir=ctx.dir)
    if result is not None:
        ctx.log(
            f"{ctx.name}: planned peak {result.memory.peak / 2**30:.1f} GiB per GPU, fits "
            f"{(result.usable_bytes or 0) / 2**30:.1f} GiB (estimate)"
        )


class TrainStage(Contributor):
    name = "train"

    def config(self, recipe: Recipe) -> dict[str, Any]:
        # Whether an SFT stage follows is not LongPT's business: toggling it keeps train.
        # Whole rows ignore row_min_keep, and leaving both out when rows are whole keeps the
        # hashes of runs made before cut filling existed.
        cut = {"row_fill", "row_min_keep"} if recipe.train.row_fill == "whole" else set()
        # Only what changes the result: the cluster layout, attention kernel, recompute and
        # checkpoint cadence do not, so changing them resumes the run (checkpoints reshard);
        # the validation loss is reporting only, so its cadence changes no trained weight.
        layout = {"parallel", "attention", "activation_checkpointing", "checkpoint_every"}
        validation = {"eval_every", "eval_samples"}
        return {
            "train": recipe.train.model_dump(
                mode="json", exclude={"extra_sft", *cut, *layout, *validation}
            ),
            "vision": recipe.vision.model_dump(mode="json"),
        }

    def run(self, ctx: StageContext) -> dict[str, int]:
        (trainer_config,) = require(self.name, "seqpar_train", "TrainerConfig")
        recipe = ctx.recipe
        _refuse_what_wont_fit(ctx)
        config = trainer_config.from_recipe(
            recipe,
            output_dir=str(ctx.dir),
            model={"path": str(extended_checkpoint(ctx)), "rope": None},
            data={
                "mixture": str(ctx.stage_dir(MixStage.name)),
                "pool": str(pool_path(ctx)),
                "image_root": _short_image_root(ctx),
                "vision": recipe.vision.model_dump(mode="json"),
                "num_workers": render_workers(recipe),
                "fill": recipe.train.row_fill,
                "min_keep": recipe.train.row_min_keep,
            },
            validation=validation_settings(ctx),
        )
        return train_and_export(ctx, config, trained_checkpoint(ctx), recipe.train.dtype)

    def progress(self, ctx: StageContext) -> dict[str, int]:
        return checkpoint_progress(ctx)

    def contribute(self, ctx: StageContext, data: ReportData) -> None:
        data.loss = logged_losses(ctx)
        data.training_books = training_books(ctx)
        data.validation_loss = validation_losses(ctx)
        if ctx.recipe.train.eval_every is not None and not data.validation_loss and data.loss:
            data.notes.append(
                "no held-out validation loss: the run has no held-out samples (see the train "
                "stage's log)"
            )
        if (ctx.dir / LOSS_CURVE).exists():
            data.package_figures["loss"] = (
                "Training loss and learning rate (drawn by seqpar-train)",
                ctx.dir / LOSS_CURVE,
            )
