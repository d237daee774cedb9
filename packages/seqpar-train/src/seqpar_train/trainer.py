"""The training loop: ``train(config) -> TrainResult`` on every rank of a launched group.

Per optimizer step each data-parallel rank runs ``accumulation`` packed rows. Before the
first backward of a step, ranks agree on the number of labelled tokens of the whole global
batch; every rank divides its loss sum by that number and gradients are summed across
ranks, which gives exactly the token-weighted mean loss of the global batch however the
tokens fall on SP ranks, DP ranks and micro-steps.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from pydantic import Field
from torch.distributed.fsdp import FSDPModule

from mmprolong_schemas.base import Model
from seqpar_train.activation_checkpoint import apply_activation_checkpointing
from seqpar_train.attention import choose_backend
from seqpar_train.batch import PackedRow, mask_documents, to_device
from seqpar_train.checkpoint import (
    StopSignal,
    TrainState,
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from seqpar_train.collectives import all_reduce_sum
from seqpar_train.config import TrainerConfig, config_table
from seqpar_train.data.budget import plan_budget
from seqpar_train.data.loader import RowSource, rank_rows
from seqpar_train.distributed import device_for_rank, init_distributed
from seqpar_train.flops import ArchSpec, RowFlops, arch_from_config, mfu, training_flops
from seqpar_train.forward import PackedLossModel, count_label_tokens
from seqpar_train.fsdp import apply_fsdp
from seqpar_train.hardware import device_peak_tflops
from seqpar_train.metrics import MetricsWriter, peak_memory_bytes, plot_loss_curve
from seqpar_train.modeling import (
    build_meta_model,
    build_model,
    load_safetensors_shards,
    materialize,
)
from seqpar_train.optim import build_optimizer, build_scheduler, clip_grad_norm
from seqpar_train.parallel_dims import Mesh, ParallelDims, build_mesh
from seqpar_train.ulysses import install_attention
from seqpar_train.validation import held_out_rows, validate

log = logging.getLogger("seqpar_train")


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


class TrainResult(Model):
    steps_done: int
    final_loss: float
    losses: list[float] = Field(description="Loss of every step of this process's run.")
    output_dir: str
    metrics_path: str
    checkpoint: str | None
    loss_curve: str | None
    skipped_samples: int
    stopped_early: bool
    tokens_trained: int = Field(default=0, description="Real tokens of the rows trained on.")
    token_budget: int = 0
    validation_loss: dict[str, float] = Field(
        default_factory=dict,
        description="The last validation pass: held-out answer loss per length bucket and "
        "over all ('all'); empty without validation.every.",
    )


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _print_config(config: TrainerConfig, dims: ParallelDims, accumulation: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="seqpar-train config", show_lines=False)
    table.add_column("key")
    table.add_column("value")
    for key, value in config_table(config):
        table.add_row(key, value)
    table.add_row(
        "(derived) mesh", f"dp_replicate={dims.dp_replicate} dp_shard={dims.dp_shard} sp={dims.sp}"
    )
    table.add_row("(derived) grad accumulation", str(accumulation))
    Console(stderr=True).print(table)


def _row_source(config: TrainerConfig, model_config: Any) -> RowSource:
    if config.data.synthetic is not None:
        from seqpar_train.data.synthetic import SyntheticRows

        return SyntheticRows(model_config, config.data.synthetic, config.max_length, config.seed)
    from seqpar_train.data.mixture import MixtureRows

    assert config.data.mixture is not None and config.data.pool is not None
    return MixtureRows.from_config(config, model_config)


def build_training_model(config: TrainerConfig, device: torch.device, meta: bool = False) -> Any:
    """The HF model named by ``config.model`` (fp32 master weights), rope extended if asked.
    ``meta``: a checkpoint's model with meta parameters, to be sharded before its weights
    are loaded (``load_safetensors_shards``); it stays where it is built."""
    if config.model.tiny is not None:
        from longctx_rope.tiny import tiny_config

        model = build_model(tiny_config(config.model.tiny), seed=config.seed)
    else:
        assert config.model.path is not None
        model = build_meta_model(config.model.path) if meta else build_model(config.model.path)
    if config.model.rope is not None:
        from seqpar_train.export import extend_rope

        extend_rope(model, config.model.rope)
    return model if meta else model.to(device)


def _prepare_model(
    config: TrainerConfig, device: torch.device, mesh: Mesh | None
) -> tuple[PackedLossModel, Any]:
    """The HF model with Ulysses attention, activation checkpointing and FSDP2 applied, and
    the autocast context single-process bf16 runs use."""
    sp_group = mesh.sp_group if mesh else None
    if config.parallel.cpu_offload and device.type != "cuda":
        raise ValueError(
            "parallel.cpu_offload moves GPU-resident parameters and optimizer state to the CPU; "
            f"this run already trains on {device.type}, so set it to false"
        )
    torch.manual_seed(config.seed)
    # A sharded run of a checkpoint never holds the whole model: it is built with meta
    # parameters, sharded, and each rank loads its own rows. With CPU offload the weights
    # live on the CPU and fully_shard moves one unit at a time, never the whole model.
    sharded_load = mesh is not None and config.model.path is not None
    home = torch.device("cpu") if config.parallel.cpu_offload and mesh is not None else device
    hf_model = build_training_model(config, home, meta=sharded_load)
    hf_model.train()
    choice = choose_backend(config.parallel.attention, device)
    if _rank() == 0:  # in the training log: the backend, and why not the better ones
        from rich.console import Console

        Console(stderr=True).print(choice.explain(), markup=False, highlight=False)
    install_attention(hf_model, sp_group, choice.name)
    model_config = hf_model.config
    model = PackedLossModel(
        hf_model,
        sp_group=sp_group,
        pad_token_id=_pad_id(model_config),
        loss_chunk=config.loss_chunk,
    )
    if config.parallel.activation_checkpointing:
        apply_activation_checkpointing(model)
    param_dtype = torch.bfloat16 if config.parallel.param_dtype == "bfloat16" else torch.float32
    autocast: Any = contextlib.nullcontext
    if mesh is not None:
        apply_fsdp(
            model, mesh.fsdp_mesh, param_dtype=param_dtype, cpu_offload=config.parallel.cpu_offload
        )
        if sharded_load:
            assert config.model.path is not None
            materialize(model, home)
            load_safetensors_shards(hf_model, config.model.path)
    elif param_dtype != torch.float32:

        def autocast() -> Any:
            return torch.autocast(device.type, dtype=param_dtype)

    return model, autocast


def agree_failed_documents(
    row: PackedRow, group: dist.ProcessGroup, device: torch.device
) -> PackedRow:
    """Mask, on every rank of the SP group, the documents any rank could not render: each
    rank renders only its own images, so only the rank that failed knows."""
    flags = torch.zeros(len(row.doc_lens), device=device)
    if row.failed_docs:
        flags[torch.tensor(row.failed_docs, device=device)] = 1.0
    dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=group)
    return mask_documents(row, [int(d) for d in flags.nonzero().flatten().tolist()])


@dataclass
class _StepStats:
    loss_sum: torch.Tensor  # this rank's share; summed over ranks it is the global sum
    label_tokens: torch.Tensor  # labelled tokens of the whole global batch
    tokens: int
    pad_tokens: int
    flops: RowFlops


def _accumulate_gradients(
    model: PackedLossModel,
    micro: list[PackedRow],
    autocast: Any,
    arch: ArchSpec,
    dims: ParallelDims,
    sp_rank: int,
    device: torch.device,
) -> _StepStats:
    """Forward and backward of this rank's rows of one optimizer step. Every rank divides
    its loss sum by the global batch's labelled-token count, agreed on before the first
    backward; gradients are summed across ranks (FSDP) and micro-rows (accumulation)."""
    world = dist.group.WORLD if dist.is_initialized() else None
    local_labels = sum(count_label_tokens(r, sp_rank, dims.sp) for r in micro)
    global_labels = all_reduce_sum(torch.tensor(float(local_labels), device=device), world)
    stats = _StepStats(torch.zeros((), device=device), global_labels, 0, 0, RowFlops(0.0, 0.0))
    for index, row in enumerate(micro):
        if isinstance(model, FSDPModule):
            # reduce-scatter once per step, after the last micro-row
            model.set_requires_gradient_sync(index == len(micro) - 1)
        with autocast():
            loss_sum, _ = model(row)
        (loss_sum / global_labels.clamp(min=1.0)).backward()
        stats.loss_sum += loss_sum.detach()
        stats.tokens += model.last_tokens[0]
        stats.pad_tokens += model.last_tokens[1]
        grids = [] if row.image_grid_thw is None else row.image_grid_thw.tolist()
        row_flops = training_flops(
            arch, row.doc_lens, count_label_tokens(row, 0, 1), [tuple(g) for g in grids]
        )
        stats.flops = stats.flops + row_flops.scaled(1 / dims.sp)
    return stats


def train(config: TrainerConfig) -> TrainResult:
    """Train on this process's rank (torchrun, ``launch_local`` or a single process)."""
    init_distributed(cpu_offload=config.parallel.cpu_offload)
    world = dist.get_world_size() if dist.is_initialized() else 1
    device = device_for_rank()
    dims = ParallelDims.for_world(world, sp=config.parallel.sp, dp_shard=config.parallel.dp_shard)
    mesh: Mesh | None = build_mesh(dims, device.type) if world > 1 else None
    dp_rank = mesh.dp_rank if mesh else 0
    accumulation = math.ceil(config.rows_per_step / dims.dp)
    if _rank() == 0:
        _print_config(config, dims, accumulation)
        if accumulation * dims.dp != config.rows_per_step:
            log.warning(
                "%d rows per step do not split over %d data-parallel ranks: each step uses %d rows",
                config.rows_per_step,
                dims.dp,
                accumulation * dims.dp,
            )

    model, autocast = _prepare_model(config, device, mesh)
    model_config = model.hf_model.config
    source = _row_source(config, model_config)
    rows_per_step = accumulation * dims.dp
    budget = plan_budget(
        source,
        token_budget=config.token_budget,
        rows_per_step=rows_per_step,
        row_length=config.max_length,
        max_steps=config.max_steps,
    )
    total_steps = budget.steps
    if _rank() == 0:
        log.info(
            "%d steps: their rows hold %d tokens against a budget of %d%s",
            total_steps,
            budget.planned_tokens,
            config.token_budget,
            " (max_steps ends the run first)" if budget.capped else "",
        )
    optimizer = build_optimizer(model, config.optimizer, config.schedule)
    scheduler = build_scheduler(optimizer, total_steps, config.schedule)
    out_dir = Path(config.output_dir)
    ckpt_root = out_dir / "checkpoints"

    start_step, cursor, skipped_before, trained_before = 0, 0, 0, 0
    resume_from = latest_checkpoint(ckpt_root) if config.checkpoint.resume else None
    if resume_from is not None:
        state = load_checkpoint(resume_from, model, optimizer)
        scheduler.load_state_dict(state.scheduler)
        set_rng_state(state.rng)
        start_step, cursor = state.step, int(state.data_cursor["next_row"])
        skipped_before = int(state.data_cursor.get("skipped_samples", 0))
        trained_before = int(state.data_cursor.get("tokens_trained", 0))
        if _rank() == 0:
            log.info("resumed from %s (step %d, next row %d)", resume_from, start_step, cursor)

    loader = rank_rows(
        source,
        start=cursor,
        stop=total_steps * rows_per_step,
        dp_rank=dp_rank,
        dp=dims.dp,
        # Synthetic rows cost nothing to build; worker processes would only add start-up time.
        num_workers=config.data.num_workers if config.data.mixture is not None else 0,
        sp_rank=mesh.sp_rank if mesh else 0,
        sp=dims.sp,
    )
    rows = iter(loader)
    arch = arch_from_config(model_config)
    peak = device_peak_tflops(device_name(device), config.peak_tflops)
    writer = (
        MetricsWriter(
            out_dir / "metrics.jsonl",
            resume_step=start_step,
            tensorboard_dir=out_dir / "tensorboard" if config.tensorboard else None,
        )
        if _rank() == 0
        else None
    )
    losses: list[float] = []
    skipped = skipped_all = 0
    tokens_trained = trained_before
    last_ckpt: Path | None = resume_from
    stopped = False
    sp_rank = mesh.sp_rank if mesh else 0
    progress = _Progress(total_steps, start_step) if _rank() == 0 else None
    held_out = held_out_rows(config, model_config) if config.validation.every else None
    validation_loss: dict[str, float] = {}

    def run_validation(at_step: int) -> None:
        assert held_out is not None
        sp_group = mesh.sp_group if mesh is not None else None
        record = validate(
            model,
            *held_out,
            step=at_step,
            dp_rank=dp_rank,
            dp=dims.dp,
            sp_rank=sp_rank,
            sp=dims.sp,
            device=device,
            autocast=autocast,
            prepare=lambda row: (
                row if sp_group is None else agree_failed_documents(row, sp_group, device)
            ),
            num_workers=config.data.num_workers if config.validation.mixture is not None else 0,
        )
        validation_loss.clear()
        validation_loss.update({b: v["loss"] for b, v in record["buckets"].items()})
        validation_loss["all"] = record["loss"]
        if writer is not None:
            writer.write(record)
            per_bucket = ", ".join(f"{b} {v['loss']:.4f}" for b, v in record["buckets"].items())
            log.info("step %d: held-out loss %.4f (%s)", at_step, record["loss"], per_bucket)

    if held_out is not None and start_step == 0:
        run_validation(0)  # the starting point of every bucket's curve

    with StopSignal() as stop:
        step = start_step
        while step < total_steps:
            began = time.perf_counter()
            micro, row_tokens, left_out = [], 0, 0
            for _ in range(accumulation):
                row, reasons = next(rows)
                for reason in reasons:
                    log.warning("skipped a sample: %s", reason)
                rendered_here = len(row.failed_docs)
                if mesh is not None and mesh.sp_group is not None:
                    row = agree_failed_documents(row, mesh.sp_group, device)
                # Render failures count once per SP rank, like every other skip.
                skipped += len(reasons) - rendered_here + len(row.failed_docs)
                row_tokens += row.num_tokens
                left_out += row.left_out_tokens
                micro.append(to_device(row, device))
            stats = _accumulate_gradients(model, micro, autocast, arch, dims, sp_rank, device)
            grad_norm = clip_grad_norm(model.parameters(), config.optimizer.grad_clip)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss = float(
                all_reduce_sum(stats.loss_sum, dist.group.WORLD if world > 1 else None)
            ) / max(float(stats.label_tokens), 1.0)
            losses.append(loss)
            # The ranks of an SP group read the same rows, so each skip and row is seen sp
            # times.
            seen = all_reduce_sum(
                torch.tensor([float(skipped), float(row_tokens), float(left_out)], device=device),
                dist.group.WORLD if world > 1 else None,
            )
            skipped_all = int(seen[0]) // dims.sp + skipped_before
            row_fill = float(seen[1]) / dims.sp / (rows_per_step * config.max_length)
            tokens_trained += int(seen[1]) // dims.sp
            left_out_share = float(seen[2]) / max(1.0, float(seen[1] + seen[2]))
            elapsed = time.perf_counter() - began
            if writer is not None:
                record = {
                    "step": step,
                    "loss": loss,
                    "grad_norm": grad_norm,
                    "lr": lr,
                    "label_tokens": int(stats.label_tokens),
                    "tokens_per_s_per_device": stats.tokens / elapsed,
                    "padding_share": stats.pad_tokens / max(1, stats.tokens + stats.pad_tokens),
                    "row_fill": row_fill,
                    "left_out_share": left_out_share,
                    "tokens_trained": tokens_trained,
                    "token_budget": config.token_budget,
                    "memory_bytes": peak_memory_bytes(device),
                    # per device: this rank's share of the step's FLOPs in its step time
                    "mfu_causal": mfu(stats.flops.causal, elapsed, 1, peak),
                    "mfu_veomni": mfu(stats.flops.veomni, elapsed, 1, peak),
                    "vision_flops_share": stats.flops.vision_causal / max(stats.flops.causal, 1.0),
                    "step_seconds": elapsed,
                    "skipped_samples": skipped_all,
                }
                writer.write(record)
            if progress is not None:
                progress.update(step, loss, float(lr))
            if held_out is not None and (
                step % (config.validation.every or 1) == 0 or step == total_steps
            ):
                run_validation(step)
            next_row = step * rows_per_step
            launch_limit = config.stop_after_steps
            stop_now = stop.agreed(device) or (
                launch_limit is not None
                and step - start_step >= launch_limit
                and step < total_steps
            )
            if step % config.checkpoint.every == 0 or step == total_steps or stop_now:
                last_ckpt = save_checkpoint(
                    ckpt_root,
                    model,
                    optimizer,
                    TrainState(
                        step,
                        scheduler.state_dict(),
                        {
                            "next_row": next_row,
                            "skipped_samples": skipped_all,
                            "tokens_trained": tokens_trained,
                        },
                        rng_state(),
                    ),
                    keep=config.checkpoint.keep,
                )
            if stop_now:
                stopped = True
                break
    if progress is not None:
        progress.close()
    curve = None
    if writer is not None:
        writer.close()
        if (out_dir / "metrics.jsonl").stat().st_size:
            curve = str(plot_loss_curve(out_dir / "metrics.jsonl", out_dir / "loss_curve.png"))
    result = TrainResult(
        steps_done=step,
        final_loss=losses[-1] if losses else float("nan"),
        losses=losses,
        output_dir=str(out_dir),
        metrics_path=str(out_dir / "metrics.jsonl"),
        checkpoint=str(last_ckpt) if last_ckpt else None,
        loss_curve=curve,
        skipped_samples=skipped_all if losses else skipped_before,
        stopped_early=stopped,
        tokens_trained=tokens_trained,
        token_budget=config.token_budget,
        validation_loss=validation_loss,
    )
    if _rank() == 0:
        _summary(result)
    return result


