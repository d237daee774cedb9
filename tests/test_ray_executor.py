"""The Ray executor on a local 2-CPU Ray instance: same records as the local executor for
docpool, qasynth and lvlm-judge steps; a killed worker's task is retried without duplicates;
a killed job resumes from what it wrote. Skipped where Ray is not installed."""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from docpool import Pool, ingest
from docpool.testing import make_corpus
from lvlm_judge.datasets import load_data
from lvlm_judge.evaluate import read_results, run_eval
from lvlm_judge.runners.actors import ActorRunner
from lvlm_judge.testing import make_doc_benchmark
from mmprolong_runtime.executor import (
    TaskCrashed,
    TaskMemoryExceeded,
    TaskTimeout,
    make_executor,
)
from mmprolong_runtime.ray_executor import ModelActors, RayExecutor
from mmprolong_schemas import QAPair, Sample, Segment, Task, read_jsonl, read_parquet, write_jsonl
from qasynth.cache import RequestCache
from qasynth.generate import GenerateConfig
from qasynth.pipeline import (
    CACHE_FILE,
    PAIRS_FILE,
    SEGMENTS_FILE,
    assemble_samples,
    generate_pairs,
    segment_pool,
)
from qasynth.segments import DocumentSelection
from qasynth.teachers.actors import ActorTeacher, make_actor_teacher
from qasynth.teachers.rules import RulesTeacher

ray = pytest.importorskip("ray")

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import ray_steps  # noqa: E402  (Ray workers import it by name from this folder)

INGEST = {"min_pages": 1, "chunk_pages": 16}
"""Small chunks, so long documents take the chunked path through the executor too."""


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    # Ray workers import the test steps by module name.
    with ray_steps.local_ray() as address:
        yield address


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    make_corpus(folder, n_docs=6, seed=5, pages=(12, 40))
    return folder


