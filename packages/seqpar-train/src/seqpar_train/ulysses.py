"""Ulysses sequence parallelism as a transformers attention function.

Each SP rank holds a contiguous slice of the sequence. Inside attention, one all_to_all turns
the sequence-split q/k/v (all heads) into head-split tensors over the full sequence; varlen
attention runs on the full row with the full row's document boundaries; a second all_to_all
turns the output back. Registered in transformers' AttentionInterface, the HF Qwen2.5-VL and
Qwen3-VL decoder layers run unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.distributed import ProcessGroup

from seqpar_train.attention import AttentionBackend, varlen_attention
from seqpar_train.collectives import all_to_all, group_size

ATTENTION_NAME = "seqpar_ulysses"
CU_SEQLENS_KWARG = "packed_cu_seqlens"
"""The keyword that carries the full row's document boundaries (a list of ints) through the
HF model's ``**kwargs`` into the attention function."""


@dataclass(frozen=True)
class HeadPlan:
    """How q/k/v heads are made divisible by the SP size."""

    q_heads: int
    kv_heads: int
    sp: int
    kv_repeat: int  # each KV head is repeated this many times
    pad_heads: int  # dummy heads appended to q and (expanded) k/v; their output is dropped

    @property
    def kv_heads_after(self) -> int:
        return self.kv_heads * self.kv_repeat + self.pad_heads


def plan_heads(q_heads: int, kv_heads: int, sp: int) -> HeadPlan:
    """Fewest KV repeats (or dummy heads) that let every rank own whole heads."""
    if q_heads % kv_heads:
        raise ValueError(f"{q_heads} query heads are not a multiple of {kv_heads} KV heads")
    if sp > q_heads:
        raise ValueError(
            f"SP size {sp} is larger than the model's {q_heads} attention heads: Ulysses gives "
            f"every rank at least one head, so use SP <= {q_heads}"
        )
    groups = q_heads // kv_heads
    if q_heads % sp == 0:
        repeat = next(r for r in range(1, groups + 1) if groups % r == 0 and kv_heads * r % sp == 0)
        return HeadPlan(q_heads, kv_heads, sp, repeat, 0)
    # Query heads do not split evenly: fall back to one KV head per query head and pad both.
    return HeadPlan(q_heads, kv_heads, sp, groups, (-q_heads) % sp)


