"""The stages on disk: segment, generate, assemble (mix lives in ``qasynth.mix``).

A run directory holds every stage's output; each is written atomically and a rerun skips or
reuses what is done::

    RUN/segments.jsonl         Segment records              (segment)
    RUN/segments.json          selection, skipped documents, key of the inputs
    RUN/cache.sqlite           every teacher reply           (generate, resumable)
    RUN/qa/pairs.jsonl         accepted QAPair records
    RUN/qa/rejections.jsonl    rejected replies with reason codes
    RUN/qa/stats.json          counts per task and per reason, requests sent, cache hits
    RUN/samples/vqa.parquet    one Sample per QA pair        (assemble)
    RUN/samples/ocr.parquet    OCR-full and OCR-needle Samples (optional)
    RUN/samples/short.parquet  short-context Samples (optional; images in samples/short_images)
    RUN/samples/summary.json

The pool is anything with ``documents()``, ``get(doc_id)`` and ``render(doc_id, pages, dpi)``,
such as ``docpool.Pool``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from mmprolong_runtime import config_hash
from mmprolong_runtime.executor import Executor
from mmprolong_runtime.finished import finish, read_finished
from mmprolong_schemas import (
    Document,
    QAPair,
    Sample,
    Segment,
    VisionTokenSpec,
    read_jsonl,
    write_jsonl,
    write_parquet,
)
from mmprolong_schemas.io import write_json
from qasynth.assemble import AssembleConfig, assemble_document
from qasynth.cache import RequestCache
from qasynth.generate import GenerateConfig, generate
from qasynth.prompts import PROMPT_VERSION
from qasynth.segments import DocOutline, DocumentSelection, sample_segments, select_documents
from qasynth.short import load_short_samples, short_source
from qasynth.steps import run_steps
from qasynth.teachers.base import Teacher

SEGMENTS_FILE = "segments.jsonl"
SEGMENTS_SUMMARY = "segments.json"
CACHE_FILE = "cache.sqlite"
PAIRS_FILE = "qa/pairs.jsonl"
REJECTIONS_FILE = "qa/rejections.jsonl"
QA_STATS_FILE = "qa/stats.json"
SAMPLES_DIR = "samples"

Tick = Callable[[int], None]


class Pool(Protocol):
    def documents(self) -> Iterator[Document]: ...
    def get(self, doc_id: str) -> Document: ...
    def render(self, doc_id: str, pages: Sequence[int], dpi: float = 144) -> list[Image.Image]: ...


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:24]


def segment_pool(
    pool: Pool,
    run_dir: str | Path,
    selection: DocumentSelection | None = None,
    *,
    per_doc: int = 1,
    seed: int = 0,
    pages: tuple[int, int] = (8, 15),
    spec: VisionTokenSpec | None = None,
    tick: Tick | None = None,
) -> dict[str, Any]:
    """Choose documents and sample ``per_doc`` segments from each (``custom`` draws may
    choose a document several times: one more segment per draw). Writes segments.jsonl."""
    selection = selection or DocumentSelection()
    run = Path(run_dir)
    outlines: dict[str, DocOutline] = {}
    for doc in pool.documents():
        outlines[doc.doc_id] = DocOutline.of(doc, spec)
        if tick:
            tick(1)
    settings = {
        "selection": asdict(selection),
        "per_doc": per_doc,
        "seed": seed,
        "pages": list(pages),
        "spec": (spec or VisionTokenSpec()).model_dump(),
    }
    key = config_hash({"settings": settings, "docs": sorted(outlines)})
    summary_path = run / SEGMENTS_SUMMARY
    previous = read_finished(summary_path, key, old_outputs=lambda _: [SEGMENTS_FILE])
    if previous:
        return previous | {"reused": True}
    result = select_documents((o.info for o in outlines.values()), selection, seed)
    draws = Counter(info.doc_id for info in result.chosen)
    segments: list[Segment] = []
    for doc_id in sorted(draws):
        segments += sample_segments(outlines[doc_id], draws[doc_id] * per_doc, seed, pages)
    write_jsonl(run / SEGMENTS_FILE, segments)
    lengths = Counter(len(s.pages) for s in segments)
    return finish(
        summary_path,
        key,
        [SEGMENTS_FILE],
        settings=settings,
        documents_in_pool=len(outlines),
        documents_chosen=len(draws),
        draws=len(result.chosen),
        skipped=dict(result.skipped),
        segments=len(segments),
        with_sections=sum(bool(s.section_titles) for s in segments),
        segment_pages=dict(sorted(lengths.items())),
    )


def generate_pairs(
    pool: Pool,
    run_dir: str | Path,
    teacher: Teacher,
    config: GenerateConfig | None = None,
    tick: Tick | None = None,
) -> dict[str, Any]:
    """Run ``teacher`` over the run's segments; every reply goes through the cache."""
    run = Path(run_dir)
    segments = list(read_jsonl(run / SEGMENTS_FILE, Segment))
    config = config or GenerateConfig()
    with RequestCache(run / CACHE_FILE) as cache:
        result = generate(segments, teacher, cache, config, progress=tick, documents=pool.get)
    write_jsonl(run / PAIRS_FILE, result.pairs)
    write_jsonl(run / REJECTIONS_FILE, result.rejections)
    stats = {
        "teacher": teacher.name,
        "prompt_version": PROMPT_VERSION,
        "config": {**asdict(config), "tasks": [t.value for t in config.tasks]},
        **result.stats.as_dict(),
    }
    write_json(run / QA_STATS_FILE, stats)
    return stats


