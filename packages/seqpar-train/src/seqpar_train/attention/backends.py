"""The four varlen attention backends and the rule that picks one.

``auto`` picks, in order: flash-attn's varlen kernel (installed, CUDA), torch's own varlen
kernel (CUDA sm80+), then the per-document SDPA loop. flex_attention is chosen by flag: it is
the only block-masked kernel that also runs on CPU, but there it is forward-only (torch has no
CPU backward for it) and, uncompiled, materialises the full score matrix, so on CPU the SDPA
loop is the training backend. On CUDA flex_attention is compiled.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

AttentionBackend = Literal["flash", "torch-varlen", "flex", "sdpa"]
BACKENDS: tuple[AttentionBackend, ...] = ("flash", "torch-varlen", "flex", "sdpa")


def _flash_usable(device: torch.device) -> bool:
    return device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None


def _torch_varlen_usable(device: torch.device) -> bool:
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8 and importlib.util.find_spec("torch.nn.attention.varlen") is not None


def available_backends(
    device: torch.device | str = "cpu", *, training: bool = True
) -> list[AttentionBackend]:
    """Backends that can run on ``device`` (with a backward pass if ``training``), best first."""
    device = torch.device(device)
    usable: list[AttentionBackend] = []
    if _flash_usable(device):
        usable.append("flash")
    if _torch_varlen_usable(device):
        usable.append("torch-varlen")
    if device.type != "cpu" or not training:
        usable.append("flex")
    return [*usable, "sdpa"]


def resolve_backend(
    name: str, device: torch.device | str = "cpu", *, training: bool = True
) -> AttentionBackend:
    """``auto`` -> the best backend for ``device``; an explicit name is checked for it."""
    device = torch.device(device)
    usable = available_backends(device, training=training)
    if name == "auto":
        return usable[0]
    if name not in BACKENDS:
        raise ValueError(f"attention backend {name!r} is unknown; choose auto or one of {BACKENDS}")
    if name not in usable:
        needs = {
            "flash": "flash-attn installed and a CUDA device",
            "torch-varlen": "CUDA sm80+",
            "flex": "a CUDA device for training (torch has no CPU backward for flex_attention)",
        }
        raise ValueError(f"attention backend {name!r} needs {needs[name]}; this is {device}")
    backend: AttentionBackend = name
    return backend


def _expand_kv(kv: torch.Tensor, groups: int) -> torch.Tensor:
    return kv if groups == 1 else kv.repeat_interleave(groups, dim=1)


def _sdpa_loop(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: list[int], scale: float
) -> torch.Tensor:
    groups = q.shape[1] // k.shape[1]
    outputs = []
    for start, end in zip(cu_seqlens[:-1], cu_seqlens[1:], strict=True):
        if end == start:
            continue
        # (len, heads, dim) -> (1, heads, len, dim)
        qd, kd, vd = (t[start:end].transpose(0, 1).unsqueeze(0) for t in (q, k, v))
        out = F.scaled_dot_product_attention(
            qd, _expand_kv(kd, groups), _expand_kv(vd, groups), is_causal=True, scale=scale
        )
        outputs.append(out.squeeze(0).transpose(0, 1))
    return torch.cat(outputs, dim=0)


@functools.lru_cache(maxsize=8)
def _document_causal_mask(cu_seqlens: tuple[int, ...], device: str) -> object:
    from torch.nn.attention.flex_attention import create_block_mask

    bounds = torch.tensor(cu_seqlens, device=device)
    total = cu_seqlens[-1]
    doc_of = torch.bucketize(torch.arange(total, device=device), bounds[1:], right=True)

    def document_causal(
        b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor
    ) -> torch.Tensor:
        return (doc_of[q_idx] == doc_of[kv_idx]) & (kv_idx <= q_idx)

    return create_block_mask(document_causal, None, None, total, total, device=device)


@functools.cache
def _flex_kernel(compiled: bool) -> Callable[..., object]:
    from torch.nn.attention.flex_attention import flex_attention

    if not compiled:
        return flex_attention
    compiled_kernel: Callable[..., object] = torch.compile(flex_attention, dynamic=False)
    return compiled_kernel


def _flex(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: list[int], scale: float
) -> torch.Tensor:
    mask = _document_causal_mask(tuple(cu_seqlens), str(q.device))
    groups = q.shape[1] // k.shape[1]
    qd, kd, vd = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))
    out = _flex_kernel(q.is_cuda)(qd, kd, vd, block_mask=mask, scale=scale, enable_gqa=groups > 1)
    assert isinstance(out, torch.Tensor)
    return out.squeeze(0).transpose(0, 1)


def _flash(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: list[int], scale: float
) -> torch.Tensor:
    from flash_attn import flash_attn_varlen_func

    cu = torch.tensor(cu_seqlens, dtype=torch.int32, device=q.device)
    longest = max(b - a for a, b in zip(cu_seqlens[:-1], cu_seqlens[1:], strict=True))
    out = flash_attn_varlen_func(
        q, k, v, cu, cu, longest, longest, softmax_scale=scale, causal=True
    )
    result: torch.Tensor = out
    return result


def _torch_varlen(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: list[int], scale: float
) -> torch.Tensor:
    from torch.nn.attention.varlen import varlen_attn

    cu = torch.tensor(cu_seqlens, dtype=torch.int32, device=q.device)
    longest = max(b - a for a, b in zip(cu_seqlens[:-1], cu_seqlens[1:], strict=True))
    out = varlen_attn(
        q,
        k,
        v,
        cu,
        cu,
        longest,
        longest,
        scale=scale,
        window_size=(-1, 0),
        enable_gqa=q.shape[1] != k.shape[1],
    )
    assert isinstance(out, torch.Tensor)
    return out


_IMPLEMENTATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "flash": _flash,
    "torch-varlen": _torch_varlen,
    "flex": _flex,
    "sdpa": _sdpa_loop,
}


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: list[int],
    *,
    scale: float | None = None,
    backend: AttentionBackend = "sdpa",
) -> torch.Tensor:
    """Document-causal attention over a packed row.

    q: (total, q_heads, dim); k, v: (total, kv_heads, dim) with q_heads a multiple of kv_heads;
    cu_seqlens: [0, len_0, len_0 + len_1, ..., total]. Returns (total, q_heads, dim).
    """
    if q.ndim != 3 or k.shape != v.shape or k.shape[0] != q.shape[0]:
        raise ValueError(f"expected packed (total, heads, dim) q/k/v, got {q.shape} {k.shape}")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"{q.shape[1]} query heads are not a multiple of {k.shape[1]} KV heads")
    if cu_seqlens[0] != 0 or cu_seqlens[-1] != q.shape[0]:
        raise ValueError(f"cu_seqlens {cu_seqlens[:3]}..{cu_seqlens[-1]} do not cover {q.shape[0]}")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return _IMPLEMENTATIONS[backend](q, k, v, list(cu_seqlens), scale)
