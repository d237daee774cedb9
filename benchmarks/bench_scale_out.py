"""Scale-out benchmark: docpool ingest on the Ray executor against the local executor.

Both run in this process on the same generated corpus with 2 workers (the local executor's
forked processes; a local 2-CPU Ray instance), alternating so both see the same background
load; the best of three runs each is compared. Target: Ray throughput >= 0.85x local.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from benchlib import Result

from docpool import ingest, make_corpus
from mmprolong_schemas.executor import Executor, LocalExecutor

WORKERS = 2
REPEATS = 3


def _ingest_seconds(corpus: Path, work: Path, executor: Executor) -> tuple[float, int]:
    out = work / f"pool-{time.monotonic_ns()}"
    started = time.perf_counter()
    report = ingest([corpus], out, executor=executor, workers=executor.workers, min_pages=5)
    seconds = time.perf_counter() - started
    shutil.rmtree(out)
    return seconds, report.pages_added


def run(work: Path) -> list[Result]:
    import ray

    from mmprolong_schemas.ray_executor import RayExecutor

    load_before = os.getloadavg()[0]
    corpus = work / "corpus"
    make_corpus(corpus, n_docs=24, seed=11)
    started = time.perf_counter()
    ray.init(num_cpus=WORKERS, include_dashboard=False, logging_level="WARNING")
    startup = time.perf_counter() - started
    try:
        executors: dict[str, Callable[[], Executor]] = {
            "local": lambda: LocalExecutor(WORKERS),
            "ray": lambda: RayExecutor(workers=WORKERS),
        }
        # One unmeasured run each: Ray workers import docpool and PyMuPDF on first use.
        for make in executors.values():
            _ingest_seconds(corpus, work, make())
        times: dict[str, list[float]] = {name: [] for name in executors}
        pages = 0
        for _ in range(REPEATS):
            for name, make in executors.items():
                seconds, pages = _ingest_seconds(corpus, work, make())
                times[name].append(seconds)
    finally:
        ray.shutdown()
    local, distributed = min(times["local"]), min(times["ray"])
    ratio = local / distributed
    return [
        Result(
            name=f"docpool ingest on Ray, {WORKERS} CPUs ({pages} pages, 24 documents)",
            value=pages / distributed,
            unit="pages/s",
            baseline=pages / local,
            baseline_name=f"local executor, {WORKERS} workers",
            target=">= 0.85x",
            passed=ratio >= 0.85,
            details={
                "local_s": times["local"],
                "ray_s": times["ray"],
                "ray_startup_s": startup,
                "load_average_1min": [load_before, os.getloadavg()[0]],
            },
        )
    ]
