"""End to end on CPU: the OCR-needle + SFT run of the ablation-tasks sweep on the demo base.

The run goes pool -> ... -> train -> sft -> eval -> report; the SFT stage builds its data
from generated LLaVA-OneVision-style short data, continues from LongPT's export with a fresh
schedule and keeps its rope; eval scores the SFT export; a rerun skips everything; changing
the SFT settings invalidates sft and what follows it, not LongPT.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmprolong.cli import app
from mmprolong.orchestrator import Pipeline, read_manifest
from mmprolong.recipes import apply_overrides, load_recipe, recipe_to_toml
from mmprolong.stages import SFT_STAGE_NAMES, default_stages
from mmprolong.sweeps import get_sweep
from mmprolong_schemas import Recipe, Task

pytestmark = pytest.mark.slow

runner = CliRunner()
DEMO = load_recipe("demo-tiny")

TINY = {
    "mixture.token_budget": "16K",
    "train.token_budget": "8K",  # 4 steps
    "train.checkpoint_every": 2,
    "train.parallel": {"sp": 1, "fsdp": 1, "gpus_per_node": 1, "nodes": 1},
    "sft.token_budget": "6K",  # 4 steps: 6K tokens trained in partly filled 2K rows
    "sft.checkpoint_every": 2,
    "eval.lengths": ["1.5K"],
    "eval.max_new_tokens": 4,
}


def tiny_sft_recipe() -> Recipe:
    """The sweep's own ocr-needle-sft recipe, with fewer steps on one process."""
    runs = {run.name: recipe for run, recipe in get_sweep("ablation-tasks").recipes(DEMO)}
    recipe = runs["ocr-needle-sft"]
    assert recipe.sft_stage is not None and recipe.synth.tasks == [Task.OCR_NEEDLE]
    return apply_overrides(recipe, TINY, "test")


def _rope_base(checkpoint: Path) -> float:
    config = json.loads((checkpoint / "config.json").read_text())
    text = config.get("text_config", config)
    parameters = text.get("rope_parameters") or config.get("rope_parameters") or {}
    return float(parameters.get("rope_theta") or text.get("rope_theta") or config["rope_theta"])


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("sft")
    recipe_file = work / "ocr-needle-sft.toml"
    recipe_file.write_text(recipe_to_toml(tiny_sft_recipe()))
    result = runner.invoke(app, ["run", str(recipe_file), "--run-dir", str(work / "run")])
    assert result.exit_code == 0, result.output
    return recipe_file, work / "run"


def test_the_sft_stage_runs_between_train_and_eval(sft_run: tuple[Path, Path]) -> None:
    _, run_dir = sft_run
    for stage in SFT_STAGE_NAMES:
        manifest = read_manifest(run_dir / stage)
        assert manifest is not None and manifest.status == "done", stage
    sft = read_manifest(run_dir / "sft")
    train = read_manifest(run_dir / "train")
    assert sft is not None and train is not None
    assert train.counts["steps"] == 4  # LongPT on OCR-needle samples only
    mixture = json.loads((run_dir / "mix" / "mixture.json").read_text())
    assert set(mixture["tasks"]) == {"ocr-needle"}
    assert sft.counts["steps"] == 4 and sft.counts["samples"] > 0
    assert sft.counts["tokens"] >= 6 * 1024
    assert sft.counts["resumed_from_step"] == 0  # a fresh optimizer, not LongPT's state
    # The SFT data is the generated short set, token-budgeted into a mixture shard.
    summary = json.loads((run_dir / "sft" / "data" / "summary.json").read_text())
    assert summary["tokens"] == sft.counts["tokens"] and summary["shards"]
    # Its own schedule from its peak down to its final lr, not the end of LongPT's.
    metrics = [json.loads(line) for line in (run_dir / "sft" / "metrics.jsonl").open()]
    assert [record["step"] for record in metrics] == [1, 2, 3, 4]
    assert metrics[0]["lr"] == pytest.approx(1e-3) and metrics[-1]["lr"] == pytest.approx(1e-4)
    # Same rope as LongPT's export, which already carries the extended base.
    assert _rope_base(run_dir / "sft" / "hf") == _rope_base(run_dir / "train" / "hf") == 4e6
    # Both exports in both forms: transformers 5 reads rope_parameters, 4.x and vLLM
    # rope_theta + rope_scaling{mrope_section} (longctx_rope's loader views restate theirs).
    from longctx_rope.loaders import transformers4_view, vllm_view

    for stage in ("train", "sft"):
        config = json.loads((run_dir / stage / "hf" / "config.json").read_text())
        for view in (transformers4_view(config), vllm_view(config)):
            assert view.theta == 4e6 and view.mrope, (stage, view)


def test_eval_scores_the_sft_export_and_the_report_says_so(sft_run: tuple[Path, Path]) -> None:
    _, run_dir = sft_run
    scores = json.loads((run_dir / "eval" / "trained" / "scores.json").read_text())
    assert scores["model"] == "ablation-tasks-ocr-needle-sft-trained+sft"
    report = (run_dir / "report" / "report.md").read_text()
    assert "Checkpoints evaluated:" in report
    assert str(run_dir / "sft" / "hf") in report
    assert "SFT after LongPT: 4 logged steps" in report


def test_rerun_skips_and_an_sft_change_redoes_sft_and_after(sft_run: tuple[Path, Path]) -> None:
    recipe_file, run_dir = sft_run
    finished = {s: read_manifest(run_dir / s).finished_at for s in SFT_STAGE_NAMES}  # type: ignore[union-attr]
    result = runner.invoke(app, ["run", str(recipe_file), "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert {s: read_manifest(run_dir / s).finished_at for s in SFT_STAGE_NAMES} == finished  # type: ignore[union-attr]

    status = runner.invoke(app, ["status", str(run_dir)])
    assert status.exit_code == 0 and "sft" in status.output

    changed = apply_overrides(tiny_sft_recipe(), {"sft.token_budget": "8K"}, "test")
    plans = Pipeline(default_stages(changed), run_dir).plan(changed)
    states = {plan.name: plan.state for plan in plans}
    assert states == {
        **dict.fromkeys(("pool", "synth", "mix", "rope", "train"), "done"),
        **dict.fromkeys(("sft", "eval", "report"), "stale"),
    }
    # Dropping the SFT stage puts eval back on LongPT's export: eval and report are redone.
    without = apply_overrides(tiny_sft_recipe(), {"train.extra_sft": False}, "test")
    plans = Pipeline(default_stages(without), run_dir).plan(without)
    assert [plan.name for plan in plans if plan.state == "stale"] == ["eval", "report"]
