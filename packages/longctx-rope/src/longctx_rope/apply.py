"""Apply a rope spec to a model already in memory (trainer, evaluation)."""

from __future__ import annotations

from typing import Any

import torch

from longctx_rope.architectures import Architecture, describe_architecture
from longctx_rope.loaders import rotary_embedding_class
from longctx_rope.methods import RopeSpec


def apply_rope(model: torch.nn.Module, spec: RopeSpec) -> Architecture:
    """Write ``spec`` into the model's text config (transformers 5 form, plus
    max_position_embeddings) and rebuild its text rotary embeddings from it, in place. The
    vision tower's rotary embedding is left alone. Returns the model's architecture."""
    config: Any = getattr(model, "config", None)
    if config is None:
        raise TypeError(f"{type(model).__name__} has no transformers config")
    arch = describe_architecture(config.to_dict())
    text = config.get_text_config()
    text.rope_parameters = spec.rope_parameters(arch)
    text.max_position_embeddings = max(int(text.max_position_embeddings), spec.target_context)
    rotary_cls = rotary_embedding_class(arch.model_type)
    rebuilt = 0
    for module in model.modules():
        if not isinstance(module, rotary_cls):
            continue
        fresh: Any = rotary_cls(text)
        device = module.inv_freq.device
        module.register_buffer("inv_freq", fresh.inv_freq.to(device), persistent=False)
        module.register_buffer(
            "original_inv_freq", fresh.original_inv_freq.to(device), persistent=False
        )
        for name in ("rope_type", "attention_scaling", "mrope_section", "config"):
            setattr(module, name, getattr(fresh, name))
        for name in ("max_seq_len_cached", "original_max_seq_len"):
            setattr(module, name, getattr(fresh, name))
        rebuilt += 1
    if rebuilt == 0:
        raise ValueError(f"no {rotary_cls.__name__} found in {type(model).__name__}")
    return arch
