"""The real stages' wiring without running the packages: config slices, missing APIs, views."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mmprolong.orchestrator import Pipeline, StageContext, StageUnavailable
from mmprolong.recipes import apply_overrides, load_recipe
from mmprolong.stages import STAGE_NAMES, default_stages
from mmprolong.stages._require import require
from mmprolong.stages._training import step_of
from mmprolong.stages.report import sweep_row
from mmprolong.stages.synth import PoolView
from mmprolong_schemas import Document, Page


def test_stage_order() -> None:
    assert tuple(stage.name for stage in default_stages()) == STAGE_NAMES


@pytest.mark.parametrize(
    ("override", "first_stale"),
    [
        ({"pool.max_pages": 300}, "pool"),
        ({"demo.documents": 20}, "pool"),
        ({"synth.seed": 3}, "synth"),
        ({"vision.dpi": 48.0}, "synth"),
        ({"mixture.token_budget": "32K"}, "mix"),
        ({"rope.base": 8e6, "rope.method": "set-base"}, "rope"),
        ({"train.schedule.peak_lr": 5e-4}, "train"),
        ({"train.row_fill": "cut"}, "train"),
        ({"eval.max_new_tokens": 4}, "eval"),
    ],
)
def test_a_change_invalidates_its_stage_and_all_later_ones(
    tmp_path: Path, override: dict[str, Any], first_stale: str
) -> None:
    pipeline = Pipeline(default_stages(), tmp_path)
    recipe = load_recipe("demo-tiny")
    before = pipeline.hashes(recipe)
    after = pipeline.hashes(apply_overrides(recipe, override, "test"))
    changed = [
        name for name, old, new in zip(STAGE_NAMES, before, after, strict=True) if old != new
    ]
    assert changed == list(STAGE_NAMES[STAGE_NAMES.index(first_stale) :])


def test_row_min_keep_counts_only_when_rows_are_cut(tmp_path: Path) -> None:
    pipeline = Pipeline(default_stages(), tmp_path)
    whole = load_recipe("demo-tiny")
    assert pipeline.hashes(whole) == pipeline.hashes(
        apply_overrides(whole, {"train.row_min_keep": 0.7}, "test")
    )
    cut = apply_overrides(whole, {"train.row_fill": "cut"}, "test")
    assert pipeline.hashes(cut) != pipeline.hashes(
        apply_overrides(cut, {"train.row_min_keep": 0.7}, "test")
    )


def test_stage_configs_are_json() -> None:
    recipe = apply_overrides(load_recipe("mmprolong-qwen2.5-vl-7b"), {"train.extra_sft": True}, "t")
    stages = default_stages(recipe)
    assert "sft" in [stage.name for stage in stages]
    for stage in stages:
        json.dumps(stage.config(recipe))


def test_a_missing_api_names_the_stage_and_the_function() -> None:
    with pytest.raises(StageUnavailable, match=r"stage 'train' needs json\.no_such_function"):
        require("train", "json", "dumps", "no_such_function")
    with pytest.raises(StageUnavailable, match="no_such_module"):
        require("eval", "no_such_module", "x")
    assert require("pool", "json", "dumps") == [json.dumps]


def _required_apis() -> list[tuple[str, str, tuple[str, ...]]]:
    """(stage file, module, names) of every ``require(stage, "module", "name", ...)`` call
    with literal arguments in the app's stages."""
    import ast

    import mmprolong.stages

    calls = []
    for source in sorted(Path(mmprolong.stages.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "require"
                and all(isinstance(a, ast.Constant) for a in node.args[1:])
            ):
                module, *names = (a.value for a in node.args[1:])  # type: ignore[attr-defined]
                calls.append((source.name, module, tuple(names)))
    return calls


def test_every_api_a_stage_requires_is_there() -> None:
    """The stages import package APIs by name at run time, so a name a package stops
    exporting would only fail when that stage runs; here every one is looked up."""
    calls = _required_apis()
    assert len(calls) > 20 and {module.split(".")[0] for _, module, _ in calls} >= {
        "docpool", "qasynth", "longctx_rope", "seqpar_train", "lvlm_judge"
    }  # fmt: skip
    for source, module, names in calls:
        try:
            require(source, module, *names)
        except StageUnavailable as error:
            if "cannot be imported" not in str(error):  # an optional extra not installed here
                raise


class _Pool:
    def __init__(self, docs: list[Document]):
        self.docs = {doc.doc_id: doc for doc in docs}

    def documents(self) -> Any:
        return iter(self.docs.values())

    def get(self, doc_id: str) -> Document:
        return self.docs[doc_id]

    def render(self, doc_id: str, pages: Any, dpi: float = 144.0) -> list[Any]:
        return [f"{doc_id}:{page}@{dpi}" for page in pages]


def _doc(letter: str) -> Document:
    return Document(
        doc_id=letter * 64,
        source_path=f"{letter}.pdf",
        file_size=1,
        num_pages=1,
        pages=[Page(number=1, width=612, height=792)],
    )


def test_pool_view_shows_only_its_documents() -> None:
    pool = _Pool([_doc("a"), _doc("b"), _doc("c")])
    view = PoolView(pool, ["a" * 64, "c" * 64])
    assert [doc.doc_id[0] for doc in view.documents()] == ["a", "c"]
    assert view.get("a" * 64).source_path == "a.pdf"
    with pytest.raises(KeyError, match="not part of this selection"):
        view.get("b" * 64)
    assert view.render("c" * 64, [1], 24.0) == [f"{'c' * 64}:1@24.0"]


def test_sweep_runs_are_recognised_for_the_report() -> None:
    recipe = load_recipe("demo-tiny")
    assert sweep_row(recipe) is None
    named = apply_overrides(recipe, {"name": "ablation-ratio-8-2"}, "test")
    assert sweep_row(named) == ("table2_extraction_reasoning_ratio", "8:2")


def test_checkpoint_step_from_its_folder_name() -> None:
    assert step_of(Path("runs/x/checkpoints/step-00000016")) == 16
    assert step_of(None) == 0


def test_a_real_run_without_pdfs_says_how_to_give_them(tmp_path: Path) -> None:
    recipe = load_recipe("mmprolong-qwen2.5-vl-7b")
    pool = default_stages()[0]
    with pytest.raises(ValueError, match=r"set pool\.inputs or pass --pdfs"):
        pool.run(StageContext(tmp_path, recipe, "pool"))


def _context(tmp_path: Path, **overrides: Any) -> Any:
    from types import SimpleNamespace

    recipe = apply_overrides(load_recipe("mmprolong-qwen2.5-vl-7b"), overrides, "test")
    return SimpleNamespace(recipe=recipe, dir=tmp_path, log=lambda message: None)


def test_the_openai_teacher_runs_inside_a_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    from mmprolong.stages.synth import _teacher
    from qasynth.teachers.openai import OpenAITeacher

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    recipe = apply_overrides(
        load_recipe("mmprolong-qwen2.5-vl-7b"),
        {
            "synth.teacher": "openai",
            "synth.teacher_model": "Qwen/Qwen2.5-VL-72B-Instruct",
            "synth.teacher_base_url": "http://127.0.0.1:8000/v1",
        },
        "test",
    )
    teacher = _teacher(StageContext(Path("run"), recipe, "synth"), view=None)
    assert isinstance(teacher, OpenAITeacher)
    assert teacher.base_url == "http://127.0.0.1:8000/v1"
    assert teacher.dpi == recipe.vision.dpi
    missing = apply_overrides(recipe, {"synth.teacher_base_url": None}, "test")
    with pytest.raises(ValueError, match="needs a base URL"):
        _teacher(StageContext(Path("run"), missing, "synth"), view=None)


def test_the_llm_judge_runs_inside_a_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lvlm_judge import LLMJudge
    from mmprolong.stages.evaluate import _llm_judge

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert _llm_judge(_context(tmp_path, **{"eval.judge": "rules"})) is None
    ctx = _context(
        tmp_path,
        **{"eval.judge": "llm", "eval.judge_model": "judge", "eval.judge_base_url": "http://j/v1"},
    )
    judge = _llm_judge(ctx)
    assert isinstance(judge, LLMJudge)
    assert judge.settings.base_url == "http://j/v1"
    assert (tmp_path / "judge-cache.sqlite").exists()
    with pytest.raises(ValueError, match="needs a judge model"):
        _llm_judge(_context(tmp_path, **{"eval.judge": "llm", "eval.judge_base_url": "http://j"}))


def test_a_served_model_runner_is_refused_with_the_command_to_use(tmp_path: Path) -> None:
    from mmprolong.stages.evaluate import _runner

    ctx = _context(tmp_path, **{"eval.runner": "openai"})
    with pytest.raises(ValueError, match="mmprolong eval run --runner openai"):
        _runner(ctx, tmp_path, "m", resolver=None, items=[])


def test_short_data_share_needs_short_data_files(tmp_path: Path) -> None:
    from mmprolong.stages.synth import SynthStage

    ctx = _context(tmp_path, **{"mixture.short_share": 0.4})
    with pytest.raises(ValueError, match=r"short_share is 0.4 but synth.short_data lists no"):
        SynthStage().run(ctx)


def test_the_executor_is_checked_and_local_runs_in_process() -> None:
    from mmprolong.orchestrator import Execution

    assert Execution().steps() is None and not Execution().on_ray
    with pytest.raises(ValueError, match="local or ray"):
        Execution("slurm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs the ray executor"):
        Execution("local", "127.0.0.1:6379")


def test_eval_sources_reach_256k_and_512k_from_a_recipe(tmp_path: Path) -> None:
    """A recipe's data_dir as MMLongBench downloads it (mmlb_data/ beside mmlb_image/, per its
    README) plus VLMEvalKit's MMLongBench_256K/512K.tsv: the eval stage loads 128K-512K."""
    import json

    from PIL import Image

    from lvlm_judge import LoadReport, load_data
    from lvlm_judge.testing import make_doc_benchmark
    from mmprolong.stages.evaluate import benchmark_sources
    from mmprolong_schemas.units import K

    make_doc_benchmark(tmp_path, datasets=("longdocurl",), lengths=(128,), docs=1)
    # Rows in the layout of VLMEvalKit's scripts/build_mmlongbench_tsv.py (make_tsv_row).
    columns = ["index", "question_id", "question", "answer", "image_path", "mmlb_subset",
               "task", "source_dataset", "question_type", "tags", "extra_info"]  # fmt: skip
    for length in ("256K", "512K"):
        page = f"{length}/doc-x/doc-x_page0.jpg"
        (tmp_path / "mmlb_image" / page).parent.mkdir(parents=True)
        Image.new("RGB", (56, 56), "white").save(tmp_path / "mmlb_image" / page)
        extra = {"doc_name": "doc-x", "question": "How many?", "answer": 3,
                 "answer_format": "Integer", "ans_page_list": [0]}  # fmt: skip
        row = ["0", "longdocurl_1", "prompt", "3", json.dumps(["doc-x/doc-x_page0.jpg"]),
               f"documentQA_{length}", "documentQA", "longdocurl", "open", "[]",
               json.dumps(extra)]  # fmt: skip
        (tmp_path / f"MMLongBench_{length}.tsv").write_text(
            "\t".join(columns) + "\n" + "\t".join(row) + "\n"
        )
    lengths = [128 * K, 256 * K, 512 * K]
    sources, image_root = benchmark_sources(tmp_path, lengths)
    assert image_root == tmp_path / "mmlb_image"
    items = load_data(sources, image_root=image_root, lengths=lengths, datasets=["longdocurl"],
                      report=LoadReport())  # fmt: skip
    assert sorted({item.length for item in items}) == lengths


def test_validation_cadence_keeps_the_train_hash(tmp_path: Path) -> None:
    # The held-out loss is reporting only: changing when or on how much it runs resumes
    # training instead of restarting it.
    pipeline = Pipeline(default_stages(), tmp_path)
    recipe = load_recipe("demo-tiny")
    for override in (
        {"train.eval_every": 3},
        {"train.eval_every": None},
        {"train.eval_samples": 5},
    ):
        assert pipeline.hashes(apply_overrides(recipe, override, "test")) == pipeline.hashes(recipe)


def test_validation_scores_the_held_out_samples_synth_assembled(tmp_path: Path) -> None:
    from mmprolong.stages.train import validation_settings

    logged: list[str] = []
    recipe = load_recipe("demo-tiny")
    ctx = StageContext(tmp_path, recipe, "train", logged.append)
    assert validation_settings(ctx) == {}
    assert "no validation loss" in logged[-1]
    samples = tmp_path / "synth" / "heldout" / "samples"
    samples.mkdir(parents=True)
    (samples / "summary.json").write_text(json.dumps({"samples": {"vqa": 0}}))
    assert validation_settings(ctx) == {}  # held-out documents gave no sample
    (samples / "summary.json").write_text(json.dumps({"samples": {"vqa": 6}}))
    settings = validation_settings(ctx)
    assert settings == {"every": 8, "mixture": str(samples), "samples": 32}
    off = apply_overrides(recipe, {"train.eval_every": None}, "test")
    assert validation_settings(StageContext(tmp_path, off, "train", logged.append)) == {}
    # The settings are seqpar-train's validation section, as the train stage passes them.
    seqpar = pytest.importorskip("seqpar_train")
    config = seqpar.TrainerConfig.from_recipe(
        recipe,
        data={"mixture": str(tmp_path), "pool": str(tmp_path)},
        validation=settings,
    )
    assert config.validation.every == 8 and config.validation.mixture == str(samples)


class _WrongAnswers:
    """A stand-in runner: the same wrong answer to every item (no model behind it)."""

    max_new_tokens = 8

    def __init__(self, model_name: str):
        self.model_name = model_name

    def generate(self, requests: Any) -> Any:
        from mmprolong_schemas import Prediction

        for request in requests:
            yield Prediction(
                item_id=request.item_id,
                model=self.model_name,
                output="Answer: zzz",
                prompt_format=request.prompt.prompt_format,
            )


def test_a_judge_only_change_rescores_the_kept_predictions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from docpool.pool import MARKER
    from lvlm_judge.testing import make_doc_benchmark
    from mmprolong.stages import evaluate
    from mmprolong.stages.evaluate import EvalStage
    from mmprolong.stages.report import ReportStage
    from mmprolong_runtime.testing import ChatServer
    from mmprolong_schemas import ScoreTable

    data = make_doc_benchmark(tmp_path / "mmlb", datasets=("longdocurl",), docs=1, pages=2)
    run_dir = tmp_path / "run"
    (run_dir / "pool" / "pool").mkdir(parents=True)
    (run_dir / "pool" / "pool" / MARKER).write_text("{}")  # an empty pool: the items are MMLB's
    made: list[str] = []

    def runner(ctx: Any, path: Path, name: str, *args: Any) -> _WrongAnswers:
        made.append(name)
        return _WrongAnswers(name)

    monkeypatch.setattr(evaluate, "_runner", runner)
    monkeypatch.setattr(evaluate, "base_checkpoint", lambda ctx: tmp_path / "base")
    monkeypatch.setattr(evaluate, "final_checkpoint", lambda ctx: (tmp_path / "ft", "after"))
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    rules = apply_overrides(
        load_recipe("mmprolong-qwen2.5-vl-7b"),
        {"eval.data_dir": str(data), "eval.lengths": ["8K"], "eval.datasets": ["longdocurl"],
         "eval.judge": "rules", "eval.subset": "all"},
        "test",
    )  # fmt: skip
    eval_stage = EvalStage()
    pipeline = Pipeline([eval_stage, ReportStage([eval_stage])], run_dir)
    pipeline.run(rules, command=["test"])
    assert len(made) == 2
    predictions = {
        label: (run_dir / "eval" / label / "predictions.jsonl") for label in ("base", "trained")
    }
    before = {label: (p.read_bytes(), p.stat().st_mtime_ns) for label, p in predictions.items()}
    table = ScoreTable.model_validate_json((run_dir / "eval" / "base" / "scores.json").read_text())
    assert table.judge == "rules" and table.macro() == 0.0

    server = ChatServer().start()
    server.reply = lambda body, seen: (
        '[Rationale]: x\n[JSON]: {"student_answer_count": 1, "covered_count": 1}'
        if "student_answer_count" in body["messages"][0]["content"]
        else "[Scoring Rationale]: right.\n[Score]: 1 points"
    )
    try:
        llm = apply_overrides(
            rules,
            {"eval.judge": "llm", "eval.judge_model": "judge", "eval.judge_base_url": server.url},
            "test",
        )
        assert pipeline.hashes(llm) == pipeline.hashes(rules)  # nothing is stale or deleted
        plans = {plan.name: plan for plan in pipeline.plan(llm)}
        assert plans["eval"].state == "partial" and "judge changed" in plans["eval"].reason
        assert plans["report"].state == "partial"
        pipeline.run(llm, command=["test"])
        assert server.count > 0
    finally:
        server.stop()
    assert len(made) == 2  # no model was loaded again
    after = {label: (p.read_bytes(), p.stat().st_mtime_ns) for label, p in predictions.items()}
    assert after == before
    for label in ("base", "trained"):
        path = run_dir / "eval" / label / "scores.json"
        table = ScoreTable.model_validate_json(path.read_text())
        assert table.judge == "llm" and (table.macro() or 0.0) > 0.0
    assert {plan.state for plan in pipeline.plan(llm)} == {"done"}


class _IdPool:
    """A pool as the held-out choice and the synth split see it: doc_ids, documents."""

    def __init__(self, doc_ids: list[str]):
        self.ids = doc_ids

    def doc_ids(self) -> list[str]:
        return sorted(self.ids)

    def documents(self) -> Any:
        return iter(())


@pytest.mark.parametrize("name", ["mmprolong-qwen2.5-vl-7b", "qwen3-vl-8b"])
def test_a_shipped_recipe_holds_documents_out_of_training_for_validation(
    tmp_path: Path, name: str
) -> None:
    from mmprolong.stages.pool import HELD_OUT_FILE, held_out_choice
    from mmprolong.stages.synth import document_split

    recipe = load_recipe(name)
    wanted = recipe.pool.held_out_documents
    assert wanted > 0 and recipe.train.eval_every is not None
    doc_ids = [f"{n:064x}" for n in range(wanted * 3, 0, -1)]
    held_out = held_out_choice(recipe, _IdPool(doc_ids), [])
    assert held_out == sorted(doc_ids)[:wanted]  # the first by doc_id, whatever the order
    # The pool stage records them; the synth stage trains on the rest only.
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / HELD_OUT_FILE).write_text(json.dumps({"doc_ids": held_out}))
    training, evaluated = document_split(StageContext(tmp_path, recipe, "synth"), _IdPool(doc_ids))
    assert evaluated == held_out
    assert len(training) == 2 * wanted and not set(training) & set(held_out)
    with pytest.raises(ValueError, match=r"pool\.held_out_documents is \d+ but the pool holds"):
        held_out_choice(recipe, _IdPool(doc_ids[:wanted]), [])


