"""qasynth's stages on a local 2-CPU Ray instance: generate (rules teacher as actors),
assemble and mix write what the local run writes; a teacher actor killed mid-generate is
restarted and its batch retried, with complete output and no duplicates; a generate job killed
outright resumes from the request cache and sends no finished request again. Skipped where Ray
is not installed."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from docpool import Pool, ingest
from docpool.testing import make_corpus
from mmprolong_runtime.ray_executor import RayExecutor
from mmprolong_schemas import (
    MixtureSpec,
    QAPair,
    Sample,
    Segment,
    Task,
    read_jsonl,
    read_parquet,
    write_jsonl,
)
from mmprolong_schemas.units import M
from qasynth.cache import RequestCache
from qasynth.generate import GenerateConfig, Rejection
from qasynth.mix import build_mixture
from qasynth.pipeline import (
    CACHE_FILE,
    PAIRS_FILE,
    QA_STATS_FILE,
    REJECTIONS_FILE,
    SEGMENTS_FILE,
    assemble_samples,
    generate_pairs,
    segment_pool,
)
from qasynth.segments import DocumentSelection
from qasynth.teachers.actors import ActorTeacher, make_actor_teacher
from qasynth.teachers.base import ReplyCallback, TeacherRequest
from qasynth.teachers.rules import RulesTeacher

ray = pytest.importorskip("ray")

sys.path.insert(0, str(Path(__file__).parent))
import ray_steps  # noqa: E402  (Ray actors import it by name from this folder)

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    # The killable teacher below is defined here; Ray ships it by value, not by module name.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with ray_steps.local_ray() as address:
        yield address


@pytest.fixture(scope="module")
def pool_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qasynth-ray")
    make_corpus(root / "pdfs", n_docs=4, seed=3, pages=(12, 24))
    ingest([root / "pdfs"], root / "pool", workers=2, min_pages=1)
    return root / "pool"


@pytest.fixture(scope="module")
def local_run(pool_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: every stage in this process."""
    run = tmp_path_factory.mktemp("local-run")
    pool = Pool(pool_path)
    segment_pool(pool, run, DocumentSelection(doc_pages=(12, 24)), per_doc=2, seed=1)
    generate_pairs(pool, run, RulesTeacher(pool.get))
    assemble_samples(pool, run, ocr=True)
    return run


def _copy_segments(local_run: Path, run: Path) -> None:
    write_jsonl(run / SEGMENTS_FILE, list(read_jsonl(local_run / SEGMENTS_FILE, Segment)))


def _pairs(run: Path) -> list[QAPair]:
    return list(read_jsonl(run / PAIRS_FILE, QAPair))


