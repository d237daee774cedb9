"""Equality checks a user runs on a new cluster before spending GPU hours.

SP-vs-single: the same packed multi-document, multi-image row gives the same loss and the same
gradients with Ulysses SP over N ranks as in one process. FSDP-vs-single: parameters after a
few optimizer steps with FSDP2 over N ranks equal those of one process. The workers are
module-level functions so ``spawn_local`` (and the package tests) can start them.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from mmprolong_schemas import ModelFamily
from mmprolong_schemas.recipe import OptimizerConfig, ScheduleConfig
from seqpar_train.attention import resolve_backend, varlen_attention
from seqpar_train.attention.backends import KERNEL_BACKENDS, available_backends
from seqpar_train.batch import IGNORE_INDEX, to_device
from seqpar_train.checkpoint import load_model_weights
from seqpar_train.collectives import all_reduce_sum, group_rank, group_size
from seqpar_train.config import (
    CheckpointSettings,
    DataSettings,
    ModelSettings,
    ParallelSettings,
    SyntheticData,
    TrainerConfig,
)
from seqpar_train.data.loader import RowSource
from seqpar_train.distributed import device_for_rank, spawn_local
from seqpar_train.forward import PackedLossModel, row_loss
from seqpar_train.loss import group_mean_loss
from seqpar_train.metrics import read_metrics
from seqpar_train.modeling import build_model
from seqpar_train.parallel_dims import ParallelDims
from seqpar_train.synthetic import MULTI_IMAGE_DOCS, DocumentShape, synthetic_row
from seqpar_train.trainer import TrainResult, agree_failed_documents, train
from seqpar_train.ulysses import install_attention


@dataclass
class Comparison:
    name: str
    max_abs: float
    max_rel: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_rel <= self.tolerance

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"{self.name:<28} max abs {self.max_abs:.3e}  max rel {self.max_rel:.3e}  "
            f"(tol {self.tolerance:.0e})  {verdict}"
        )


def compare(
    name: str,
    got: dict[str, torch.Tensor],
    want: dict[str, torch.Tensor],
    tolerance: float,
    scale_floor: float = 0.0,
) -> Comparison:
    """Largest absolute difference, and largest difference relative to each tensor's scale
    (its largest magnitude, at least ``scale_floor``)."""
    if got.keys() != want.keys():
        raise ValueError(f"{name}: different tensors: {sorted(got.keys() ^ want.keys())[:5]}")
    max_abs = max_rel = 0.0
    for key, reference in want.items():
        diff = (
            float((got[key].double() - reference.double()).abs().max())
            if reference.numel()
            else 0.0
        )
        scale = float(reference.double().abs().max()) if reference.numel() else 0.0
        scale = max(scale, scale_floor)
        max_abs = max(max_abs, diff)
        max_rel = max(max_rel, diff / scale if scale > 0 else diff)
    return Comparison(name, max_abs, max_rel, tolerance)


BF16_TOLERANCE = 2e-2
"""Largest difference, relative to the reference's scale, allowed where a bf16 kernel computes
(bf16 keeps 8 significant bits: 3.9e-3 per rounding, a few roundings deep here)."""
FP32_TOLERANCE = 1e-5


def tolerance_for(backend: str) -> float:
    """The selfcheck's tolerance for a run whose attention uses ``backend``: the flash and
    torch-varlen kernels compute in bf16 whatever the model's dtype."""
    return BF16_TOLERANCE if backend in KERNEL_BACKENDS else FP32_TOLERANCE


