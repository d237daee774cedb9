"""Which checkpoints this package understands, and where their rope settings live."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmprolong_runtime.errors import InputError
from mmprolong_schemas import ModelFamily

_MODEL_TYPES: dict[str, ModelFamily] = {
    "qwen2_5_vl": ModelFamily.QWEN2_5_VL,
    "qwen3_vl": ModelFamily.QWEN3_VL,
}

# Section sizes of the real checkpoints (head_dim 128), used when a config omits them.
DEFAULT_MROPE_SECTION: dict[ModelFamily, list[int]] = {
    ModelFamily.QWEN2_5_VL: [16, 24, 24],
    ModelFamily.QWEN3_VL: [24, 20, 20],
}
DEFAULT_THETA: dict[ModelFamily, float] = {
    ModelFamily.QWEN2_5_VL: 1e6,
    ModelFamily.QWEN3_VL: 5e5,
}


class UnsupportedArchitectureError(InputError):
    """The checkpoint is not a Qwen2.5-VL or Qwen3-VL model."""


@dataclass(frozen=True)
class Architecture:
    """The rope-relevant shape of a supported checkpoint."""

    family: ModelFamily
    model_type: str
    head_dim: int
    mrope_section: list[int]
    interleaved: bool
    """Qwen3-VL interleaves T/H/W over the frequencies; Qwen2.5-VL uses contiguous blocks."""

    @property
    def rotary_pairs(self) -> int:
        return self.head_dim // 2


def text_config_dict(config: dict[str, Any]) -> dict[str, Any]:
    """The text part of a config dict: ``text_config`` when present, else the flat config (old
    Qwen2.5-VL checkpoints keep text settings at top level)."""
    text = config.get("text_config")
    return text if isinstance(text, dict) else config


def describe_architecture(config: dict[str, Any]) -> Architecture:
    """Family, head_dim and mRoPE layout of a config dict, or a clear error."""
    model_type = str(config.get("model_type", ""))
    if model_type not in _MODEL_TYPES:
        supported = ", ".join(sorted(_MODEL_TYPES))
        architectures = config.get("architectures") or []
        raise UnsupportedArchitectureError(
            f"model_type {model_type or '(missing)'!r} (architectures {architectures}) is not "
            f"supported; longctx-rope handles {supported}"
        )
    family = _MODEL_TYPES[model_type]
    text = text_config_dict(config)
    head_dim = text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]
    rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
    section = list(rope.get("mrope_section") or DEFAULT_MROPE_SECTION[family])
    if sum(section) * 2 != head_dim:
        raise UnsupportedArchitectureError(
            f"mrope_section {section} covers {sum(section) * 2} dims, head_dim is {head_dim}"
        )
    return Architecture(
        family=family,
        model_type=model_type,
        head_dim=int(head_dim),
        mrope_section=section,
        interleaved=family is ModelFamily.QWEN3_VL,
    )
