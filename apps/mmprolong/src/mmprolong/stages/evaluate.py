"""Stage eval: the base and the trained model on the recipe's evaluation set (lvlm-judge).

"trained" is the last training stage's export: LongPT's (``train/hf``), or the SFT stage's
(``sft/hf``) in a recipe with ``train.extra_sft``.

The set is the benchmark folder of ``eval.data_dir`` (MMLongBench), or, for a recipe that
generates its corpus, the QA pairs of the held-out documents, padded with pages of the other
held-out documents to each of ``eval.lengths`` (lvlm-judge's Extender). Each model gets its
own lvlm-judge run folder, so a rerun resumes item by item.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from mmprolong.orchestrator import StageContext, read_manifest
from mmprolong.report import ReportData
from mmprolong.stages._require import require
from mmprolong.stages.pool import pool_path
from mmprolong.stages.report import Contributor
from mmprolong.stages.rope import base_checkpoint
from mmprolong.stages.sft import sft_checkpoint
from mmprolong.stages.synth import HELD_OUT_RUN, SynthStage
from mmprolong.stages.train import trained_checkpoint
from mmprolong_runtime import RunManifest, config_hash
from mmprolong_schemas import EvalItem, Recipe, ScoreTable
from mmprolong_schemas.io import atomic_path
from mmprolong_schemas.units import K

HELD_OUT_DATASET = "held-out"
MODELS = ("base", "trained")
SCORES = "scores.json"
ANSWER_NLL = "answer-nll.json"
COMPARISON_FIGURE = "score_vs_length.png"
JUDGE_RECORD = "judge.json"
"""The hash of the judge settings the stage's scores came from."""
JUDGE_FIELDS = ("judge", "judge_model", "judge_base_url")
"""Settings that change only how predictions are scored: left out of the stage's hash, so a
change rescores the kept predictions instead of deleting them."""
MMLB_JSONL_MAX = 128 * K
"""MMLongBench's JSONL release stops at 128K; longer items come from VLMEvalKit's TSVs."""


def benchmark_sources(data_dir: Path, lengths: list[int]) -> tuple[list[Path], Path]:
    """MMLongBench as downloaded under ``data_dir`` (its JSONL for 8K-128K) plus VLMEvalKit's
    MMLongBench_<n>K.tsv beside it for longer lengths, and the image folder of both."""
    (data_folder, image_folder_for) = require(
        "eval", "lvlm_judge.datasets", "data_folder", "image_folder_for"
    )
    folder = data_folder(data_dir)
    sources: list[Path] = [data_dir]
    for length in lengths:
        if length > MMLB_JSONL_MAX:
            name = f"MMLongBench_{length // K}K.tsv"
            found = [d / name for d in (data_dir, folder.parent) if (d / name).is_file()]
            sources.append(found[0] if found else data_dir / name)
    return sources, image_folder_for(folder) or folder


def _items(ctx: StageContext, resolver: Any, tokenizer_dir: Path, report: Any) -> list[EvalItem]:
    recipe = ctx.recipe
    (load_data,) = require("eval", "lvlm_judge", "load_data")
    if recipe.demo is None:
        if recipe.eval.data_dir is None:
            raise ValueError(
                "eval.data_dir is not set: point it at MMLongBench as downloaded "
                "(mmlb_data/ beside mmlb_image/)"
            )
        sources, image_root = benchmark_sources(Path(recipe.eval.data_dir), recipe.eval.lengths)
        items: list[EvalItem] = load_data(
            sources,
            image_root=image_root,
            lengths=recipe.eval.lengths,
            datasets=recipe.eval.datasets,
            spec=recipe.vision,
            subset=recipe.eval.subset,
            report=report,
        )
        return items
    (load_heldout,) = require("eval", "lvlm_judge.datasets", "load_heldout")
    (extender_class,) = require("eval", "lvlm_judge", "Extender")
    pairs = ctx.stage_dir(SynthStage.name) / HELD_OUT_RUN / "qa" / "pairs.jsonl"
    if not pairs.exists():
        raise FileNotFoundError(f"no held-out QA pairs at {pairs}; rerun the synth stage")
    items = load_heldout(pairs, resolver.pool, dataset=HELD_OUT_DATASET, spec=recipe.vision)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)

    def text_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    extender = extender_class(resolver, text_tokens, seed=recipe.synth.seed)
    extended: list[EvalItem] = extender.extend_all(items, recipe.eval.lengths)
    return extended


def _runner(
    ctx: StageContext,
    model_path: Path,
    name: str,
    resolver: Any,
    items: list[EvalItem],
    templates: Any = None,
) -> Any:
    """The recipe's runner for one checkpoint: transformers or vllm. An openai runner would
    need each checkpoint served first, which is outside a pipeline run."""
    recipe = ctx.recipe
    if recipe.eval.runner == "openai":
        raise ValueError(
            "eval.runner 'openai' evaluates a served model: serve each checkpoint and run "
            "`mmprolong eval run --runner openai`; inside `mmprolong run` use transformers or vllm"
        )
    import torch

    (make_runner,) = require("eval", "lvlm_judge", "make_runner")
    return make_runner(
        recipe.eval.runner,
        model_path,
        resolver,
        items,
        max_new_tokens=recipe.eval.max_new_tokens,
        model_name=name,
        device_map="auto" if torch.cuda.is_available() else "cpu",
        log=ctx.log,
        templates=templates if templates is not None else _templates(recipe),
    )


