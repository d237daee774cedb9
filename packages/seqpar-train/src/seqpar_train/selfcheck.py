"""Equality checks a user runs on a new cluster before spending GPU hours.

SP-vs-single: the same packed multi-document, multi-image row gives the same loss and the same
gradients with Ulysses SP over N ranks as in one process. FSDP-vs-single: parameters after a
few optimizer steps with FSDP2 over N ranks equal those of one process. The workers are
module-level functions so ``spawn_local`` (and the package tests) can start them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from seqpar_train.attention import resolve_backend
from seqpar_train.batch import to_device
from seqpar_train.collectives import all_reduce_sum
from seqpar_train.distributed import device_for_rank, spawn_local
from seqpar_train.forward import row_loss
from seqpar_train.loss import group_mean_loss
from seqpar_train.modeling import build_model
from seqpar_train.synthetic import MULTI_IMAGE_DOCS, DocumentShape, synthetic_row
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
    name: str, got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], tolerance: float
) -> Comparison:
    """Largest absolute difference, and largest difference relative to each tensor's scale."""
    if got.keys() != want.keys():
        raise ValueError(f"{name}: different tensors: {sorted(got.keys() ^ want.keys())[:5]}")
    max_abs = max_rel = 0.0
    for key, reference in want.items():
        diff = float((got[key].double() - reference.double()).abs().max()) if reference.numel() else 0.0
        scale = float(reference.double().abs().max()) if reference.numel() else 0.0
        max_abs = max(max_abs, diff)
        max_rel = max(max_rel, diff / scale if scale > 0 else diff)
    return Comparison(name, max_abs, max_rel, tolerance)


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
    from longctx_rope import tiny_config

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
    grads = {}
    for name, param in model.named_parameters():
        grad = param.grad if param.grad is not None else torch.zeros_like(param)
        if group is not None:
            dist.all_reduce(grad, group=group)
        grads[name] = grad.detach().cpu()
    return loss, grads


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
        name = f"SP={sp} vs single {scenario.family}"
        comparisons.append(compare(name, got, want, 1e-5))
    return comparisons


