"""Published configs of the models the recipe trains, shipped as data so the planner and the
FLOPs counter see real sizes without downloading weights.

Each folder holds the model's ``config.json`` and ``preprocessor_config.json`` as published
on the Hugging Face hub (huggingface.co/Qwen/Qwen2.5-VL-7B-Instruct and
huggingface.co/Qwen/Qwen3-VL-8B-Instruct, files of the same names).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from mmprolong_schemas import VisionTokenSpec

PRESET_DIRS = {
    "qwen2.5-vl-7b": "qwen2.5-vl-7b-instruct",
    "qwen3-vl-8b": "qwen3-vl-8b-instruct",
}
"""Short names (the ones `seqpar-train flops/plan --model` take) -> folder."""


def preset_names() -> list[str]:
    return sorted(PRESET_DIRS)


def preset_dir(name: str) -> Path:
    """The folder of a preset, by short name or by its folder (hub) name."""
    key = name.lower().removeprefix("qwen/")
    folder = PRESET_DIRS.get(key, key)
    if folder not in PRESET_DIRS.values():
        raise ValueError(f"unknown model preset {name!r}; choose one of {preset_names()}")
    return Path(str(resources.files(__name__).joinpath(folder)))


def model_folder(name: str) -> Path:
    """The folder of a local checkpoint named by path, else of the preset ``name``."""
    source = Path(name)
    return source if (source / "config.json").is_file() else preset_dir(name)


def preset_config(name: str) -> Any:
    """The transformers config of a preset (or of a local checkpoint folder)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(model_folder(name)))


def preset_vision(name: str) -> VisionTokenSpec:
    """min/max pixels and resize factor of a preset's (or checkpoint's) image processor."""
    folder = model_folder(name)
    data = json.loads((folder / "preprocessor_config.json").read_text(encoding="utf-8"))
    size = data.get("size") or {}
    min_pixels = data.get("min_pixels", size.get("shortest_edge"))
    max_pixels = data.get("max_pixels", size.get("longest_edge"))
    factor = int(data["patch_size"]) * int(data["merge_size"])
    return VisionTokenSpec(min_pixels=int(min_pixels), max_pixels=int(max_pixels), factor=factor)
