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

from mmprolong_schemas import K, Model
from seqpar_train.batch import IGNORE_INDEX, PackedRow
from seqpar_train.flops import ArchSpec, RowShape, arch_from_config, page_row, training_flops

GIB = 2**30


# --- an attention op with flash-attn's memory profile -------------------------------------


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
    for start, end in zip(cu_seqlens[:-1], cu_seqlens[1:], strict=True):
        qd, kd, vd = (t[start:end].transpose(0, 1) for t in (q, k, v))
        groups = qd.shape[0] // kd.shape[0]
        kd, vd = kd.repeat_interleave(groups, 0), vd.repeat_interleave(groups, 0)
        scores = (qd.float() @ kd.float().transpose(1, 2)) * scale
        if causal:
            keep = torch.ones(end - start, end - start, dtype=torch.bool, device=q.device).tril()
            scores = scores.masked_fill(~keep, float("-inf"))
        lse[:, start:end] = torch.logsumexp(scores, dim=-1)
        out[start:end] = (scores.softmax(-1) @ vd.float()).to(q.dtype).transpose(0, 1)
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
    """Gradients of q, k, v, recomputing each document's probabilities from q and k (as
    flash's backward does from the saved log-sum-exp); the softmax backward by hand, since
    autograd does not run inside a custom op."""
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for start, end in zip(cu_seqlens[:-1], cu_seqlens[1:], strict=True):
        qd, kd, vd, go = (t[start:end].float() for t in (q, k, v, grad))
        groups = qd.shape[1] // kd.shape[1]
        ke, ve = kd.repeat_interleave(groups, 1), vd.repeat_interleave(groups, 1)
        scores = torch.einsum("qhd,khd->hqk", qd, ke) * scale
        if causal:
            keep = torch.ones(end - start, end - start, dtype=torch.bool, device=q.device).tril()
            scores = scores.masked_fill(~keep, float("-inf"))
        probs = scores.softmax(-1)
        grad_v = torch.einsum("hqk,qhd->khd", probs, go)
        grad_p = torch.einsum("qhd,khd->hqk", go, ve)
        grad_s = probs * (grad_p - (grad_p * probs).sum(-1, keepdim=True)) * scale
        dq[start:end] = torch.einsum("hqk,khd->qhd", grad_s, ke).to(q.dtype)
        grad_k = torch.einsum("hqk,qhd->khd", grad_s, qd)
        n, heads, dim = grad_k.shape
        dk[start:end] = grad_k.reshape(n, heads // groups, groups, dim).sum(2).to(k.dtype)
        dv[start:end] = grad_v.reshape(n, heads // groups, groups, dim).sum(2).to(v.dtype)
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
    loss_chunk: int = Field(default=4096, ge=1)
    answer_tokens: int = Field(default=64, ge=1, description="Labelled tokens per document.")
    margin: float = Field(default=0.1, ge=0, lt=1, description="Share of memory kept free.")
    mfu: float = Field(default=0.35, gt=0, le=1, description="Assumed MFU for step time.")
    global_batch_tokens: int = Field(default=4 * 2**20, ge=1)
    token_budget: int = Field(default=5 * 2**30, ge=1)
    row_fill: float = Field(default=0.77, gt=0, le=1, description="Real tokens per row slot.")


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
    peak: int

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
        ]


class Plan(Model):
    setup: PlanSetup
    memory: MemoryBreakdown
    capacity_bytes: int | None
    usable_bytes: int | None = Field(description="Capacity less the margin.")
    fits: bool | None
    images_per_row: int
    step_seconds: float | None
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


def _breakdown(tracker: Any, model: torch.nn.Module) -> MemoryBreakdown:
    """The peak snapshot by category. ViT activations: what is held when the first decoder
    layer starts, less what was held when the first vision block started (the tower's saved
    tensors and the image embeddings); FSDPMemTracker snapshots FSDP modules only."""
    from torch.distributed._tools.fsdp2_mem_tracker import _FSDPModState

    from seqpar_train.modeling import decoder_layers, vision_blocks

    peak_by_device = tracker.get_tracker_snapshot("peak")
    device = next(iter(peak_by_device))
    peak = peak_by_device[device]

    def held_at_start(module: torch.nn.Module) -> int | None:
        stats = tracker.memory_tracking.get(module)
        if stats is None or not stats.snapshots.get(_FSDPModState.BEF_PRE_FW):
            return None
        return _category(stats.snapshots[_FSDPModState.BEF_PRE_FW][-1][device], "Activation")

    before = held_at_start(vision_blocks(model)[0])
    after = held_at_start(decoder_layers(model)[0])
    vit = max(0, after - before) if before is not None and after is not None else 0
    activations = _category(peak, "Activation")
    return MemoryBreakdown(
        parameters=_category(peak, "Sharded Param", "Unsharded Param", "Buffer"),
        gradients=_category(peak, "Sharded Grad", "Unsharded Grad"),
        optimizer_state=_category(peak, "OptState"),
        text_activations=max(0, activations - vit),
        vit_activations=min(vit, activations),
        loss_chunk=_category(peak, "Temp"),
        comm_buffers=_category(peak, "All Gather", "Reduce Scatter"),
        inputs=_category(peak, "Inputs"),
        peak=_category(peak, "Total"),
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


def run_step(
    config: Any,
    row: PackedRow,
    *,
    world_size: int,
    sp: int,
    fsdp: int,
    activation_checkpointing: bool,
    cpu_offload: bool,
    loss_chunk: int,
    fake: bool = True,
    steps: int = 1,
) -> MemoryBreakdown:
    """Run ``steps`` training steps of ``row`` on rank 0 of ``world_size`` and return the
    peak memory FSDPMemTracker records. ``fake``: under FakeTensorMode with a fake process
    group (the plan); otherwise for real in a group this process already joined (the
    planner's accuracy check)."""
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker

    from mmprolong_schemas import OptimizerConfig, ScheduleConfig
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
            apply_fsdp(model, mesh.fsdp_mesh, param_dtype=torch.bfloat16, cpu_offload=cpu_offload)
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
            tracker = FSDPMemTracker(model, optimizer)
            tracker.track_inputs((pixels,) if pixels is not None else ())
            labels = float(max(1, int((row.labels != IGNORE_INDEX).sum())))
            with tracker:
                for step in range(steps):
                    if step:
                        tracker.reset_mod_stats()  # module stats per step; the peak spans all
                    with torch.autocast("cpu", enabled=False):
                        loss_sum, _ = model(step_row)
                    (loss_sum / labels).backward()
                    # (gradient clipping is left out: a float of the norm needs data, and
                    # its scalars per gradient are bytes)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            return _breakdown(tracker, model)


# --- the plan -----------------------------------------------------------------------------------


def _model_parts(setup: PlanSetup) -> tuple[Any, ArchSpec, Any]:
    from seqpar_train.presets import preset_config, preset_vision

    config = preset_config(setup.model)
    return config, arch_from_config(config), preset_vision(setup.model)


def plan(setup: PlanSetup, *, config: Any = None, vision: Any = None) -> Plan:
    """Measure rank 0's peak for ``setup`` under fake mode and say whether it fits the GPU
    (less ``margin``); step time and time to budget from FLOPs at ``setup.mfu``. ``config``
    and ``vision`` (a VisionTokenSpec) replace the preset's, e.g. for a tiny model."""
    from seqpar_train.hardware import lookup_gpu
    from seqpar_train.parallel_dims import ParallelDims

    if setup.cpu_offload:
        # The fake step runs on the CPU device, where offloaded state and device memory
        # cannot be told apart (and fake tensors cannot be pinned).
        raise ValueError(
            "the planner does not measure CPU offload yet: plan without --offload, and "
            "count on offload removing the parameters, gradients and optimizer state rows"
        )
    if config is None:
        config, arch, vision = _model_parts(setup)
    else:
        arch = arch_from_config(config)
    if setup.gpus % setup.gpus_per_node and setup.gpus > setup.gpus_per_node:
        raise ValueError(f"{setup.gpus} GPUs are not whole nodes of {setup.gpus_per_node}")
    ParallelDims.for_world(setup.gpus, sp=setup.sp, dp_shard=setup.fsdp)  # checks the sizes
    shape = page_row(
        arch,
        seq_len=setup.seq_len,
        doc_len=setup.doc_len,
        factor=vision.factor,
        min_pixels=vision.min_pixels,
        max_pixels=vision.max_pixels,
        answer_tokens=setup.answer_tokens,
    )
    memory = run_step(
        config,
        planned_row(config, shape, 0),
        world_size=setup.gpus,
        sp=setup.sp,
        fsdp=setup.fsdp,
        activation_checkpointing=setup.activation_checkpointing,
        cpu_offload=setup.cpu_offload,
        loss_chunk=setup.loss_chunk,
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
    rows = max(1, setup.global_batch_tokens // setup.seq_len)
    flops = training_flops(arch, filled.doc_lens, filled.label_tokens, filled.image_grids)
    steps = math.ceil(setup.token_budget / (rows * filled.tokens))
    step_seconds = hours = gpu_hours = None
    if peak_tflops is not None:
        step_seconds = rows * flops.causal / (setup.gpus * peak_tflops * 1e12 * setup.mfu)
        if setup.cpu_offload:
            step_seconds = None  # the CPU optimizer step's time is not a matter of FLOPs
        else:
            hours = steps * step_seconds / 3600
            gpu_hours = hours * setup.gpus
    return Plan(
        setup=setup,
        memory=memory,
        capacity_bytes=capacity,
        usable_bytes=usable,
        fits=None if usable is None else memory.peak <= usable,
        images_per_row=len(shape.image_grids),
        step_seconds=step_seconds,
        steps=steps,
        hours_to_budget=hours,
        gpu_hours=gpu_hours,
    )


def candidate_setups(setup: PlanSetup) -> list[PlanSetup]:
    """SP sizes (within a node, dividing the world) and activation checkpointing on/off
    around ``setup``. CPU offload is not among them: the planner cannot measure it yet."""
    out = []
    sps = [s for s in (1, 2, 4, 8) if s <= setup.gpus_per_node and setup.gpus % s == 0]
    for offload in (False,):
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
    by ``relative_cost``). Every candidate is measured."""
    plans = []
    for candidate in sorted(candidate_setups(setup), key=relative_cost):
        result = plan(candidate, config=config, vision=vision)
        if result.fits:
            plans.append(result)
    return plans


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / GIB:.1f} GiB"


def plan_table(result: Plan) -> Any:
    """A rich table of a plan."""
    from rich.table import Table

    s = result.setup
    fsdp = s.fsdp if s.fsdp != -1 else s.gpus // s.sp
    title = (
        f"{s.model}: {s.seq_len} tokens, {s.gpus} x {s.gpu or '?'}, SP{s.sp} x FSDP{fsdp}, "
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
    if result.step_seconds is not None:
        table.add_row(f"step time at MFU {s.mfu:.0%}", f"{result.step_seconds:.1f} s")
    if result.hours_to_budget is not None and result.gpu_hours is not None:
        table.add_row(
            f"{result.steps} steps to the budget",
            f"{result.hours_to_budget:.1f} h, {result.gpu_hours:.0f} GPU-hours",
        )
    return table