def check_kernels(
    device: torch.device | str | None = None,
    *,
    backends: list[str] | None = None,
    doc_lens: tuple[int, ...] = (300, 1, 77, 512, 134),
    q_heads: int = 8,
    kv_heads: int = 2,
    head_dim: int = 64,
    seed: int = 0,
    reference_device: torch.device | str = "cpu",
) -> list[Comparison]:
    """Every backend that trains on ``device`` (or ``backends``), fed bf16 q/k/v of one packed
    multi-document row with grouped KV heads, against a float64 reference (the SDPA loop in
    float64 on ``reference_device``): the output and the q/k/v gradients, at the bf16
    tolerance."""
    device = torch.device(device) if device is not None else device_for_rank()
    names = backends if backends is not None else available_backends(device)
    cu = [0]
    for length in doc_lens:
        cu.append(cu[-1] + length)
    generator = torch.Generator().manual_seed(seed)
    shapes = [
        (cu[-1], q_heads, head_dim),
        *[(cu[-1], kv_heads, head_dim)] * 2,
        (cu[-1], q_heads, head_dim),
    ]
    # Rounded to bf16 first, so the reference sees exactly the kernels' inputs.
    q, k, v, grad_out = (
        torch.randn(shape, generator=generator, dtype=torch.float64).to(torch.bfloat16).double()
        for shape in shapes
    )

    def run(backend: str, dtype: torch.dtype, where: torch.device) -> dict[str, torch.Tensor]:
        qi, ki, vi = (t.to(where, dtype, copy=True).requires_grad_() for t in (q, k, v))
        out = varlen_attention(qi, ki, vi, cu, backend=backend)  # type: ignore[arg-type]
        out.backward(grad_out.to(where, out.dtype))
        grads = {"dq": qi.grad, "dk": ki.grad, "dv": vi.grad}
        return {
            "out": out.detach().cpu(),
            **{n: g.cpu() for n, g in grads.items() if g is not None},
        }

    reference = run("sdpa", torch.float64, torch.device(reference_device))
    rows = sum(doc_lens)
    return [
        compare(
            f"{name} bf16 vs float64 ({rows} tokens, {len(doc_lens)} docs)",
            run(name, torch.bfloat16, device),
            reference,
            BF16_TOLERANCE,
        )
        for name in names
    ]


@dataclass(frozen=True)
class Scenario:
    """A tiny model (family, text-config overrides) and a packed row shape to check."""

    family: str = "qwen2.5-vl"
    documents: tuple[DocumentShape, ...] = tuple(MULTI_IMAGE_DOCS)
    text_overrides: tuple[tuple[str, int], ...] = ()
    attention: str = "auto"
    seed: int = 0


def sp_loss_and_grads(scenario: Scenario) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and full gradients of the scenario's row, with Ulysses SP over the whole world
    (or in one process when no group is initialised). Gradients are summed over SP ranks."""
    from longctx_rope.tiny import tiny_config

    group = dist.group.WORLD if dist.is_initialized() else None
    device = device_for_rank()
    config = tiny_config(scenario.family, text_config=dict(scenario.text_overrides))
    model = build_model(config, seed=scenario.seed).to(device)
    model.train()
    install_attention(model, group, resolve_backend(scenario.attention, device))
    row = to_device(synthetic_row(model.config, scenario.documents, seed=scenario.seed), device)
    out = row_loss(model, row, sp_group=group)
    label_tokens = all_reduce_sum(out.label_tokens, group)
    (out.loss_sum / label_tokens.clamp(min=1.0)).backward()
    loss = float(group_mean_loss(out.loss_sum, out.label_tokens, group))
    return loss, _summed_grads(model, group)


def _summed_grads(
    model: torch.nn.Module, group: dist.ProcessGroup | None
) -> dict[str, torch.Tensor]:
    """Every parameter's gradient summed over the SP group (zeros where there is none), on
    CPU: each rank holds its slice's share of a weight's gradient."""
    grads = {}
    for name, param in model.named_parameters():
        grad = param.grad if param.grad is not None else torch.zeros_like(param)
        if group is not None:
            dist.all_reduce(grad, group=group)
        grads[name] = grad.detach().cpu()
    return grads


@dataclass
class SourceRow:
    """One rank's view of a row built by a row source under SP (see ``source_rows``)."""

    loss: float
    grads: dict[str, torch.Tensor]
    image_grid_thw: torch.Tensor | None
    sample_ids: list[str]
    pages_rendered: int
    local_failed_docs: list[int]  # documents this rank could not render
    failed_docs: list[int]  # agreed over the SP group
    label_tokens: int  # of the whole row, after the agreement
    reasons: list[str]


