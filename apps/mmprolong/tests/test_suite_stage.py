"""The suite stage: the shipped recipe names the paper's set, a missing lmms-eval stops the stage
with what to install, and suite results reach the report beside the paper's rows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lvlm_judge.lmms import LmmsEvalError, SuiteScore
from lvlm_judge.suite import SuiteReport
from mmprolong import load_recipe
from mmprolong.orchestrator import StageContext
from mmprolong.report import ReportData, write_report
from mmprolong.stages import default_stages
from mmprolong.stages.suite import SuiteStage


def test_shipped_recipe_runs_the_papers_set_after_eval() -> None:
    recipe = load_recipe("mmprolong-qwen2.5-vl-7b")
    assert recipe.eval.suite == ["video", "short", "niah", "vtc"]
    names = [stage.name for stage in default_stages(recipe)]
    assert names[names.index("eval") + 1] == "suite"
    assert "suite" not in [stage.name for stage in default_stages(load_recipe("demo-tiny"))]


def test_missing_lmms_eval_names_what_to_install(tmp_path: Path) -> None:
    recipe = load_recipe("mmprolong-qwen2.5-vl-7b")
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    recipe = recipe.model_copy(
        update={
            "init_model": str(base),
            "eval": recipe.eval.model_copy(
                update={"suite": ["video"], "lmms_python": sys.executable}
            ),
        }
    )
    trained = tmp_path / "run" / "train" / "hf"
    trained.mkdir(parents=True)
    (trained / "config.json").write_text("{}")
    ctx = StageContext(tmp_path / "run", recipe, "suite", log=lambda _: None)
    with pytest.raises(LmmsEvalError, match="pip install lmms-eval"):
        SuiteStage().run(ctx)


def test_suite_scores_reach_the_report_beside_the_paper(tmp_path: Path) -> None:
    recipe = load_recipe("mmprolong-qwen2.5-vl-7b")
    run = tmp_path / "run"
    ctx = StageContext(run, recipe, "suite", log=lambda _: None)
    for label, value in (("base", 61.0), ("trained", 66.5)):
        score = SuiteScore(
            group="video", task="videomme", metric="videomme_perception_score", value=value,
            score=value, n=2700, source="lmms-eval 0.7.3 (qwen2_5_vl)",
            paper_table="table19_long_video", paper_column="Video-MME",
        )  # fmt: skip
        vtc = SuiteScore(
            group="vtc", task="Retrieval", metric="containsAll", value=value, score=value, n=2,
            source="lvlm-judge VTCBench-Wild", protocol="VTCBench's containsAll, restated",
            paper_table="table18_vtcbench_wild", paper_column="VTC.Ret",
        )  # fmt: skip
        SuiteReport(
            checkpoint=label, groups=["video", "vtc"], scores=[score, vtc],
            failures={"video/mlvu_dev": "data set not reachable"},
        ).write(ctx.dir / label)  # fmt: skip
    data = ReportData(recipe=recipe, run_dir=run)
    SuiteStage().contribute(ctx, data)
    assert data.generalization["trained"] == {"Video-MME": 66.5, "VTC.Ret": 66.5}
    text = write_report(data, tmp_path / "report").read_text(encoding="utf-8")
    section = text.split("## Generalization")[1]
    assert "| trained | 66.50 | 66.50 |" in section
    assert "| paper: MMProLong | 67.78 | 91.75 |" in section  # tables 19 and 18
    assert "video/mlvu_dev produced no score: data set not reachable" in text
    # What produced each score, column by column.
    assert (
        "suite, trained: Video-MME by lmms-eval 0.7.3 (qwen2_5_vl); videomme_perception_score, "
        "n=2700" in text
    )
    assert (
        "suite, base: VTC.Ret by lvlm-judge VTCBench-Wild; containsAll, n=2; VTCBench's "
        "containsAll, restated" in text
    )


def test_vtc_memory_gets_the_recipes_judge(tmp_path: Path) -> None:
    recipe = load_recipe("mmprolong-qwen2.5-vl-7b")
    assert "judge_model" in SuiteStage().config(recipe)["eval"]  # the Memory judge counts
    no_vtc = recipe.model_copy(update={"eval": recipe.eval.model_copy(update={"suite": ["video"]})})
    assert "judge_model" not in SuiteStage().config(no_vtc)["eval"]

    instructions = tmp_path / "instructions.json"
    instructions.write_text('{"Retrieval": "r", "Reasoning": "q", "Memory": "m"}')
    for folder in (tmp_path / "base", tmp_path / "run" / "train" / "hf"):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
    evaluation = recipe.eval.model_copy(update={
        "suite": ["vtc"], "vtc_data": str(tmp_path / "absent"),
        "vtc_instructions": str(instructions), "judge_model": "judge",
        "judge_base_url": "http://127.0.0.1:9/v1",
    })  # fmt: skip
    recipe = recipe.model_copy(update={"init_model": str(tmp_path / "base"), "eval": evaluation})
    ctx = StageContext(tmp_path / "run", recipe, "suite", log=lambda _: None)
    SuiteStage().run(ctx)
    report = SuiteReport.model_validate_json((ctx.dir / "trained" / "suite.json").read_text())
    # Memory reached its data (here absent): the judge was given, so it was not skipped.
    assert "hf download" in report.failures["vtc/Memory"]
