"""Stage synth: pool -> segments -> teacher QA pairs -> training samples (qasynth).

Two qasynth runs share the pool: ``train/`` over the documents used for training, and, when
the pool holds held-out documents, ``heldout/`` over those: its QA pairs (evaluation builds
its own contexts from them) and their training-format samples (VQA only), which the train
stage's validation loss scores. A view of the pool restricted to a set of documents is all the
app adds; segmenting, the teacher loop, validation and assembly are qasynth's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from mmprolong.orchestrator import StageContext
from mmprolong.report import ReportData
from mmprolong.stages._require import require
from mmprolong.stages.pool import PoolStage, held_out_ids, pool_path
from mmprolong.stages.report import Contributor
from mmprolong_schemas import Document, Recipe, Sample, Segment, Task, read_jsonl, write_parquet
from mmprolong_schemas.io import atomic_path
from mmprolong_schemas.qa import VQA_TASKS

TRAIN_RUN = "train"
HELD_OUT_RUN = "heldout"
OCR_TASKS = (Task.OCR_FULL, Task.OCR_NEEDLE)


def document_split(ctx: StageContext, pool: Any) -> tuple[list[str], list[str]]:
    """(training doc_ids, held-out doc_ids) of ``pool``: the pool stage's held-out
    documents are never trained on."""
    held_out = held_out_ids(StageContext(ctx.run_dir, ctx.recipe, PoolStage.name))
    kept_back = set(held_out)
    return [doc_id for doc_id in pool.doc_ids() if doc_id not in kept_back], held_out


class PoolView:
    """The documents of a pool that pass ``keep``; rendering goes to the pool itself."""

    def __init__(self, pool: Any, doc_ids: Sequence[str]):
        self.pool = pool
        self.doc_ids = set(doc_ids)

    def documents(self) -> Iterator[Document]:
        return (doc for doc in self.pool.documents() if doc.doc_id in self.doc_ids)

    def get(self, doc_id: str) -> Document:
        if doc_id not in self.doc_ids:
            raise KeyError(f"document {doc_id[:16]} is not part of this selection")
        document: Document = self.pool.get(doc_id)
        return document

    def render(self, doc_id: str, pages: Sequence[int], dpi: float = 144.0) -> list[Image.Image]:
        images: list[Image.Image] = self.pool.render(doc_id, pages, dpi)
        return images


def run_dir(ctx: StageContext, which: str) -> Path:
    return ctx.stage_dir(SynthStage.name) / which


def _ocr_only_samples(view: PoolView, out: Path, assembly: Any, seed: int) -> int:
    """OCR samples of the selected documents for a recipe without VQA tasks, where there are
    no QA pairs for qasynth's assembly to find documents by; written beside its samples."""
    ocr_full_sample, ocr_needle_sample = require(
        "synth", "qasynth.assemble", "ocr_full_sample", "ocr_needle_sample"
    )
    doc_ids = sorted({segment.doc_id for segment in read_jsonl(out / "segments.jsonl", Segment)})
    samples = []
    for doc_id in doc_ids:
        document = view.get(doc_id)
        made = (ocr_full_sample(document, assembly), ocr_needle_sample(document, seed, assembly))
        samples += [sample for sample in made if sample is not None]
    return write_parquet(out / "samples" / "ocr.parquet", samples, Sample)


def _no_pairs(out: Path) -> None:
    pairs = out / "qa" / "pairs.jsonl"
    if not pairs.exists():
        pairs.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(pairs) as tmp:
            tmp.write_text("", encoding="utf-8")


def _teacher(ctx: StageContext, view: PoolView) -> Any:
    """The recipe's teacher: in this process, or on Ray as actors (one per GPU for model
    backends) that open the pool themselves."""
    synth = ctx.recipe.synth
    options = {
        "model": synth.teacher_model,
        "base_url": synth.teacher_base_url,
        "spec": ctx.recipe.vision,
    }
    if ctx.execution.on_ray:
        (make_actor_teacher,) = require("synth", "qasynth.teachers.actors", "make_actor_teacher")
        return make_actor_teacher(
            synth.teacher, pool_path(ctx), address=ctx.execution.ray_address, **options
        )
    (make_teacher,) = require("synth", "qasynth", "make_teacher")
    return make_teacher(synth.teacher, view, **options)


