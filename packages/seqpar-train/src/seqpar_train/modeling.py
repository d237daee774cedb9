"""Loading HF Qwen-VL models unchanged, and the facts about them the trainer needs."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from transformers import (
    PretrainedConfig,
    PreTrainedModel,
    Qwen2_5_VLForConditionalGeneration,
    Qwen3VLForConditionalGeneration,
)

_CLASSES: dict[str, type[PreTrainedModel]] = {
    "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration,
    "qwen3_vl": Qwen3VLForConditionalGeneration,
}


def model_class(config: PretrainedConfig) -> type[PreTrainedModel]:
    try:
        return _CLASSES[config.model_type]
    except KeyError:
        raise ValueError(
            f"model type {config.model_type!r} is not supported; seqpar-train trains "
            f"{', '.join(_CLASSES)}"
        ) from None


def build_model(
    source: str | Path | PretrainedConfig, dtype: torch.dtype = torch.float32, seed: int = 0
) -> Any:
    """A model from a checkpoint directory/hub id, or randomly initialised from a config
    (seeded, so every rank builds the same weights)."""
    if isinstance(source, PretrainedConfig):
        config = copy.deepcopy(source)  # the model owns its config (attention is set on it)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model: Any = model_class(config)(config)
        return model.to(dtype)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source)
    return model_class(config).from_pretrained(source, dtype=dtype)


def hf_model_of(model: Any) -> Any:
    """The HF model inside a training wrapper (or the model itself)."""
    return getattr(model, "hf_model", model)


def decoder_layers(model: Any) -> torch.nn.ModuleList:
    layers: torch.nn.ModuleList = hf_model_of(model).model.language_model.layers
    return layers


def vision_blocks(model: Any) -> torch.nn.ModuleList:
    blocks: torch.nn.ModuleList = hf_model_of(model).model.visual.blocks
    return blocks


def text_config(model: Any) -> Any:
    config = model.config
    return getattr(config, "text_config", config)