def _cached(run: Path) -> int:
    """Replies in the run's request cache (0 while a starting job has not created it)."""
    if not (run / CACHE_FILE).exists():
        return 0
    try:
        with sqlite3.connect(run / CACHE_FILE) as db:
            return int(db.execute("SELECT COUNT(*) FROM replies").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def _requests_sent(run: Path) -> int:
    return int(json.loads((run / QA_STATS_FILE).read_text())["requests_sent"])


def _rows(folder: Path) -> list[dict[str, object]]:
    shards = sorted(folder.glob("samples-*.parquet"))
    return [row for shard in shards for row in pq.read_table(shard).to_pylist()]


def test_generate_assemble_and_mix_on_ray_match_local(
    ray_address: str, pool_path: Path, local_run: Path, tmp_path: Path
) -> None:
    pool = Pool(pool_path)
    run = tmp_path / "run"
    _copy_segments(local_run, run)
    teacher = make_actor_teacher("rules", pool_path, actors=2, address=ray_address)
    try:
        generate_pairs(pool, run, teacher, GenerateConfig(batch_size=4))
    finally:
        teacher.close()
    pairs = _pairs(run)
    assert len(pairs) >= 6 and pairs == _pairs(local_run)
    rejected = [list(read_jsonl(r / REJECTIONS_FILE, Rejection)) for r in (run, local_run)]
    assert rejected[0] == rejected[1]

    executor = RayExecutor(ray_address)
    assemble_samples(pool, run, ocr=True, executor=executor)
    for name in ("vqa.parquet", "ocr.parquet"):
        expected = list(read_parquet(local_run / "samples" / name, Sample))
        assert expected and expected == list(read_parquet(run / "samples" / name, Sample))

    spec = MixtureSpec(token_budget=2 * M, min_tokens=1, doc_pages=(1, 100), seed=3)
    inputs = [local_run / "samples"]
    here = build_mixture(inputs, tmp_path / "mix-local", spec, shard_size=3, plot=False)
    there = build_mixture(
        inputs, tmp_path / "mix-ray", spec, shard_size=3, plot=False, executor=executor
    )
    assert len(here["shards"]) >= 3 and there["shards"] == here["shards"]
    assert there["tasks"] == here["tasks"]
    assert _rows(tmp_path / "mix-ray") == _rows(tmp_path / "mix-local")


class KillableRules(RulesTeacher):
    """The rules teacher on an actor. Its first batch holding the first request of
    ``victim``'s extract-single unit (counted in ``folder``, across actor restarts) writes the
    actor's pid and waits to be killed."""

    def __init__(self, pool_path: str, folder: str, victim: str):
        super().__init__(Pool(pool_path).get)
        self.folder = Path(folder)
        self.victim = victim

    def complete(self, requests: Sequence[TeacherRequest], on_reply: ReplyCallback) -> None:
        victim = any(
            r.segment.segment_id == self.victim and r.task is Task.EXTRACT_SINGLE and r.attempt == 0
            for r in requests
        )
        if victim and ray_steps.count_attempt(self.folder / "victim.attempts") == 1:
            ray_steps.stall_to_be_killed(self.folder / "actor.pid", 30)
        super().complete(requests, on_reply)


def test_a_killed_teacher_actor_is_retried_without_duplicates(
    ray_address: str, pool_path: Path, local_run: Path, tmp_path: Path
) -> None:
    pool = Pool(pool_path)
    run = tmp_path / "run"
    _copy_segments(local_run, run)
    segments = list(read_jsonl(run / SEGMENTS_FILE, Segment))
    victim = segments[len(segments) // 2].segment_id
    killed: list[int] = []
    killer = ray_steps.kill_when_written(tmp_path / "actor.pid", killed)
    factory = functools.partial(KillableRules, str(pool_path), str(tmp_path), victim)
    teacher = ActorTeacher(factory, 2, num_gpus=0, address=ray_address)
    try:
        assert teacher.name == RulesTeacher(pool.get).name
        stats = generate_pairs(pool, run, teacher, GenerateConfig(batch_size=3))
    finally:
        killer.join()
        teacher.close()
    assert killed and killed[0] != os.getpid()
    # The killed batch ran again on the restarted actor, once.
    assert (tmp_path / "victim.attempts").read_text().count("attempt") == 2
    pairs = _pairs(run)
    assert pairs == _pairs(local_run)
    assert len({p.qa_id for p in pairs}) == len(pairs) == stats["accepted_total"]
    assert stats["requests_sent"] == _requests_sent(local_run)
    with RequestCache(run / CACHE_FILE) as cache:
        assert len(cache) == stats["requests_sent"]


class PoisonedRules(RulesTeacher):
    """The rules teacher on an actor, raising (as a crashed engine would) on every batch that
    holds a request about ``victim``."""

    def __init__(self, pool_path: str, victim: str):
        super().__init__(Pool(pool_path).get)
        self.victim = victim

    def complete(self, requests: Sequence[TeacherRequest], on_reply: ReplyCallback) -> None:
        if any(r.segment.segment_id == self.victim for r in requests):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        super().complete(requests, on_reply)


def test_a_failing_teacher_actor_fails_only_its_requests(
    ray_address: str, pool_path: Path, local_run: Path, tmp_path: Path
) -> None:
    pool = Pool(pool_path)
    run = tmp_path / "run"
    _copy_segments(local_run, run)
    segments = list(read_jsonl(run / SEGMENTS_FILE, Segment))
    victim = segments[0].segment_id
    factory = functools.partial(PoisonedRules, str(pool_path), victim)
    teacher = ActorTeacher(factory, 2, num_gpus=0, address=ray_address)
    try:
        stats = generate_pairs(pool, run, teacher, GenerateConfig(batch_size=3))
    finally:
        teacher.close()
    # batch_size 3 over 2 actors: slices of 2 and 1 requests; the victim's requests fail on
    # every attempt, every other unit is answered as in the local run.
    failed = [
        r for r in read_jsonl(run / REJECTIONS_FILE, Rejection) if r.reason == "teacher-error"
    ]
    assert failed and {r.segment_id for r in failed} == {victim}
    assert all("illegal memory access" in r.detail for r in failed)
    lost = (segments[0].doc_id, segments[0].pages)
    expected = [p for p in _pairs(local_run) if (p.doc_id, p.segment) != lost]
    assert expected and _pairs(run) == expected
    assert stats["units_without_pair"] == len(_pairs(local_run)) - len(expected)


_SLOW_JOB = textwrap.dedent(
    """
    import sys, time
    from docpool import Pool
    from qasynth.generate import GenerateConfig
    from qasynth.pipeline import generate_pairs
    from qasynth.teachers.actors import ActorTeacher
    from qasynth.teachers.rules import RulesTeacher

    pool_path, run, address = sys.argv[1:4]

    class Slow(RulesTeacher):
        # Long enough per batch for the test to kill the job between two replies.
        def complete(self, requests, on_reply):
            time.sleep(0.4)
            super().complete(requests, on_reply)

    def factory():
        return Slow(Pool(pool_path).get)

    teacher = ActorTeacher(factory, 1, num_gpus=0, address=address)
    generate_pairs(Pool(pool_path), run, teacher, GenerateConfig(batch_size=1))
    """
)


def test_a_killed_generate_job_resumes_without_resending(
    ray_address: str, pool_path: Path, local_run: Path, tmp_path: Path
) -> None:
    pool = Pool(pool_path)
    run = tmp_path / "run"
    _copy_segments(local_run, run)
    command = [sys.executable, "-c", _SLOW_JOB, str(pool_path), str(run), ray_address]
    ray_steps.kill_job_when(command, lambda: _cached(run) >= 2)
    answered = _cached(run)
    sent_locally = _requests_sent(local_run)
    assert 2 <= answered < sent_locally
    assert not (run / PAIRS_FILE).exists()

    teacher = make_actor_teacher("rules", pool_path, actors=2, address=ray_address)
    try:
        stats = generate_pairs(pool, run, teacher, GenerateConfig(batch_size=4))
    finally:
        teacher.close()
    # Every reply stored before the kill is reused; only the rest is sent.
    assert stats["cache_hits"] == answered
    assert stats["requests_sent"] == sent_locally - answered
    assert _pairs(run) == _pairs(local_run)
    assert _cached(run) == sent_locally
