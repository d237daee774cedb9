"""The app asks seqpar-train's planner before training and refuses what will not fit."""

from __future__ import annotations

import pytest

from mmprolong.memory_plan import WontFit, ensure_fits, plan_setup
from mmprolong.recipes import apply_overrides, load_recipe


def _plan(setup, peak_gib: float, usable_gib: float):
    from seqpar_train.planner import MemoryBreakdown, Plan

    gib = 2**30
    memory = MemoryBreakdown(
        parameters=0,
        gradients=0,
        optimizer_state=0,
        text_activations=int(peak_gib * gib),
        vit_activations=0,
        loss_chunk=0,
        comm_buffers=0,
        inputs=0,
        peak=int(peak_gib * gib),
    )
    return Plan(
        setup=setup,
        memory=memory,
        capacity_bytes=int(usable_gib / 0.9 * gib),
        usable_bytes=int(usable_gib * gib),
        fits=peak_gib <= usable_gib,
        images_per_row=52,
        step_seconds=None,
        steps=1,
        hours_to_budget=None,
        gpu_hours=None,
    )


def test_the_recipes_setup_is_what_the_planner_runs():
    recipe = load_recipe("mmprolong-qwen2.5-vl-7b")
    setup = plan_setup(recipe, "NVIDIA H20")
    assert setup is not None
    assert (setup.model, setup.gpus, setup.sp, setup.fsdp, setup.seq_len) == (
        "Qwen/Qwen2.5-VL-7B-Instruct",
        recipe.train.parallel.world_size,
        2,
        4,
        131072,
    )
    # A demo's tiny model and a machine without a GPU name have nothing to plan.
    assert plan_setup(load_recipe("demo-tiny"), "NVIDIA H20") is None
    assert plan_setup(recipe, None) is None


def test_a_recipe_that_will_not_fit_is_refused_naming_settings_that_would(monkeypatch):
    import seqpar_train.planner as planner

    recipe = load_recipe("mmprolong-qwen2.5-vl-7b")

    def fake_plan(setup, **_):
        return _plan(setup, 70.0 if setup.sp == 2 else 40.0, 64.0)

    def fake_search(setup, **_):
        better = setup.model_copy(update={"sp": 4, "fsdp": -1})
        return [fake_plan(better)]

    monkeypatch.setattr(planner, "plan", fake_plan)
    monkeypatch.setattr(planner, "search_setups", fake_search)
    with pytest.raises(WontFit, match=r"70\.0 GiB.*SP 4 x FSDP 16.*40\.0 GiB"):
        ensure_fits(recipe, "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(planner, "plan", lambda setup, **_: _plan(setup, 50.0, 64.0))
    assert ensure_fits(recipe, "NVIDIA H100 80GB HBM3").fits is True


def test_the_refusal_names_offload_settings_as_recipe_lines(monkeypatch):
    import seqpar_train.planner as planner

    recipe = load_recipe("mmprolong-qwen2.5-vl-7b")

    def fake_search(setup, **_):
        offloaded = _plan(setup.model_copy(update={"cpu_offload": True}), 60.0, 64.0)
        offloaded.memory.host = 20 * 2**30
        return [offloaded]

    monkeypatch.setattr(planner, "plan", lambda setup, **_: _plan(setup, 70.0, 64.0))
    monkeypatch.setattr(planner, "search_setups", fake_search)
    with pytest.raises(WontFit) as refused:
        ensure_fits(recipe, "NVIDIA H100 80GB HBM3")
    message = str(refused.value)
    assert "CPU offload on (60.0 GiB, 20.0 GiB host memory per GPU" in message
    assert "train.parallel.cpu_offload = true" in message
    # The recipe can ask for it, and the planner then plans with it.
    offload = apply_overrides(recipe, {"train.parallel.cpu_offload": True}, "test")
    assert plan_setup(offload, "NVIDIA H100 80GB HBM3").cpu_offload is True


def _counting_plans(monkeypatch) -> tuple[list[int], object]:
    """The SP of each setup the planner plans, and the fake plan function that records it."""
    import seqpar_train.planner as planner

    planned: list[int] = []

    def counting_plan(setup, **_):
        planned.append(setup.sp)
        return _plan(setup, 50.0, 64.0)

    monkeypatch.setattr(planner, "plan", counting_plan)
    return planned, counting_plan


def test_the_plan_is_kept_in_the_run_folder_under_its_inputs_hash(monkeypatch, tmp_path):
    import seqpar_train.planner as planner
    from mmprolong.memory_plan import PLAN_CACHE

    recipe = load_recipe("mmprolong-qwen2.5-vl-7b")
    planned, counting_plan = _counting_plans(monkeypatch)
    first = ensure_fits(recipe, "NVIDIA H100 80GB HBM3", cache_dir=tmp_path)
    again = ensure_fits(recipe, "NVIDIA H100 80GB HBM3", cache_dir=tmp_path)
    assert planned == [2] and again == first  # the second answer came from the folder
    other = apply_overrides(recipe, {"train.parallel.sp": 4, "train.parallel.fsdp": 2}, "t")
    ensure_fits(other, "NVIDIA H100 80GB HBM3", cache_dir=tmp_path)
    assert planned == [2, 4]  # other inputs, another plan
    (tmp_path / PLAN_CACHE).write_text("{not json")
    ensure_fits(other, "NVIDIA H100 80GB HBM3", cache_dir=tmp_path)
    assert planned == [2, 4, 4]  # an unreadable cache is planned again
    # A refusal is kept too: the relaunch refuses without planning.
    monkeypatch.setattr(planner, "plan", lambda setup, **_: _plan(setup, 70.0, 64.0))
    monkeypatch.setattr(planner, "search_setups", lambda setup, **_: [])
    with pytest.raises(WontFit):
        ensure_fits(recipe, "NVIDIA H200", cache_dir=tmp_path)
    monkeypatch.setattr(planner, "plan", counting_plan)
    with pytest.raises(WontFit):
        ensure_fits(recipe, "NVIDIA H200", cache_dir=tmp_path)
    assert planned == [2, 4, 4]


def test_a_plan_kept_before_the_finished_convention_is_still_read(monkeypatch, tmp_path):
    # Earlier releases wrote {"key", "plans"} without the completion record's "outputs".
    import json

    from mmprolong.memory_plan import PLAN_CACHE

    recipe = load_recipe("mmprolong-qwen2.5-vl-7b")
    planned, _ = _counting_plans(monkeypatch)
    first = ensure_fits(recipe, "NVIDIA H100 80GB HBM3", cache_dir=tmp_path)
    record = json.loads((tmp_path / PLAN_CACHE).read_text())
    assert record["outputs"] == []  # a completion record covering no file
    old = {"key": record["key"], "plans": record["plans"]}
    (tmp_path / PLAN_CACHE).write_text(json.dumps(old))
    assert ensure_fits(recipe, "NVIDIA H100 80GB HBM3", cache_dir=tmp_path) == first
    assert planned == [2]
