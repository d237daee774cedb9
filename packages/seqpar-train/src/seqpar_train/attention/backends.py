"""The four varlen attention backends and the rule that picks one.

``auto`` picks the best backend this machine can run, by capability rather than by whether a
module exists: flash-attn 2's varlen kernel (``from flash_attn import flash_attn_varlen_func``
works and the GPU is sm80+), torch's own varlen kernel (sm80+, and a ``varlen_attn`` whose
signature takes the scale and causal window we pass), then the per-document SDPA loop.
``choose_backend`` also says why each better backend was not chosen; the trainer logs it and
``mmprolong doctor`` shows it. flex_attention is chosen by flag: it is the only block-masked
kernel that also runs on CPU, but there it is forward-only (torch has no CPU backward for it)
and, uncompiled, computes the full score matrix, so on CPU the SDPA loop is the training
backend. On CUDA flex_attention is compiled, with dynamic shapes so a new row length does not
recompile it, over a block mask built from the document boundaries (``document_block_mask``).

The two kernel backends take only fp16/bf16 (flash-attn's csrc/flash_attn/flash_api.cpp
mha_varlen_fwd; torch's varlen_attn calls the same flash kernels). ``varlen_attention`` casts
q/k/v to the kernel dtype at the boundary and the output back to the query's dtype, so fp32
models (the selfcheck's) and mixed inputs (rotary keeps q/k in fp32 while v is bf16 under
single-process autocast) reach the kernels in one half-precision dtype.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

AttentionBackend = Literal["flash", "torch-varlen", "flex", "sdpa"]
BACKENDS: tuple[AttentionBackend, ...] = ("flash", "torch-varlen", "flex", "sdpa")
KERNEL_BACKENDS: frozenset[str] = frozenset({"flash", "torch-varlen"})
"""Backends whose kernels take only fp16/bf16 inputs."""
KERNEL_DTYPES = (torch.bfloat16, torch.float16)
TORCH_VARLEN_NEEDS = ("scale", "window_size")
"""varlen_attn keywords we pass. torch 2.10's signature has neither (only is_causal), 2.11's
both but no enable_gqa (we then repeat KV heads ourselves); torch/nn/attention/varlen.py."""


def cuda_capability(device: torch.device) -> tuple[int, int] | None:
    """The device's compute capability, or None when it is not a usable CUDA device."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(device)
    return int(major), int(minor)


def flash_unusable(device: torch.device) -> str | None:
    """Why flash-attn's varlen kernel cannot run on ``device`` (None when it can)."""
    capability = cuda_capability(device)
    if capability is None:
        return f"needs a CUDA device; this is {device}"
    if importlib.util.find_spec("flash_attn") is None:
        return "flash-attn is not installed (pip install 'seqpar-train[flash]')"
    try:
        importlib.import_module("flash_attn").flash_attn_varlen_func  # noqa: B018
    except (ImportError, AttributeError) as error:
        # flash-attn-4 (the CuTe package) makes flash_attn a namespace package without it.
        return f"`from flash_attn import flash_attn_varlen_func` fails ({error})"
    if capability[0] < 8:
        return f"needs an sm80+ GPU (Ampere or newer); this is sm{capability[0]}{capability[1]}"
    return None


def torch_varlen_parameters() -> set[str] | None:
    """The parameter names of this torch's ``varlen_attn`` (None when it has none)."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return set(inspect.signature(varlen_attn).parameters)


def torch_varlen_unusable(device: torch.device) -> str | None:
    """Why torch's varlen_attn cannot run on ``device`` (None when it can)."""
    capability = cuda_capability(device)
    if capability is None:
        return f"needs a CUDA device; this is {device}"
    parameters = torch_varlen_parameters()
    if parameters is None:
        return f"torch {torch.__version__} has no torch.nn.attention.varlen.varlen_attn"
    missing = [name for name in TORCH_VARLEN_NEEDS if name not in parameters]
    if missing:
        return (
            f"torch {torch.__version__}'s varlen_attn takes no {' or '.join(missing)} "
            "(it needs torch >= 2.11)"
        )
    if capability[0] < 8:
        return f"needs an sm80+ GPU (Ampere or newer); this is sm{capability[0]}{capability[1]}"
    return None


