"""Peak memory and step time of a training setup at real scale, measured on a CPU.

The real training step (the HF model wrapped as the trainer wraps it, the Ulysses SP forward,
activation checkpointing, FSDP2 ``fully_shard``, the chunked loss and an AdamW step) runs
under torch's ``FakeTensorMode``, as rank 0 of a fake process group of the real world size:
tensors have shapes, dtypes and storages but no data, and collectives move nothing. torch's
``FSDPMemTracker`` (torch.distributed._tools) records every storage the step allocates and
frees, by category. torchtitan's memory estimator works this way for text models; this one
also covers SP and the vision tower.

Two things make the fake step allocate what the GPU step allocates:

- Attention: flash-attn and torch's varlen kernel keep O(S) memory (the output and one
  log-sum-exp per query and head); the SDPA math path builds S x S. Under the planner the
  varlen attention is ``flash_profile_attention``, an op with exactly the kernels' saved
  tensors (q, k, v unexpanded, out, lse) and gradient shapes.
- Data-dependent integer work (where the image tokens are, which positions are labelled, the
  mRoPE indices) needs values, which fake tensors do not have. The row's integer tensors are
  real, and ``_RealIntegerOps`` runs every op whose tensor inputs are all real for real;
  only tensors derived from parameters are fake. They are a few MB at 128K.

CPU offload (FSDP2's ``CPUOffloadPolicy``) keeps the sharded parameters, the sharded gradients
and the optimizer state (with the optimizer step) in host memory; the GPU holds the unsharded
parameters and gradients of the layers in flight, activations, temporaries and buffers. On
the CPU device host and device memory cannot be told apart, so the planned step runs without
the policy and the tracker follows, op by op, both the peak of everything and the peak of what
stays on the GPU (everything less those three categories) and the most those three hold at
once (host memory). Offload adds one measured transient per FSDP unit: its reduce-scatter
output waits on the GPU for its copy to the host, and its sharded fp32 parameters are copied
to the GPU before their all-gather; both are at most the largest unit's sharded gradient bytes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any
from unittest import mock

import torch
import torch.distributed as dist
from pydantic import Field
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode, unset_fake_temporarily
from torch.utils._python_dispatch import TorchDispatchMode

from mmprolong_schemas.base import Model
from mmprolong_schemas.units import K
from seqpar_train.batch import IGNORE_INDEX, PackedRow
from seqpar_train.flops import (
    ArchSpec,
    RowShape,
    arch_from_config,
    page_row,
    seconds_at_mfu,
    steps_for_budget,
    training_flops,
)

GIB = 2**30
OFFLOADED = ("Sharded Param", "Sharded Grad", "OptState")
"""FSDPMemTracker's categories that CPU offload keeps in host memory."""


# --- an attention op with flash-attn's memory profile -------------------------------------


# The real bodies run torch's CPU flash-attention kernels document by document, so a real
# step on the CPU (the planner's accuracy check) allocates O(S) for attention as the GPU
# kernels do; under fake mode only the shapes below matter.
_CPU_FLASH = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_CPU_FLASH_BACKWARD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


def _heads_first(t: torch.Tensor, repeats: int = 1) -> torch.Tensor:
    """(n, heads, d) -> (1, heads * repeats, n, d), each head repeated (GQA's expansion)."""
    return t.transpose(0, 1).repeat_interleave(repeats, 0).unsqueeze(0)