def assemble_samples(
    pool: Pool,
    run_dir: str | Path,
    config: AssembleConfig | None = None,
    *,
    ocr: bool = False,
    seed: int = 0,
    short_inputs: Sequence[str | Path] = (),
    tick: Tick | None = None,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Samples from the run's QA pairs (and OCR and short data when asked). With an
    ``executor`` each document is assembled as one task (the result is the same)."""
    config = config or AssembleConfig()
    run = Path(run_dir)
    out = run / SAMPLES_DIR
    pairs_path = run / PAIRS_FILE
    key = config_hash(
        {
            "pairs": _file_digest(pairs_path),
            "config": {**asdict(config), "spec": config.spec.model_dump()},
            "ocr": ocr,
            "seed": seed,
            "short": [(str(p), _file_digest(Path(p))) for p in short_inputs],
        }
    )
    previous = read_finished(out / "summary.json", key, old_outputs=_old_sample_files)
    if previous:
        return previous | {"reused": True}
    pairs = sorted(read_jsonl(pairs_path, QAPair), key=lambda p: (p.doc_id, p.qa_id))
    skipped: Counter[str] = Counter()
    vqa: list[Sample] = []
    ocr_samples: list[Sample] = []
    doc_ids = sorted({p.doc_id for p in pairs})
    by_doc: dict[str, list[QAPair]] = {}
    for pair in pairs:
        by_doc.setdefault(pair.doc_id, []).append(pair)
    tasks = ((doc_id, (pool.get(doc_id), by_doc[doc_id], config, ocr, seed)) for doc_id in doc_ids)
    made: dict[str, tuple[list[Sample | None], list[Sample | None]]] = {}
    for doc_id, result in run_steps(executor, assemble_document, tasks):
        made[doc_id] = result
        if tick:
            tick(len(by_doc[doc_id]))
    # Documents finish in any order; samples are written in document order all the same.
    for doc_id in doc_ids:
        doc_vqa, doc_ocr = made[doc_id]
        for sample in doc_vqa:
            if sample is None:
                skipped["over-max-length"] += 1
            else:
                vqa.append(sample)
        for sample in doc_ocr:
            if sample is None:
                skipped["ocr-no-text-or-too-long"] += 1
            else:
                ocr_samples.append(sample)
    counts: dict[str, int] = {"vqa": write_parquet(out / "vqa.parquet", vqa, Sample)}
    if ocr:
        counts["ocr"] = write_parquet(out / "ocr.parquet", ocr_samples, Sample)
    roots: dict[str, str] = {}
    if short_inputs:
        short: list[Sample] = []
        for path in short_inputs:
            root = _short_root(Path(path), out)
            roots[short_source(path)] = str(root)
            short += load_short_samples(path, root, config.spec, skipped)
        counts["short"] = write_parquet(out / "short.parquet", short, Sample)
    return finish(
        out / "summary.json",
        key,
        [f"{kind}.parquet" for kind in counts],
        samples=counts,
        skipped=dict(skipped),
        short_image_roots=roots,
        page_labels=config.page_labels,
        max_length=config.max_length,
    )


def _old_sample_files(summary: dict[str, Any]) -> list[str]:
    """The Parquet files a samples summary from before ``outputs`` covers: one per count."""
    return [f"{kind}.parquet" for kind in summary.get("samples", {})]


def _short_root(path: Path, out: Path) -> Path:
    """Parquet images are extracted into samples/short_images; JSON images stay beside the
    JSON file (its folder is the image root)."""
    return out / "short_images" if path.suffix == ".parquet" else path.parent