@pytest.fixture(scope="module")
def local_pool(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "pool"
    ingest([corpus], out, workers=2, **INGEST)
    return out


def pool_records(path: Path) -> tuple[list[str], list[tuple[str, str]]]:
    pool = Pool(path)
    documents = sorted(doc.model_dump_json() for doc in pool.documents())
    rejects = sorted((reject.path, reject.reason) for reject in pool.rejects())
    return documents, rejects


def test_ingest_on_ray_writes_the_same_pool(
    ray_address: str, corpus: Path, local_pool: Path, tmp_path: Path
) -> None:
    executor = make_executor("ray")
    assert isinstance(executor, RayExecutor) and executor.workers == 2
    assert executor.mode == "data"
    report = ingest([corpus], tmp_path / "pool", executor=executor, **INGEST)
    assert report.added == 6
    documents, rejects = pool_records(tmp_path / "pool")
    assert (documents, rejects) == pool_records(local_pool)
    assert any(doc.num_pages > INGEST["chunk_pages"] for doc in Pool(local_pool).documents())
    tasks = ingest([corpus], tmp_path / "tasks", executor=RayExecutor(mode="tasks"), **INGEST)
    assert tasks.added == 6 and pool_records(tmp_path / "tasks") == (documents, rejects)


def _segments(pool: Pool, runs: list[Path], keep: int | None = None) -> None:
    segment_pool(pool, runs[0], DocumentSelection(doc_pages=(12, 40)), seed=1)
    segments = list(read_jsonl(runs[0] / SEGMENTS_FILE, Segment))[:keep]
    for run in runs:
        write_jsonl(run / SEGMENTS_FILE, segments)


def test_qasynth_generate_and_assemble_on_ray_match_local(
    ray_address: str, local_pool: Path, tmp_path: Path
) -> None:
    pool = Pool(local_pool)
    local, distributed = tmp_path / "local", tmp_path / "ray"
    _segments(pool, [local, distributed])
    generate_pairs(pool, local, RulesTeacher(pool.get))
    teacher = make_actor_teacher("rules", local_pool, actors=2)
    try:
        assert teacher.name == RulesTeacher(pool.get).name
        generate_pairs(pool, distributed, teacher, GenerateConfig(batch_size=5))
    finally:
        teacher.close()
    pairs = list(read_jsonl(local / PAIRS_FILE, QAPair))
    assert pairs and pairs == list(read_jsonl(distributed / PAIRS_FILE, QAPair))
    # The driver wrote every reply to the run's own cache.
    with RequestCache(distributed / CACHE_FILE) as cache:
        assert len(cache) == len(pairs)

    assemble_samples(pool, local, ocr=True)
    assemble_samples(pool, distributed, ocr=True, executor=RayExecutor())
    for name in ("vqa.parquet", "ocr.parquet"):
        expected = list(read_parquet(local / "samples" / name, Sample))
        assert expected == list(read_parquet(distributed / "samples" / name, Sample))


def test_vllm_teacher_runs_as_actors_with_a_fake_engine(
    ray_address: str, local_pool: Path, tmp_path: Path
) -> None:
    pool = Pool(local_pool)
    local, distributed = tmp_path / "local", tmp_path / "ray"
    _segments(pool, [local, distributed], keep=2)
    config = GenerateConfig(tasks=(Task.EXTRACT_SINGLE, Task.EXTRACT_MULTI))
    expected = generate_pairs(pool, local, ray_steps.fake_vllm_teacher(str(local_pool)), config)
    factory = functools.partial(ray_steps.fake_vllm_teacher, str(local_pool))
    teacher = ActorTeacher(factory, 2, num_gpus=0)
    try:
        assert teacher.name == "vllm:fake-vl"
        stats = generate_pairs(pool, distributed, teacher, config)
    finally:
        teacher.close()
    assert stats["accepted_total"] == expected["accepted_total"] >= 3
    assert stats["requests_sent"] == expected["requests_sent"]
    assert stats["rejected"] == expected["rejected"]
    assert list(read_jsonl(local / PAIRS_FILE, QAPair)) == list(
        read_jsonl(distributed / PAIRS_FILE, QAPair)
    )
    # A rerun finds every reply in the cache the driver wrote and sends nothing.
    teacher = ActorTeacher(factory, 1, num_gpus=0)
    try:
        again = generate_pairs(pool, distributed, teacher, config)
    finally:
        teacher.close()
    assert again["requests_sent"] == 0 and again["cache_hits"] == stats["requests_sent"]


def test_lvlm_judge_run_on_ray_matches_local(ray_address: str, tmp_path: Path) -> None:
    root = make_doc_benchmark(tmp_path / "data", datasets=("mmlongdoc",), docs=2, pages=2)
    items = load_data([root], lengths=[8192], datasets=["mmlongdoc"])
    run_eval(items, ray_steps.EchoRunner(), tmp_path / "local")
    runner = ActorRunner(ray_steps.EchoRunner, 2, num_gpus=0, chunk=3)
    try:
        summary = run_eval(items, runner, tmp_path / "ray", executor=RayExecutor())
    finally:
        runner.close()
    assert summary.generated == len(items) == 10
    expected = [r.model_dump() for r in read_results(tmp_path / "local")]
    assert expected == [r.model_dump() for r in read_results(tmp_path / "ray")]


@pytest.mark.parametrize("mode", ["data", "tasks"])
def test_a_killed_worker_task_is_retried_without_duplicates(
    ray_address: str, tmp_path: Path, mode: str
) -> None:
    victim = 3
    killed: list[int] = []
    killer = ray_steps.kill_when_written(tmp_path / "victim.pid", killed)
    executor = RayExecutor(max_retries=3, mode=mode)
    tasks = [(x, (x, str(tmp_path), victim)) for x in range(8)]
    outcomes = list(executor.run(ray_steps.square_once_killable, tasks))
    killer.join()
    assert killed and killed[0] != os.getpid()
    assert sorted(o.key for o in outcomes) == list(range(8))
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    assert {o.key: o.value for o in outcomes} == {x: x * x for x in range(8)}
    assert (tmp_path / f"{victim}.attempts").read_text().count("attempt") == 2


def test_a_worker_killed_on_every_attempt_loses_only_its_record(
    ray_address: str, tmp_path: Path
) -> None:
    victim = 5
    killed: list[int] = []
    killer = ray_steps.kill_when_written(tmp_path / "victim.pid", killed)
    tasks = [(x, (x, str(tmp_path), victim)) for x in range(8)]
    outcomes = {
        o.key: o for o in RayExecutor(max_retries=0).run(ray_steps.square_once_killable, tasks)
    }
    killer.join()
    assert sorted(outcomes) == list(range(8))
    assert isinstance(outcomes[victim].error, TaskCrashed)
    assert {k: o.value for k, o in outcomes.items() if k != victim} == {
        x: x * x for x in range(8) if x != victim
    }


@pytest.mark.parametrize("mode", ["data", "tasks"])
def test_every_record_gets_its_own_outcome(ray_address: str, mode: str) -> None:
    kinds = ["ab", "raise", "abc", "hang", "a", "hog", "abcd", "ok"] * 3
    executor = RayExecutor(timeout=3.0, memory_bytes=256 << 20, window=len(kinds), mode=mode)
    outcomes = {
        o.key: o for o in executor.run(ray_steps.bad_record, enumerate((k,) for k in kinds))
    }
    assert sorted(outcomes) == list(range(len(kinds)))
    for index, kind in enumerate(kinds):
        outcome = outcomes[index]
        if kind == "raise":
            assert isinstance(outcome.error, ValueError)
        elif kind == "hang":
            assert isinstance(outcome.error, TaskTimeout)
        elif kind == "hog":
            assert isinstance(outcome.error, TaskMemoryExceeded)
        else:
            assert outcome.value == len(kind)


def test_tasks_are_read_a_window_at_a_time(ray_address: str) -> None:
    read: list[int] = []

    def tasks() -> Iterator[tuple[int, tuple[int, float]]]:
        for x in range(40):
            read.append(x)
            yield x, (x, 0.0)

    executor = RayExecutor(window=8)
    seen = []
    for outcome in executor.run(ray_steps.sleep_then_square, tasks()):
        # Never more than a window ahead of what came back.
        assert len(read) - len(seen) <= 8
        seen.append(outcome.key)
    assert sorted(seen) == list(range(40)) == read


def test_closing_a_run_cancels_its_remaining_tasks(ray_address: str, tmp_path: Path) -> None:
    executor = RayExecutor()
    tasks = [(0, (0, 0.0, str(tmp_path)))] + [(x, (x, 3.0, str(tmp_path))) for x in range(1, 12)]
    run = executor.run(ray_steps.sleep_then_square, tasks)
    assert next(run).key == 0
    run.close()
    quick = list(executor.run(ray_steps.sleep_then_square, [(x, (x, 0.0)) for x in range(4)]))
    assert sorted(o.value for o in quick) == [0, 1, 4, 9]
    # Two CPUs, 3 s a record: ten would be done after 15 s. A closed run stops each of its
    # pipelines at its next block (cancelling what started meanwhile): the first record and
    # the two running when it closed finish, give or take one per pipeline.
    time.sleep(15)
    assert len(list(tmp_path.glob("*.done"))) <= 5


def test_a_killed_actor_is_restarted_and_its_call_retried(ray_address: str, tmp_path: Path) -> None:
    killed: list[int] = []
    killer = ray_steps.kill_when_written(tmp_path / "actor.pid", killed)
    actors = ModelActors(
        functools.partial(ray_steps.Doubler, str(tmp_path), 5), 2, num_gpus=0, max_restarts=2
    )
    try:
        results = dict(actors.map(ray_steps.double, list(range(10))))
    finally:
        killer.join()
        actors.close()
    assert killed
    assert results == {index: 2 * index for index in range(10)}
    assert (tmp_path / "actor.attempts").read_text().count("attempt") == 2


@pytest.mark.slow
def test_a_killed_job_resumes_to_the_same_pool(
    ray_address: str, corpus: Path, local_pool: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pool"
    command = [
        sys.executable, "-c", "from docpool.cli import app; app()", "ingest", str(corpus),
        "--out", str(out), "--executor", "ray", "--ray-address", ray_address, "--workers", "1",
        "--batch-size", "1", "--min-pages", "1", "--chunk-pages", str(INGEST["chunk_pages"]),
    ]  # fmt: skip
    # A documents shard appears (atomically) once the first document is flushed.
    ray_steps.kill_job_when(command, lambda: bool(list((out / "documents").glob("part-*.parquet"))))
    written = len(Pool(out))
    assert 1 <= written < 6
    report = ingest([corpus], out, executor=RayExecutor(), **INGEST)
    assert report.added == 6 - written
    assert pool_records(out) == pool_records(local_pool)