@torch.library.custom_op("seqpar_plan::flash_profile_fwd", mutates_args=())
def _flash_fwd(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: list[int],
    scale: float,
    causal: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention within documents (causal or not), one document at a time: output
    (S, Hq, D) and log-sum-exp (Hq, S) in float32, as flash-attn returns them."""
    out = torch.empty_like(q)
    lse = torch.empty((q.shape[1], q.shape[0]), dtype=torch.float32, device=q.device)
    groups = q.shape[1] // k.shape[1]
    for start, end in zip(cu_seqlens[:-1], cu_seqlens[1:], strict=True):
        doc_out, doc_lse = _CPU_FLASH(
            _heads_first(q[start:end]),
            _heads_first(k[start:end], groups),
            _heads_first(v[start:end], groups),
            0.0,
            causal,
            scale=scale,
        )
        out[start:end] = doc_out[0].transpose(0, 1)
        lse[:, start:end] = doc_lse[0]
    return out, lse


@_flash_fwd.register_fake
def _(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: list[int],
    scale: float,
    causal: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    lse = q.new_empty((q.shape[1], q.shape[0]), dtype=torch.float32)
    return torch.empty_like(q), lse


@torch.library.custom_op("seqpar_plan::flash_profile_bwd", mutates_args=())
def _flash_bwd(
    grad: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    cu_seqlens: list[int],
    scale: float,
    causal: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of q, k, v from the saved output and log-sum-exp, one document at a time
    (the CPU flash kernel's backward; k and v gradients summed over each GQA group)."""
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    groups = q.shape[1] // k.shape[1]
    for start, end in zip(cu_seqlens[:-1], cu_seqlens[1:], strict=True):
        grad_q, grad_k, grad_v = _CPU_FLASH_BACKWARD(
            _heads_first(grad[start:end]),
            _heads_first(q[start:end]),
            _heads_first(k[start:end], groups),
            _heads_first(v[start:end], groups),
            _heads_first(out[start:end]),
            lse[:, start:end].unsqueeze(0).contiguous(),
            0.0,
            causal,
            scale=scale,
        )
        n, dim = end - start, q.shape[2]
        dq[start:end] = grad_q[0].transpose(0, 1)
        for full, target in ((grad_k, dk), (grad_v, dv)):
            per_group = full[0].reshape(k.shape[1], groups, n, dim).sum(1)
            target[start:end] = per_group.transpose(0, 1).to(target.dtype)
    return dq, dk, dv


@_flash_bwd.register_fake
def _(
    grad: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    cu_seqlens: list[int],
    scale: float,
    causal: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    q, k, v, cu_seqlens, scale, causal = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse)  # what flash-attn saves
    ctx.cu_seqlens, ctx.scale, ctx.causal = cu_seqlens, scale, causal


def _backward(ctx: Any, grad_out: torch.Tensor, grad_lse: torch.Tensor) -> tuple[Any, ...]:
    q, k, v, out, lse = ctx.saved_tensors
    dq, dk, dv = _flash_bwd(grad_out, q, k, v, out, lse, ctx.cu_seqlens, ctx.scale, ctx.causal)
    return dq, dk, dv, None, None, None


_flash_fwd.register_autograd(_backward, setup_context=_setup_context)


def flash_profile_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: list[int],
    scale: float,
    causal: bool = True,
) -> torch.Tensor:
    """Varlen attention with flash-attn's memory profile (the backends' signature)."""
    out, _ = _flash_fwd(q, k, v, [int(n) for n in cu_seqlens], float(scale), causal)
    return out


@contextlib.contextmanager
def flash_memory_attention() -> Iterator[None]:
    """Every varlen backend runs ``flash_profile_attention`` while this is active: the text
    decoder's Ulysses attention and the vision tower's (``ulysses.install_attention``)."""
    from seqpar_train.attention import backends

    table = dict.fromkeys(backends._IMPLEMENTATIONS, flash_profile_attention)
    with mock.patch.dict(backends._IMPLEMENTATIONS, table):
        yield


# --- real integer work under fake mode ------------------------------------------------------