def final_checkpoint(ctx: StageContext) -> tuple[Path, str]:
    """The checkpoint evaluated as "trained" and how it came about, in words."""
    if ctx.recipe.sft_stage is not None:
        return sft_checkpoint(ctx), "LongPT, then the short-context SFT stage (sft/hf)"
    return trained_checkpoint(ctx), "after LongPT (train/hf)"


def _llm_judge(ctx: StageContext) -> Any:
    """The v1.1 LLM judge when the recipe asks for it; its cache is shared by both models, so
    identical answers are judged once."""
    if ctx.recipe.eval.judge != "llm":
        return None
    (make_llm_judge,) = require("eval", "lvlm_judge", "make_llm_judge")
    official = ctx.recipe.eval.mmlb_source is not None
    return make_llm_judge(
        ctx.recipe.eval.judge_model,
        ctx.dir / "judge-cache.sqlite",
        base_url=ctx.recipe.eval.judge_base_url,
        pre_judge=not official,  # the official v1.1 score judges every item
        mmlb_source=ctx.recipe.eval.mmlb_source,
    )


def _templates(recipe: Recipe) -> Any:
    """The recipe's prompts: MMLongBench's from its checkout, or ours by name."""
    if recipe.eval.mmlb_source is not None:
        (read_templates,) = require("eval", "lvlm_judge.mmlb_source", "read_templates")
        return read_templates(recipe.eval.mmlb_source)
    (shipped,) = require("eval", "lvlm_judge.prompting", "shipped_templates")
    return shipped(recipe.eval.prompt_format)


def judge_hash(recipe: Recipe) -> str:
    return config_hash({field: getattr(recipe.eval, field) for field in JUDGE_FIELDS})


def _legacy_judge_hash(manifest: RunManifest) -> str | None:
    """The judge hash of a folder written when the judge settings were in the stage's
    config: its manifest's config holds them (None when it does not)."""
    stage_config = manifest.config.get("config")
    settings = stage_config.get("eval") if isinstance(stage_config, dict) else None
    if not isinstance(settings, dict) or not all(f in settings for f in JUDGE_FIELDS):
        return None
    return config_hash({field: settings[field] for field in JUDGE_FIELDS})


def _write_judge_record(stage_dir: Path, hash_: str) -> None:
    with atomic_path(stage_dir / JUDGE_RECORD) as tmp:
        tmp.write_text(json.dumps({"hash": hash_}) + "\n", encoding="utf-8")


class _RunnerOnDemand:
    """The recipe's runner, loaded at its first use: rescoring predictions that are all kept
    (a judge-only change) loads no model."""

    def __init__(self, make: Callable[[], Any], model_name: str, max_new_tokens: int):
        self._make = make
        self._runner: Any = None
        self.model_name = model_name
        self.max_new_tokens = max_new_tokens

    def _loaded(self) -> Any:
        if self._runner is None:
            self._runner = self._make()
        return self._runner

    def generate(self, requests: Sequence[Any]) -> Iterator[Any]:
        if not requests:
            return iter(())
        generated: Iterator[Any] = self._loaded().generate(requests)
        return generated

    def answer_nll(self, request: Any, answer: str) -> tuple[float, int]:
        result: tuple[float, int] = self._loaded().answer_nll(request, answer)
        return result

    def close(self) -> None:
        close = getattr(self._runner, "close", None)
        if callable(close):
            close()


def _score_tables(ctx: StageContext) -> dict[str, ScoreTable]:
    """Each model's document-QA score table, as lvlm-judge wrote it."""
    tables = {}
    for label in MODELS:
        path = ctx.stage_dir(EvalStage.name) / label / SCORES
        if path.exists():
            tables[label] = ScoreTable.model_validate_json(path.read_text(encoding="utf-8"))
    return tables


