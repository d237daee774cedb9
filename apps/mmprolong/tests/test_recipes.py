"""Shipped recipes validate and say what the paper says; sweeps write the expected grid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmprolong.paper import paper_tables
from mmprolong.recipes import (
    apply_overrides,
    load_recipe,
    parse_recipe,
    recipe_to_toml,
    shipped_recipes,
)
from mmprolong.sweeps import SWEEPS, get_sweep, write_sweep
from mmprolong_schemas import ModelFamily, Recipe, SchemaError, Task
from mmprolong_schemas.units import B, K, M


def test_every_shipped_recipe_validates_and_round_trips() -> None:
    shipped = shipped_recipes()
    assert {"mmprolong-qwen2.5-vl-7b", "qwen3-vl-8b", "demo-tiny"} <= set(shipped)
    for name, text in shipped.items():
        recipe = parse_recipe(text, name)
        assert recipe.name == name
        assert recipe.description
        assert parse_recipe(recipe_to_toml(recipe), name) == recipe


def test_final_recipe_is_the_papers_table_6() -> None:
    recipe = load_recipe("mmprolong-qwen2.5-vl-7b")
    assert recipe.init_model == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert recipe.mixture.task_ratios == {
        Task.EXTRACT_SINGLE: 0.4,
        Task.EXTRACT_MULTI: 0.4,
        Task.REASONING: 0.2,
    }
    assert recipe.mixture.short_share == 0
    assert recipe.mixture.doc_pages == (32, 50)
    assert (recipe.rope.original_base, recipe.rope.base) == (1e6, 4e6)
    assert recipe.train.max_length == 131072
    assert recipe.train.token_budget == 5 * B
    assert recipe.train.global_batch_tokens == 4 * M
    assert recipe.train.sequences_per_batch == 32
    assert recipe.train.steps == 1280
    assert recipe.train.optimizer.betas == (0.9, 0.95)
    assert recipe.train.optimizer.weight_decay == 0.1
    assert (recipe.train.schedule.peak_lr, recipe.train.schedule.final_lr) == (1e-5, 1e-6)
    assert recipe.train.parallel.sp == 2
    assert recipe.train.parallel.fsdp == 4
    assert recipe.eval.lengths == [64 * K, 128 * K, 256 * K, 512 * K]  # Tables 4 and 5
    assert recipe.eval.prompt_format == "lvlm-judge-v1" and recipe.eval.subset == "mmlb"


def test_qwen3_recipe_uses_its_family_resize_factor() -> None:
    recipe = load_recipe("qwen3-vl-8b.toml")
    assert recipe.family is ModelFamily.QWEN3_VL
    assert recipe.vision.factor == 32
    assert (recipe.vision.min_pixels, recipe.vision.max_pixels) == (65536, 16777216)
    # A qwen3-vl recipe that leaves [vision] out estimates with Qwen3-VL's own limits.
    bare = parse_recipe('name = "q3"\nfamily = "qwen3-vl"\n', "q3")
    assert bare.vision == recipe.vision


def test_demo_recipe_is_self_contained_and_small() -> None:
    recipe = load_recipe("demo-tiny")
    assert recipe.demo is not None
    assert recipe.demo.tiny_model
    assert recipe.train.parallel.sp == 2
    assert recipe.train.parallel.world_size == 2
    assert recipe.synth.teacher == "rules"
    assert (recipe.eval.runner, recipe.eval.judge) == ("transformers", "rules")
    assert len(recipe.eval.lengths) == 2
    assert 10 <= recipe.train.steps <= 100


def test_load_recipe_from_path_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\n[rope]\nbase = 8e6\n')
    assert load_recipe(path).rope.base == 8e6
    path.write_text('name = "mine"\n[rope]\nbsae = 8e6\n')
    with pytest.raises(SchemaError, match=r"rope\.bsae: is not a known field"):
        load_recipe(path)
    path.write_text("name = [")
    with pytest.raises(SchemaError, match="not valid TOML"):
        load_recipe(path)
    with pytest.raises(FileNotFoundError, match="shipped: "):
        load_recipe("no-such-recipe")


def test_overrides_are_validated() -> None:
    recipe = apply_overrides(Recipe(), {"rope.base": 2e6, "train.parallel.sp": 4}, "test")
    assert recipe.rope.base == 2e6
    assert recipe.train.parallel.sp == 4
    with pytest.raises(SchemaError, match="task ratios add up"):
        apply_overrides(Recipe(), {"mixture.task_ratios": {"reasoning": 0.5}}, "test")
    with pytest.raises(SchemaError, match="not a section"):
        apply_overrides(Recipe(), {"name.sub": 1}, "test")


EXPECTED_RUNS = {
    "ablation-tasks": [
        "extract-single",
        "extract-multi",
        "reasoning",
        "ocr-full",
        "ocr-full-sft",
        "ocr-needle",
        "ocr-needle-sft",
    ],
    "ablation-length": [
        f"{task}-{dist}"
        for task in ("extract-single", "extract-multi", "reasoning")
        for dist in ("pool-native", "long-biased")
    ],
    "ablation-ratio": ["0-10", "2-8", "4-6", "6-4", "8-2", "10-0"],
    "ablation-short-data": ["short-0", "short-20", "short-40", "short-60", "short-80"],
    "ablation-mrope-base": [
        f"{task}-{base}"
        for task in ("extract-single", "extract-multi", "reasoning")
        for base in ("2e6", "4e6", "8e6")
    ],
}


def test_sweeps_cover_the_papers_ablations() -> None:
    assert {
        name: [run.name for run in sweep.runs] for name, sweep in SWEEPS.items()
    } == EXPECTED_RUNS
    tables = paper_tables()  # the copy shipped in the wheel
    for sweep in SWEEPS.values():
        for run in sweep.runs:
            assert run.paper_row is not None
            table, row = run.paper_row
            assert row in tables[table], (sweep.name, run.name)


def test_sweep_writes_the_expected_grid(tmp_path: Path) -> None:
    paths = write_sweep(get_sweep("ablation-ratio"), tmp_path)
    assert [path.name for path in paths] == [
        f"{run}.toml" for run in EXPECTED_RUNS["ablation-ratio"]
    ]
    ratios = {path.stem: load_recipe(path).mixture.task_ratios for path in paths}
    assert ratios["8-2"] == {
        Task.EXTRACT_SINGLE: 0.4,
        Task.EXTRACT_MULTI: 0.4,
        Task.REASONING: 0.2,
    }
    assert ratios["0-10"] == {Task.REASONING: 1.0}
    assert ratios["10-0"] == {Task.EXTRACT_SINGLE: 0.5, Task.EXTRACT_MULTI: 0.5}
    assert load_recipe(tmp_path / "0-10.toml").synth.tasks == [Task.REASONING]
    index = json.loads((tmp_path / "sweep.json").read_text())
    assert index["sweep"] == "ablation-ratio"
    assert [run["paper_row"] for run in index["runs"]][4] == [
        "table2_extraction_reasoning_ratio",
        "8:2",
    ]


def test_other_sweeps_change_only_their_axis(tmp_path: Path) -> None:
    final = load_recipe("mmprolong-qwen2.5-vl-7b")
    bases = {
        run.name: recipe.rope.base for run, recipe in get_sweep("ablation-mrope-base").recipes()
    }
    assert bases["reasoning-8e6"] == 8e6
    assert bases["extract-multi-2e6"] == 2e6
    shares = [
        recipe.mixture.short_share for _, recipe in get_sweep("ablation-short-data").recipes()
    ]
    assert shares == [0.0, 0.2, 0.4, 0.6, 0.8]
    by_name = {run.name: recipe for run, recipe in get_sweep("ablation-tasks").recipes()}
    assert by_name["ocr-needle-sft"].train.extra_sft
    assert not by_name["ocr-needle"].train.extra_sft
    assert by_name["ocr-full"].mixture.task_ratios == {Task.OCR_FULL: 1.0}
    lengths = {run.name: r.mixture for run, r in get_sweep("ablation-length").recipes()}
    assert lengths["reasoning-long-biased"].doc_pages == (50, 100)
    assert lengths["reasoning-pool-native"].doc_pages == (32, 50)
    # Everything not on a sweep's axis stays as in the final recipe.
    for _, recipe in get_sweep("ablation-short-data").recipes():
        assert recipe.train == final.train
        assert recipe.rope == final.rope


def test_sweep_onto_another_base() -> None:
    demo = load_recipe("demo-tiny")
    recipes = get_sweep("ablation-mrope-base").recipes(demo)
    assert all(recipe.demo == demo.demo for _, recipe in recipes)
    assert all(recipe.train == demo.train for _, recipe in recipes)
