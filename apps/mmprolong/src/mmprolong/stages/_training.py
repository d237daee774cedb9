"""Train with seqpar-train and export the result, on this machine or as one rank of a job.

Three ways a training stage runs:

- one node, inside ``mmprolong run``: seqpar-train's ``launch_local`` starts one process per
  device and the stage exports the last checkpoint;
- several nodes, inside ``mmprolong run``: nothing can be trained from here, so the launch
  files are written into the stage folder and StageLaunched stops the run;
- inside the launched job (``mmprolong launch-train`` under torchrun or srun, process group
  already joined): every rank trains; then the group is closed and rank 0 alone exports.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mmprolong.orchestrator import StageContext, StageLaunched
from mmprolong.stages._require import require

CHECKPOINTS = "checkpoints"
HF_DIR = "hf"
METRICS = "metrics.jsonl"
_STEP = re.compile(r"step-(\d+)$")

ResultT = TypeVar("ResultT")


def step_of(checkpoint: Path | None) -> int:
    match = _STEP.search(checkpoint.name) if checkpoint is not None else None
    return int(match.group(1)) if match else 0


def checkpoint_progress(ctx: StageContext) -> dict[str, int]:
    """The step of the stage's latest complete checkpoint, for ``status``."""
    try:
        (latest_checkpoint,) = require(ctx.name, "seqpar_train.checkpoint", "latest_checkpoint")
    except RuntimeError:
        return {}
    return {"checkpoint_step": step_of(latest_checkpoint(ctx.dir / CHECKPOINTS))}


def logged_losses(ctx: StageContext) -> list[tuple[int, float]]:
    """(step, loss) of every step seqpar-train logged in the stage's folder."""
    (read_metrics,) = require(ctx.name, "seqpar_train.metrics", "read_metrics")
    return [
        (int(record["step"]), float(record["loss"]))
        for record in read_metrics(ctx.dir / METRICS)
        if "loss" in record and "step" in record
    ]


def training_books(ctx: StageContext) -> dict[str, str]:
    """Report rows from the last step seqpar-train logged: tokens trained against the
    budget, and MFU in our causal convention beside VeOmni's 12*sum(s^2) one."""
    (read_metrics,) = require(ctx.name, "seqpar_train.metrics", "read_metrics")
    records = read_metrics(ctx.dir / METRICS)
    if not records:
        return {}
    last = records[-1]
    books: dict[str, str] = {}
    if "tokens_trained" in last and last.get("token_budget"):
        trained, budget = int(last["tokens_trained"]), int(last["token_budget"])
        books["tokens trained / budget"] = f"{trained:,} / {budget:,} ({trained / budget:.1%})"
    if "row_fill" in last:
        books["row fill (last step)"] = f"{float(last['row_fill']):.1%}"
    causal, veomni = last.get("mfu_causal"), last.get("mfu_veomni")
    books["MFU causal (ours) / 12*sum(s^2) (VeOmni)"] = (
        f"{causal:.1%} / {veomni:.1%}"
        if causal is not None and veomni is not None
        else "not reported: no peak known for the device (set peak_tflops)"
    )
    return books


def validation_losses(ctx: StageContext) -> dict[str, list[tuple[int, float, int]]]:
    """Held-out answer loss seqpar-train logged, per length bucket and over all ("all"):
    (step, loss, samples) of every validation pass."""
    (read_metrics,) = require(ctx.name, "seqpar_train.metrics", "read_metrics")
    losses: dict[str, list[tuple[int, float, int]]] = {}
    for record in read_metrics(ctx.dir / METRICS, kind="validation"):
        step = int(record["step"])
        for bucket, values in record.get("buckets", {}).items():
            losses.setdefault(bucket, []).append(
                (step, float(values["loss"]), int(values["samples"]))
            )
        if record.get("samples"):
            losses.setdefault("all", []).append(
                (step, float(record["loss"]), int(record["samples"]))
            )
    return losses


def in_launched_job() -> bool:
    """True in a process of a launched multi-process job (its process group is joined)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def on_rank_zero(fn: Callable[[], ResultT]) -> ResultT:
    """``fn()`` once per job: in a launched job rank 0 runs it and every rank gets its result
    (or its error); alone, this process runs it."""
    if not in_launched_job():
        return fn()
    import torch.distributed as dist

    from seqpar_train.distributed import init_process_group

    # The group exists; this binds LOCAL_RANK's device, where NCCL stages the objects.
    init_process_group()
    message: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            message = [("ok", fn())]
        except Exception as error:
            message = [("error", f"{type(error).__name__}: {error}")]
            dist.broadcast_object_list(message, src=0)
            raise
    dist.broadcast_object_list(message, src=0)
    kind, value = message[0]
    if kind == "error":
        raise RuntimeError(f"rank 0 failed: {value}")
    result: ResultT = value
    return result


def train_and_export(
    ctx: StageContext, config: Any, hf_dir: Path, dtype_name: str
) -> dict[str, int]:
    """Train ``config`` (a seqpar_train.TrainerConfig) on the recipe's nodes, resuming from the
    stage's latest checkpoint, and export it to ``hf_dir``. Counts for the manifest."""
    train, launch_local, export_hf = require(
        ctx.name, "seqpar_train", "train", "launch_local", "export_hf"
    )
    (latest_checkpoint,) = require(ctx.name, "seqpar_train.checkpoint", "latest_checkpoint")
    parallel = ctx.recipe.train.parallel
    resumed_from = step_of(latest_checkpoint(Path(config.output_dir) / CHECKPOINTS))
    if in_launched_job():
        import torch.distributed as dist

        world = dist.get_world_size()
        if world != parallel.world_size:
            raise ValueError(
                f"the job has {world} processes but the recipe trains on {parallel.nodes} "
                f"nodes x {parallel.gpus_per_node} devices = {parallel.world_size}"
            )
        if resumed_from and dist.get_rank() == 0:
            ctx.log(f"{ctx.name}: resuming from step {resumed_from} of {config.steps}")
        result = train(config)
        # Export reads the checkpoint in one process: leave the group first.
        dist.barrier()
        rank = dist.get_rank()
        dist.destroy_process_group()
        if rank != 0:
            return {}
    elif parallel.nodes > 1:
        from mmprolong.launch import write_launch_files

        files = write_launch_files(ctx.run_dir, ctx.name, ctx.recipe)
        raise StageLaunched(
            ctx.name,
            f"stage {ctx.name!r} trains on {parallel.nodes} nodes: start the job with the launch "
            f"files in {files[0].parent} (sbatch, or the per-node command on every node), then "
            "rerun this command to continue after it",
            files,
        )
    else:
        if resumed_from:
            ctx.log(f"{ctx.name}: resuming from step {resumed_from} of {config.steps}")
        result = launch_local(config, parallel.gpus_per_node)[0]
    if result.stopped_early:
        raise RuntimeError(f"training stopped at step {result.steps_done} of {config.steps}")
    if not hf_dir.exists():
        # The export appears atomically after the last step: an existing one is final.
        import torch

        dtype = torch.float32 if dtype_name == "float32" else torch.bfloat16
        # The model was extended by the rope stage: the export writes that rope in both forms.
        export_hf(config, hf_dir, dtype=dtype, rope=ctx.recipe.rope)
    return {
        "steps": result.steps_done,
        "resumed_from_step": resumed_from,
        "skipped_samples": result.skipped_samples,
    }