class SynthStage(Contributor):
    name = "synth"

    def config(self, recipe: Recipe) -> dict[str, Any]:
        mixture = recipe.mixture
        return {
            "synth": recipe.synth.model_dump(mode="json"),
            "vision": recipe.vision.model_dump(mode="json"),
            # Which documents become contexts and how long samples may be.
            "selection": {
                "length_distribution": mixture.length_distribution.value,
                "doc_pages": mixture.doc_pages,
                "histogram": [b.model_dump(mode="json") for b in mixture.histogram or []],
                "max_length": mixture.max_length,
            },
        }

    def run(self, ctx: StageContext) -> dict[str, int]:
        short_share = ctx.recipe.mixture.short_share
        if short_share and not ctx.recipe.synth.short_data:
            raise ValueError(
                f"mixture.short_share is {short_share:g} but synth.short_data lists no "
                "short-context files: point it at LLaVA-OneVision-style JSON, JSONL or Parquet"
            )
        (pool_class,) = require(self.name, "docpool", "Pool")
        selection_class, assemble_config, generate_config = require(
            self.name, "qasynth", "DocumentSelection", "AssembleConfig", "GenerateConfig"
        )
        segment_pool, generate_pairs, assemble_samples = require(
            self.name, "qasynth", "segment_pool", "generate_pairs", "assemble_samples"
        )
        recipe = ctx.recipe
        pool = pool_class(pool_path(ctx))
        training, held_out = document_split(ctx, pool)
        mixture = recipe.mixture
        selection = selection_class(
            distribution=mixture.length_distribution,
            doc_pages=mixture.doc_pages,
            histogram=tuple(mixture.histogram or ()),
            max_length=mixture.max_length,
        )
        tasks = tuple(task for task in recipe.synth.tasks if task in VQA_TASKS)
        assembly = assemble_config(
            spec=recipe.vision,
            page_labels=recipe.synth.page_index_text,
            max_length=mixture.max_length,
        )
        counts: dict[str, int] = {}
        for which, doc_ids in ((TRAIN_RUN, training), (HELD_OUT_RUN, held_out)):
            if not doc_ids:
                continue
            # The held-out set is an evaluation set: every VQA task, whatever the training
            # tasks are (an OCR-only recipe still needs questions to be scored on).
            run_tasks = tasks if which == TRAIN_RUN else tuple(VQA_TASKS)
            config = generate_config(tasks=run_tasks, seed=recipe.synth.seed)
            view = PoolView(pool, doc_ids)
            out = run_dir(ctx, which)
            segments = segment_pool(
                view, out, selection, seed=recipe.synth.seed,
                pages=recipe.synth.segment_pages, spec=recipe.vision,
            )  # fmt: skip
            if run_tasks:
                teacher = _teacher(ctx, view)
                try:
                    stats = generate_pairs(view, out, teacher, config)
                finally:
                    teacher.close()
            else:
                # An OCR-only recipe asks the teacher nothing; assembly reads no pairs.
                _no_pairs(out)
                stats = {"accepted_total": 0}
            prefix = "" if which == TRAIN_RUN else "heldout_"
            counts[f"{prefix}segments"] = int(segments["segments"])
            counts[f"{prefix}qa_pairs"] = int(stats["accepted_total"])
            if which == TRAIN_RUN:
                ocr = any(task in OCR_TASKS for task in recipe.synth.tasks)
                summary = assemble_samples(
                    view,
                    out,
                    assembly,
                    # qasynth builds OCR samples beside the QA pairs of each document.
                    ocr=ocr and bool(tasks),
                    seed=recipe.synth.seed,
                    short_inputs=recipe.synth.short_data,
                    executor=ctx.execution.steps(),
                )
                counts["samples"] = sum(int(n) for n in summary["samples"].values())
                if ocr and not tasks:
                    counts["samples"] += _ocr_only_samples(view, out, assembly, recipe.synth.seed)
            else:
                held = assemble_samples(
                    view, out, assembly, seed=recipe.synth.seed, executor=ctx.execution.steps()
                )
                counts["heldout_samples"] = sum(int(n) for n in held["samples"].values())
            ctx.log(
                f"synth/{which}: {len(doc_ids)} documents, {segments['segments']} segments, "
                f"{stats['accepted_total']} QA pairs"
            )
        if counts.get("samples", 0) == 0:
            raise ValueError(
                "synth produced no training samples; see synth/train/qa/stats.json for why "
                "the teacher's replies were rejected"
            )
        return counts

    def progress(self, ctx: StageContext) -> dict[str, int]:
        counts = {}
        for which in (TRAIN_RUN, HELD_OUT_RUN):
            pairs = run_dir(ctx, which) / "qa" / "pairs.jsonl"
            if pairs.exists():
                counts[f"{which}_qa_pairs"] = sum(1 for _ in pairs.open(encoding="utf-8"))
        return counts

    def contribute(self, ctx: StageContext, data: ReportData) -> None:
        stats = run_dir(ctx, TRAIN_RUN) / "qa" / "stats.json"
        if stats.exists():
            accepted = json.loads(stats.read_text(encoding="utf-8")).get("accepted", {})
            data.pool_stats["QA pairs accepted (training documents)"] = sum(accepted.values())