def _pad_id(model_config: Any) -> int:
    text = getattr(model_config, "text_config", model_config)
    pad = getattr(text, "pad_token_id", None)
    return int(pad) if pad is not None else 0


class _Progress:
    """A rich progress line: step, loss, lr."""

    def __init__(self, total: int, done: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeRemainingColumn(),
            transient=False,
        )
        self.task = self.bar.add_task("", total=total, completed=done)
        self.bar.start()

    def update(self, step: int, loss: float, lr: float) -> None:
        self.bar.update(self.task, completed=step, description=f"loss {loss:.4f} lr {lr:.2e}")

    def close(self) -> None:
        self.bar.stop()


def _summary(result: TrainResult) -> None:
    from rich.console import Console

    Console(stderr=True).print(
        f"[bold]seqpar-train[/bold] {'stopped' if result.stopped_early else 'finished'} at step "
        f"{result.steps_done}: loss {result.final_loss:.4f}, skipped samples "
        f"{result.skipped_samples}, tokens trained {result.tokens_trained} of a budget of "
        f"{result.token_budget}, checkpoint {result.checkpoint}, metrics {result.metrics_path}"
        + (
            f", held-out loss {result.validation_loss['all']:.4f}"
            if "all" in result.validation_loss
            else ""
        )
    )


def launch_local(config: TrainerConfig, nproc: int) -> list[TrainResult]:
    """Train with ``nproc`` processes on this machine (gloo on CPU, one GPU each with NCCL
    when GPUs are present); returns every rank's result. Runs in this process when nproc=1."""
    from seqpar_train.distributed import spawn_local

    if nproc == 1:
        return [train(config)]
    return spawn_local(train, nproc, config)