class _RealIntegerOps(TorchDispatchMode):
    """Ops whose tensor inputs are all real run for real (outside FakeTensorMode), and so do
    factory ops that make integer or boolean tensors (indices, positions, masks); the rest
    go on to FakeTensorMode."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [
            t
            for t in torch.utils._pytree.tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor)
        ]
        if tensors and not any(isinstance(t, FakeTensor) for t in tensors):
            with unset_fake_temporarily():
                return func(*args, **kwargs)
        out = func(*args, **kwargs)
        if not tensors and isinstance(out, torch.Tensor) and not out.is_floating_point():
            with unset_fake_temporarily():
                return func(*args, **kwargs)
        return out


# --- the setup and the row ------------------------------------------------------------------


class PlanSetup(Model):
    """What decides a rank's memory and a step's time."""

    model: str = Field(description="Preset (qwen2.5-vl-7b, qwen3-vl-8b) or checkpoint folder.")
    gpus: int = Field(default=8, ge=1)
    gpus_per_node: int = Field(default=8, ge=1)
    gpu: str | None = Field(default="H20", description="Device name (memory and peak).")
    memory_gb: float | None = Field(default=None, gt=0, description="Overrides the GPU's.")
    peak_tflops: float | None = Field(default=None, gt=0, description="Overrides the GPU's.")
    seq_len: int = Field(default=128 * K, ge=64)
    doc_len: int | None = Field(default=None, description="Document length; default = row.")
    sp: int = Field(default=2, ge=1)
    fsdp: int = Field(default=-1, description="FSDP shard size; -1: all ranks left by SP.")
    activation_checkpointing: bool = True
    cpu_offload: bool = False
    host_link_gbps: float = Field(
        default=25.0,
        gt=0,
        description="Host<->GPU copy bandwidth per GPU under CPU offload, GB/s (assumed: about "
        "half of PCIe Gen5 x16's 64 GB/s per direction, as GPUs share switches and the host).",
    )
    loss_chunk: int = Field(default=4096, ge=1)
    answer_tokens: int = Field(default=64, ge=1, description="Labelled tokens per document.")
    margin: float = Field(default=0.1, ge=0, lt=1, description="Share of memory kept free.")
    mfu: float = Field(default=0.35, gt=0, le=1, description="Assumed MFU for step time.")
    global_batch_tokens: int = Field(default=4 * 2**20, ge=1)
    token_budget: int = Field(default=5 * 2**30, ge=1)
    row_fill: float = Field(default=0.77, gt=0, le=1, description="Real tokens per row slot.")

    @property
    def fsdp_size(self) -> int:
        """Ranks one FSDP group shards over (``fsdp``, or all ranks left by SP)."""
        return self.fsdp if self.fsdp != -1 else self.gpus // self.sp


class MemoryBreakdown(Model):
    """Bytes on one rank at its peak, by what holds them (FSDPMemTracker's categories)."""

    parameters: int
    gradients: int
    optimizer_state: int
    text_activations: int
    vit_activations: int
    loss_chunk: int = Field(
        description="Temporaries at the peak (the loss chunk's logits, gradients of activations)."
    )
    comm_buffers: int = Field(description="All-gather and reduce-scatter buffers.")
    inputs: int
    offload_staging: int = Field(
        default=0,
        description="CPU offload: a unit's reduce-scatter output waiting for its copy to the "
        "host and its sharded parameters copied in for the all-gather.",
    )
    peak: int
    host: int = Field(
        default=0,
        description="CPU offload: host memory per rank for the sharded parameters, gradients "
        "and optimizer state (not part of the GPU peak).",
    )
    host_parameters: int = Field(
        default=0, description="CPU offload: of ``host``, the sharded (fp32) parameters."
    )

    def rows(self) -> list[tuple[str, int]]:
        return [
            ("parameters", self.parameters),
            ("gradients", self.gradients),
            ("optimizer state", self.optimizer_state),
            ("text activations", self.text_activations),
            ("ViT activations", self.vit_activations),
            ("loss chunk and temporaries", self.loss_chunk),
            ("communication buffers", self.comm_buffers),
            ("inputs", self.inputs),
            *([("offload staging", self.offload_staging)] if self.offload_staging else []),
        ]


class Plan(Model):
    setup: PlanSetup
    memory: MemoryBreakdown
    capacity_bytes: int | None
    usable_bytes: int | None = Field(description="Capacity less the margin.")
    fits: bool | None
    images_per_row: int
    step_seconds: float | None
    offload_copy_seconds: float | None = Field(
        default=None,
        description="CPU offload: the step's host<->GPU copies at setup.host_link_gbps, "
        "included in step_seconds as if not overlapped with compute (an estimate).",
    )
    steps: int
    hours_to_budget: float | None
    gpu_hours: float | None
    label: str = "estimate: fake-mode step on a CPU, not a measurement"


def planned_row(config: Any, shape: RowShape, page_grid_tokens: int) -> PackedRow:
    """A packed row of ``shape``'s documents: each a run of page images (vision start,
    image tokens, vision end) with text filling the rest, answers labelled at its end. The
    integer tensors are real; pixel values are not made here (see ``_fake_pixels``)."""
    from longctx_rope import PackedDoc, packed_position_ids

    merge = config.vision_config.spatial_merge_size
    ids_parts, label_parts, docs = [], [], []
    grids = list(shape.image_grids)
    answer = shape.label_tokens // len(shape.doc_lens)
    text_id = 100
    for length in shape.doc_lens:
        doc_grids = []
        pieces: list[torch.Tensor] = []
        used = answer
        while grids and used + grids[0][1] * grids[0][2] // merge**2 + 2 <= length:
            t, h, w = grids.pop(0)
            tokens = h * w // merge**2
            pieces += [
                torch.tensor([config.vision_start_token_id]),
                torch.full((tokens,), config.image_token_id),
                torch.tensor([config.vision_end_token_id]),
            ]
            doc_grids.append([t, h, w])
            used += tokens + 2
        pieces.insert(0, torch.full((length - used,), text_id))
        pieces.append(torch.full((answer,), text_id + 1))
        ids = torch.cat(pieces)
        labels = torch.full_like(ids, IGNORE_INDEX)
        labels[-answer:] = ids[-answer:]
        grid = torch.tensor(doc_grids) if doc_grids else None
        docs.append(PackedDoc(input_ids=ids, image_grid_thw=grid))
        ids_parts.append(ids)
        label_parts.append(labels)
    all_grids = [g for d in docs if d.image_grid_thw is not None for g in d.image_grid_thw.tolist()]
    return PackedRow(
        input_ids=torch.cat(ids_parts),
        labels=torch.cat(label_parts),
        position_ids=packed_position_ids(docs, config),
        doc_lens=[int(t.numel()) for t in ids_parts],
        pixel_values=None,
        image_grid_thw=torch.tensor(all_grids) if all_grids else None,
        pixel_share=(0, 1),
    )


# --- the fake-mode step -----------------------------------------------------------------------


@contextlib.contextmanager
def fake_process_group(world_size: int) -> Iterator[None]:
    """This process as rank 0 of a fake group of ``world_size`` (collectives move nothing)."""
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if dist.is_initialized():
        raise RuntimeError("the planner needs a process without a process group")
    dist.init_process_group("fake", rank=0, world_size=world_size, store=FakeStore())
    try:
        yield
    finally:
        dist.destroy_process_group()


def _category(snapshot: dict[str, int], *names: str) -> int:
    return sum(int(snapshot.get(name, 0)) for name in names)


def _plan_tracker(model: torch.nn.Module, optimizer: Any) -> Any:
    """torch's FSDPMemTracker, keeping besides the peak (``peak``) the peak of what stays on
    the GPU under CPU offload (``resident_peak``: the snapshot where everything but
    ``OFFLOADED`` is largest) and the most ``OFFLOADED`` holds at once (``host_peak``).
    Per-module peaks are not kept: the planner reads none, and torch updates them on every op
    by walking every module's weak reference, which cost half of a 7B plan's time."""
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker

    class PlanTracker(FSDPMemTracker):
        def __init__(self) -> None:
            super().__init__(model, optimizer)
            self.peak: dict[str, int] = {}
            self.resident_peak: dict[str, int] = {}
            self.host_peak = 0
            self.sharded_params = 0

        def _update_peak_stats(self, peak_state: Any) -> None:
            for snapshot in self._curr_mem_snap.values():  # one device: the planner's
                total, offloaded = _category(snapshot, "Total"), _category(snapshot, *OFFLOADED)
                if total > _category(self.peak, "Total"):
                    self.peak = dict(snapshot)
                if total - offloaded > _resident(self.resident_peak):
                    self.resident_peak = dict(snapshot)
                self.host_peak = max(self.host_peak, offloaded)
                self.sharded_params = max(self.sharded_params, _category(snapshot, "Sharded Param"))

        def tag_accumulated_gradients(self) -> None:
            """FSDP keeps a row's gradients without reduce-scatter (gradient accumulation)
            as each parameter's ``unsharded_accumulated_grad``, made in the post-backward
            the tracker counts as temporaries: count them as unsharded gradients."""
            from torch.distributed._tools.fsdp2_mem_tracker import _FSDPRefType
            from torch.distributed.fsdp import FSDPModule

            for module in model.modules():
                if not isinstance(module, FSDPModule):
                    continue
                group = module._get_fsdp_state()._fsdp_param_group
                for fsdp_param in group.fsdp_params if group is not None else ():
                    grad = fsdp_param.unsharded_accumulated_grad
                    if grad is not None:
                        self._update_and_maybe_create_winfos(grad, _FSDPRefType.UNSHARDED_GRAD)

    return PlanTracker()


def _resident(snapshot: dict[str, int]) -> int:
    return _category(snapshot, "Total") - _category(snapshot, *OFFLOADED)


def _largest_unit_sharded_grad(tracker: Any) -> int:
    """The most one FSDP unit's post-backward adds to the sharded gradients (its
    reduce-scatter output), read from the tracker's snapshots around each post-backward."""
    from torch.distributed._tools.fsdp2_mem_tracker import _FSDPModState

    largest = 0
    for stats in tracker.memory_tracking.values():
        before = stats.snapshots.get(_FSDPModState.BEF_POST_BW) or []
        after = stats.snapshots.get(_FSDPModState.AFT_POST_BW) or []
        for bef, aft in zip(before, after, strict=False):
            for device, snapshot in aft.items():
                grown = _category(snapshot, "Sharded Grad") - _category(
                    bef.get(device, {}), "Sharded Grad"
                )
                largest = max(largest, grown)
    return largest


def _breakdown(tracker: Any, model: torch.nn.Module, *, offload: bool) -> MemoryBreakdown:
    """The peak snapshot by category; with ``offload``, the GPU's under CPU offload (the
    resident peak, the offloaded categories in ``host``). ViT activations: what is held when
    the first decoder layer starts, less what was held when the first vision block started
    (the tower's saved tensors and the image embeddings); FSDPMemTracker snapshots FSDP
    modules only."""
    from torch.distributed._tools.fsdp2_mem_tracker import _FSDPModState

    from seqpar_train.modeling import decoder_layers, vision_blocks

    peak = tracker.resident_peak if offload else tracker.peak

    def held_at_start(module: torch.nn.Module) -> int | None:
        stats = tracker.memory_tracking.get(module)
        if stats is None or not stats.snapshots.get(_FSDPModState.BEF_PRE_FW):
            return None
        snapshots = stats.snapshots[_FSDPModState.BEF_PRE_FW][-1].values()
        return sum(_category(snapshot, "Activation") for snapshot in snapshots)

    before = held_at_start(vision_blocks(model)[0])
    after = held_at_start(decoder_layers(model)[0])
    vit = max(0, after - before) if before is not None and after is not None else 0
    activations = _category(peak, "Activation")
    # Under offload the sharded state is on the host; a unit's gradient shard and parameter
    # shard pass through the GPU on their way (at most the largest unit's, each).
    staging = 2 * _largest_unit_sharded_grad(tracker) if offload else 0
    kept = (
        ("Unsharded Param", "Buffer") if offload else ("Sharded Param", "Unsharded Param", "Buffer")
    )
    return MemoryBreakdown(
        parameters=_category(peak, *kept),
        gradients=_category(peak, "Unsharded Grad", *(() if offload else ("Sharded Grad",))),
        optimizer_state=0 if offload else _category(peak, "OptState"),
        text_activations=max(0, activations - vit),
        vit_activations=min(vit, activations),
        loss_chunk=_category(peak, "Temp"),
        comm_buffers=_category(peak, "All Gather", "Reduce Scatter"),
        inputs=_category(peak, "Inputs"),
        offload_staging=staging,
        peak=(_resident(peak) if offload else _category(peak, "Total")) + staging,
        host=tracker.host_peak if offload else 0,
        host_parameters=tracker.sharded_params if offload else 0,
    )


def _float32(config: Any) -> Any:
    """A copy of ``config`` whose (sub)configs ask for float32 weights: the trainer keeps
    fp32 master weights, and a module cannot be cast once its tensors are fake."""
    import copy

    config = copy.deepcopy(config)
    for part in (config, *(getattr(config, n, None) for n in ("text_config", "vision_config"))):
        if part is not None:
            part.dtype = torch.float32
    return config


def measure_step(
    config: Any,
    row: PackedRow,
    *,
    world_size: int,
    sp: int,
    fsdp: int,
    activation_checkpointing: bool,
    loss_chunk: int,
    fake: bool = True,
    steps: int = 1,
    micro_rows: int = 1,
) -> dict[bool, MemoryBreakdown]:
    """One measured step, two breakdowns: {False: without CPU offload, True: with it}. The
    step runs without the offload policy either way (see the module's docstring). With
    ``micro_rows`` > 1 the rows accumulate gradients as the trainer does: no reduce-scatter
    before the last, so FSDP keeps every unit's unsharded (fp32) gradient in between; two
    micro-rows show the peak of any number."""
    from torch.distributed.fsdp import FSDPModule

    from mmprolong_schemas.recipe import OptimizerConfig, ScheduleConfig
    from seqpar_train.activation_checkpoint import apply_activation_checkpointing
    from seqpar_train.forward import PackedLossModel
    from seqpar_train.fsdp import apply_fsdp
    from seqpar_train.modeling import model_class
    from seqpar_train.optim import build_optimizer
    from seqpar_train.parallel_dims import ParallelDims, build_mesh
    from seqpar_train.ulysses import install_attention
    from seqpar_train.vision import image_owners

    dims = ParallelDims.for_world(world_size, sp=sp, dp_shard=fsdp)
    group = fake_process_group(world_size) if fake else contextlib.nullcontext()
    with group:
        mesh = build_mesh(dims, "cpu")  # before FakeTensorMode, as FSDP needs
        with contextlib.ExitStack() as stack:
            stack.enter_context(flash_memory_attention())
            if fake:
                stack.enter_context(FakeTensorMode(allow_non_fake_inputs=True))
                stack.enter_context(_RealIntegerOps())
            hf_model = model_class(config)(_float32(config))  # fp32 master weights
            # The text decoder and the vision tower both call the (patched) varlen backends.
            install_attention(hf_model, mesh.sp_group, "sdpa")
            model = PackedLossModel(
                hf_model, sp_group=mesh.sp_group, pad_token_id=0, loss_chunk=loss_chunk
            )
            if activation_checkpointing:
                apply_activation_checkpointing(model)
            apply_fsdp(model, mesh.fsdp_mesh, param_dtype=torch.bfloat16)
            optimizer = build_optimizer(model, OptimizerConfig(), ScheduleConfig())
            # This rank's pixels: the patches of the images SP rank 0 encodes.
            owners = image_owners(row.image_grid_thw, sp)
            patches = (
                []
                if row.image_grid_thw is None
                else [int(n) for n in row.image_grid_thw.prod(-1).tolist()]
            )
            vision = config.vision_config
            patch_dim = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
            mine = sum(n for n, o in zip(patches, owners, strict=True) if o == 0)
            from dataclasses import replace

            pixels = torch.randn(mine, patch_dim) if mine else None
            step_row = replace(row, pixel_values=pixels, pixel_share=(0, sp))
            # AdamW makes its state at the first step: take one on zero gradients before
            # tracking (the tracker counts existing state), so one tracked step has it all.
            for param in model.parameters():
                param.grad = torch.zeros_like(param)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            tracker = _plan_tracker(model, optimizer)
            tracker.track_inputs((pixels,) if pixels is not None else ())
            labels = float(max(1, int((row.labels != IGNORE_INDEX).sum())))
            with tracker:
                for step in range(steps):
                    for micro in range(micro_rows):
                        if step or micro:
                            # module stats per row (the tracker's rule); the peak spans all
                            tracker.reset_mod_stats()
                        if isinstance(model, FSDPModule):  # it is: apply_fsdp made it one
                            model.set_requires_gradient_sync(micro == micro_rows - 1)
                        with torch.autocast("cpu", enabled=False):
                            loss_sum, _ = model(step_row)
                        (loss_sum / labels).backward()
                        tracker.tag_accumulated_gradients()
                    # (gradient clipping is left out: a float of the norm needs data, and
                    # its scalars per gradient are bytes)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            return {
                offload: _breakdown(tracker, model, offload=offload) for offload in (False, True)
            }


