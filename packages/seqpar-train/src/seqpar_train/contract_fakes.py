"""Contract fakes of the GPU-only APIs seqpar-train calls, for checks on a CPU machine.

Each fake enforces the preconditions the real function enforces (dtype, signature, device
rules), restated from the upstream source named in its docstring, and computes the same
result on the CPU (document-causal attention in float32, rounded to the kernel dtype).
``kernel_fakes`` installs the attention fakes behind seqpar-train's capability probes, so
``auto`` selection, the trainer and the selfcheck run their CUDA code paths on CPU tensors;
``FakeNcclNode`` checks NCCL's one-device-per-rank rule by recording ``set_device`` calls.
The package tests and ``nox -s gpu``'s dry run use them; real kernels never see them.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import torch
import torch.distributed as dist

_HALF = (torch.float16, torch.bfloat16)


class ContractViolation(RuntimeError):
    """A call the real library would reject (the message restates its error)."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ContractViolation(message)


def _document_causal(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu: torch.Tensor,
    scale: float | None,
    causal: bool,
) -> torch.Tensor:
    """Per-document attention in float32, rounded to q's dtype like the kernels' output."""
    bounds = [int(x) for x in cu.tolist()]
    groups = q.shape[1] // k.shape[1]
    outputs = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        if end == start:
            continue
        qd, kd, vd = (t[start:end].float().transpose(0, 1) for t in (q, k, v))
        kd, vd = kd.repeat_interleave(groups, 0), vd.repeat_interleave(groups, 0)
        out = torch.nn.functional.scaled_dot_product_attention(
            qd, kd, vd, is_causal=causal, scale=scale
        )
        outputs.append(out.transpose(0, 1))
    return torch.cat(outputs).to(q.dtype)