def _adapt_heads(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: HeadPlan
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if plan.kv_repeat > 1:
        k = k.repeat_interleave(plan.kv_repeat, dim=1)
        v = v.repeat_interleave(plan.kv_repeat, dim=1)
    if plan.pad_heads:

        def pad(t: torch.Tensor) -> torch.Tensor:
            zeros = t.new_zeros((t.shape[0], plan.pad_heads, t.shape[2]))
            return torch.cat([t, zeros], dim=1)

        q, k, v = pad(q), pad(k), pad(v)
    return q, k, v


def seq_to_head(x: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    """(S_local, H, D) on each rank -> (S_full, H / sp, D): rank r gets heads chunk r."""
    sp = group_size(group)
    s_local, heads, dim = x.shape
    chunks = x.reshape(s_local, sp, heads // sp, dim).transpose(0, 1).reshape(-1, heads // sp, dim)
    return all_to_all(chunks, group)  # sequence slices arrive in rank order


def head_to_seq(x: torch.Tensor, group: ProcessGroup) -> torch.Tensor:
    """(S_full, H / sp, D) -> (S_local, H, D): the inverse of ``seq_to_head``."""
    sp = group_size(group)
    s_full, local_heads, dim = x.shape
    received = all_to_all(x, group)  # head chunks of my sequence slice, in rank order
    s_local = s_full // sp
    return (
        received.reshape(sp, s_local, local_heads, dim)
        .transpose(0, 1)
        .reshape(s_local, sp * local_heads, dim)
    )


def ulysses_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: list[int],
    *,
    group: ProcessGroup | None,
    backend: AttentionBackend,
    scale: float | None = None,
) -> torch.Tensor:
    """Document-causal attention of a sequence-split packed row.

    q: (S_local, Hq, D), k/v: (S_local, Hkv, D) -> (S_local, Hq, D). ``cu_seqlens`` are the
    document boundaries of the full (padded) row. With SP size 1 this is plain varlen attention.
    """
    sp = group_size(group)
    if sp == 1 or group is None:
        return varlen_attention(q, k, v, cu_seqlens, scale=scale, backend=backend)
    if q.shape[0] * sp != cu_seqlens[-1]:
        raise ValueError(
            f"local sequence {q.shape[0]} x SP {sp} != row length {cu_seqlens[-1]}: pad the row "
            "to a multiple of the SP size before splitting (seqpar_train.batch.shard_row)"
        )
    plan = plan_heads(q.shape[1], k.shape[1], sp)
    q, k, v = _adapt_heads(q, k, v, plan)
    out = varlen_attention(
        seq_to_head(q, group),
        seq_to_head(k, group),
        seq_to_head(v, group),
        cu_seqlens,
        scale=scale,
        backend=backend,
    )
    out = head_to_seq(out, group)
    return out[:, : plan.q_heads] if plan.pad_heads else out


def make_hf_attention(
    group: ProcessGroup | None, backend: AttentionBackend
) -> Callable[..., tuple[torch.Tensor, None]]:
    """An attention function with transformers' signature, bound to an SP group."""

    def seqpar_attention(
        module: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float | None = None,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, None]:
        cu_seqlens = kwargs.get(CU_SEQLENS_KWARG)
        if cu_seqlens is None:
            raise ValueError(
                f"the {ATTENTION_NAME} attention needs the row's document boundaries: call the "
                f"model through seqpar_train.forward, or pass {CU_SEQLENS_KWARG}=[0, ..., S]"
            )
        if query.shape[0] != 1:
            raise ValueError(f"packed rows have batch size 1, got {query.shape[0]}")
        if dropout:
            raise ValueError("attention dropout is not supported by the varlen backends")
        # HF layout (1, heads, S, D) -> packed (S, heads, D)
        q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))
        out = ulysses_attention(q, k, v, cu_seqlens, group=group, backend=backend, scale=scaling)
        return out.unsqueeze(0), None  # (1, S, heads, D), as HF's o_proj expects

    return seqpar_attention


VISION_ATTENTION_NAME = "seqpar_flash_varlen_vision"
"""The vision tower's attention. transformers' Qwen2.5-VL / Qwen3-VL vision attention hands
the image and window boundaries (cu_seq_lens_q) to the attention function in one call only
when the implementation's name contains "flash" (utils/generic.py,
is_flash_attention_requested); any other name gets a Python loop of one call per window."""


def make_vision_attention(backend: AttentionBackend) -> Callable[..., tuple[torch.Tensor, None]]:
    """Non-causal varlen attention over the ViT's own boundaries (windows or whole images),
    with transformers' flash-style signature."""

    def vision_attention(
        module: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float | None = None,
        dropout: float = 0.0,
        cu_seq_lens_q: torch.Tensor | None = None,
        is_causal: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, None]:
        if cu_seq_lens_q is None or query.shape[0] != 1:
            raise ValueError("the vision attention needs one packed sequence and cu_seq_lens_q")
        if dropout or is_causal:
            raise ValueError("the vision attention is non-causal and without dropout")
        q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))
        bounds = [int(b) for b in cu_seq_lens_q.tolist()]
        out = varlen_attention(q, k, v, bounds, scale=scaling, backend=backend, causal=False)
        return out.unsqueeze(0), None  # (1, S, heads, D), as the flash path returns

    return vision_attention


def install_attention(model: Any, group: ProcessGroup | None, backend: AttentionBackend) -> str:
    """Register the Ulysses attention for ``group`` and switch the text decoder to it; the
    vision tower (images are never split across ranks) gets ``backend`` over its own
    windows and images, in one call per block instead of transformers' loop per window."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, make_hf_attention(group, backend))
    AttentionInterface.register(VISION_ATTENTION_NAME, make_vision_attention(backend))
    config = model.config
    text_config = getattr(config, "text_config", config)
    text_config._attn_implementation = ATTENTION_NAME
    vision_config = getattr(config, "vision_config", None)
    if vision_config is not None:
        vision_config._attn_implementation = VISION_ATTENTION_NAME
    return ATTENTION_NAME
