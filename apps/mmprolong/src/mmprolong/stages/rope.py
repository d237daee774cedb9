"""Stage rope: the initial checkpoint -> a copy with the recipe's extended (m)RoPE (longctx-rope).

``base/`` is the checkpoint evaluation calls "base": a tiny model built from config for a demo
recipe, or a link to the recipe's init_model when that is a local folder. A hub id is passed
to longctx-rope as is (it reads config.json from a folder, so download it first with
``huggingface-cli download`` and point init_model at the folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmprolong.orchestrator import StageContext
from mmprolong.stages._require import require
from mmprolong.stages.report import Contributor
from mmprolong_schemas import Recipe

BASE_DIR = "base"
EXTENDED_DIR = "extended"


def base_checkpoint(ctx: StageContext) -> Path:
    """The checkpoint before any change: what evaluation calls the base model."""
    if ctx.recipe.demo is not None and ctx.recipe.demo.tiny_model:
        return ctx.stage_dir(RopeStage.name) / BASE_DIR
    return Path(ctx.recipe.init_model)


def extended_checkpoint(ctx: StageContext) -> Path:
    return ctx.stage_dir(RopeStage.name) / EXTENDED_DIR


class RopeStage(Contributor):
    name = "rope"

    def config(self, recipe: Recipe) -> dict[str, Any]:
        return {
            "rope": recipe.rope.model_dump(mode="json"),
            "init_model": recipe.init_model,
            "family": recipe.family.value,
            "tiny": None
            if recipe.demo is None or not recipe.demo.tiny_model
            else {"seed": recipe.demo.seed},
        }

    def run(self, ctx: StageContext) -> dict[str, int]:
        extend_checkpoint, spec_from_recipe, describe_architecture = require(
            self.name,
            "longctx_rope",
            "extend_checkpoint",
            "spec_from_recipe",
            "describe_architecture",
        )
        (save_tiny_checkpoint,) = require(self.name, "longctx_rope.tiny", "save_tiny_checkpoint")
        (read_config,) = require(self.name, "longctx_rope.extend", "read_config")
        recipe = ctx.recipe
        source = base_checkpoint(ctx)
        tiny = recipe.demo is not None and recipe.demo.tiny_model
        if tiny and not (source / "config.json").exists():
            save_tiny_checkpoint(recipe.family, source, seed=recipe.demo.seed if recipe.demo else 0)
            ctx.log(f"rope: built a tiny {recipe.family.value} checkpoint in {source}")
        if not (source / "config.json").exists():
            raise FileNotFoundError(
                f"init_model {recipe.init_model!r} is not a checkpoint folder with config.json; "
                "download it first (huggingface-cli download ... --local-dir DIR) and set "
                "init_model to DIR"
            )
        arch = describe_architecture(read_config(source))
        spec = spec_from_recipe(recipe.rope, head_dim=arch.head_dim)
        # Hard links keep a run folder self-contained when base/ is inside it.
        link = "hardlink" if tiny else "symlink"
        result = extend_checkpoint(source, extended_checkpoint(ctx), spec, link=link)
        for warning in result.warnings:
            ctx.log(f"rope: warning: {warning}")
        ctx.log(
            f"rope: {arch.head_dim}-dim heads, base {recipe.rope.original_base:g} -> "
            f"{spec.base:g}, context {spec.original_context} -> {spec.target_context}"
        )
        return {
            "base": round(spec.base),
            "target_context": spec.target_context,
            "head_dim": arch.head_dim,
        }

    def progress(self, ctx: StageContext) -> dict[str, int]:
        return {
            "base_written": int((base_checkpoint(ctx) / "config.json").exists()),
            "extended_written": int((extended_checkpoint(ctx) / "config.json").exists()),
        }
