"""Will the recipe's training fit its GPUs? seqpar-train's planner, before training starts.

``mmprolong doctor --recipe R`` shows the verdict; the train stage refuses a recipe whose
step will not fit (naming settings that would) before any GPU time is spent. The planner
runs the real step under FakeTensorMode on this CPU: figures are estimates.
"""

from __future__ import annotations

from typing import Any

from mmprolong_schemas import Recipe


class WontFit(RuntimeError):
    """The recipe's training step does not fit its GPUs' memory."""


def plan_setup(recipe: Recipe, gpu: str | None) -> Any | None:
    """The planner's setup of a recipe's LongPT stage on ``gpu``, or None when there is
    nothing to plan (a demo's tiny model, or no GPU named)."""
    if recipe.demo is not None or not gpu:
        return None
    from seqpar_train.planner import PlanSetup

    train = recipe.train
    return PlanSetup(
        model=recipe.init_model,
        gpus=train.parallel.world_size,
        gpus_per_node=train.parallel.gpus_per_node,
        gpu=gpu,
        seq_len=train.max_length,
        sp=train.parallel.sp,
        fsdp=train.parallel.fsdp,
        activation_checkpointing=train.activation_checkpointing,
        global_batch_tokens=train.global_batch_tokens,
        token_budget=train.token_budget,
    )


def describe(setup: Any) -> str:
    fsdp = setup.fsdp if setup.fsdp != -1 else setup.gpus // setup.sp
    return (
        f"SP {setup.sp} x FSDP {fsdp}, activation checkpointing "
        f"{'on' if setup.activation_checkpointing else 'off'}, CPU offload "
        f"{'on' if setup.cpu_offload else 'off'}"
    )


def check_recipe(recipe: Recipe, gpu: str | None, *, search: bool = True) -> tuple[Any, list[Any]]:
    """(the recipe's plan, plans of settings that fit when it does not), or (None, [])."""
    setup = plan_setup(recipe, gpu)
    if setup is None:
        return None, []
    from seqpar_train.planner import plan, search_setups

    result = plan(setup)
    alternatives = search_setups(setup) if search and result.fits is False else []
    return result, alternatives


def refusal(result: Any, alternatives: list[Any]) -> str:
    gib = 2**30
    s = result.setup
    text = (
        f"the recipe's training step needs about {result.memory.peak / gib:.1f} GiB per GPU "
        f"({describe(s)}, {s.seq_len} tokens), more than the "
        f"{(result.usable_bytes or 0) / gib:.1f} GiB usable on a {s.gpu} "
        f"({s.margin:.0%} kept free; an estimate by seqpar-train's planner)"
    )
    if alternatives:
        fits = "; ".join(
            f"{describe(a.setup)} ({a.memory.peak / gib:.1f} GiB)" for a in alternatives[:3]
        )
        return f"{text}. Settings that fit, fastest first: {fits}"
    return f"{text}. No SP / activation checkpointing setting fits: shorten max_length"


def ensure_fits(recipe: Recipe, gpu: str | None) -> Any | None:
    """Raise WontFit, naming settings that would fit, when the recipe's step does not fit."""
    result, alternatives = check_recipe(recipe, gpu)
    if result is not None and result.fits is False:
        raise WontFit(refusal(result, alternatives))
    return result
