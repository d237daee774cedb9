"""Will the recipe's training fit its GPUs? seqpar-train's planner, before training starts.

``mmprolong doctor --recipe R`` shows the verdict; the train stage refuses a recipe whose
step will not fit (naming settings that would) before any GPU time is spent. The planner
runs the real step under FakeTensorMode on this CPU: figures are estimates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmprolong_runtime import config_hash
from mmprolong_runtime.finished import finish, read_finished
from mmprolong_schemas import Recipe

PLAN_CACHE = "memory-plan.json"
"""The planner's answer for the train stage, kept in its folder under its inputs' hash: a
completion record (``mmprolong_runtime.finished``) whose facts are the plans. One written
before that convention (``{"key", "plans"}``, no ``outputs``) is read the same way."""


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
        cpu_offload=train.parallel.cpu_offload,
        global_batch_tokens=train.global_batch_tokens,
        token_budget=train.token_budget,
    )


def describe(setup: Any) -> str:
    return (
        f"SP {setup.sp} x FSDP {setup.fsdp_size}, activation checkpointing "
        f"{'on' if setup.activation_checkpointing else 'off'}, CPU offload "
        f"{'on' if setup.cpu_offload else 'off'}"
    )


def recipe_settings(setup: Any) -> str:
    """The recipe lines that choose ``setup``'s layout."""
    return (
        f"train.parallel.sp = {setup.sp}, train.parallel.fsdp = {setup.fsdp_size}, "
        f"train.activation_checkpointing = {str(setup.activation_checkpointing).lower()}, "
        f"train.parallel.cpu_offload = {str(setup.cpu_offload).lower()}"
    )


def _alternative(result: Any) -> str:
    gib = 2**30
    memory = result.memory
    host = f", {memory.host / gib:.1f} GiB host memory per GPU" if memory.host else ""
    settings = recipe_settings(result.setup)
    return f"{describe(result.setup)} ({memory.peak / gib:.1f} GiB{host}; {settings})"


def check_recipe(
    recipe: Recipe, gpu: str | None, *, search: bool = True, cache_dir: Path | None = None
) -> tuple[Any, list[Any]]:
    """(the recipe's plan, plans of settings that fit when it does not), or (None, []).
    With ``cache_dir`` the answer is kept there under the hash of the planner's inputs
    (``seqpar_train.planner.plan_inputs_key``): a rerun of the same setup plans nothing."""
    setup = plan_setup(recipe, gpu)
    if setup is None:
        return None, []
    from seqpar_train.planner import Plan, plan, plan_inputs_key, search_setups

    key = config_hash({"inputs": plan_inputs_key(setup), "search": search})
    cache = cache_dir / PLAN_CACHE if cache_dir is not None else None
    kept = read_finished(cache, key) if cache is not None else None
    if kept is not None:
        try:
            plans = [Plan.model_validate(p) for p in kept["plans"]]
            return plans[0], plans[1:]
        except (ValueError, KeyError, TypeError, IndexError):
            pass  # plans the planner no longer reads are planned again and overwritten
    result = plan(setup)
    alternatives = search_setups(setup) if search and result.fits is False else []
    if cache is not None:
        dumped = [p.model_dump(mode="json") for p in (result, *alternatives)]
        finish(cache, key, plans=dumped)
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
        fits = "; ".join(_alternative(a) for a in alternatives[:3])
        return f"{text}. Settings that fit, fastest first: {fits}"
    return (
        f"{text}. No SP / activation checkpointing / CPU offload setting fits: shorten max_length"
    )


def ensure_fits(recipe: Recipe, gpu: str | None, *, cache_dir: Path | None = None) -> Any | None:
    """Raise WontFit, naming settings that would fit, when the recipe's step does not fit
    (the plan kept in ``cache_dir``, see ``check_recipe``)."""
    result, alternatives = check_recipe(recipe, gpu, cache_dir=cache_dir)
    if result is not None and result.fits is False:
        raise WontFit(refusal(result, alternatives))
    return result
