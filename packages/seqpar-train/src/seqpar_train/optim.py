"""The recipe's optimizer and learning-rate schedule.

AdamW (weight decay 0.1, betas 0.9/0.95), linear warmup over the first 10% of steps, then
cosine decay from the peak (1e-5) to the final rate (1e-6) at the last step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.distributed.tensor import DTensor
from torch.optim.lr_scheduler import LambdaLR

from mmprolong_schemas.recipe import OptimizerConfig, ScheduleConfig


def lr_at(step: int, total_steps: int, schedule: ScheduleConfig) -> float:
    """Learning rate used for optimizer step ``step`` (0-based)."""
    warmup = round(schedule.warmup_fraction * total_steps)
    if step < warmup:
        return schedule.peak_lr * (step + 1) / warmup
    if schedule.kind == "constant":
        return schedule.peak_lr
    decay_steps = max(1, total_steps - warmup - 1)
    progress = min(1.0, (step - warmup) / decay_steps)
    if schedule.kind == "linear":
        shape = 1.0 - progress
    else:
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    return schedule.final_lr + (schedule.peak_lr - schedule.final_lr) * shape


def build_optimizer(
    model: torch.nn.Module, optimizer: OptimizerConfig, schedule: ScheduleConfig
) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and norm weights (1-D parameters), as is usual."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": optimizer.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=schedule.peak_lr, betas=optimizer.betas, eps=optimizer.eps, foreach=True
    )


def clip_grad_norm(parameters: Iterable[torch.nn.Parameter], max_norm: float) -> float:
    """Scale all gradients so their global L2 norm is at most ``max_norm``; returns the norm
    before clipping. Gradients may be FSDP DTensor shards: the norm covers the whole model.

    The sum of squares is accumulated in float64. In float32 it would depend on how the
    gradients are sharded (a sharded sum adds in another order), so FSDP ranks and a single
    process would scale by coefficients a rounding apart; in float64 the error is far below
    float32 resolution and every layout scales by the bitwise same float32 coefficient.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    norms = [torch.linalg.vector_norm(g, 2.0, dtype=torch.float64) for g in grads]
    total = torch.linalg.vector_norm(torch.stack(norms), 2.0)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    # Everything after this rounding is a function of one float32 value every layout shares.
    total = total.float()
    coefficient = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for grad in grads:
        grad.mul_(coefficient.to(grad.dtype))
    return float(total)


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, schedule: ScheduleConfig
) -> LambdaLR:
    return LambdaLR(
        optimizer,
        lambda step: lr_at(min(step, total_steps - 1), total_steps, schedule) / schedule.peak_lr,
    )
