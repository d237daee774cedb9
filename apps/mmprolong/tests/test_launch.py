"""Multi-node launch files, Slurm variables, the orchestrator's launched stages, and the SFT
stage's data selection (fast, no training)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mmprolong.demo_data import demo_short_records, write_demo_short_data
from mmprolong.launch import (
    LAUNCH_DIR,
    node_commands,
    slurm_to_torch_env,
    write_launch_files,
)
from mmprolong.orchestrator import (
    AWAITING_LAUNCH,
    Pipeline,
    Stage,
    StageContext,
    StageLaunched,
    read_manifest,
)
from mmprolong.recipes import apply_overrides, load_recipe
from mmprolong.stages import SFT_STAGE_NAMES, STAGE_NAMES, default_stages
from mmprolong.stages.sft import GENERATED, _data_settings, _settings, build_sft_data, select_budget
from mmprolong.sweeps import get_sweep
from mmprolong_schemas import ImagePart, Recipe, Task
from qasynth import load_short_samples


class Step(Stage):
    def __init__(self, name: str, launched: bool = False):
        self.name = name
        self.launched = launched
        self.runs = 0

    def config(self, recipe: Recipe) -> dict[str, Any]:
        return {"seed": recipe.train.seed}

    def run(self, ctx: StageContext) -> dict[str, int]:
        if self.launched:
            raise StageLaunched(self.name, "start the job", [ctx.dir / "launch" / "node.sh"])
        self.runs += 1
        return {"runs": self.runs}


def test_a_launched_stage_stops_the_run_and_waits_for_its_job(tmp_path: Path) -> None:
    first, train, after = Step("first"), Step("train", launched=True), Step("after")
    pipeline = Pipeline([first, train, after], tmp_path)
    recipe = Recipe()
    with pytest.raises(StageLaunched):
        pipeline.run(recipe)
    plans = {plan.name: plan for plan in pipeline.plan(recipe)}
    assert plans["first"].state == "done"
    assert (plans["train"].state, plans["train"].reason) == (
        "partial",
        "waiting for its launched job",
    )
    assert after.runs == 0

    # What rank 0 of the job does: the stage alone, with its manifest.
    train.launched = False
    told: list[bool] = []
    assert pipeline.run_one(recipe, "train", on_start=told.append) == {"runs": 1}
    assert told == [True]
    manifest = read_manifest(tmp_path / "train")
    assert manifest is not None and manifest.status == "done"
    assert AWAITING_LAUNCH not in manifest.counts
    assert pipeline.run_one(recipe, "train", on_start=told.append) is None  # already done
    assert told == [True, False]

    pipeline.run(recipe)  # the next `run` continues after it
    assert (first.runs, train.runs, after.runs) == (1, 1, 1)


def test_run_one_needs_its_upstream_stages_done(tmp_path: Path) -> None:
    pipeline = Pipeline([Step("first"), Step("train")], tmp_path)
    with pytest.raises(ValueError, match="upstream stage 'first' is pending"):
        pipeline.run_one(Recipe(), "train")


def _two_node_recipe() -> Recipe:
    return apply_overrides(
        load_recipe("demo-tiny"),
        {"train.parallel": {"sp": 2, "fsdp": 1, "gpus_per_node": 1, "nodes": 2}},
        "test",
    )


def test_launch_files(tmp_path: Path) -> None:
    recipe = _two_node_recipe()
    run_dir = tmp_path / "my run"  # a space: every path in the scripts is quoted
    paths = write_launch_files(run_dir, "train", recipe)
    assert {path.name for path in paths} == {"node.sh", "sbatch.sh", "commands.txt"}
    folder = run_dir / "train" / LAUNCH_DIR
    node = (folder / "node.sh").read_text()
    for part in ("--nnodes=2", "--nproc-per-node=1", "launch-train", "--stage train"):
        assert part in node.replace(" \\\n  ", " ")
    assert f"'{run_dir.resolve()}'" in node
    sbatch = (folder / "sbatch.sh").read_text()
    assert "#SBATCH --nodes=2" in sbatch and "#SBATCH --gpus-per-node=1" in sbatch
    for script in ("node.sh", "sbatch.sh"):
        assert subprocess.run(["bash", "-n", str(folder / script)], check=False).returncode == 0
    # Without MASTER_ADDR the node script refuses to start, naming what is missing.
    missing = subprocess.run(
        ["bash", str(folder / "node.sh"), "0"], capture_output=True, text=True, check=False
    )
    assert missing.returncode != 0 and "MASTER_ADDR" in missing.stderr
    commands = node_commands(run_dir, "train", 2)
    assert len(commands) == 2 and commands[1].endswith(" 1")


def test_slurm_variables_become_torch_ones() -> None:
    slurm = {
        "SLURM_PROCID": "5",
        "SLURM_NTASKS": "8",
        "SLURM_LOCALID": "1",
        "SLURM_NTASKS_PER_NODE": "4(x2)",
        "MASTER_ADDR": "node-a",
    }
    assert slurm_to_torch_env(slurm) == {
        "RANK": "5",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "4",
        "MASTER_ADDR": "node-a",
        "MASTER_PORT": "29500",
    }
    assert slurm_to_torch_env(slurm | {"RANK": "0"}) == {}  # torchrun already set them
    assert slurm_to_torch_env({}) == {}
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        slurm_to_torch_env({k: v for k, v in slurm.items() if k != "MASTER_ADDR"})


def test_the_sft_stage_is_in_the_pipeline_only_with_extra_sft() -> None:
    demo = load_recipe("demo-tiny")
    assert demo.sft is not None and demo.sft_stage is None  # settings, but no stage
    assert tuple(stage.name for stage in default_stages(demo)) == STAGE_NAMES
    runs = {run.name: recipe for run, recipe in get_sweep("ablation-tasks").recipes()}
    for name in ("ocr-full-sft", "ocr-needle-sft"):
        stages = tuple(stage.name for stage in default_stages(runs[name]))
        assert stages == SFT_STAGE_NAMES, name
        assert runs[name].sft_stage is not None
        assert runs[name].sft_stage.token_budget == 5 * 2**30  # the paper's 5B
    for name in ("ocr-full", "ocr-needle", "extract-single"):
        assert tuple(stage.name for stage in default_stages(runs[name])) == STAGE_NAMES
    assert runs["ocr-needle-sft"].synth.tasks == [Task.OCR_NEEDLE]


def test_budget_selection() -> None:
    tokens = [100, 200, 300, 400]
    chosen = select_budget(tokens, 450, seed=0, repeat=False)
    assert sum(tokens[i] for i in chosen) >= 450
    assert sum(tokens[i] for i in chosen[:-1]) < 450  # stops at the budget
    assert select_budget(tokens, 450, seed=0, repeat=False) == chosen  # seeded
    short = select_budget(tokens, 5000, seed=0, repeat=False)
    assert sorted(short) == [0, 1, 2, 3]  # a real run keeps what there is
    repeated = select_budget(tokens, 5000, seed=0, repeat=True)
    assert sum(tokens[i] for i in repeated) >= 5000  # a demo repeats it
    assert select_budget([], 10, seed=0, repeat=True) == []


def test_demo_short_data_reads_as_llava_onevision(tmp_path: Path) -> None:
    path = write_demo_short_data(tmp_path / "short.json", 40, seed=3)
    assert json.loads(path.read_text()) == demo_short_records(40, seed=3)
    samples = list(load_short_samples(path, tmp_path))
    assert len(samples) == 40
    assert all(sample.task is Task.SHORT and sample.target for sample in samples)
    assert any(len(sample.messages) > 1 for sample in samples)  # some have two turns
    pictures = [s for s in samples if any(isinstance(p, ImagePart) for p in s.messages[0].content)]
    assert len(pictures) == 20


def test_sft_rows_carry_the_short_data_pictures(tmp_path: Path) -> None:
    """The SFT shard's picture samples reach seqpar-train with their image root: its rows hold
    their image tokens and pixels."""
    from longctx_rope.tiny import tiny_config
    from seqpar_train import TrainerConfig
    from seqpar_train.data.mixture import MixtureRows

    recipe = apply_overrides(load_recipe("demo-tiny"), {"train.extra_sft": True}, "test")
    ctx = StageContext(tmp_path, recipe, "sft")
    summary = build_sft_data(ctx, _settings(recipe))
    assert summary["image_root"] == str((ctx.dir / GENERATED).resolve())
    config = TrainerConfig.from_recipe(
        recipe,
        output_dir=str(tmp_path / "out"),
        model={"tiny": "qwen2.5-vl", "rope": None},
        data=_data_settings(ctx, summary["image_root"]),
    )
    rows = MixtureRows.from_config(config, tiny_config("qwen2.5-vl"))
    built = [rows.row(index) for index in range(4)]
    assert not any(reasons for _, reasons in built)
    row = next(row for row, _ in built if row.image_grid_thw is not None)
    assert row.pixel_values is not None and row.pixel_values.shape[0] == int(
        row.image_grid_thw.prod(-1).sum()
    )


def test_sft_data_is_reused_also_from_a_summary_written_before_the_completion_record(
    tmp_path: Path,
) -> None:
    recipe = apply_overrides(load_recipe("demo-tiny"), {"train.extra_sft": True}, "test")
    ctx = StageContext(tmp_path, recipe, "sft")
    first = build_sft_data(ctx, _settings(recipe))
    shard = ctx.dir / "data" / first["shards"][0]
    written = shard.stat().st_mtime_ns
    assert build_sft_data(ctx, _settings(recipe)) == first
    # The old summary: "key" and the facts, no "outputs" list; its shards still count.
    summary_path = ctx.dir / "data" / "summary.json"
    old = json.loads(summary_path.read_text())
    old.pop("outputs")
    summary_path.write_text(json.dumps(old, indent=2))
    assert build_sft_data(ctx, _settings(recipe)) == old
    assert shard.stat().st_mtime_ns == written
    shard.unlink()
    assert build_sft_data(ctx, _settings(recipe))["shards"] == first["shards"]
    assert shard.exists()


def test_launch_train_refuses_what_it_cannot_join(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mmprolong.cli import app
    from mmprolong.orchestrator import save_recipe

    runner = CliRunner()
    result = runner.invoke(app, ["launch-train", str(tmp_path)])
    assert result.exit_code == 2 and "not a run directory" in result.output
    save_recipe(tmp_path, _two_node_recipe())
    result = runner.invoke(app, ["launch-train", str(tmp_path), "--stage", "eval"])
    assert result.exit_code == 2 and "not launched" in result.output
    result = runner.invoke(app, ["launch-train", str(tmp_path), "--stage", "sft"])
    assert result.exit_code == 2 and "unknown stage 'sft'" in result.output
    # Alone (no torchrun, no srun), a two-node stage is not joined but explained.
    result = runner.invoke(app, ["launch-train", str(tmp_path)])
    assert result.exit_code == 2 and "torchrun or srun" in result.output


def test_short_image_paths_resolve_under_one_folder(tmp_path: Path) -> None:
    from mmprolong.stages.train import image_root

    assert image_root([]) is None
    assert image_root([str(tmp_path), str(tmp_path / ".")]) == str(tmp_path.resolve())
    with pytest.raises(ValueError, match="several folders"):
        image_root([str(tmp_path / "a"), str(tmp_path / "b")])


def test_launched_ranks_bind_one_device_each_before_rank_zero_speaks() -> None:
    """launch-train's group and on_rank_zero's broadcast on a fake 4-GPU node that enforces
    NCCL's one-device-per-rank rule (seqpar_train.contract_fakes.FakeNcclNode)."""
    from mmprolong.launch import _broadcast, _join_group
    from mmprolong.stages._training import on_rank_zero
    from seqpar_train.contract_fakes import FakeNcclNode

    node = FakeNcclNode(gpus=4)
    results = []
    for rank in range(4):
        with node.process(rank, world=4):
            _join_group(timeout_s=60)
            results.append(on_rank_zero(lambda: {"plan": 7}))
            _broadcast("run")
    assert results == [{"plan": 7}] * 4
    assert node.communicator == {0: 0, 1: 1, 2: 2, 3: 3}
    assert all(node.bound_before_first_collective(rank) for rank in range(4))
    assert set(node.backends.values()) == {"nccl"}