def _check_packed(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_q: torch.Tensor,
    cu_k: torch.Tensor,
    max_q: int,
    where: str,
) -> None:
    _check(
        q.dtype in _HALF,
        f"{where}: FlashAttention only support fp16 and bf16 data type, got {q.dtype}",
    )
    _check(k.dtype == q.dtype, f"{where}: query and key must have the same dtype")
    _check(v.dtype == q.dtype, f"{where}: query and value must have the same dtype")
    for name, cu in (("cu_seqlens_q", cu_q), ("cu_seqlens_k", cu_k)):
        _check(cu.dtype == torch.int32, f"{where}: {name} must have dtype int32, got {cu.dtype}")
        _check(cu.is_contiguous(), f"{where}: {name} must be contiguous")
    for name, t in (("q", q), ("k", k), ("v", v), ("cu_seqlens_q", cu_q), ("cu_seqlens_k", cu_k)):
        _check(t.device == q.device, f"{where}: {name} is on {t.device}, q on {q.device}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check(t.stride(-1) == 1, f"{where}: {name}: Input tensor must have contiguous last dim")
    _check(q.shape[-1] <= 256, f"{where}: head dimension at most 256, got {q.shape[-1]}")
    _check(
        q.shape[1] % k.shape[1] == 0,
        f"{where}: Number of heads in key/value must divide number of heads in query",
    )
    lengths = (cu_q[1:] - cu_q[:-1]).tolist()
    _check(int(cu_q[-1]) == q.shape[0], f"{where}: cu_seqlens_q ends at {int(cu_q[-1])}")
    _check(max(lengths) <= max_q, f"{where}: max_seqlen_q {max_q} < longest document")


def flash_attn_varlen_func(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    max_seqlen_q: int,
    max_seqlen_k: int,
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    alibi_slopes: torch.Tensor | None = None,
    deterministic: bool = False,
    return_attn_probs: bool = False,
    block_table: torch.Tensor | None = None,
) -> torch.Tensor:
    """flash-attn 2.8's ``flash_attn_varlen_func`` (flash_attn/flash_attn_interface.py, the
    same signature) with the checks of ``mha_varlen_fwd`` in csrc/flash_attn/flash_api.cpp:
    q/k/v fp16 or bf16 and one dtype, int32 contiguous cu_seqlens on q's device, contiguous
    last dimension, head dim <= 256, query heads a multiple of KV heads."""
    _check_packed(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, "flash_attn_varlen_func")
    _check(dropout_p == 0.0 and window_size == (-1, -1), "fake: only dropout 0, full window")
    _check(softcap == 0.0 and alibi_slopes is None and block_table is None, "fake: plain only")
    return _document_causal(q, k, v, cu_seqlens_q, softmax_scale, causal)


def _varlen_attn_checks(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seq_q: torch.Tensor,
    cu_seq_k: torch.Tensor,
    max_q: int,
    enable_gqa: bool,
) -> None:
    where = "varlen_attn"
    if query.shape[1] != key.shape[1]:
        # torch/nn/attention/varlen.py: "Expect query and key/value to have the same number
        # of heads" unless enable_gqa (2.12+); before 2.12 the kernel rejects the shapes.
        _check(enable_gqa, f"{where}: Expect query and key/value to have the same number of heads")
    _check_packed(query, key, value, cu_seq_q, cu_seq_k, max_q, where)


def varlen_attn_2_10(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seq_q: torch.Tensor,
    cu_seq_k: torch.Tensor,
    max_q: int,
    max_k: int,
    is_causal: bool = False,
    return_aux: Any = None,
) -> torch.Tensor:
    """torch 2.10's ``varlen_attn`` (torch/nn/attention/varlen.py): no scale, no window,
    no GQA; causal by flag. Its op is aten._flash_attention_forward (fp16/bf16 only)."""
    _varlen_attn_checks(query, key, value, cu_seq_q, cu_seq_k, max_q, False)
    return _document_causal(query, key, value, cu_seq_q, None, is_causal)


def varlen_attn_2_11(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seq_q: torch.Tensor,
    cu_seq_k: torch.Tensor,
    max_q: int,
    max_k: int,
    *,
    return_aux: Any = None,
    scale: float | None = None,
    window_size: tuple[int, int] = (-1, -1),
) -> torch.Tensor:
    """torch 2.11's ``varlen_attn``: keyword-only scale and window_size ((-1, 0) is
    causal), no enable_gqa."""
    _check(window_size in ((-1, -1), (-1, 0)), "fake: full or causal window only")
    _varlen_attn_checks(query, key, value, cu_seq_q, cu_seq_k, max_q, False)
    return _document_causal(query, key, value, cu_seq_q, scale, window_size == (-1, 0))


def varlen_attn_2_12(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cu_seq_q: torch.Tensor,
    cu_seq_k: torch.Tensor | None,
    max_q: int,
    max_k: int,
    *,
    return_aux: Any = None,
    scale: float | None = None,
    window_size: tuple[int, int] = (-1, -1),
    enable_gqa: bool = False,
    seqused_k: torch.Tensor | None = None,
    block_table: torch.Tensor | None = None,
    num_splits: int | None = None,
) -> torch.Tensor:
    """torch 2.12+'s ``varlen_attn`` (the signature of the installed 2.13): adds
    enable_gqa, seqused_k, block_table, num_splits."""
    _check(window_size in ((-1, -1), (-1, 0)), "fake: full or causal window only")
    _check(cu_seq_k is not None and seqused_k is None and block_table is None, "fake: no paging")
    assert cu_seq_k is not None
    _varlen_attn_checks(query, key, value, cu_seq_q, cu_seq_k, max_q, enable_gqa)
    return _document_causal(query, key, value, cu_seq_q, scale, window_size == (-1, 0))


VARLEN_ATTN_BY_TORCH: dict[str, Callable[..., torch.Tensor]] = {
    "2.10": varlen_attn_2_10,
    "2.11": varlen_attn_2_11,
    "2.12": varlen_attn_2_12,
    "2.13": varlen_attn_2_12,
}


def _flash_module(flash: str | None) -> types.ModuleType | None:
    """``flash_attn`` as flash-attn 2.8 leaves it ("2"), as flash-attn-4 alone leaves it
    ("4": a namespace package, flash_attn/__init__.py absent, only flash_attn.cute), or
    absent (None)."""
    if flash is None:
        return None
    module = types.ModuleType("flash_attn")
    module.__spec__ = importlib.machinery.ModuleSpec("flash_attn", None, is_package=True)
    module.__path__ = []
    if flash == "2":
        module.flash_attn_varlen_func = flash_attn_varlen_func  # type: ignore[attr-defined]
        module.__version__ = "2.8.3"  # type: ignore[attr-defined]
    elif flash != "4":
        raise ValueError(f"flash must be '2', '4' or None, got {flash!r}")
    return module


@contextlib.contextmanager
def kernel_fakes(
    *,
    capability: tuple[int, int] | None = (9, 0),
    flash: str | None = "2",
    torch_varlen: str | None = "2.13",
) -> Iterator[None]:
    """Make seqpar-train see a CUDA device of ``capability`` (None: no CUDA), flash-attn
    installed as ``flash`` and torch's ``varlen_attn`` of torch ``torch_varlen`` (None:
    absent). The kernels then run through the fakes on whatever device the tensors are."""
    import torch.nn.attention.varlen as varlen_module

    from seqpar_train.attention import backends

    def fake_capability(device: torch.device) -> tuple[int, int] | None:
        return capability if device.type == "cuda" else None

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(backends, "cuda_capability", fake_capability))
        # Only flash_attn's entry: restoring all of sys.modules would drop (and later
        # re-import, as new objects) modules first imported inside the context.
        # (mock.patch.dict restores the whole dict on exit, so it is not used here.)
        missing = object()
        previous = sys.modules.get("flash_attn", missing)

        def restore_flash() -> None:
            if previous is missing:
                sys.modules.pop("flash_attn", None)
            else:
                sys.modules["flash_attn"] = previous  # type: ignore[assignment]

        stack.callback(restore_flash)
        # None makes `import flash_attn` fail, as when it is not installed.
        sys.modules["flash_attn"] = _flash_module(flash)  # type: ignore[assignment]
        if torch_varlen is None:
            stack.enter_context(mock.patch.object(varlen_module, "varlen_attn", None))
            absent = mock.patch.object(backends, "torch_varlen_parameters", return_value=None)
            stack.enter_context(absent)
        else:
            fake = VARLEN_ATTN_BY_TORCH[torch_varlen]
            stack.enter_context(mock.patch.object(varlen_module, "varlen_attn", fake))
        yield