def backend_support(
    device: torch.device | str = "cpu", *, training: bool = True
) -> dict[AttentionBackend, str | None]:
    """Every backend, best first, with the reason it cannot run here (None when it can)."""
    device = torch.device(device)
    flex = (
        "needs a CUDA device for training (torch has no CPU backward for flex_attention)"
        if device.type == "cpu" and training
        else None
    )
    return {
        "flash": flash_unusable(device),
        "torch-varlen": torch_varlen_unusable(device),
        "flex": flex,
        "sdpa": None,
    }


def available_backends(
    device: torch.device | str = "cpu", *, training: bool = True
) -> list[AttentionBackend]:
    """Backends that can run on ``device`` (with a backward pass if ``training``), best first."""
    support = backend_support(device, training=training)
    return [name for name, reason in support.items() if reason is None]


@dataclass(frozen=True)
class BackendChoice:
    """The backend a run uses and why each better one was not chosen."""

    name: AttentionBackend
    requested: str
    rejected: dict[str, str] = field(default_factory=dict)

    def explain(self) -> str:
        lines = [f"attention backend {self.name} (asked for {self.requested})"]
        lines += [f"  not {name}: {reason}" for name, reason in self.rejected.items()]
        return "\n".join(lines)


def choose_backend(
    name: str, device: torch.device | str = "cpu", *, training: bool = True
) -> BackendChoice:
    """``auto`` -> the best backend for ``device``; an explicit name is checked for it. The
    choice carries the reasons the better automatic candidates (flash, torch-varlen) were not
    chosen."""
    device = torch.device(device)
    if name != "auto" and name not in BACKENDS:
        raise ValueError(f"attention backend {name!r} is unknown; choose auto or one of {BACKENDS}")
    support = backend_support(device, training=training)
    if name == "auto":
        # flex is never picked automatically: it needs a compiler toolchain on CUDA.
        automatic: tuple[AttentionBackend, ...] = ("flash", "torch-varlen", "sdpa")
        chosen: AttentionBackend = next(n for n in automatic if support[n] is None)
    else:
        reason = support[name]  # type: ignore[index]
        if reason is not None:
            raise ValueError(f"attention backend {name!r} cannot run here: {reason}")
        chosen = name  # type: ignore[assignment]
    better = list(BACKENDS)[: list(BACKENDS).index(chosen)]
    rejected: dict[str, str] = {
        n: r for n in better if n != "flex" and (r := support[n]) is not None
    }
    return BackendChoice(chosen, name, rejected)


def resolve_backend(
    name: str, device: torch.device | str = "cpu", *, training: bool = True
) -> AttentionBackend:
    """``auto`` -> the best backend for ``device``; an explicit name is checked for it."""
    return choose_backend(name, device, training=training).name


def _expand_kv(kv: torch.Tensor, groups: int) -> torch.Tensor:
    return kv if groups == 1 else kv.repeat_interleave(groups, dim=1)


def _sdpa_loop(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: list[int],
    scale: float,
    causal: bool = True,
) -> torch.Tensor:
    groups = q.shape[1] // k.shape[1]
    outputs = []
    for start, end in zip(cu_seqlens[:-1], cu_seqlens[1:], strict=True):
        if end == start:
            continue
        # (len, heads, dim) -> (1, heads, len, dim)
        qd, kd, vd = (t[start:end].transpose(0, 1).unsqueeze(0) for t in (q, k, v))
        out = F.scaled_dot_product_attention(
            qd, _expand_kv(kd, groups), _expand_kv(vd, groups), is_causal=causal, scale=scale
        )
        outputs.append(out.squeeze(0).transpose(0, 1))
    return torch.cat(outputs, dim=0)


FLEX_BLOCK = 128
"""flex_attention's default sparse block size (torch/nn/attention/flex_attention.py)."""


