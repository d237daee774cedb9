"""Typed (m)RoPE extension methods and the config fields each one writes.

Every spec knows the rope base it ends with, its inverse frequencies (computed here, on their
own, so they can be checked against what transformers builds from the written config), and the
two config forms: transformers 5's ``rope_parameters`` and the legacy ``rope_theta`` +
``rope_scaling`` that transformers 4.x and vLLM read.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator

from longctx_rope.architectures import Architecture
from mmprolong_schemas.base import Model
from mmprolong_schemas.recipe import RopeConfig, RopeMethod
from mmprolong_schemas.units import TokenCount


def ntk_base(base: float, factor: float, head_dim: int) -> float:
    """Dynamic-NTK base for stretching the context by ``factor``: base * factor^(d/(d-2))."""
    if factor <= 0 or base <= 0:
        raise ValueError(f"base {base} and factor {factor} must be positive")
    if head_dim <= 2:
        raise ValueError(f"head_dim {head_dim} must be larger than 2")
    return base * factor ** (head_dim / (head_dim - 2))


def default_inv_freq(base: float, head_dim: int) -> torch.Tensor:
    """1 / base^(2i/d) for i < d/2, in float32 as transformers computes it."""
    return 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))


class _Spec(Model):
    original_base: float = Field(default=1e6, gt=0, description="Base of the checkpoint.")
    original_context: TokenCount = Field(default=32768, ge=1)
    target_context: TokenCount = Field(default=131072, ge=1)
    explicit_factor: float | None = Field(
        default=None, gt=0, description="Stretch factor; None derives target/original context."
    )

    @property
    def factor(self) -> float:
        if self.explicit_factor is not None:
            return self.explicit_factor
        return self.target_context / self.original_context

    @property
    def base(self) -> float:
        """The rope_theta written to the checkpoint."""
        return self.original_base

    vllm_mrope_aware: ClassVar[bool] = True
    """False when vLLM drops mRoPE for this rope type and falls back to plain RoPE."""

    def inv_freq(self, head_dim: int) -> torch.Tensor:
        return default_inv_freq(self.base, head_dim)

    def attention_scaling(self) -> float:
        return 1.0

    def _scaling_fields(self) -> dict[str, Any]:
        """Extra rope fields of the method (empty for a plain base change)."""
        return {}

    @property
    def rope_type(self) -> str:
        return "default"

    def rope_parameters(self, arch: Architecture) -> dict[str, Any]:
        """transformers 5 form: text_config.rope_parameters."""
        fields: dict[str, Any] = {
            "rope_type": self.rope_type,
            "rope_theta": self.base,
            **self._scaling_fields(),
            "mrope_section": list(arch.mrope_section),
        }
        if arch.interleaved:
            fields["mrope_interleaved"] = True
        return fields

    def legacy_rope_scaling(self, arch: Architecture) -> dict[str, Any]:
        """transformers 4.x / vLLM form: rope_scaling next to a rope_theta field. A plain base
        change is written as the real checkpoints write it: ``type: mrope`` for Qwen2.5-VL,
        ``rope_type: default`` (+ ``mrope_interleaved``) for Qwen3-VL, whose 4.x code has no
        "mrope" rope type."""
        fields: dict[str, Any]
        if self.rope_type != "default":
            fields = {"type": self.rope_type, "rope_type": self.rope_type}
        elif arch.interleaved:
            fields = {"rope_type": "default"}
        else:
            fields = {"type": "mrope"}
        fields |= self._scaling_fields()
        fields["mrope_section"] = list(arch.mrope_section)
        if arch.interleaved:
            fields["mrope_interleaved"] = True
        return fields


class NtkBaseSpec(_Spec):
    """Raise the base by the Dynamic-NTK rule for factor target/original (static: the base is
    written once, nothing changes at run time). ``round_to`` rounds the base to a multiple,
    as the recipe rounds 4.089e6 to 4e6."""

    method: Literal["ntk-base"] = "ntk-base"
    head_dim: int = Field(default=128, gt=2)
    round_to: float | None = Field(default=None, gt=0)

    @property
    def exact_base(self) -> float:
        return ntk_base(self.original_base, self.factor, self.head_dim)

    @property
    def base(self) -> float:
        exact = self.exact_base
        if self.round_to is None:
            return exact
        return max(self.round_to, round(exact / self.round_to) * self.round_to)

    def describe(self) -> str:
        rounded = "" if self.round_to is None else f" (exact {self.exact_base:.4g})"
        return f"ntk-base: theta {self.original_base:.4g} -> {self.base:.4g}{rounded}"


class SetBaseSpec(_Spec):
    """Write an explicit base, e.g. 4e6 as in the recipe or 2e6 / 8e6 as in its ablation."""

    method: Literal["set-base"] = "set-base"
    new_base: float = Field(gt=0)

    @property
    def base(self) -> float:
        return self.new_base

    def describe(self) -> str:
        return f"set-base: theta {self.original_base:.4g} -> {self.base:.4g}"


class LinearSpec(_Spec):
    """Position interpolation: every frequency divided by the factor."""

    method: Literal["linear"] = "linear"
    vllm_mrope_aware: ClassVar[bool] = False

    @property
    def rope_type(self) -> str:
        return "linear"

    def _scaling_fields(self) -> dict[str, Any]:
        return {"factor": self.factor}

    def inv_freq(self, head_dim: int) -> torch.Tensor:
        return default_inv_freq(self.base, head_dim) / self.factor

    def describe(self) -> str:
        return f"linear: positions / {self.factor:g} at theta {self.base:.4g}"


class YarnSpec(_Spec):
    """YaRN: high frequencies kept, low ones interpolated, a ramp between, and attention
    temperature sqrt-scaled. mRoPE-aware: the sections (and Qwen3-VL's interleaving) are kept
    in both config forms, so each T/H/W frequency gets the YaRN factor of its own index, and
    vLLM builds its mRoPE rotary embedding with YaRN scaling instead of plain RoPE.

    ``original_max_position`` is the largest position the checkpoint was trained on. For mRoPE
    this is a position, not a token count: image-heavy training data reaches far smaller
    positions than its token count (see ``span``). It defaults to the original context."""

    method: Literal["yarn"] = "yarn"
    original_max_position: int | None = Field(default=None, ge=1)
    beta_fast: float = Field(default=32.0, gt=0)
    beta_slow: float = Field(default=1.0, gt=0)
    attention_factor: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _betas_ordered(self) -> YarnSpec:
        if self.beta_fast <= self.beta_slow:
            raise ValueError(f"beta_fast {self.beta_fast} must exceed beta_slow {self.beta_slow}")
        return self

    @property
    def rope_type(self) -> str:
        return "yarn"

    @property
    def original_positions(self) -> int:
        return self.original_max_position or self.original_context

    def _scaling_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "factor": self.factor,
            "original_max_position_embeddings": self.original_positions,
            "beta_fast": self.beta_fast,
            "beta_slow": self.beta_slow,
        }
        if self.attention_factor is not None:
            fields["attention_factor"] = self.attention_factor
        return fields

    def attention_scaling(self) -> float:
        if self.attention_factor is not None:
            return self.attention_factor
        return 1.0 if self.factor <= 1 else 0.1 * math.log(self.factor) + 1.0

    def inv_freq(self, head_dim: int) -> torch.Tensor:
        """The YaRN blend of interpolated and extrapolated frequencies (the formulas of the
        YaRN paper with the floor/ceil truncation of the correction range)."""

        def correction_dim(rotations: float) -> float:
            wavelength_ratio = self.original_positions / (rotations * 2 * math.pi)
            return head_dim * math.log(wavelength_ratio) / (2 * math.log(self.base))

        low = float(max(math.floor(correction_dim(self.beta_fast)), 0))
        high = float(min(math.ceil(correction_dim(self.beta_slow)), head_dim - 1))
        if low == high:
            high += 0.001
        extrapolated = default_inv_freq(self.base, head_dim)
        interpolated = extrapolated / self.factor
        ramp = torch.clamp(
            (torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1
        )
        keep = 1 - ramp
        return interpolated * (1 - keep) + extrapolated * keep

    def describe(self) -> str:
        return (
            f"yarn: factor {self.factor:g} over {self.original_positions} positions "
            f"at theta {self.base:.4g}, attention x{self.attention_scaling():.4f}"
        )


RopeSpec = Annotated[
    NtkBaseSpec | SetBaseSpec | LinearSpec | YarnSpec, Field(discriminator="method")
]
"""Any extension method; ``method`` decides the type (JSON round-trips)."""


def make_spec(
    method: RopeMethod | str,
    *,
    original_base: float,
    original_context: int,
    target_context: int,
    head_dim: int = 128,
    base: float | None = None,
    round_to: float | None = None,
    original_max_position: int | None = None,
    factor: float | None = None,
) -> NtkBaseSpec | SetBaseSpec | LinearSpec | YarnSpec:
    """A spec from the usual knobs. ``factor`` overrides target/original context. ``base`` is
    required by ``set-base``; for ``ntk-base`` it
    is a check: when given, the NTK base must round to it (so a recipe saying 4e6 fails loudly
    if its contexts say otherwise)."""
    kind = RopeMethod(method)
    if target_context < original_context:
        raise ValueError(
            f"target context {target_context} is shorter than the original {original_context}; "
            "there is nothing to extend"
        )
    common: dict[str, Any] = {
        "original_base": original_base,
        "original_context": original_context,
        "target_context": target_context,
        "explicit_factor": factor,
    }
    if kind is RopeMethod.SET_BASE:
        if base is None:
            raise ValueError("set-base needs an explicit base (--base)")
        return SetBaseSpec(new_base=base, **common)
    if kind is RopeMethod.NTK_BASE:
        if base is not None and round_to is None:
            # An explicit target base means: use the NTK rule, rounded to that base's magnitude.
            round_to = 10 ** math.floor(math.log10(base))
        spec = NtkBaseSpec(head_dim=head_dim, round_to=round_to, **common)
        if base is not None and not math.isclose(spec.base, base, rel_tol=1e-9):
            raise ValueError(
                f"ntk-base gives {spec.exact_base:.4g} (rounded {spec.base:.4g}) for "
                f"{original_context} -> {target_context} tokens, not the requested {base:.4g}; "
                "use --method set-base to force a base"
            )
        return spec
    if base is not None and base != original_base:
        raise ValueError(f"{kind.value} keeps the base; use set-base to change it")
    if kind is RopeMethod.LINEAR:
        return LinearSpec(**common)
    return YarnSpec(original_max_position=original_max_position, **common)


def spec_from_recipe(
    rope: RopeConfig, head_dim: int = 128
) -> NtkBaseSpec | SetBaseSpec | LinearSpec | YarnSpec:
    """The spec a Recipe's RopeConfig asks for (base 4e6 with ntk-base: the recipe's rounding)."""
    return make_spec(
        rope.method,
        original_base=rope.original_base,
        original_context=rope.original_context,
        target_context=rope.target_context,
        head_dim=head_dim,
        base=rope.base,
    )
