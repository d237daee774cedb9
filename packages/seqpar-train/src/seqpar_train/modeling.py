"""Loading HF Qwen-VL models unchanged, and the facts about them the trainer needs."""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Modules built inside get their parameters on the meta device and keep real buffers
    (rotary inv_freq, computed at construction). Each parameter is moved to meta as it is
    registered, before its initialiser runs, so no model's weights are ever allocated whole."""
    register = torch.nn.Module.register_parameter

    def register_on_meta(
        module: torch.nn.Module, name: str, param: torch.nn.Parameter | None
    ) -> None:
        register(module, name, param)
        if param is not None and param.device.type != "meta":
            meta = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
            module._parameters[name] = meta

    torch.nn.Module.register_parameter = register_on_meta  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register  # type: ignore[method-assign]


def build_meta_model(source: str | Path, dtype: torch.dtype = torch.float32) -> Any:
    """The model of checkpoint directory ``source`` with meta parameters (see
    ``parameters_on_meta``), to be sharded and then filled by ``load_safetensors_shards``."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source)
    with parameters_on_meta():
        model: Any = model_class(config)(config)
    return model.to(dtype)


def materialize(model: torch.nn.Module, device: torch.device) -> None:
    """Give every meta parameter (an FSDP shard, after fully_shard) uninitialised storage
    on ``device``, keeping the buffers' values (to_empty would drop them)."""
    buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    model.to_empty(device=device)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            buffer.copy_(buffers[name])


def checkpoint_key_candidates(name: str) -> list[str]:
    """Names a parameter may have in a checkpoint: its own (without activation
    checkpointing's wrapper), or the layout transformers 4.x and 5 write for Qwen-VL
    (model.layers..., visual..., where the module holds model.language_model.layers...,
    model.visual...)."""
    # torch's checkpoint_wrapper (activation checkpointing) adds this to the module path.
    name = name.replace("_checkpoint_wrapped_module.", "")
    candidates = [name]
    for module_prefix, file_prefix in (
        ("model.language_model.", "model."),
        ("model.visual.", "visual."),
    ):
        if name.startswith(module_prefix):
            candidates.append(file_prefix + name[len(module_prefix) :])
    return candidates


def _safetensors_files(source: Path) -> dict[str, Path]:
    """Checkpoint key -> the safetensors file holding it."""
    index = source / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return {key: source / file for key, file in weight_map.items()}
    single = source / "model.safetensors"
    if not single.exists():
        raise FileNotFoundError(f"{source} holds no model.safetensors(.index.json)")
    from safetensors import safe_open

    with safe_open(str(single), framework="pt") as handle:
        return dict.fromkeys(handle.keys(), single)


def load_safetensors_shards(
    model: torch.nn.Module,
    source: str | Path,
    on_tensor: Callable[[str, torch.Tensor], None] | None = None,
) -> list[str]:
    """Fill each parameter of ``model`` (after ``materialize``) with its rows of the
    checkpoint's tensor: a DTensor shard reads only its own slice of the file (FSDP2 shards
    dim 0), a plain parameter the whole tensor, one tensor at a time. ``on_tensor`` sees
    every slice read. Returns the checkpoint keys read."""
    from safetensors import safe_open
    from torch.distributed.tensor import DTensor

    files = _safetensors_files(Path(source))
    read = []
    handles: dict[Path, Any] = {}
    with contextlib.ExitStack() as stack:
        for name, param in model.named_parameters():
            key = next((k for k in checkpoint_key_candidates(name) if k in files), None)
            if key is None:
                raise KeyError(f"{name} is not in the checkpoint {source}")
            if files[key] not in handles:
                handles[files[key]] = stack.enter_context(
                    safe_open(str(files[key]), framework="pt")
                )
            stored = handles[files[key]].get_slice(key)
            if isinstance(param, DTensor):
                from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

                local = param.to_local()
                shape, offset = compute_local_shape_and_global_offset(
                    param.shape, param.device_mesh, param.placements
                )
                index = tuple(slice(o, o + n) for o, n in zip(offset, shape, strict=True))
                piece = stored[index] if local.numel() else None
            else:
                local = param.data
                piece = stored[:]
            if piece is not None:
                if on_tensor is not None:
                    on_tensor(name, piece)
                with torch.no_grad():
                    local.copy_(piece.to(local.dtype))
            read.append(key)
    return read