# --- the plan -----------------------------------------------------------------------------------


def plan_inputs_key(setup: PlanSetup) -> str:
    """A hash of everything ``plan(setup)`` depends on: the setup, the model's config files,
    seqpar-train's sources (the step it runs) and the torch and transformers versions. Equal
    keys, equal plans: a caller may keep a plan under its key."""
    import hashlib
    from pathlib import Path

    import transformers

    from seqpar_train.presets import model_folder

    digest = hashlib.sha256(setup.model_dump_json().encode())
    digest.update(f"torch {torch.__version__} transformers {transformers.__version__}".encode())
    folder = model_folder(setup.model)
    for name in ("config.json", "preprocessor_config.json"):
        if (folder / name).is_file():
            digest.update((folder / name).read_bytes())
    package = Path(__file__).parent
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def _model_parts(setup: PlanSetup) -> tuple[Any, ArchSpec, Any]:
    from seqpar_train.presets import preset_config, preset_vision

    config = preset_config(setup.model)
    return config, arch_from_config(config), preset_vision(setup.model)


def plan(setup: PlanSetup, *, config: Any = None, vision: Any = None) -> Plan:
    """Measure rank 0's peak for ``setup`` under fake mode and say whether it fits the GPU
    (less ``margin``); step time and time to budget from FLOPs at ``setup.mfu`` (plus the
    offload copies at ``setup.host_link_gbps``). ``config`` and ``vision`` (a
    VisionTokenSpec) replace the preset's, e.g. for a tiny model."""
    return plan_pair(setup, config=config, vision=vision)[setup.cpu_offload]


