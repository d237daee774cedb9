"""Scale-out benchmark: docpool ingest on the Ray executor against the local executor.

All run in this process on the same generated corpora with 2 workers (the local executor's
forked processes; a local 2-CPU Ray instance), alternating so all see the same background
load; the best of three runs each is compared. The Ray executor runs in both its modes: Ray
Data pipelines (the default) and plain Ray tasks (``mode="tasks"``). Two corpora: 96 documents
(about 4,000 pages, several seconds a run: the throughput that matters for a pool) and 24
documents (about 1,000 pages, where the fixed cost of starting a pipeline weighs most).
Target: Ray throughput >= 0.85x local.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from benchlib import Result

from docpool import ingest
from docpool.testing import make_corpus
from mmprolong_runtime.executor import Executor, LocalExecutor

WORKERS = 2
REPEATS = 3
CORPORA = (96, 24)


def _ingest_seconds(corpus: Path, work: Path, executor: Executor) -> tuple[float, int]:
    out = work / f"pool-{time.monotonic_ns()}"
    started = time.perf_counter()
    report = ingest([corpus], out, executor=executor, workers=executor.workers, min_pages=5)
    seconds = time.perf_counter() - started
    shutil.rmtree(out)
    return seconds, report.pages_added


def run(work: Path) -> list[Result]:
    import ray

    from mmprolong_runtime.ray_executor import RayExecutor

    load_before = os.getloadavg()[0]
    corpora = {}
    for documents in CORPORA:
        corpora[documents] = work / f"corpus-{documents}"
        make_corpus(corpora[documents], n_docs=documents, seed=11)
    started = time.perf_counter()
    ray.init(num_cpus=WORKERS, include_dashboard=False, logging_level="WARNING")
    startup = time.perf_counter() - started
    executors: dict[str, Callable[[], Executor]] = {
        "local": lambda: LocalExecutor(WORKERS),
        "ray": lambda: RayExecutor(workers=WORKERS),
        "ray-tasks": lambda: RayExecutor(workers=WORKERS, mode="tasks"),
    }
    results = []
    try:
        # One unmeasured run each: Ray workers import docpool and PyMuPDF on first use.
        for make in executors.values():
            _ingest_seconds(corpora[CORPORA[-1]], work, make())
        for documents, corpus in corpora.items():
            times: dict[str, list[float]] = {name: [] for name in executors}
            pages = 0
            for _ in range(REPEATS):
                for name, make in executors.items():
                    seconds, pages = _ingest_seconds(corpus, work, make())
                    times[name].append(seconds)
            local = min(times["local"])
            for name, label in (("ray", "Ray Data"), ("ray-tasks", "plain Ray tasks")):
                distributed = min(times[name])
                results.append(
                    Result(
                        name=f"docpool ingest on {label}, {WORKERS} CPUs "
                        f"({pages} pages, {documents} documents)",
                        value=pages / distributed,
                        unit="pages/s",
                        baseline=pages / local,
                        baseline_name=f"local executor, {WORKERS} workers",
                        target=">= 0.85x",
                        passed=local / distributed >= 0.85,
                        details={
                            "local_s": times["local"],
                            "ray_s": times[name],
                            "ray_startup_s": startup,
                            "load_average_1min": [load_before, os.getloadavg()[0]],
                        },
                    )
                )
    finally:
        ray.shutdown()
    return results