def source_rows(
    sources: list[RowSource], index: int, family: str, seed: int = 0
) -> list[SourceRow]:
    """Row ``index`` of every source, built by this rank as the trainer builds it (with SP,
    only this rank's images are rendered), then its loss and full gradients with Ulysses SP
    over the launched group, or in one process. Checks a data pipeline: the SP result must
    equal the one-process result, and each rank should render only its share."""
    from longctx_rope.tiny import tiny_config

    group = dist.group.WORLD if dist.is_initialized() else None
    sp, rank = group_size(group), group_rank(group)
    device = device_for_rank()
    results = []
    for source in sources:
        encoder = getattr(source, "encoder", None)
        before = encoder.pages_rendered if encoder is not None else 0
        row, reasons = source.row(index, sp_rank=rank, sp=sp)
        rendered = (encoder.pages_rendered if encoder is not None else 0) - before
        local_failed = list(row.failed_docs)
        if group is not None:
            row = agree_failed_documents(row, group, device)
        model = build_model(tiny_config(family), seed=seed).to(device)
        model.train()
        install_attention(model, group, resolve_backend("auto", device))
        out = row_loss(model, to_device(row, device), sp_group=group)
        label_tokens = all_reduce_sum(out.label_tokens, group)
        (out.loss_sum / label_tokens.clamp(min=1.0)).backward()
        grads = _summed_grads(model, group)
        results.append(
            SourceRow(
                loss=float(group_mean_loss(out.loss_sum, out.label_tokens, group)),
                grads=grads,
                image_grid_thw=row.image_grid_thw,
                sample_ids=list(row.sample_ids),
                pages_rendered=rendered,
                local_failed_docs=local_failed,
                failed_docs=list(row.failed_docs),
                label_tokens=int((row.labels != IGNORE_INDEX).sum()),
                reasons=reasons,
            )
        )
    return results


def _run_scenarios(scenarios: list[Scenario]) -> list[tuple[float, dict[str, torch.Tensor]]]:
    return [sp_loss_and_grads(scenario) for scenario in scenarios]


def check_sp(scenarios: list[Scenario], sp: int = 2) -> list[Comparison]:
    """Ulysses SP over ``sp`` local processes against one process, scenario by scenario
    (one process group for all of them)."""
    references = _run_scenarios(scenarios)
    per_rank = spawn_local(_run_scenarios, sp, scenarios)
    comparisons = []
    for index, scenario in enumerate(scenarios):
        losses = {results[index][0] for results in per_rank}
        if len(losses) != 1:
            raise AssertionError(f"SP ranks disagree on the loss: {sorted(losses)}")
        loss, grads = per_rank[0][index]
        reference_loss, reference = references[index]
        got = {"loss": torch.tensor([loss]), **grads}
        want = {"loss": torch.tensor([reference_loss]), **reference}
        backend = resolve_backend(scenario.attention, device_for_rank())
        name = f"SP={sp} vs single {scenario.family} ({backend})"
        comparisons.append(compare(name, got, want, tolerance_for(backend)))
    return comparisons


FSDP_CHECK_ADAM_EPS = 1e-5
"""AdamW eps of the FSDP equality check (the recipe uses 1e-8); see ``check_fsdp``."""

FSDP_CHECK_PARAM_FLOOR = 2e-2
"""Scale floor of the parameter comparison: the models' initializer_range (0.02), so a bias
that starts at zero is judged against the scale of its freshly initialised siblings rather
than against the few learning-rate steps it has moved."""