class EvalStage(Contributor):
    name = "eval"

    def config(self, recipe: Recipe) -> dict[str, Any]:
        return {
            "eval": recipe.eval.model_dump(mode="json", exclude=set(JUDGE_FIELDS)),
            "vision": recipe.vision.model_dump(mode="json"),
        }

    def restate(self, recorded: dict[str, Any]) -> dict[str, Any] | None:
        # Until judge.json existed the judge settings were part of the stage's hash.
        settings = recorded.get("eval")
        if not isinstance(settings, dict) or not all(f in settings for f in JUDGE_FIELDS):
            return None
        kept = {key: value for key, value in settings.items() if key not in JUDGE_FIELDS}
        return {**recorded, "eval": kept}

    def adopt(self, ctx: StageContext, manifest: RunManifest) -> None:
        recorded = _legacy_judge_hash(manifest)
        if recorded is not None and not (ctx.dir / JUDGE_RECORD).exists():
            _write_judge_record(ctx.dir, recorded)

    def outdated(self, ctx: StageContext) -> str:
        try:
            recorded = json.loads((ctx.dir / JUDGE_RECORD).read_text(encoding="utf-8"))["hash"]
        except (OSError, ValueError, KeyError, TypeError):
            # No readable record: a folder from before judge.json names its judge in its
            # manifest; otherwise which judge scored it is unknown.
            manifest = read_manifest(ctx.dir)
            recorded = None if manifest is None else _legacy_judge_hash(manifest)
        if recorded == judge_hash(ctx.recipe):
            return ""
        return "the judge changed: rescoring the kept predictions"

    def run(self, ctx: StageContext) -> dict[str, int]:
        (pool_class,) = require(self.name, "docpool", "Pool")
        resolver_class, run_eval = require(self.name, "lvlm_judge", "ContextResolver", "run_eval")
        (load_report_class,) = require(self.name, "lvlm_judge", "LoadReport")
        recipe = ctx.recipe
        llm_judge = _llm_judge(ctx)
        templates = _templates(recipe)
        base = base_checkpoint(ctx)
        image_root = None
        if recipe.demo is None and recipe.eval.data_dir is not None:
            _, image_root = benchmark_sources(Path(recipe.eval.data_dir), recipe.eval.lengths)
        resolver = resolver_class(image_root, pool_class(pool_path(ctx)), recipe.vision)
        report = load_report_class()
        items = _items(ctx, resolver, base, report)
        if not items:
            raise ValueError("the evaluation set is empty")
        for problem in report.skipped:
            ctx.log(f"eval: skipped {problem}")
        trained, _ = final_checkpoint(ctx)
        suffix = "trained+sft" if recipe.sft_stage is not None else "trained"
        models = {
            "base": (base, recipe.init_model),
            "trained": (trained, f"{recipe.name}-{suffix}"),
        }
        counts = {"items": len(items)}
        for label, (path, model_name) in models.items():
            runner = _RunnerOnDemand(
                partial(_runner, ctx, path, model_name, resolver, items, templates),
                model_name,
                recipe.eval.max_new_tokens,
            )
            summary = run_eval(
                items,
                runner,
                ctx.dir / label,
                prompt_format=templates,
                judge=recipe.eval.judge,
                llm_judge=llm_judge,
                settings={"model": str(path), "recipe": recipe.name},
                executor=ctx.execution.steps(),
                item_set=report.item_set if recipe.demo is None else "held-out QA pairs, all",
                skipped_records=report.skipped,
                answer_nll=recipe.eval.runner == "transformers",
            )
            runner.close()  # free the first model's engine before the second is loaded
            counts[f"{label}_failed"] = len(summary.failed_items)
            counts[f"{label}_failures"] = summary.failures
            counts[f"{label}_excluded"] = sum(t.excluded for t in summary.tables.values())
            if summary.failures:
                ctx.log(
                    f"eval/{label}: INCOMPLETE, {summary.failures} failures (runner errors, judge "
                    f"failures, skipped records; see {ctx.dir / label / 'run.json'}); rerun to "
                    "retry them"
                )
            ctx.log(f"eval/{label}: protocol {summary.protocol}; items: {summary.item_set}")
            for stem, table in summary.tables.items():
                macro = table.macro()
                shown = f"{macro:.2f}" if macro is not None else "n/a"
                ctx.log(f"eval/{label}: {stem} macro score {shown}")
        tables = [table for table in _score_tables(ctx).values() if table.cells]
        if tables:
            (plot,) = require(self.name, "lvlm_judge.results", "plot")
            plot(tables, ctx.dir / COMPARISON_FIGURE)
        _write_judge_record(ctx.dir, judge_hash(recipe))
        return counts

    def progress(self, ctx: StageContext) -> dict[str, int]:
        counts = {}
        for label in MODELS:
            predictions = ctx.dir / label / "predictions.jsonl"
            if predictions.exists():
                counts[f"{label}_predictions"] = sum(1 for _ in predictions.open(encoding="utf-8"))
        return counts

    def contribute(self, ctx: StageContext, data: ReportData) -> None:
        data.scores.update(_score_tables(ctx))
        for label in MODELS:
            nll = ctx.stage_dir(EvalStage.name) / label / ANSWER_NLL
            if nll.exists():
                data.answer_nll[label] = json.loads(nll.read_text(encoding="utf-8"))
        if data.scores:
            trained, how = final_checkpoint(ctx)
            data.evaluated = {
                "base": f"the initial checkpoint ({base_checkpoint(ctx)})",
                "trained": f"{how}: {trained}",
            }
        if (ctx.dir / COMPARISON_FIGURE).exists():
            data.package_figures["scores"] = (
                "Score against context length, base vs trained (drawn by lvlm-judge)",
                ctx.dir / COMPARISON_FIGURE,
            )
