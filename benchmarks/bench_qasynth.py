"""qasynth benchmarks: segments and prompts per second, teacher-side overhead per request
(openai: JPEG data URIs; vllm: decoded pixels handed to the engine), mixture building on
100k sample records, and the validator's grounding: the grounding rate of accepted pairs per
teacher and task on the generated corpus (en/fr/de PDFs) and on generated es/ru/zh/ja
documents, the share of rejections per reason, and how many defects injected into the rules
teacher's replies the validator catches."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from benchlib import Result

from mmprolong_schemas import (
    BBox,
    Block,
    BlockLabel,
    Document,
    Message,
    MixtureSpec,
    Page,
    PagePart,
    Sample,
    Section,
    Segment,
    Task,
    TextPart,
    read_jsonl,
    read_parquet,
    write_parquet,
)
from mmprolong_schemas.units import M
from qasynth.cache import RequestCache
from qasynth.mix import build_mixture
from qasynth.page_images import PageImages
from qasynth.parsing import QAValidator, Rejected
from qasynth.pixels import PagePixels
from qasynth.prompts import PROMPT_VERSION, build_prompt
from qasynth.segments import sample_segments
from qasynth.teachers.base import Teacher, TeacherReply, TeacherRequest, request_key
from qasynth.teachers.chat import chat_messages, encode_body
from qasynth.teachers.vllm import VLLMTeacher

MIX_RECORDS = 100_000


def _document(index: int, pages: int = 40) -> Document:
    box = BBox(x0=72, y0=72, x1=540, y1=120)
    starts = list(range(1, pages + 1, 5))
    sections = [
        Section(title=f"{n + 1} Part", level=1, start_page=s, end_page=min(pages, s + 4))
        for n, s in enumerate(starts)
    ]
    return Document(
        doc_id=hashlib.sha256(f"bench{index}".encode()).hexdigest(),
        source_path=f"/bench/{index}.pdf",
        file_size=1,
        num_pages=pages,
        pages=[
            Page(
                number=p,
                width=612,
                height=792,
                blocks=[Block(label=BlockLabel.TEXT, bbox=box, text="x", order=0)],
            )
            for p in range(1, pages + 1)
        ],
        sections=sections,
    )


def bench_segments_and_prompts() -> list[Result]:
    docs = [_document(i) for i in range(300)]
    started = time.perf_counter()
    segments = [s for d in docs for s in sample_segments(d, 3, seed=0)]
    segment_rate = len(segments) / (time.perf_counter() - started)
    started = time.perf_counter()
    for segment in segments:
        build_prompt(segment, Task.EXTRACT_MULTI)
    prompt_rate = len(segments) / (time.perf_counter() - started)
    return [
        Result(
            "segments sampled",
            segment_rate,
            "segments/s",
            details={"documents": len(docs), "segments": len(segments)},
        ),
        Result("prompts built", prompt_rate, "prompts/s", details={"prompts": len(segments)}),
    ]


def _interleaved(
    functions: dict[str, Callable[[], object]], rounds: int = 9
) -> dict[str, tuple[float, float]]:
    """Least wall time and least CPU time (every thread of this process) of each function, in
    seconds, over ``rounds`` rounds that call each once in turn: load from other processes
    then falls on all of them alike, and the least times are the least disturbed."""
    wall: dict[str, list[float]] = {name: [] for name in functions}
    cpu: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            function()
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - started_cpu)
    return {name: (min(wall[name]), min(cpu[name])) for name in functions}


def _fifteen_page_request(work: Path) -> tuple[Any, str, Path, Segment]:
    """A docpool pool of one generated 20-page report, and a 15-page segment of it (cut from
    a stand-in record with the report's id and page count: prompts need its outline)."""
    from docpool import Pool, ingest
    from docpool.testing import make_corpus

    truth = make_corpus(work / "corpus", n_docs=1, seed=0, pages=(20, 20), langs=("en",))
    ingest([work / "corpus"], work / "render-pool", min_pages=1)
    pool = Pool(work / "render-pool")
    doc_id = next(pool.documents()).doc_id
    stand_in = _document(0, pages=20).model_copy(update={"doc_id": doc_id})
    (segment,) = sample_segments(stand_in, 1, seed=0, pages=(15, 15))
    return pool, doc_id, work / "corpus" / truth.documents[0].file, segment


def _rasteriser(pool: Any, doc_id: str, pages: list[int]) -> Callable[[], None]:
    """The baseline: rasterising the pages at 144 DPI (PyMuPDF: open, load_page,
    get_pixmap), the one cost a request cannot avoid."""
    import pymupdf

    zoom = pymupdf.Matrix(2, 2)

    def rasterise() -> None:
        with pymupdf.open(pool.pdf_path(doc_id)) as opened:
            for number in pages:
                opened.load_page(number - 1).get_pixmap(matrix=zoom, alpha=False)

    return rasterise


def bench_teacher_overhead(work: Path) -> list[Result]:
    """One 15-page openai request at 144 DPI. The baseline is rasterising the 15 pages
    (PyMuPDF: open, load_page, get_pixmap), the one cost a request cannot avoid. Everything
    else is overhead: handing pixels to the encoder, JPEG encoding, base64, and our own request
    work (prompt, cache key, cache lookup and store, messages, JSON body, reply validation).
    Measured three ways: CPU time (every thread), wall clock with encoding overlapped with
    rasterising in two encoder threads, and amortised per request when a segment's pages are
    sent for its three tasks (the page cache). The previous path (Pillow images from docpool's
    renderer, Pillow JPEG, base64) is measured in the same run."""
    from docpool.render import render_pages

    pool, doc_id, pdf, segment = _fifteen_page_request(work)
    pages = segment.pages.pages
    rasterise = _rasteriser(pool, doc_id, pages)

    def previous() -> list[str]:
        urls = []
        for image in render_pages(pdf, pages, dpi=144):
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=90)
            urls.append("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode())
        return urls

    # No cache: every call rasterises and encodes every page.
    one_thread = PageImages(pool, dpi=144, cache_bytes=0, encoders=0)
    two_threads = PageImages(pool, dpi=144, cache_bytes=0, encoders=2)
    shared = PageImages(pool, dpi=144, encoders=2)

    def three_tasks() -> None:
        shared.close()  # empty cache: the first task renders, the other two hit
        for _ in range(3):
            shared.get(doc_id, pages)

    load = os.getloadavg()[0]
    timed = _interleaved(
        {
            "raster": rasterise,
            "before": previous,
            "serial": lambda: one_thread.get(doc_id, pages),
            "piped": lambda: two_threads.get(doc_id, pages),
            "three": three_tasks,
        }
    )
    for images in (one_thread, two_threads, shared):
        images.close()
    raster_wall, raster_cpu = timed["raster"]
    before_wall, before_cpu = timed["before"]
    serial_wall, serial_cpu = timed["serial"]
    piped_wall, piped_cpu = timed["piped"]
    cached_wall, cached_cpu = (t / 3 for t in timed["three"])
    urls = PageImages(pool, dpi=144).get(doc_id, pages)
    uris = [u.uri for u in urls]
    assert len(uris) == 15
    reply = TeacherReply(
        text='Evidence: Text on Page 3.\nJSON: {"question": "What is on Page '
        f'{pages[0]}?", "answer": 4, "answer_format": "Integer", '
        f'"evidence_pages": [{pages[0]}], "evidence_sources": ["Text"]}}'
    )
    with RequestCache(work / "cache.sqlite") as cache:
        counter = [0]

        def ours() -> None:
            counter[0] += 1
            prompt = build_prompt(segment, Task.EXTRACT_SINGLE, seed=counter[0])
            key = request_key(
                "openai:m", PROMPT_VERSION, segment.segment_id, Task.EXTRACT_SINGLE, counter[0], 0
            )
            request = TeacherRequest(key, prompt, counter[0])
            cache.get(key)
            body = encode_body({"model": "m", "messages": chat_messages(prompt, uris)})
            assert len(body) > 0
            cache.put("openai:m", request, reply)
            assert reply.text is not None
            QAValidator().validate(reply.text, segment, Task.EXTRACT_SINGLE, "openai:m", "v")

        ours_wall, ours_cpu = _interleaved({"ours": ours}, rounds=20)["ours"]
    ms = 1000.0
    kib = sum(len(u) for u in uris) / 15 / 1024

    def share(value: float, base: float) -> float:
        return round(value / base, 4)

    wall_overhead = piped_wall - raster_wall + ours_wall
    cpu_overhead = piped_cpu - raster_cpu + ours_cpu
    before_overhead = before_wall - raster_wall + ours_wall
    serial_overhead = serial_wall - raster_wall + ours_wall
    return [
        Result(
            "rasterise 15 pages at 144 DPI (PyMuPDF; the baseline)",
            raster_wall * ms,
            "ms",
            details={
                "cpu_ms": round(raster_cpu * ms, 1),
                "per_page_ms": round(raster_wall * ms / 15, 2),
            },
        ),
        Result(
            "request building per 15-page request (prompt, cache, messages, body, validation)",
            ours_wall * ms,
            "ms",
            baseline=raster_wall * ms,
            baseline_name="rasterising the 15 pages",
            details={"share_of_rasterising": share(ours_wall, raster_wall)},
        ),
        Result(
            "previous path: pages to data URIs (docpool render to Pillow, Pillow JPEG, base64)",
            before_wall * ms,
            "ms",
            baseline=raster_wall * ms,
            baseline_name="rasterising the 15 pages",
            details={
                "cpu_ms": round(before_cpu * ms, 1),
                "overhead_over_rasterising_incl_request_building": share(
                    before_overhead, raster_wall
                ),
            },
        ),
        Result(
            "teacher-side CPU per 15-page request, no cache (PageImages + request building)",
            (piped_cpu + ours_cpu) * ms,
            "ms CPU",
            baseline=raster_cpu * ms,
            baseline_name="CPU of rasterising the 15 pages",
            target="overhead < 5% of rasterising",
            passed=cpu_overhead / raster_cpu < 0.05,
            details={
                "overhead_cpu_ms": round(cpu_overhead * ms, 1),
                "overhead_share": share(cpu_overhead, raster_cpu),
                "one_thread_cpu_ms": round((serial_cpu + ours_cpu) * ms, 1),
                "previous_path_cpu_ms": round((before_cpu + ours_cpu) * ms, 1),
                "jpeg_kib_per_page_base64": round(kib, 1),
                "note": "JPEG encoding (libjpeg-turbo, q90, 4:2:0) is most of the overhead and "
                "costs more CPU than rasterising these text pages; only fewer or smaller "
                "images would remove it",
            },
        ),
        Result(
            "teacher-side wall clock per 15-page request, no cache (encoding overlapped)",
            (piped_wall + ours_wall) * ms,
            "ms",
            baseline=raster_wall * ms,
            baseline_name="rasterising the 15 pages",
            target="overhead < 5% of rasterising",
            passed=wall_overhead / raster_wall < 0.05,
            details={
                "overhead_ms": round(wall_overhead * ms, 1),
                "overhead_share": share(wall_overhead, raster_wall),
                "encoder_threads": 2,
                "one_thread_overhead_share": share(serial_overhead, raster_wall),
                "load_average_at_start": round(load, 2),
                "note": "overlap needs a second free core; this machine's 2 cores are shared",
            },
        ),
        Result(
            "teacher-side CPU per request, 3 tasks per segment (page cache)",
            (cached_cpu + ours_cpu) * ms,
            "ms CPU",
            baseline=raster_cpu * ms,
            baseline_name="CPU of rasterising the 15 pages",
            details={
                "wall_ms_per_request": round((cached_wall + ours_wall) * ms, 1),
                "note": "each page rasterised and encoded once for the segment's three tasks; "
                "the figure includes that whole cost, shared by three requests",
            },
        ),
    ]


class _InstantEngine:
    """An engine whose model takes no time: it answers every prompt with ``reply`` and keeps
    nothing, so what is timed is the teacher's side only."""

    def __init__(self, reply: str):
        from longctx_rope.tiny import tiny_tokenizer

        # An offline Qwen-vocabulary tokenizer whose chat template renders images as Qwen's do.
        self.tokenizer = tiny_tokenizer("qwen2.5-vl")
        self.output = SimpleNamespace(
            outputs=[SimpleNamespace(text=reply, finish_reason="stop", token_ids=[1])]
        )
        self.images = 0

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    def generate(self, prompts: list[dict[str, Any]], params: list[Any], use_tqdm: bool) -> Any:
        self.images = sum(len(p["multi_modal_data"]["image"]) for p in prompts)
        return [self.output for _ in prompts]


def bench_vllm_overhead(work: Path) -> list[Result]:
    """One 15-page vllm request at 144 DPI, the model's time excluded. A request's rendering
    cost is drawing its 15 pages into memory that holds them all at once, as the engine reads
    them together: ``PagePixels`` (recycled arrays; the cheapest way we have). Overhead is
    everything else the teacher does: handing the engine channels-first views (no encoding)
    and the request work (prompt, cache key, cache lookup and store, the prompt text through a
    chat template, token counting, engine limits, sampling parameters, reply parsing and
    validation). Two other renderings are timed beside it for reference: PyMuPDF's own
    pixmaps held together (the plain way to hold a request's pages), and rasterising page by
    page with each pixmap dropped at once (the openai baseline: one cache-hot buffer, which no
    request holding 15 pages can have)."""
    import pymupdf

    pool, doc_id, _, segment = _fifteen_page_request(work / "vllm")
    pages = segment.pages.pages
    rasterise = _rasteriser(pool, doc_id, pages)
    reply = (
        'Evidence: Text on Page 3.\nJSON: {"question": "What is on Page '
        f'{pages[0]}?", "answer": 4, "answer_format": "Integer", '
        f'"evidence_pages": [{pages[0]}], "evidence_sources": ["Text"]}}'
    )
    engine = _InstantEngine(reply)

    def teacher(cache_bytes: int) -> VLLMTeacher:
        return VLLMTeacher(
            "m",
            pool,
            engine_factory=lambda model, **kwargs: engine,
            sampling_factory=lambda kwargs: kwargs,
            page_cache_bytes=cache_bytes,
        )

    # No cache: every request rasterises its pages (into recycled arrays). Cached: the
    # request work alone. Shared: a segment's three tasks in one batch.
    uncached, cached, shared = teacher(0), teacher(256 << 20), teacher(256 << 20)
    pixels = PagePixels(pool, cache_bytes=0)
    validator = QAValidator()
    zoom = pymupdf.Matrix(2, 2)

    def held_pixmaps() -> None:
        with pymupdf.open(pool.pdf_path(doc_id)) as opened:
            held = [opened.load_page(n - 1).get_pixmap(matrix=zoom, alpha=False) for n in pages]
        del held

    counter = [0]

    def pixels_only() -> None:
        pixels.get(doc_id, pages)
        pixels.release(recycle=True)

    with RequestCache(work / "vllm-cache.sqlite") as cache:

        def on_reply(request: TeacherRequest, answer: TeacherReply) -> None:
            cache.put("vllm:m", request, answer)
            assert answer.text is not None
            # The canned reply fits extract-single; the other tasks reject it, as costly.
            with contextlib.suppress(Rejected):
                validator.validate(answer.text, segment, request.task, "vllm:m", "v")

        def requests(count: int) -> list[TeacherRequest]:
            made = []
            for task in (Task.EXTRACT_SINGLE, Task.EXTRACT_MULTI, Task.REASONING)[:count]:
                counter[0] += 1
                prompt = build_prompt(segment, task, seed=counter[0])
                key = request_key("vllm:m", PROMPT_VERSION, segment.segment_id, task, counter[0], 0)
                cache.get(key)
                made.append(TeacherRequest(key, prompt, counter[0]))
            return made

        def three_tasks() -> None:
            shared.pixels.close()  # empty cache: the batch rasterises each page once
            shared.complete(requests(3), on_reply)

        for warm in (uncached, cached):  # the engine is built on the first batch
            warm.complete(requests(1), on_reply)
        load = os.getloadavg()[0]
        timed = _interleaved(
            {
                "raster": rasterise,
                "held": held_pixmaps,
                "pixels": pixels_only,
                "request": lambda: uncached.complete(requests(1), on_reply),
                "work": lambda: cached.complete(requests(1), on_reply),
                "three": three_tasks,
            },
            rounds=15,
        )
    assert engine.images == 45 and uncached.pixels.pinned_bytes == 0
    raster_wall, raster_cpu = timed["raster"]
    pixels_wall, pixels_cpu = timed["pixels"]
    request_wall, request_cpu = timed["request"]
    work_wall, work_cpu = timed["work"]
    three_wall, three_cpu = (t / 3 for t in timed["three"])
    ms = 1000.0

    def share(value: float, base: float) -> float:
        return round(value / base, 4)

    held_wall, held_cpu = timed["held"]
    memory_note = (
        "drawing a request's pages costs more than rasterising page by page: an engine input "
        "holds all 15 pages at once (87 MB at 144 DPI), so each is drawn into its own array, "
        "cold in the CPU cache, where rasterising alone redraws one hot buffer; PyMuPDF's own "
        "pixmaps held together cost more still (fresh memory, page faults)"
    )
    return [
        Result(
            "vllm teacher-side wall clock per 15-page request (pixels handed to the engine)",
            request_wall * ms,
            "ms",
            baseline=pixels_wall * ms,
            baseline_name="rendering the request's 15 pages (PagePixels)",
            target="overhead < 5% of rendering",
            passed=(request_wall - pixels_wall) / pixels_wall < 0.05,
            details={
                "overhead_ms": round((request_wall - pixels_wall) * ms, 2),
                "overhead_share": share(request_wall - pixels_wall, pixels_wall),
                "request_work_share": share(work_wall, pixels_wall),
                "held_pymupdf_pixmaps_ms": round(held_wall * ms, 1),
                "page_by_page_rasterising_ms": round(raster_wall * ms, 1),
                "over_page_by_page_rasterising": share(request_wall - raster_wall, raster_wall),
                "arrays_reused": uncached.pixels.reused,
                "load_average_at_start": round(load, 2),
                "note": memory_note,
            },
        ),
        Result(
            "vllm teacher-side CPU per 15-page request",
            request_cpu * ms,
            "ms CPU",
            baseline=pixels_cpu * ms,
            baseline_name="CPU of rendering the request's 15 pages (PagePixels)",
            target="overhead < 5% of rendering",
            passed=(request_cpu - pixels_cpu) / pixels_cpu < 0.05,
            details={
                "overhead_cpu_ms": round((request_cpu - pixels_cpu) * ms, 2),
                "overhead_share": share(request_cpu - pixels_cpu, pixels_cpu),
                "held_pymupdf_pixmaps_cpu_ms": round(held_cpu * ms, 1),
                "page_by_page_rasterising_cpu_ms": round(raster_cpu * ms, 1),
            },
        ),
        Result(
            "vllm request work per request, pages cached (prompt, template, cache, "
            "limits, sampling, parsing, validation)",
            work_wall * ms,
            "ms",
            baseline=raster_wall * ms,
            baseline_name="rasterising the 15 pages",
            target="< 5% of rasterising",
            passed=work_wall / raster_wall < 0.05,
            details={"cpu_ms": round(work_cpu * ms, 3), "share": share(work_wall, raster_wall)},
        ),
        Result(
            "vllm pages to engine arrays, 15 pages (PagePixels: drawn into held arrays)",
            pixels_wall * ms,
            "ms",
            baseline=raster_wall * ms,
            baseline_name="rasterising the 15 pages",
            details={
                "cpu_ms": round(pixels_cpu * ms, 1),
                "share_over_rasterising": share(pixels_wall - raster_wall, raster_wall),
                "share_of_held_pymupdf_pixmaps": share(pixels_wall, held_wall),
                "note": memory_note,
            },
        ),
        Result(
            "vllm teacher-side wall clock per request, 3 tasks per segment in one batch",
            three_wall * ms,
            "ms",
            baseline=raster_wall * ms,
            baseline_name="rasterising the 15 pages",
            details={
                "cpu_ms_per_request": round(three_cpu * ms, 2),
                "note": "each page rasterised once for the segment's three tasks, which "
                "share its array; the figure includes that whole cost, shared by three",
            },
        ),
    ]


def _mixture_pool(path: Path) -> Path:
    """100k Sample records: 1000 real ones, tiled with new ids, tasks and token counts."""
    seeds = []
    for index in range(1000):
        doc = hashlib.sha256(f"mix{index}".encode()).hexdigest()
        count = 32 + index % 19
        content = [PagePart(doc_id=doc, page=p) for p in range(1, count + 1)]
        seeds.append(
            Sample(
                sample_id=str(index),
                task=Task.EXTRACT_SINGLE,
                doc_id=doc,
                pages=list(range(1, count + 1)),
                messages=[Message(role="user", content=[*content, TextPart(text="Q?")])],
                target="A",
                est_tokens=count * 2510,
            )
        )
    write_parquet(path / "seed.parquet", seeds, Sample)
    table = pq.read_table(path / "seed.parquet")
    tasks = ["extract-single", "extract-multi", "reasoning"]
    pieces = []
    for copy in range(MIX_RECORDS // len(seeds)):
        ids = pa.array([f"{copy}-{i}" for i in range(len(seeds))])
        task = pa.array([tasks[(copy + i) % 3] for i in range(len(seeds))])
        tokens = pa.array(
            [min(131072, 32768 + (copy * 7919 + i * 104729) % 98304) for i in range(len(seeds))],
            type=pa.int64(),
        )
        piece = table.set_column(table.schema.get_field_index("sample_id"), "sample_id", ids)
        piece = piece.set_column(piece.schema.get_field_index("task"), "task", task)
        piece = piece.set_column(piece.schema.get_field_index("est_tokens"), "est_tokens", tokens)
        pieces.append(piece)
    pool = path / "pool"
    pool.mkdir()
    merged = pa.concat_tables(pieces)
    for part in range(4):
        chunk = merged.slice(part * MIX_RECORDS // 4, MIX_RECORDS // 4)
        pq.write_table(
            chunk.replace_schema_metadata(table.schema.metadata), pool / f"part-{part}.parquet"
        )
    (path / "seed.parquet").unlink()
    return pool


def bench_mixture(work: Path) -> list[Result]:
    from mmprolong_runtime.executor import LocalExecutor

    pool = _mixture_pool(work)
    spec = MixtureSpec(token_budget=4000 * M, seed=0)
    started = time.perf_counter()
    report = build_mixture([pool], work / "mix", spec, shard_size=5000)
    seconds = time.perf_counter() - started
    # The same mixture as map steps on two local worker processes (index per input file,
    # one write per shard), selection in the driver.
    started = time.perf_counter()
    spread = build_mixture([pool], work / "mix-2", spec, shard_size=5000, executor=LocalExecutor(2))
    spread_seconds = time.perf_counter() - started
    assert spread["tasks"] == report["tasks"]
    # A mix killed after its shards but before its report: selection again, shards kept.
    (work / "mix" / "mixture.json").unlink()
    started = time.perf_counter()
    resumed = build_mixture([pool], work / "mix", spec, shard_size=5000)
    resume_seconds = time.perf_counter() - started
    # Baseline: the obvious way, validating every record with read_parquet (timed on 10k).
    sample_file = pool / "part-0.parquet"
    head = pq.read_table(sample_file).slice(0, 10_000)
    buffer = io.BytesIO()
    pq.write_table(head, buffer)
    (work / "head.parquet").write_bytes(buffer.getvalue())
    started = time.perf_counter()
    sum(1 for _ in read_parquet(work / "head.parquet", Sample))
    naive = (time.perf_counter() - started) * MIX_RECORDS / 10_000
    return [
        Result(
            "mixture building on 100k sample records",
            seconds,
            "s",
            baseline=naive,
            baseline_name="reading 100k records with validation (extrapolated from 10k)",
            target="< 30 s",
            passed=seconds < 30,
            details={
                "selected": report["total"]["samples"],
                "shards": len(report["shards"]),
                "budget_errors": {t: s["budget_error"] for t, s in report["tasks"].items()},
            },
        ),
        Result(
            "mixture building on 100k sample records, 2 local worker processes",
            spread_seconds,
            "s",
            baseline=seconds,
            baseline_name="in this process",
            target="< 30 s",
            passed=spread_seconds < 30,
        ),
        Result(
            "resuming a mix killed before its report (100k records)",
            resume_seconds,
            "s",
            baseline=seconds,
            baseline_name="the whole mix",
            details={"shards_kept": resumed["shards_reused"]},
        ),
    ]


_MULTILINGUAL = {
    # lang: (site names, sentence template, table caption, column names, number printer)
    "es": (
        ["Sevilla", "Bilbao", "Málaga", "Toledo"],
        "La planta de {site} procesó {value} muestras.",
        "Tabla {n}: Consumo por sede",
        ["Sede", "Energía", "Coste"],
        lambda v: f"{v:,.1f}".replace(",", "\0").replace(".", ",").replace("\0", "."),
    ),
    "ru": (
        ["Казань", "Омск", "Тверь", "Пермь"],
        "Завод в городе {site} обработал {value} образцов.",
        "Таблица {n}: Потребление по площадкам",
        ["Площадка", "Энергия", "Затраты"],
        lambda v: f"{v:,.1f}".replace(",", "\u00a0").replace(".", ","),
    ),
    "zh": (
        ["上海", "成都", "西安", "广州"],
        "{site}工厂处理了{value}个样本。",
        "表{n}：各站点能耗",
        ["站点", "能耗", "成本"],
        lambda v: f"{v:,.1f}",
    ),
    "ja": (
        ["札幌", "仙台", "福岡", "神戸"],
        "{site}工場は{value}件の試料を処理した。",
        "表{n}：拠点別の消費量",
        ["拠点", "エネルギー", "費用"],
        lambda v: f"{v:,.1f}",
    ),
}


def _multilingual_document(lang: str, index: int, pages: int = 24) -> Document:
    """A report in ``lang``: each page a sentence with one number and, every other page, a
    captioned table, numbers printed the language's way (1.234,5 / 1 234,5 / 1,234.5)."""
    import random

    sites, sentence, caption, columns, printed = _MULTILINGUAL[lang]
    rng = random.Random(f"{lang}{index}")
    made = []
    for number in range(1, pages + 1):
        box = BBox(x0=72, y0=72, x1=540, y1=120)
        site = sites[number % len(sites)]
        blocks = [
            Block(
                label=BlockLabel.TEXT,
                bbox=box,
                order=0,
                text=sentence.format(site=site, value=printed(rng.randint(1000, 99999)))
                .replace(",0 ", " ")
                .replace(".0个", "个")
                .replace(".0件", "件"),
            )
        ]
        if number % 2 == 0:
            rows = [columns] + [
                [s, printed(rng.uniform(10, 9999)), printed(rng.uniform(1000, 99999))]
                for s in rng.sample(sites, 3)
            ]
            blocks.append(
                Block(
                    label=BlockLabel.CAPTION,
                    bbox=BBox(x0=72, y0=200, x1=540, y1=220),
                    order=1,
                    text=caption.format(n=number // 2),
                )
            )
            blocks.append(
                Block(
                    label=BlockLabel.TABLE,
                    bbox=BBox(x0=72, y0=240, x1=540, y1=400),
                    order=2,
                    text="\n".join(" ".join(r) for r in rows),
                    rows=rows,
                )
            )
        made.append(Page(number=number, width=595, height=842, blocks=blocks))
    return Document(
        doc_id=hashlib.sha256(f"grounding-{lang}-{index}".encode()).hexdigest(),
        source_path=f"/bench/{lang}-{index}.pdf",
        file_size=1,
        num_pages=pages,
        pages=made,
        lang=lang,
    )


class _Defective(Teacher):
    """The rules teacher with one defect injected into every ``every``-th reply, of the kinds
    a VLM teacher makes: a number that is not printed, an empty list item, a reasoning answer
    copied from the page, a reply cut at its token limit. Records what it injected."""

    backend = "defects"

    def __init__(self, inner: Teacher, documents: Callable[[str], Document], every: int = 3):
        super().__init__(inner.model)
        self.inner, self.documents, self.every = inner, documents, every
        self.injected: dict[str, int] = {}

    def reply_settings(self) -> dict[str, Any]:
        return {"defects": self.every}

    def complete(self, requests: Any, on_reply: Callable[[Any, TeacherReply], None]) -> None:
        def forward(request: Any, reply: TeacherReply) -> None:
            # Chosen by the request's key, so every task gets its share of defects.
            chosen = int(request.key[:8], 16) % self.every == 0
            if reply.text and "JSON:" in reply.text and chosen:
                reply = self._inject(request, reply)
            on_reply(request, reply)

        self.inner.complete(requests, forward)

    def _inject(self, request: Any, reply: TeacherReply) -> TeacherReply:
        head, _, body = (reply.text or "").partition("JSON:")
        data = json.loads(body)
        task = request.task
        if task is Task.REASONING:
            page = self.documents(request.segment.doc_id).page(data["evidence_pages"][0])
            data["answer"], data["answer_format"] = max(page.text().split("\n"), key=len), "String"
            kind = "reasoning copied from the page"
        elif data["answer_format"] == "List":
            data["answer"] = [*data["answer"][:1], ""]
            kind = "empty list item"
        elif data["answer_format"] in ("Integer", "Float"):
            data["answer"] = data["answer"] * 10 + 7
            kind = "number not on the page"
        else:
            kind = "cut at the token limit"
        self.injected[kind] = self.injected.get(kind, 0) + 1
        if kind == "cut at the token limit":
            return TeacherReply(text=reply.text, meta={"finish_reason": "length"})
        return TeacherReply(text=f"{head}JSON: {json.dumps(data, ensure_ascii=False)}")


def _grounding_figures(stats: dict[str, Any]) -> dict[str, Any]:
    rejected = stats["rejected"]
    total = sum(rejected.values())
    return {
        "accepted": stats["accepted"],
        "grounding": stats["grounding"],
        "rejected": rejected,
        "rejection_share": {k: round(v / total, 3) for k, v in rejected.items()} if total else {},
    }


def bench_grounding(work: Path) -> list[Result]:
    """Grounding rate of accepted pairs per teacher (target: the rules teacher's extract pairs
    100% grounded), rejections per reason, and injected defects caught."""
    from docpool import Pool, ingest
    from docpool.testing import make_corpus
    from qasynth.generate import GenerateConfig, generate
    from qasynth.pipeline import generate_pairs, segment_pool
    from qasynth.teachers.rules import RulesTeacher

    make_corpus(work / "grounding-corpus", n_docs=8, seed=7, pages=(32, 40))
    ingest([work / "grounding-corpus"], work / "grounding-pool", min_pages=5)
    pool = Pool(work / "grounding-pool")
    run = work / "grounding-run"
    segment_pool(pool, run, per_doc=3, seed=0)
    corpus = generate_pairs(pool, run, RulesTeacher(pool.get))
    langs = sorted({d.lang or "?" for d in pool.documents()})

    documents = {d.doc_id: d for lang in _MULTILINGUAL for d in [_multilingual_document(lang, 0)]}
    segments = [s for d in documents.values() for s in sample_segments(d, 3, seed=0)]
    with RequestCache(":memory:") as cache:
        multi = generate(
            segments, RulesTeacher(documents.__getitem__), cache, documents=documents.__getitem__
        )
    defective = _Defective(RulesTeacher(pool.get), pool.get)
    corpus_segments = list(read_jsonl(run / "segments.jsonl", Segment))
    with RequestCache(":memory:") as cache:
        noisy = generate(
            corpus_segments, defective, cache, GenerateConfig(max_attempts=1), documents=pool.get
        )
    caught = {
        "number not on the page": noisy.stats.rejected.get("not-grounded", 0),
        "empty list item": noisy.stats.rejected.get("empty-answer", 0),
        "reasoning copied from the page": noisy.stats.rejected.get("reasoning-verbatim", 0),
        "cut at the token limit": noisy.stats.rejected.get("truncated-reply", 0),
    }
    injected = sum(defective.injected.values())

    def extract_rate(grounding: dict[str, Any]) -> float:
        rows = [grounding[t] for t in ("extract-single", "extract-multi") if t in grounding]
        grounded = sum(r.get("grounded", 0) for r in rows)
        checked = grounded + sum(r.get("unverified", 0) for r in rows)
        return grounded / checked if checked else 0.0

    corpus_rate = extract_rate(corpus["grounding"])
    multi_rate = extract_rate(multi.stats.as_dict()["grounding"])
    return [
        Result(
            f"rules teacher: extract pairs grounded (generated corpus, {'/'.join(langs)})",
            100 * corpus_rate,
            "%",
            target="100% of extract pairs grounded",
            passed=corpus_rate == 1.0,
            details={"teacher": corpus["teacher"], **_grounding_figures(corpus)},
        ),
        Result(
            "rules teacher: extract pairs grounded (generated es/ru/zh/ja documents)",
            100 * multi_rate,
            "%",
            target="100% of extract pairs grounded",
            passed=multi_rate == 1.0,
            details={"languages": list(_MULTILINGUAL), **_grounding_figures(multi.stats.as_dict())},
        ),
        Result(
            "validator: injected defects caught (rules teacher with defects, generated corpus)",
            100 * sum(caught.values()) / injected if injected else 0.0,
            "%",
            target="every injected defect rejected with its reason",
            passed=all(caught[kind] == count for kind, count in defective.injected.items()),
            details={
                "injected": defective.injected,
                "rejected_for_it": caught,
                "teacher": defective.name,
                **_grounding_figures(noisy.stats.as_dict()),
            },
        ),
    ]


def run(work: Path) -> list[Result]:
    return [
        *bench_grounding(work),
        *bench_segments_and_prompts(),
        *bench_teacher_overhead(work),
        *bench_vllm_overhead(work),
        *bench_mixture(work),
    ]