def test_holding_no_documents_out_keeps_the_pool_hash_of_older_runs(tmp_path: Path) -> None:
    pipeline = Pipeline(default_stages(), tmp_path)
    recipe = load_recipe("mmprolong-qwen2.5-vl-7b")
    none = apply_overrides(recipe, {"pool.held_out_documents": 0}, "test")
    assert "held_out_documents" not in default_stages()[0].config(none)["pool"]
    assert pipeline.hashes(none)[0] != pipeline.hashes(recipe)[0]


def _old_eval_manifest(recipe: Any) -> dict[str, Any]:
    """manifest.json as the eval stage wrote it before commit 376b79a took the judge settings
    out of its hash: the stage config held the whole [eval] section."""
    from mmprolong_runtime import config_hash

    config = {
        "stage": "eval",
        "config": {
            "eval": recipe.eval.model_dump(mode="json"),
            "vision": recipe.vision.model_dump(mode="json"),
        },
        "upstream": None,
    }
    return {
        "tool": "mmprolong.eval",
        "command": ["mmprolong", "run", recipe.name],
        "config": config,
        "config_hash": config_hash(config),
        "package_versions": {},
        "python": "3.12.3",
        "git_sha": None,
        "started_at": "2026-12-01T10:00:00Z",
        "finished_at": "2026-12-01T11:00:00Z",
        "status": "done",
        "counts": {"items": 3},
    }