def _fsdp_config(
    out_dir: Path, family: str, nproc: int, sp: int, attention: str, dp_shard: int = -1
) -> TrainerConfig:
    return TrainerConfig(
        output_dir=str(out_dir),
        model=ModelSettings(tiny=ModelFamily(family)),
        data=DataSettings(synthetic=SyntheticData(docs_per_row=3, prompt_tokens=20), num_workers=0),
        parallel=ParallelSettings(
            sp=sp,
            dp_shard=dp_shard,
            nproc_per_node=nproc,
            attention=attention,
            param_dtype="float32",
            activation_checkpointing=True,
        ),
        optimizer=OptimizerConfig(eps=FSDP_CHECK_ADAM_EPS),
        schedule=ScheduleConfig(peak_lr=1e-3, final_lr=1e-4, warmup_fraction=0.0),
        max_length=256,
        global_batch_tokens=256 * 2,
        max_steps=3,
        checkpoint=CheckpointSettings(every=3, resume=False),
        seed=0,
    )


def _final_weights(result: TrainResult, family: str) -> dict[str, torch.Tensor]:
    from longctx_rope.tiny import tiny_config

    assert result.checkpoint is not None
    model = PackedLossModel(build_model(tiny_config(family)))
    load_model_weights(result.checkpoint, model)
    return {name: p.detach().clone() for name, p in model.hf_model.named_parameters()}


def _grad_norms(result: TrainResult) -> torch.Tensor:
    return torch.tensor([record["grad_norm"] for record in read_metrics(result.metrics_path)])


def check_fsdp(
    family: str = "qwen2.5-vl",
    nproc: int = 2,
    sp: int = 1,
    attention: str = "auto",
    dp_shard: int = -1,
) -> list[Comparison]:
    """Three optimizer steps with FSDP2 (and SP ``sp``) over ``nproc`` local processes
    against one process on the same global batches, in float32: the loss and the gradient
    norm (before clipping) of every step, then every parameter after the last step.
    ``dp_shard`` below nproc / sp replicates shards (HSDP).

    Without SP the two runs add the same per-row gradients in the same order and clip by
    the same (float64-accumulated) norm, so they agree bitwise. With SP each weight gradient
    is a sum over tokens split across ranks, so gradients agree to float32 rounding (about
    1e-6 of their scale) and no better. AdamW's step is lr * g / (|g| + eps): for an element
    whose gradient is far below eps (e.g. a key bias, whose exact gradient is zero because
    softmax ignores a shift shared by all keys) a gradient rounding difference dg moves the
    parameter by up to lr * dg / eps. With the recipe's eps 1e-8 and lr 1e-3 that amplifies
    rounding 1e5-fold (1.6e-10 in a gradient became 1.5e-5 in a parameter); eps 1e-5 keeps
    the amplification at 1e2 while staying far below the median gradient element (3e-4 on
    the tiny model; only 3% of elements lie between 1e-8 and 1e-5, most others are exactly
    0), so Adam still normalises. Parameters are then compared at 1e-5 of their scale.
    """
    with tempfile.TemporaryDirectory(prefix="seqpar-selfcheck-") as tmp:
        single = train(_fsdp_config(Path(tmp) / "single", family, 1, 1, attention))
        config = _fsdp_config(Path(tmp) / "fsdp", family, nproc, sp, attention, dp_shard)
        sharded = spawn_local(train, nproc, config)
        want = _final_weights(single, family)
        got = _final_weights(sharded[0], family)
        norms = (_grad_norms(sharded[0]), _grad_norms(single))
    dims = ParallelDims.for_world(nproc, sp=sp, dp_shard=dp_shard)
    tolerance = tolerance_for(resolve_backend(attention, device_for_rank()))
    label = (
        f"FSDP x{nproc} (replicate {dims.dp_replicate}, shard {dims.dp_shard}, sp {dims.sp}) "
        f"vs single {family}"
    )
    losses = compare(
        f"{label} losses",
        {"loss": torch.tensor(sharded[0].losses)},
        {"loss": torch.tensor(single.losses)},
        tolerance,
    )
    # The norm before clipping: AdamW and clipping are blind to a wrong gradient scale
    # (a missing or doubled reduction), this is not.
    grad_norms = compare(f"{label} grad norms", {"norm": norms[0]}, {"norm": norms[1]}, tolerance)
    params = compare(f"{label} params", got, want, tolerance, scale_floor=FSDP_CHECK_PARAM_FLOOR)
    return [losses, grad_norms, params]