def document_ids(cu_seqlens: list[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """The document index of every token of a packed row: O(S) int32."""
    lengths = torch.tensor(
        [b - a for a, b in zip(cu_seqlens[:-1], cu_seqlens[1:], strict=True)], device=device
    )
    return torch.repeat_interleave(
        torch.arange(len(lengths), dtype=torch.int32, device=device), lengths
    )


def document_block_mask(
    cu_seqlens: list[int],
    device: torch.device | str = "cpu",
    block: int = FLEX_BLOCK,
    causal: bool = True,
) -> Any:
    """flex_attention's BlockMask of the document-causal mask (or, not ``causal``, the
    document mask), built from the document boundaries: per block row, the kv blocks from the
    block holding its first token's document start up to the diagonal (up to its last
    token's document end); blocks inside one document (strictly below the diagonal) are
    full, the rest partial (resolved by the mask_mod per token). Memory is the
    O(S) document index plus block tables of (S / 128)^2 int32 (4 MiB each at 128K), where
    torch's uncompiled ``create_block_mask`` evaluates the mask_mod on the dense S x S grid."""
    from torch.nn.attention.flex_attention import BlockMask

    total = cu_seqlens[-1]
    doc_of = document_ids(cu_seqlens, device)
    starts = torch.tensor(cu_seqlens[:-1], device=device)
    ends = torch.tensor(cu_seqlens[1:], device=device)
    blocks = -(-total // block)
    rows = torch.arange(blocks, device=device)
    first_q = rows * block
    last_q = torch.clamp(first_q + block - 1, max=total - 1)
    first_doc, last_doc = doc_of[first_q].long(), doc_of[last_q].long()
    doc_start = starts[first_doc]
    lowest = doc_start // block  # first kv block any query of the row may see
    full_lo = -(-doc_start // block)  # first kv block lying wholly inside that document
    # Full blocks need the whole (unpadded) query block inside one document, kv block j < i.
    whole = (first_doc == last_doc) & (first_q + block <= total)
    highest = rows if causal else (ends[last_doc] - 1) // block
    full_hi = torch.where(whole, rows if causal else ends[first_doc] // block, full_lo)
    cols = torch.arange(blocks, device=device)
    full = (cols >= full_lo[:, None]) & (cols < full_hi[:, None])
    partial = (cols >= lowest[:, None]) & (cols <= highest[:, None]) & ~full

    def ordered(dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        counts = dense.sum(-1, dtype=torch.int32)
        indices = torch.argsort(dense.to(torch.int8), dim=-1, descending=True, stable=True)
        return counts[None, None].contiguous(), indices.to(torch.int32)[None, None].contiguous()

    def document_causal(
        b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor
    ) -> torch.Tensor:
        return (doc_of[q_idx] == doc_of[kv_idx]) & (kv_idx <= q_idx)

    def same_document(
        b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor
    ) -> torch.Tensor:
        return doc_of[q_idx] == doc_of[kv_idx]

    kv_num, kv_indices = ordered(partial)
    full_num, full_indices = ordered(full)
    return BlockMask.from_kv_blocks(
        kv_num,
        kv_indices,
        full_num,
        full_indices,
        BLOCK_SIZE=block,
        mask_mod=document_causal if causal else same_document,
        seq_lengths=(total, total),
    )


@functools.cache
def _flex_kernel(compiled: bool) -> Callable[..., object]:
    from torch.nn.attention.flex_attention import flex_attention

    if not compiled:
        return flex_attention
    # dynamic=True: row lengths change from step to step; a static compile would recompile
    # for every new length until torch's recompile limit, then fall back to the dense path.
    compiled_kernel: Callable[..., object] = torch.compile(flex_attention, dynamic=True)
    return compiled_kernel


def _flex(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: list[int],
    scale: float,
    causal: bool = True,
) -> torch.Tensor:
    mask = document_block_mask(cu_seqlens, q.device, causal=causal)
    groups = q.shape[1] // k.shape[1]
    qd, kd, vd = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))
    out = _flex_kernel(q.is_cuda)(qd, kd, vd, block_mask=mask, scale=scale, enable_gqa=groups > 1)
    assert isinstance(out, torch.Tensor)
    return out.squeeze(0).transpose(0, 1)


def _cu_seqlens(cu_seqlens: list[int], device: torch.device) -> tuple[torch.Tensor, int]:
    """The kernels' int32 boundaries on the tensors' device, and the longest document."""
    cu = torch.tensor(cu_seqlens, dtype=torch.int32, device=device)
    longest = max(b - a for a, b in zip(cu_seqlens[:-1], cu_seqlens[1:], strict=True))
    return cu, longest


def _flash(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: list[int],
    scale: float,
    causal: bool = True,
) -> torch.Tensor:
    from flash_attn import flash_attn_varlen_func

    cu, longest = _cu_seqlens(cu_seqlens, q.device)
    out = flash_attn_varlen_func(
        q, k, v, cu, cu, longest, longest, softmax_scale=scale, causal=causal
    )
    result: torch.Tensor = out
    return result


def _torch_varlen(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: list[int],
    scale: float,
    causal: bool = True,
) -> torch.Tensor:
    from torch.nn.attention.varlen import varlen_attn

    cu, longest = _cu_seqlens(cu_seqlens, q.device)
    gqa: dict[str, Any] = {}
    if q.shape[1] != k.shape[1]:
        if "enable_gqa" in (torch_varlen_parameters() or set()):
            gqa["enable_gqa"] = True
        else:  # torch 2.11: equal head counts only
            groups = q.shape[1] // k.shape[1]
            k, v = _expand_kv(k, groups), _expand_kv(v, groups)
    window = (-1, 0) if causal else (-1, -1)
    out = varlen_attn(q, k, v, cu, cu, longest, longest, scale=scale, window_size=window, **gqa)
    assert isinstance(out, torch.Tensor)
    return out


_IMPLEMENTATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "flash": _flash,
    "torch-varlen": _torch_varlen,
    "flex": _flex,
    "sdpa": _sdpa_loop,
}


def kernel_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The half-precision dtype a kernel gets: the inputs' own when one of them is fp16 or
    bf16 (the value's first: it carries the compute dtype when rotary left q/k in fp32),
    else bf16."""
    for tensor in reversed(tensors):
        if tensor.dtype in KERNEL_DTYPES:
            return tensor.dtype
    return torch.bfloat16


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: list[int],
    *,
    scale: float | None = None,
    backend: AttentionBackend = "sdpa",
    causal: bool = True,
) -> torch.Tensor:
    """Document-causal attention over a packed row (``causal=False``: each token attends to
    its whole document, as the vision tower's windows and images do).

    q: (total, q_heads, dim); k, v: (total, kv_heads, dim) with q_heads a multiple of kv_heads;
    cu_seqlens: [0, len_0, len_0 + len_1, ..., total]. Returns (total, q_heads, dim) in q's
    dtype; the kernel backends compute in fp16/bf16 whatever the inputs' dtypes.
    """
    if q.ndim != 3 or k.shape != v.shape or k.shape[0] != q.shape[0]:
        raise ValueError(f"expected packed (total, heads, dim) q/k/v, got {q.shape} {k.shape}")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"{q.shape[1]} query heads are not a multiple of {k.shape[1]} KV heads")
    if cu_seqlens[0] != 0 or cu_seqlens[-1] != q.shape[0]:
        raise ValueError(f"cu_seqlens {cu_seqlens[:3]}..{cu_seqlens[-1]} do not cover {q.shape[0]}")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if backend in KERNEL_BACKENDS:
        dtype = kernel_dtype(q, k, v)
        # The kernels read only a contiguous last dimension (flash_api.cpp's stride checks).
        q_in, k_in, v_in = (t.to(dtype).contiguous() for t in (q, k, v))
        out = _IMPLEMENTATIONS[backend](q_in, k_in, v_in, list(cu_seqlens), scale, causal)
        return out.to(q.dtype)
    if not (q.dtype == k.dtype == v.dtype):
        common = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
        q, k, v = q.to(common), k.to(common), v.to(common)
    return _IMPLEMENTATIONS[backend](q, k, v, list(cu_seqlens), scale, causal)