def plan_pair(setup: PlanSetup, *, config: Any = None, vision: Any = None) -> dict[bool, Plan]:
    """The plans of ``setup`` without and with CPU offload, from one measured step."""
    from seqpar_train.hardware import lookup_gpu
    from seqpar_train.parallel_dims import ParallelDims

    if config is None:
        config, arch, vision = _model_parts(setup)
    else:
        arch = arch_from_config(config)
    if setup.gpus % setup.gpus_per_node and setup.gpus > setup.gpus_per_node:
        raise ValueError(f"{setup.gpus} GPUs are not whole nodes of {setup.gpus_per_node}")
    dims = ParallelDims.for_world(setup.gpus, sp=setup.sp, dp_shard=setup.fsdp)
    shape = page_row(
        arch,
        seq_len=setup.seq_len,
        doc_len=setup.doc_len,
        factor=vision.factor,
        min_pixels=vision.min_pixels,
        max_pixels=vision.max_pixels,
        answer_tokens=setup.answer_tokens,
    )
    rows = max(1, setup.global_batch_tokens // setup.seq_len)
    micro_rows = math.ceil(rows / dims.dp)  # each data-parallel group's rows per step
    measured = measure_step(
        config,
        planned_row(config, shape, 0),
        world_size=setup.gpus,
        sp=setup.sp,
        fsdp=setup.fsdp,
        activation_checkpointing=setup.activation_checkpointing,
        loss_chunk=setup.loss_chunk,
        micro_rows=min(2, micro_rows),
    )
    spec = lookup_gpu(setup.gpu) if setup.gpu else None
    capacity = (
        int(setup.memory_gb * 1e9) if setup.memory_gb else (spec.memory_bytes if spec else None)
    )
    usable = int(capacity * (1 - setup.margin)) if capacity else None
    peak_tflops = setup.peak_tflops or (spec.peak_tflops if spec else None)
    # Time: a step's rows hold row_fill of their slots; each row costs its FLOPs over its
    # SP group; the data-parallel groups work at once.
    filled = page_row(
        arch,
        seq_len=max(64, int(setup.seq_len * setup.row_fill)),
        doc_len=setup.doc_len,
        factor=vision.factor,
        min_pixels=vision.min_pixels,
        max_pixels=vision.max_pixels,
        answer_tokens=setup.answer_tokens,
    )
    flops = training_flops(arch, filled.doc_lens, filled.label_tokens, filled.image_grids)
    steps = steps_for_budget(setup.token_budget, rows * filled.tokens)
    compute_seconds = None
    if peak_tflops is not None:
        compute_seconds = seconds_at_mfu(rows * flops.causal, setup.gpus, peak_tflops, setup.mfu)
    # Offload copies per optimizer step and rank: every micro-row all-gathers each unit's
    # parameter shard twice (forward, and backward after resharding; the root once, counted
    # twice), each copied in from the host first; the gradient shards (fp32, as many bytes
    # as the parameter shards) go out once, at the reduce-scatter after the last micro-row.
    shards = measured[True].host_parameters
    copy_seconds = (micro_rows * 2 + 1) * shards / (setup.host_link_gbps * 1e9)
    plans = {}
    for offload, memory in measured.items():
        step_seconds = hours = gpu_hours = None
        if compute_seconds is not None:
            step_seconds = compute_seconds + (copy_seconds if offload else 0.0)
            hours = steps * step_seconds / 3600
            gpu_hours = hours * setup.gpus
        plans[offload] = Plan(
            setup=setup.model_copy(update={"cpu_offload": offload}),
            memory=memory,
            capacity_bytes=capacity,
            usable_bytes=usable,
            fits=None if usable is None else memory.peak <= usable,
            images_per_row=len(shape.image_grids),
            step_seconds=step_seconds,
            offload_copy_seconds=copy_seconds if offload else None,
            steps=steps,
            hours_to_budget=hours,
            gpu_hours=gpu_hours,
        )
    return plans


def candidate_setups(setup: PlanSetup) -> list[PlanSetup]:
    """SP sizes (within a node, dividing the world), activation checkpointing on/off and
    CPU offload off/on around ``setup``."""
    out = []
    sps = [s for s in (1, 2, 4, 8) if s <= setup.gpus_per_node and setup.gpus % s == 0]
    for offload in (False, True):
        for ac in (False, True):
            for sp in sps:
                out.append(
                    setup.model_copy(
                        update={
                            "sp": sp,
                            "fsdp": -1,
                            "activation_checkpointing": ac,
                            "cpu_offload": offload,
                        }
                    )
                )
    return out


def relative_cost(setup: PlanSetup) -> float:
    """Step time relative to no SP, no recompute, no offload: recompute adds a forward
    (4/3 of a step's FLOPs); each SP doubling adds its all-to-alls, taken as 5%; offload
    moves weights and the optimizer step to the CPU, taken as 1.5x. Used to order settings
    only."""
    cost = 4 / 3 if setup.activation_checkpointing else 1.0
    cost *= 1.05 ** math.log2(setup.sp)
    return cost * (1.5 if setup.cpu_offload else 1.0)


def search_setups(setup: PlanSetup, *, config: Any = None, vision: Any = None) -> list[Plan]:
    """Plans of the SP / checkpointing / offload settings that fit, fastest first (ordered
    by ``relative_cost``). One measured step serves a setting with and without offload."""
    measured: dict[tuple[int, bool], dict[bool, Plan]] = {}
    plans = []
    for candidate in sorted(candidate_setups(setup), key=relative_cost):
        key = (candidate.sp, candidate.activation_checkpointing)
        if key not in measured:
            measured[key] = plan_pair(candidate, config=config, vision=vision)
        result = measured[key][candidate.cpu_offload]
        if result.fits:
            plans.append(result)
    return plans


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / GIB:.1f} GiB"


