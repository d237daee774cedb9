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

from seqpar_train.attention import AttentionBackend, resolve_backend
from seqpar_train.collectives import all_reduce_sum
from seqpar_train.distributed import device_for_rank, spawn_local
from seqpar_train.forward import row_loss
from seqpar_train.loss import group_mean_loss
from seqpar_train.modeling import build_model
from seqpar_train.synthetic import MULTI_IMAGE_DOCS, synthetic_row
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


def tiny_model_config(family: str) -> object:
    from longctx_rope import tiny_config

    return tiny_config(family)


def sp_loss_and_grads(
    family: str, attention: str, seed: int = 0
) -> tuple[float, dict[str, torch.Tensor]]:
    """Loss and full gradients of the check row, with Ulysses SP over the whole world (or in
    one process when no group is initialised). Gradients are summed over the SP ranks."""
    group = dist.group.WORLD if dist.is_initialized() else None
    device = device_for_rank()
    model = build_model(tiny_model_config(family), seed=seed).to(device)  # type: ignore[arg-type]
    model.train()
    install_attention(model, group, resolve_backend(attention, device))
    from seqpar_train.batch import to_device

    row = to_device(synthetic_row(model, MULTI_IMAGE_DOCS, seed=seed), device)
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


def check_sp(family: str = "qwen2.5-vl", sp: int = 2, attention: str = "auto") -> Comparison:
    """Ulysses SP over ``sp`` local processes against one process."""
    reference_loss, reference = sp_loss_and_grads(family, attention)
    results = spawn_local(sp_loss_and_grads, sp, family, attention)
    losses = {rank_loss for rank_loss, _ in results}
    loss, grads = results[0]
    if len(losses) != 1:
        raise AssertionError(f"SP ranks disagree on the loss: {sorted(losses)}")
    got = {"loss": torch.tensor([loss]), **grads}
    want = {"loss": torch.tensor([reference_loss]), **reference}
    return compare(f"SP={sp} vs single ({family})", got, want, 1e-5)


__all__ = ["AttentionBackend", "Comparison", "check_sp", "compare", "sp_loss_and_grads"]
