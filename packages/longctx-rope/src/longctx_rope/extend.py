"""Write an extended copy of a Qwen-VL checkpoint: new rope settings, same weights.

Only config.json and tokenizer_config.json are rewritten; every other file is linked (or
copied) unchanged. The new config carries both rope forms, is checked by loading it with the
installed transformers (inverse frequencies compared with the spec) and by restating how
transformers 4.x and vLLM read it, and the directory appears atomically with a provenance file
that makes a rerun with the same inputs a no-op.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import TypeAdapter

from longctx_rope.architectures import Architecture, describe_architecture, text_config_dict
from longctx_rope.loaders import RopeView, loader_views
from longctx_rope.methods import NtkBaseSpec, RopeSpec
from mmprolong_runtime.atomic_dir import atomic_dir
from mmprolong_schemas import ModelFamily
from mmprolong_schemas.io import write_json

log = logging.getLogger(__name__)

PROVENANCE = "longctx_rope.json"
REWRITTEN = ("config.json", "tokenizer_config.json", PROVENANCE)
_LEGACY_TOP_LEVEL = ("rope_theta", "rope_scaling", "max_position_embeddings")
LinkMode = Literal["symlink", "hardlink", "copy"]


class VerificationError(RuntimeError):
    """The written config does not give the spec's frequencies under some loader."""


@dataclass
class ExtendResult:
    out_dir: Path
    arch: Architecture
    spec: RopeSpec
    views: list[RopeView]
    warnings: list[str] = field(default_factory=list)
    skipped: bool = False
    """True when out_dir already held this very extension."""


def read_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir} has no config.json; is it a checkpoint directory?")
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    return data


def original_theta(config: dict[str, Any]) -> float | None:
    """The base a checkpoint uses now (transformers 5 form first, then legacy)."""
    text = text_config_dict(config)
    params = text.get("rope_parameters") or {}
    theta = params.get("rope_theta", text.get("rope_theta", config.get("rope_theta")))
    return None if theta is None else float(theta)


def trained_context(config: dict[str, Any]) -> int:
    """The context a checkpoint was trained at, as far as its config tells: Qwen2.5-VL configs
    claim 128000 positions but the models were trained at 32K; others are taken at their word."""
    arch = describe_architecture(config)
    if arch.family is ModelFamily.QWEN2_5_VL:
        return 32768
    return int(text_config_dict(config).get("max_position_embeddings") or 32768)


def extended_config(config: dict[str, Any], spec: RopeSpec, target_context: int) -> dict[str, Any]:
    """The config dict with the spec written in both forms inside the text config (and in the
    legacy top-level fields when the checkpoint has them, as old Qwen2.5-VL ones do)."""
    arch = describe_architecture(config)
    new = copy.deepcopy(config)
    text = text_config_dict(new)
    targets = [text]
    if text is not new and any(key in new for key in _LEGACY_TOP_LEVEL):
        targets.append(new)
    for fields in targets:
        fields["rope_parameters"] = spec.rope_parameters(arch)
        fields["rope_theta"] = spec.base
        fields["rope_scaling"] = spec.legacy_rope_scaling(arch)
        fields["max_position_embeddings"] = max(
            int(fields.get("max_position_embeddings") or 0), target_context
        )
    if "rope_parameters" in new and text is not new:
        new["rope_parameters"] = spec.rope_parameters(arch)
    return new


def verify(config: dict[str, Any], spec: RopeSpec) -> list[RopeView]:
    """Every loader must see the spec's base, type and (for the mRoPE-keeping ones) sections,
    and the frequencies transformers builds must equal the spec's."""
    arch = describe_architecture(config)
    expected = spec.inv_freq(arch.head_dim)
    views = loader_views(config)
    for view in views:
        got = torch.tensor(view.inv_freq, dtype=torch.float32)
        if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-5, atol=0):
            raise VerificationError(
                f"{view.loader} reads rope type {view.rope_type!r}, theta {view.theta:.6g}: its "
                f"inverse frequencies differ from the {spec.method} spec (theta {spec.base:.6g})"
            )
        if abs(view.attention_scaling - spec.attention_scaling()) > 1e-6:
            raise VerificationError(
                f"{view.loader} scales attention by {view.attention_scaling}, "
                f"the spec by {spec.attention_scaling()}"
            )
        if view.loader != "vllm" and view.mrope_section != arch.mrope_section:
            raise VerificationError(
                f"{view.loader} reads mrope_section {view.mrope_section}, "
                f"expected {arch.mrope_section}"
            )
    return views


