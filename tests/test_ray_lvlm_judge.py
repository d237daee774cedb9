"""lvlm-judge on a local 2-CPU Ray instance, with a tiny Qwen2.5-VL (random weights) run by the
transformers runner in Ray actors and the rule scoring in Ray Data: the same predictions and
scores as the local executor; a runner actor killed mid-chunk is restarted and its chunk
retried, without a duplicate prediction; a killed job rerun resumes and recomputes only the
predictions it had not written. Skipped where Ray is not installed."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lvlm_judge.cli import app
from lvlm_judge.datasets import load_data
from lvlm_judge.evaluate import run_eval
from lvlm_judge.runners.actors import ActorRunner
from lvlm_judge.testing import make_doc_benchmark
from mmprolong_runtime.ray_executor import RayExecutor
from mmprolong_schemas import Prediction, read_jsonl

ray = pytest.importorskip("ray")
tiny = pytest.importorskip("longctx_rope.tiny")

pytestmark = [pytest.mark.slow]

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import ray_steps  # noqa: E402  (Ray actors import it by name from this folder)

MAX_NEW_TOKENS = 12
"""Long enough that a job can be killed between two chunks' worth of generation."""
DATASETS = ("mmlongdoc", "slidevqa")
ITEMS = 20  # 2 datasets x 2 documents x 5 questions


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    # Ray workers import the test steps by module name.
    with ray_steps.local_ray() as address:
        yield address


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path: Path = tiny.save_tiny_checkpoint("qwen2.5-vl", tmp_path_factory.mktemp("ckpt") / "tiny")
    return path


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_doc_benchmark(tmp_path_factory.mktemp("data"), datasets=DATASETS, docs=2, pages=2)


def run_args(checkpoint: Path, data_root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "run", "--model", str(checkpoint), "--model-name", "tiny", "--data", str(data_root),
        "--lengths", "8K", "--datasets", ",".join(DATASETS), "--device-map", "cpu",
        "--max-new-tokens", str(MAX_NEW_TOKENS), "--out", str(out), *extra,
    ]  # fmt: skip


def ray_args(address: str) -> list[str]:
    return ["--executor", "ray", "--ray-address", address, "--actors", "2", "--actor-gpus", "0"]


def invoke(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)


@pytest.fixture(scope="module")
def local_run(checkpoint: Path, data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "run"
    invoke(run_args(checkpoint, data_root, out))
    return out


def predictions(out: Path) -> dict[str, dict[str, Any]]:
    """Every prediction by item id (latency aside), checking that no item appears twice."""
    found: dict[str, dict[str, Any]] = {}
    for prediction in read_jsonl(out / "predictions.jsonl", Prediction):
        assert prediction.item_id not in found, f"{prediction.item_id} predicted twice"
        found[prediction.item_id] = prediction.model_dump(exclude={"latency_s"})
    return found


def results(out: Path) -> list[str]:
    return (out / "results.jsonl").read_text().splitlines()


def test_run_on_ray_matches_local(
    ray_address: str, checkpoint: Path, data_root: Path, local_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    invoke(run_args(checkpoint, data_root, out, *ray_args(ray_address)))
    expected = predictions(local_run)
    assert len(expected) == ITEMS and all(p["error"] is None for p in expected.values())
    assert predictions(out) == expected
    assert results(out) == results(local_run)
    assert (out / "scores.json").read_text() == (local_run / "scores.json").read_text()
    record = json.loads((out / "run.json").read_text())
    assert record["generated"] == ITEMS and record["reused"] == 0


def test_a_killed_runner_actor_is_restarted_and_its_chunk_retried(
    ray_address: str, checkpoint: Path, data_root: Path, local_run: Path, tmp_path: Path
) -> None:
    items = load_data([data_root], lengths=[8192], datasets=list(DATASETS))
    victim = items[len(items) // 2].item_id
    killed: list[int] = []
    killer = ray_steps.kill_when_written(tmp_path / "runner.pid", killed)
    factory = functools.partial(
        ray_steps.stalling_tiny_runner,
        str(tmp_path), victim, str(checkpoint), str(data_root.parent / "mmlb_image"),
        MAX_NEW_TOKENS,
    )  # fmt: skip
    runner = ActorRunner(factory, 2, num_gpus=0, chunk=4)
    try:
        summary = run_eval(items, runner, tmp_path / "run", executor=RayExecutor())
    finally:
        killer.join()
        runner.close()
    assert killed and killed[0] != os.getpid()
    assert (tmp_path / "runner.attempts").read_text().count("attempt") == 2
    assert summary.generated == ITEMS and not summary.failed_items
    assert predictions(tmp_path / "run") == predictions(local_run)
    assert results(tmp_path / "run") == results(local_run)


def test_a_killed_job_resumes_without_recomputing_predictions(
    ray_address: str, checkpoint: Path, data_root: Path, local_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    command = [
        sys.executable, "-c", "from lvlm_judge.cli import app; app()",
        *run_args(checkpoint, data_root, out, *ray_args(ray_address)),
    ]  # fmt: skip
    path = out / "predictions.jsonl"
    # Two actors answer chunks of 16 and 4 items: the short chunk lands first, and the job is
    # killed while the long one is still being generated.
    ray_steps.kill_job_when(
        command,
        lambda: path.exists() and path.read_bytes().count(b"\n") >= 1,
        timeout=120,
        poll=0.02,
    )
    written = path.read_bytes().count(b"\n")
    assert 1 <= written < ITEMS
    invoke(run_args(checkpoint, data_root, out, *ray_args(ray_address)))
    record = json.loads((out / "run.json").read_text())
    assert record["reused"] == written
    assert record["generated"] == ITEMS - written
    assert predictions(out) == predictions(local_run)
    assert results(out) == results(local_run)
