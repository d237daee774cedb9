"""Collectives that autograd can differentiate, for gloo (CPU) and NCCL alike."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch.distributed import ProcessGroup


def group_size(group: ProcessGroup | None) -> int:
    if group is None or not dist.is_initialized():
        return 1
    return dist.get_world_size(group)


def group_rank(group: ProcessGroup | None) -> int:
    if group is None or not dist.is_initialized():
        return 0
    return dist.get_rank(group)


class _AllToAll(torch.autograd.Function):
    """all_to_all_single along dim 0; the backward pass is the transposed exchange."""

    @staticmethod
    def forward(
        ctx: Any,
        tensor: torch.Tensor,
        send_splits: list[int] | None,
        recv_splits: list[int] | None,
        group: ProcessGroup,
    ) -> torch.Tensor:
        ctx.send_splits, ctx.recv_splits, ctx.group = send_splits, recv_splits, group
        rows = tensor.shape[0] if recv_splits is None else sum(recv_splits)
        out = tensor.new_empty((rows, *tensor.shape[1:]))
        dist.all_to_all_single(out, tensor.contiguous(), recv_splits, send_splits, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        rows = grad.shape[0] if ctx.send_splits is None else sum(ctx.send_splits)
        out = grad.new_empty((rows, *grad.shape[1:]))
        dist.all_to_all_single(
            out, grad.contiguous(), ctx.send_splits, ctx.recv_splits, group=ctx.group
        )
        return out, None, None, None


def all_to_all(
    tensor: torch.Tensor,
    group: ProcessGroup,
    send_splits: list[int] | None = None,
    recv_splits: list[int] | None = None,
) -> torch.Tensor:
    """Rank r sends rows ``send_splits[s]`` of ``tensor`` (in order) to rank s and receives
    ``recv_splits[s]`` rows from rank s. Without splits, dim 0 is cut into equal parts."""
    out: torch.Tensor = _AllToAll.apply(tensor, send_splits, recv_splits, group)
    return out


def all_reduce_sum(tensor: torch.Tensor, group: ProcessGroup | None) -> torch.Tensor:
    """Sum of a detached value over ``group`` (for counts and logging; no gradient)."""
    if group_size(group) == 1:
        return tensor.detach().clone()
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
    return out