def test_an_eval_folder_from_the_old_hash_rule_is_adopted_not_stale(tmp_path: Path) -> None:
    from mmprolong.orchestrator import read_manifest
    from mmprolong.stages.evaluate import JUDGE_RECORD, EvalStage, judge_hash

    recipe = apply_overrides(
        load_recipe("mmprolong-qwen2.5-vl-7b"),
        {"eval.judge": "llm", "eval.judge_model": "judge-a", "eval.judge_base_url": "http://j/v1"},
        "test",
    )
    folder = tmp_path / "eval"
    (folder / "base").mkdir(parents=True)
    (folder / "base" / "predictions.jsonl").write_text('{"item_id": "x"}\n')
    (folder / "manifest.json").write_text(json.dumps(_old_eval_manifest(recipe)))
    pipeline = Pipeline([EvalStage()], tmp_path)
    assert read_manifest(folder).config_hash != pipeline.hashes(recipe)[0]  # the old rule

    (plan,) = pipeline.plan(recipe)
    assert (plan.state, plan.legacy) == ("done", True)  # same judge: nothing to redo
    assert "earlier hash rule" in plan.reason
    other_judge = apply_overrides(recipe, {"eval.judge_model": "judge-b"}, "test")
    (rescore,) = pipeline.plan(other_judge)
    assert rescore.state == "partial" and "judge changed" in rescore.reason
    other_eval = apply_overrides(recipe, {"eval.max_new_tokens": 7}, "test")
    assert pipeline.plan(other_eval)[0].state == "stale"  # a real change is still one

    pipeline.run(recipe, command=["test"])  # adopts: today's hash, the judge recorded
    manifest = read_manifest(folder)
    assert manifest.config_hash == pipeline.hashes(recipe)[0] and manifest.counts == {"items": 3}
    assert "judge" not in manifest.config["config"]["eval"]
    assert json.loads((folder / JUDGE_RECORD).read_text())["hash"] == judge_hash(recipe)
    assert (folder / "base" / "predictions.jsonl").exists()
    (plan,) = pipeline.plan(recipe)
    assert (plan.state, plan.legacy) == ("done", False)
