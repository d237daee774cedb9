"""mRoPE extension before training, and export of a trained checkpoint to HF safetensors.

The rope base comes from longctx-rope: ``extend_rope`` applies the recipe's RopeConfig to
the model in memory; ``export_hf`` loads a DCP checkpoint into a plain model in one process,
saves it with ``save_pretrained`` (safetensors) and rewrites its config with the extended rope
in both the transformers-5 form (rope_parameters) and the 4.x / vLLM form (rope_theta,
rope_scaling), so every loader reads the same base.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mmprolong_runtime.atomic_dir import atomic_dir
from mmprolong_schemas.recipe import RopeConfig
from seqpar_train.checkpoint import latest_checkpoint, load_model_weights
from seqpar_train.config import TrainerConfig
from seqpar_train.forward import PackedLossModel
from seqpar_train.modeling import text_config


def rope_spec(model: torch.nn.Module, rope: RopeConfig) -> Any:
    from longctx_rope import spec_from_recipe

    text = text_config(model)
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return spec_from_recipe(rope, head_dim=head_dim)


def extend_rope(model: torch.nn.Module, rope: RopeConfig) -> Any:
    """Set the model's mRoPE base (and rotary buffers) as the recipe asks; returns the spec."""
    from longctx_rope import apply_rope

    spec = rope_spec(model, rope)
    apply_rope(model, spec)
    return spec


def export_hf(
    config: TrainerConfig,
    out_dir: str | Path,
    checkpoint: str | Path | None = None,
    dtype: torch.dtype = torch.bfloat16,
    rope: RopeConfig | None = None,
) -> Path:
    """Write checkpoint ``checkpoint`` (default: the run's latest) as an HF model directory.

    The config gets the rope in both forms (transformers 5's rope_parameters; rope_theta and
    rope_scaling for transformers 4.x and vLLM): the training config's ``model.rope``, or
    ``rope``, the extension a model extended before training already carries (transformers
    5's save_pretrained would write only rope_parameters). Its base must be the model's."""
    from seqpar_train.trainer import build_training_model

    run_checkpoints = Path(config.output_dir) / "checkpoints"
    source = Path(checkpoint) if checkpoint is not None else latest_checkpoint(run_checkpoints)
    if source is None:
        raise FileNotFoundError(f"no complete checkpoint under {run_checkpoints}")
    hf_model = build_training_model(config, torch.device("cpu"))
    load_model_weights(source, PackedLossModel(hf_model))
    hf_model.to(dtype)
    target = Path(out_dir)
    if target.exists():
        raise FileExistsError(f"{target} exists; export to a new directory")
    # Written beside the target and renamed, so a reader never sees a half-exported model.
    with atomic_dir(target) as scratch:
        hf_model.save_pretrained(scratch, safe_serialization=True)
        if config.model.path is not None:
            _copy_processor(config.model.path, scratch)
        written = config.model.rope if config.model.rope is not None else rope
        if written is not None:
            from longctx_rope import write_rope_config

            spec = rope_spec(hf_model, written)
            if config.model.rope is None:
                _check_carried_base(hf_model, spec.base)
            write_rope_config(scratch, spec)
    return target


def _check_carried_base(model: torch.nn.Module, base: float) -> None:
    parameters = getattr(text_config(model), "rope_parameters", None) or {}
    carried = parameters.get("rope_theta")
    if carried is None or abs(float(carried) - base) > 1e-6 * base:
        raise ValueError(
            f"the model's rope base is {carried}, the rope to export says {base:.6g}: export "
            "with the rope the model was extended with"
        )


def _copy_processor(model_path: str, out_dir: Path) -> None:
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(model_path)
    except (OSError, ValueError):
        return  # a weights-only checkpoint: nothing to copy
    processor.save_pretrained(out_dir)
