"""The orchestration logic with fake stages: skip, resume, invalidation, bounds, locking."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from mmprolong.orchestrator import (
    MANIFEST,
    Pipeline,
    RunLock,
    Stage,
    StageContext,
    StageFailed,
    load_run_recipe,
    read_manifest,
)
from mmprolong_schemas import Recipe


class Killed(Exception):
    """Stands in for a kill in the middle of a stage."""


class FakeStage(Stage):
    """Writes ``items`` numbered files, one per unit of work, skipping those already there;
    can be told to die after a number of new items, like a killed process."""

    def __init__(self, name: str, key: str, items: int = 3):
        self.name = name
        self.key = key
        self.items = items
        self.calls = 0
        self.new_items = 0
        self.die_after: int | None = None

    def config(self, recipe: Recipe) -> dict[str, Any]:
        return {"value": _dig(recipe, self.key)}

    def run(self, ctx: StageContext) -> dict[str, int]:
        self.calls += 1
        for number in range(self.items):
            out = ctx.dir / f"item-{number}.txt"
            if out.exists():
                continue
            if self.die_after is not None and self.new_items >= self.die_after:
                raise Killed(f"{self.name} killed after {self.new_items} items")
            out.write_text(str(number))
            self.new_items += 1
        return {"items": self.items}

    def progress(self, ctx: StageContext) -> dict[str, int]:
        return {"items": len(list(ctx.dir.glob("item-*.txt")))}


def _dig(recipe: Recipe, dotted: str) -> object:
    value: Any = recipe.model_dump(mode="json")
    for part in dotted.split("."):
        value = value[part]
    return value


def _pipeline(run_dir: Path) -> tuple[Pipeline, dict[str, FakeStage]]:
    stages = {
        "pool": FakeStage("pool", "pool.min_pages"),
        "synth": FakeStage("synth", "synth.seed"),
        "train": FakeStage("train", "train.seed", items=5),
        "eval": FakeStage("eval", "eval.max_new_tokens"),
    }
    return Pipeline(list(stages.values()), run_dir), stages


def _states(pipeline: Pipeline, recipe: Recipe) -> dict[str, str]:
    return {plan.name: plan.state for plan in pipeline.plan(recipe)}


def test_first_run_does_everything_and_rerun_skips(tmp_path: Path) -> None:
    pipeline, stages = _pipeline(tmp_path)
    recipe = Recipe()
    assert set(_states(pipeline, recipe).values()) == {"pending"}
    pipeline.run(recipe, command=["test"])
    assert _states(pipeline, recipe) == dict.fromkeys(stages, "done")
    assert all(stage.calls == 1 for stage in stages.values())
    manifest = read_manifest(tmp_path / "train")
    assert manifest is not None
    assert manifest.status == "done"
    assert manifest.counts == {"items": 5}
    assert manifest.config["config"] == {"value": 0}
    assert load_run_recipe(tmp_path) == recipe

    pipeline.run(recipe, command=["test"])
    assert all(stage.calls == 1 for stage in stages.values())


def test_config_change_invalidates_that_stage_and_everything_after(tmp_path: Path) -> None:
    pipeline, stages = _pipeline(tmp_path)
    recipe = Recipe()
    pipeline.run(recipe, command=["test"])
    (tmp_path / "synth" / "leftover-from-old-config.txt").write_text("old")

    changed = recipe.model_copy(update={"synth": recipe.synth.model_copy(update={"seed": 7})})
    plans = {plan.name: plan for plan in pipeline.plan(changed)}
    assert plans["pool"].state == "done"
    assert plans["synth"].state == "stale"
    assert plans["synth"].reason == "its config changed"
    assert plans["train"].state == "stale"
    assert plans["train"].reason == "an earlier stage's config changed"
    assert plans["eval"].state == "stale"

    seen: list[list[str]] = []
    pipeline.run(changed, command=["test"], on_plan=lambda p: seen.append([x.state for x in p]))
    # The plan is shown before anything on disk changes.
    assert seen == [["done", "stale", "stale", "stale"]]
    assert [stages[name].calls for name in stages] == [1, 2, 2, 2]
    assert not (tmp_path / "synth" / "leftover-from-old-config.txt").exists()
    assert _states(pipeline, changed) == dict.fromkeys(stages, "done")


def test_changing_a_late_stage_leaves_earlier_ones_alone(tmp_path: Path) -> None:
    pipeline, stages = _pipeline(tmp_path)
    pipeline.run(Recipe(), command=["test"])
    changed = Recipe.model_validate({"eval": {"max_new_tokens": 16}})
    assert _states(pipeline, changed) == {
        "pool": "done",
        "synth": "done",
        "train": "done",
        "eval": "stale",
    }
    pipeline.run(changed, command=["test"])
    assert [stages[name].calls for name in stages] == [1, 1, 1, 2]


def test_killed_stage_resumes_without_redoing_earlier_work(tmp_path: Path) -> None:
    pipeline, stages = _pipeline(tmp_path)
    recipe = Recipe()
    stages["train"].die_after = 2
    with pytest.raises(StageFailed, match="train"):
        pipeline.run(recipe, command=["test"])
    plans = {plan.name: plan for plan in pipeline.plan(recipe)}
    assert plans["pool"].state == plans["synth"].state == "done"
    assert plans["train"].state == "partial"
    assert plans["train"].reason == "failed"
    assert plans["train"].counts == {"items": 2}
    assert plans["eval"].state == "pending"

    stages["train"].die_after = None
    pipeline.run(recipe, command=["test"])
    assert stages["pool"].calls == stages["synth"].calls == 1
    assert stages["train"].calls == 2
    # The two items written before the kill were kept, only the other three were made.
    assert stages["train"].new_items == 5
    assert _states(pipeline, recipe) == dict.fromkeys(stages, "done")


def test_a_hard_kill_leaves_a_running_manifest_that_counts_as_partial(tmp_path: Path) -> None:
    pipeline, _ = _pipeline(tmp_path)
    recipe = Recipe()
    pipeline.run(recipe, command=["test"], until="synth")
    manifest = read_manifest(tmp_path / "synth")
    assert manifest is not None
    # What kill -9 leaves behind: the manifest written at the start, never finished.
    running = manifest.model_copy(update={"status": "running", "finished_at": None})
    (tmp_path / "synth" / MANIFEST).write_text(running.model_dump_json())
    plans = {plan.name: plan for plan in pipeline.plan(recipe)}
    assert plans["synth"].state == "partial"
    assert plans["synth"].reason == "interrupted"


def test_until_and_from_bound_the_run(tmp_path: Path) -> None:
    pipeline, stages = _pipeline(tmp_path)
    recipe = Recipe()
    pipeline.run(recipe, command=["test"], until="synth")
    assert _states(pipeline, recipe) == {
        "pool": "done",
        "synth": "done",
        "train": "pending",
        "eval": "pending",
    }
    with pytest.raises(ValueError, match="upstream stage 'train' is pending"):
        pipeline.run(recipe, command=["test"], from_stage="eval")
    pipeline.run(recipe, command=["test"])
    pipeline.run(recipe, command=["test"], from_stage="train", until="train")
    assert [stages[name].calls for name in stages] == [1, 1, 2, 1]
    with pytest.raises(ValueError, match="unknown stage"):
        pipeline.plan(recipe, until="nope")
    with pytest.raises(ValueError, match="comes before"):
        pipeline.plan(recipe, from_stage="eval", until="pool")


def test_unreadable_manifest_counts_as_not_started(tmp_path: Path) -> None:
    pipeline, _ = _pipeline(tmp_path)
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / MANIFEST).write_text("{torn")
    assert _states(pipeline, Recipe())["pool"] == "pending"


def test_lock_refuses_a_live_owner_and_takes_over_a_dead_one(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    lock.write_text(str(os.getppid()))
    with pytest.raises(RuntimeError, match="in use"), RunLock(tmp_path):
        pass
    lock.write_text("999999999")
    with RunLock(tmp_path):
        assert lock.read_text() == str(os.getpid())
    assert not lock.exists()


def test_stage_names_must_be_unique(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unique"):
        Pipeline([FakeStage("a", "pool.min_pages"), FakeStage("a", "synth.seed")], tmp_path)


def test_manifest_records_upstream_hash(tmp_path: Path) -> None:
    pipeline, _ = _pipeline(tmp_path)
    recipe = Recipe()
    pipeline.run(recipe, command=["mmprolong", "run", "x.toml"])
    hashes = pipeline.hashes(recipe)
    synth = json.loads((tmp_path / "synth" / MANIFEST).read_text())
    assert synth["config"]["upstream"] == hashes[0]
    assert synth["config_hash"] == hashes[1]
    assert synth["command"] == ["mmprolong", "run", "x.toml"]


def test_a_stale_stage_with_checkpoints_or_predictions_needs_restart(tmp_path: Path) -> None:
    pipeline, stages = _pipeline(tmp_path)
    recipe = Recipe()
    pipeline.run(recipe, command=["test"])
    stage_dirs = [tmp_path / name for name in stages]
    (stage_dirs[-1] / "checkpoints" / "step-00000002").mkdir(parents=True)
    (stage_dirs[-1] / "base" / "predictions.jsonl").parent.mkdir()
    (stage_dirs[-1] / "base" / "predictions.jsonl").write_text("{}\n")
    changed = recipe.model_copy(update={"synth": recipe.synth.model_copy(update={"seed": 7})})
    with pytest.raises(ValueError, match=r"holds checkpoints, 1 prediction file.*--restart"):
        pipeline.run(changed, command=["test"])
    assert (stage_dirs[-1] / "checkpoints" / "step-00000002").is_dir()  # nothing was removed
    pipeline.run(changed, command=["test"], restart=True)
    assert not (stage_dirs[-1] / "checkpoints").exists()


def test_the_train_hash_ignores_cluster_layout_and_cadence() -> None:
    from mmprolong.stages.train import TrainStage

    recipe = Recipe()
    train = recipe.train
    moved = recipe.model_copy(
        update={
            "train": train.model_copy(
                update={
                    "parallel": train.parallel.model_copy(update={"nodes": 4, "sp": 4}),
                    "attention": "sdpa",
                    "activation_checkpointing": False,
                    "checkpoint_every": 7,
                }
            )
        }
    )
    stage = TrainStage()
    assert stage.config(moved) == stage.config(recipe)
    for change in ({"seed": 1}, {"token_budget": 2**30}, {"max_length": 65536}):
        other = recipe.model_copy(update={"train": train.model_copy(update=change)})
        assert stage.config(other) != stage.config(recipe)


def test_from_does_not_delete_predictions_without_restart(tmp_path: Path) -> None:
    pipeline, stages = _pipeline(tmp_path)
    recipe = Recipe()
    pipeline.run(recipe, command=["test"])
    predictions = tmp_path / "eval" / "base" / "predictions.jsonl"
    predictions.parent.mkdir()
    predictions.write_text("{}\n")
    with pytest.raises(
        ValueError, match=r"--from train redoes stage 'eval'.*1 prediction.*--restart"
    ):
        pipeline.run(recipe, command=["test"], from_stage="train")
    assert predictions.exists()
    assert [stages[name].calls for name in stages] == [1, 1, 1, 1]  # nothing ran either
    pipeline.run(recipe, command=["test"], from_stage="train", restart=True)
    assert not predictions.exists()
    assert [stages[name].calls for name in stages] == [1, 1, 2, 2]


def test_a_stage_with_failures_is_shown_done_with_its_failure_count(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    import mmprolong.stages
    from mmprolong.cli import app

    pipeline, stages = _pipeline(tmp_path)
    # What the eval stage records per model (runner errors, judge failures, skipped records).
    counts = {"items": 4, "base_failures": 2, "trained_failures": 1}
    stages["eval"].run = lambda ctx: counts  # type: ignore[method-assign]
    pipeline.run(Recipe(), command=["test"])
    plans = {plan.name: plan for plan in pipeline.plan(Recipe())}
    assert (plans["eval"].state, plans["eval"].reason) == ("done", "3 failures")
    assert (plans["train"].state, plans["train"].reason) == ("done", "")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mmprolong.stages, "default_stages", lambda *_: list(stages.values()))
        status = CliRunner().invoke(app, ["status", str(tmp_path)])
    assert status.exit_code == 0, status.output
    assert "done (3 failures)" in status.output