def _link(source: Path, target: Path, mode: LinkMode) -> None:
    if mode == "symlink":
        target.symlink_to(source.resolve())
    elif mode == "hardlink":
        os.link(source, target)
    else:
        shutil.copy2(source, target)


def _hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def _provenance(
    model_dir: Path, config: dict[str, Any], spec: RopeSpec, target: int
) -> dict[str, Any]:
    return {
        "source": str(model_dir.resolve()),
        "source_config_sha256": _hash(config),
        "target_context": target,
        "spec": TypeAdapter(RopeSpec).dump_python(spec, mode="json"),
    }


def extend_checkpoint(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    spec: RopeSpec,
    *,
    link: LinkMode = "symlink",
    overwrite: bool = False,
) -> ExtendResult:
    """Write ``out_dir``: ``model_dir`` with ``spec`` applied. A rerun with the same source
    config and spec returns ``skipped=True`` without touching anything."""
    source, out = Path(model_dir), Path(out_dir)
    if source.resolve() == out.resolve():
        raise ValueError("--out must differ from the model directory; weights are never rewritten")
    config = read_config(source)
    arch = describe_architecture(config)
    if isinstance(spec, NtkBaseSpec) and spec.head_dim != arch.head_dim:
        raise ValueError(
            f"the spec assumes head_dim {spec.head_dim}, the model has {arch.head_dim}"
        )
    target = spec.target_context
    new_config = extended_config(config, spec, target)
    views = verify(new_config, spec)
    warnings = _warnings(spec, views)
    provenance = _provenance(source, config, spec, target)

    done = out / PROVENANCE
    if done.is_file() and not overwrite:
        if json.loads(done.read_text(encoding="utf-8")) == provenance:
            return ExtendResult(out, arch, spec, views, warnings, skipped=True)
        raise FileExistsError(f"{out} holds a different extension; pass --overwrite to replace it")

    with atomic_dir(out, overwrite=overwrite) as tmp:
        for path in sorted(source.rglob("*")):
            relative = path.relative_to(source)
            if path.is_dir() or relative.as_posix() in REWRITTEN:
                continue
            (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
            _link(path, tmp / relative, link)
        write_json(tmp / "config.json", new_config, indent=2)
        if not _write_tokenizer_config(source, tmp, target):
            warnings.append("no tokenizer_config.json: model_max_length not set")
        write_json(tmp / PROVENANCE, provenance, indent=2)
    for warning in warnings:
        log.warning(warning)
    return ExtendResult(out, arch, spec, views, warnings)


def _write_tokenizer_config(source: Path, dest: Path, target: int) -> bool:
    """Copy tokenizer_config.json with model_max_length = target; False when there is none."""
    path = source / "tokenizer_config.json"
    if not path.is_file():
        return False
    data = json.loads(path.read_text(encoding="utf-8"))
    data["model_max_length"] = target
    write_json(dest / "tokenizer_config.json", data, indent=2)
    return True


def write_rope_config(model_dir: str | os.PathLike[str], spec: RopeSpec) -> list[RopeView]:
    """Rewrite a checkpoint's config.json (and tokenizer model_max_length) in place with
    ``spec`` in both forms, verified first. For checkpoints a trainer exports after
    ``apply_rope``: transformers 5 saves only ``rope_parameters``, which 4.x and vLLM ignore."""
    directory = Path(model_dir)
    config = read_config(directory)
    new_config = extended_config(config, spec, spec.target_context)
    views = verify(new_config, spec)
    _write_tokenizer_config(directory, directory, spec.target_context)
    write_json(directory / "config.json", new_config, indent=2)
    return views


def _warnings(spec: RopeSpec, views: list[RopeView]) -> list[str]:
    warnings = []
    if not spec.vllm_mrope_aware:
        warnings.append(
            f"{spec.method}: vLLM does not apply mRoPE with this rope type and falls back to "
            "plain RoPE; serve with vLLM only the ntk-base, set-base or yarn forms"
        )
    for view in views:
        warnings += [f"{view.loader}: {note}" for note in view.notes if "yarn" in note]
    return warnings