def plan_table(result: Plan) -> Any:
    """A rich table of a plan."""
    from rich.table import Table

    s = result.setup
    title = (
        f"{s.model}: {s.seq_len} tokens, {s.gpus} x {s.gpu or '?'}, SP{s.sp} x FSDP{s.fsdp_size}, "
        f"AC {'on' if s.activation_checkpointing else 'off'}, "
        f"offload {'on' if s.cpu_offload else 'off'} ({result.label})"
    )
    table = Table(title=title)
    table.add_column("per GPU")
    table.add_column("memory", justify="right")
    for name, value in result.memory.rows():
        table.add_row(name, _gib(value))
    table.add_row("[bold]peak[/bold]", f"[bold]{_gib(result.memory.peak)}[/bold]")
    if result.capacity_bytes is not None:
        verdict = "fits" if result.fits else "does NOT fit"
        table.add_row(
            f"GPU memory less {s.margin:.0%} margin",
            f"{_gib(result.usable_bytes)} of {_gib(result.capacity_bytes)}: {verdict}",
        )
    table.add_row("page images per row (144 DPI)", str(result.images_per_row))
    if result.memory.host:
        per_node = min(s.gpus, s.gpus_per_node)
        table.add_row(
            "host memory for offloaded state (per GPU / per node)",
            f"{_gib(result.memory.host)} / {_gib(result.memory.host * per_node)}",
        )
    if result.step_seconds is not None:
        table.add_row(f"step time at MFU {s.mfu:.0%}", f"{result.step_seconds:.1f} s")
    if result.offload_copy_seconds is not None:
        table.add_row(
            f"of which host<->GPU copies at {s.host_link_gbps:g} GB/s (assumed; CPU "
            "optimizer step not counted)",
            f"{result.offload_copy_seconds:.1f} s",
        )
    if result.hours_to_budget is not None and result.gpu_hours is not None:
        table.add_row(
            f"{result.steps} steps to the budget",
            f"{result.hours_to_budget:.1f} h, {result.gpu_hours:.0f} GPU-hours",
        )
    return table