@dataclass
class FakeNcclNode:
    """One node of ``gpus`` CUDA devices whose processes run one after another in this
    process (``with node.process(rank, world): ...``), with NCCL's rule that a communicator
    holds one rank per device: the first collective of each rank registers the device
    current at that moment (NCCL uses the current device, torch stages objects there:
    torch/distributed/distributed_c10d.py broadcast_object_list's note), and a second rank
    on the same device fails as NCCL does (src/init.cc, initTransportsRank: "Duplicate GPU
    detected : rank %d and rank %d both on CUDA device", ncclInvalidUsage).

    ``set_device_calls`` records every ``torch.cuda.set_device`` per rank, ``events`` the
    order of set_device / init_process_group / collectives per rank."""

    gpus: int = 8
    set_device_calls: dict[int, list[int]] = field(default_factory=dict)
    events: dict[int, list[str]] = field(default_factory=dict)
    backends: dict[int, str] = field(default_factory=dict)
    communicator: dict[int, int] = field(default_factory=dict)  # rank -> device
    broadcasts: list[Any] = field(default_factory=list)

    @contextlib.contextmanager
    def process(self, rank: int, world: int, local_rank: int | None = None) -> Iterator[None]:
        local = rank % self.gpus if local_rank is None else local_rank
        state: dict[str, Any] = {
            "current": 0,
            "initialized": False,
            "collectives": 0,
            "broadcasts": 0,
        }
        self.set_device_calls[rank] = []
        self.events[rank] = []

        def set_device(device: int | torch.device) -> None:
            index = device.index if isinstance(device, torch.device) else int(device)
            _check(index is not None and 0 <= index < self.gpus, f"invalid device {device}")
            self.set_device_calls[rank].append(int(index))
            self.events[rank].append(f"set_device({index})")
            state["current"] = index

        def init_process_group(backend: str | None = None, **kwargs: Any) -> None:
            _check(not state["initialized"], "trying to initialize the default process group twice")
            self.backends[rank] = str(backend)
            self.events[rank].append(f"init_process_group({backend})")
            state["initialized"] = True

        def collective(name: str) -> None:
            _check(state["initialized"], f"{name} before init_process_group")
            self.events[rank].append(f"{name} on cuda:{state['current']}")
            if state["collectives"] == 0:
                for other, device in self.communicator.items():
                    if device == state["current"] and other != rank:
                        raise ContractViolation(
                            f"NCCL error: invalid usage: Duplicate GPU detected : rank {rank} "
                            f"and rank {other} both on CUDA device {device}"
                        )
                self.communicator[rank] = state["current"]
            state["collectives"] += 1

        def broadcast_object_list(objects: list[Any], src: int = 0, **kwargs: Any) -> None:
            collective("broadcast_object_list")
            index = state["broadcasts"]
            state["broadcasts"] += 1
            if rank == src:
                self.broadcasts.append(list(objects))
            else:  # the source's broadcast of the same turn (the source ran first)
                _check(index < len(self.broadcasts), "fake: the source rank must run first")
                objects[:] = self.broadcasts[index]

        def barrier(*args: Any, **kwargs: Any) -> None:
            collective("barrier")

        def destroy_process_group(*args: Any, **kwargs: Any) -> None:
            state["initialized"] = False

        def current_device() -> int:
            return int(state["current"])

        def is_initialized() -> bool:
            return bool(state["initialized"])

        env = {
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(local),
            "LOCAL_WORLD_SIZE": str(min(world, self.gpus)),
        }
        patches: list[Any] = [
            mock.patch.dict("os.environ", env),
            mock.patch.object(torch.cuda, "is_available", return_value=True),
            mock.patch.object(torch.cuda, "device_count", return_value=self.gpus),
            mock.patch.object(torch.cuda, "set_device", set_device),
            mock.patch.object(torch.cuda, "current_device", current_device),
            mock.patch.object(dist, "init_process_group", init_process_group),
            mock.patch.object(dist, "is_initialized", is_initialized),
            mock.patch.object(dist, "get_rank", return_value=rank),
            mock.patch.object(dist, "get_world_size", return_value=world),
            mock.patch.object(dist, "broadcast_object_list", broadcast_object_list),
            mock.patch.object(dist, "barrier", barrier),
            mock.patch.object(dist, "destroy_process_group", destroy_process_group),
        ]
        with contextlib.ExitStack() as stack:
            for patch in patches:
                stack.enter_context(patch)
            yield

    def bound_before_first_collective(self, rank: int) -> bool:
        """True when the rank's device was set before its first collective."""
        events = self.events[rank]
        first = next((i for i, e in enumerate(events) if " on cuda:" in e), len(events))
        return any(e.startswith("set_device") for e in events[:first])
