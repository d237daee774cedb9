"""The rope settings of a checkpoint as each loader reads them.

transformers 5 is the installed library, asked directly. transformers 4.x and vLLM are not
installed together with it, so their reading rules are restated here: both look only at
``rope_theta`` and ``rope_scaling`` (of ``text_config`` when the config has one), never at
``rope_parameters``; a checkpoint carrying only the transformers 5 form therefore runs on them
at the library default base. vLLM keeps mRoPE only for the default ("mrope") and yarn types.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from transformers import CONFIG_MAPPING

from longctx_rope.architectures import (
    DEFAULT_THETA,
    Architecture,
    describe_architecture,
    text_config_dict,
)
from longctx_rope.methods import default_inv_freq

LOADERS = ("transformers-5", "transformers-4", "vllm")

_ROTARY_CLASSES = {
    "qwen2_5_vl": (
        "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl",
        "Qwen2_5_VLRotaryEmbedding",
    ),
    "qwen3_vl": ("transformers.models.qwen3_vl.modeling_qwen3_vl", "Qwen3VLTextRotaryEmbedding"),
}
VLLM_MROPE_TYPES = ("default", "yarn")


@dataclass
class RopeView:
    """Effective rope settings as one loader sees them."""

    loader: str
    rope_type: str
    theta: float
    mrope: bool
    """Whether T/H/W sections are applied (False: plain 1-D RoPE over the text positions)."""
    mrope_section: list[int] | None
    factor: float | None
    max_positions: int | None
    notes: list[str] = field(default_factory=list)
    inv_freq: list[float] = field(default_factory=list, repr=False)
    attention_scaling: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("inv_freq")
        return data


def rotary_embedding_class(model_type: str) -> type[torch.nn.Module]:
    """The installed transformers' text rotary embedding class of a supported model type."""
    module_name, class_name = _ROTARY_CLASSES[model_type]
    cls: type[torch.nn.Module] = getattr(importlib.import_module(module_name), class_name)
    return cls


def transformers_view(config: dict[str, Any]) -> RopeView:
    """Load the config with the installed transformers and build its rotary embedding."""
    arch = describe_architecture(config)
    loaded = CONFIG_MAPPING[arch.model_type].from_dict(dict(config))
    text = loaded.get_text_config()
    rotary: Any = rotary_embedding_class(arch.model_type)(text)
    params = dict(text.rope_parameters)
    return RopeView(
        loader="transformers-5",
        rope_type=str(rotary.rope_type),
        theta=float(params["rope_theta"]),
        mrope=True,
        mrope_section=list(rotary.mrope_section),
        factor=params.get("factor"),
        max_positions=int(text.max_position_embeddings),
        inv_freq=rotary.inv_freq.tolist(),
        attention_scaling=float(rotary.attention_scaling),
    )


def _legacy(config: dict[str, Any]) -> tuple[Architecture, dict[str, Any], dict[str, Any] | None]:
    arch = describe_architecture(config)
    text = text_config_dict(config)
    scaling = text.get("rope_scaling")
    return arch, text, dict(scaling) if isinstance(scaling, dict) else None


def _legacy_inv_freq(
    arch: Architecture, theta: float, rope_type: str, scaling: dict[str, Any]
) -> tuple[list[float], float, list[str]]:
    """Inverse frequencies at short context for the legacy rope types we can restate."""
    from longctx_rope.methods import YarnSpec

    base = default_inv_freq(theta, arch.head_dim)
    if rope_type in ("default", "dynamic"):
        return base.tolist(), 1.0, []
    if rope_type == "linear":
        return (base / float(scaling["factor"])).tolist(), 1.0, []
    if rope_type == "yarn":
        original = int(scaling.get("original_max_position_embeddings", 0)) or None
        yarn = YarnSpec(
            original_base=theta,
            explicit_factor=float(scaling["factor"]),
            original_max_position=original,
            beta_fast=float(scaling.get("beta_fast") or 32),
            beta_slow=float(scaling.get("beta_slow") or 1),
            attention_factor=scaling.get("attention_factor"),
        )
        return yarn.inv_freq(arch.head_dim).tolist(), yarn.attention_scaling(), []
    return [], 1.0, [f"rope type {rope_type!r} is not restated here"]


def _legacy_view(config: dict[str, Any], loader: str) -> RopeView:
    """What a reader of rope_theta + rope_scaling only sees ("mrope" means default)."""
    arch, text, scaling = _legacy(config)
    notes: list[str] = []
    theta = text.get("rope_theta")
    if theta is None:
        theta = DEFAULT_THETA[arch.family]
        notes.append(f"no rope_theta: runs at the default base {theta:.4g}")
    scaling = scaling or {}
    rope_type = str(scaling.get("rope_type", scaling.get("type", "default")))
    rope_type = "default" if rope_type == "mrope" else rope_type
    inv_freq, attention, more = _legacy_inv_freq(arch, float(theta), rope_type, scaling)
    return RopeView(
        loader=loader,
        rope_type=rope_type,
        theta=float(theta),
        mrope="mrope_section" in scaling,
        mrope_section=scaling.get("mrope_section"),
        factor=scaling.get("factor"),
        max_positions=text.get("max_position_embeddings"),
        notes=notes + more,
        inv_freq=inv_freq,
        attention_scaling=attention,
    )


def transformers4_view(config: dict[str, Any]) -> RopeView:
    """transformers 4.x: rope_theta + rope_scaling of the text config."""
    view = _legacy_view(config, "transformers-4")
    if not view.mrope:
        view.notes.append("no rope_scaling.mrope_section: 4.x Qwen-VL attention cannot run")
    return view


def vllm_view(config: dict[str, Any]) -> RopeView:
    """vLLM: rope_theta + rope_scaling of the text config; mRoPE only for default/yarn."""
    view = _legacy_view(config, "vllm")
    if not view.mrope:
        view.notes.append("no rope_scaling.mrope_section: vLLM builds plain 1-D RoPE")
    elif view.rope_type not in VLLM_MROPE_TYPES:
        view.mrope = False
        view.notes.append(
            f"rope type {view.rope_type!r}: vLLM builds plain 1-D RoPE, the T/H/W sections are lost"
        )
    if view.rope_type == "yarn":
        view.notes.append(
            "yarn: set --max-model-len explicitly; vLLM derives it from the rope fields"
        )
    return view


def loader_views(config: dict[str, Any]) -> list[RopeView]:
    """The three readings of a config dict, transformers 5 first."""
    return [transformers_view(config), transformers4_view(config), vllm_view(config)]
