"""End to end: `mmprolong run demo-tiny` through every package, then kill-mid-train-and-rerun.

Runs the real CLI in a subprocess (as a user would), checks every stage's artefact, then
kills a second run during training and checks that the rerun resumes training without
redoing any earlier stage.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmprolong.orchestrator import read_manifest
from mmprolong_schemas import Recipe, Sample, ScoreTable, read_parquet

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

STAGES = ["pool", "synth", "mix", "rope", "train", "eval", "report"]
TIMEOUT = 900
_COMPLETE = re.compile(r"step-\d+")
"""A finished checkpoint folder (seqpar-train writes step-N.partial-XYZ first, then renames)."""


def _mmprolong(*args: str) -> list[str]:
    return [sys.executable, "-m", "mmprolong.cli", *args]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        _mmprolong(*args), cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def _finished_at(run_dir: Path) -> dict[str, object]:
    times: dict[str, object] = {}
    for stage in STAGES:
        manifest = read_manifest(run_dir / stage)
        if manifest is not None and manifest.status == "done":
            times[stage] = manifest.finished_at
    return times


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("demo")
    _run("run", "demo-tiny", "--run-dir", str(work / "run"), cwd=work)
    return work / "run"


def test_every_stage_is_done_with_its_artefacts(demo_run: Path) -> None:
    for stage in STAGES:
        manifest = read_manifest(demo_run / stage)
        assert manifest is not None, stage
        assert manifest.status == "done", stage
        assert manifest.counts, stage
    counts = {stage: read_manifest(demo_run / stage).counts for stage in STAGES}  # type: ignore[union-attr]
    assert counts["pool"]["documents"] >= 8
    assert counts["synth"]["qa_pairs"] > 0
    assert counts["mix"]["samples"] > 0
    assert counts["train"]["steps"] >= 10
    assert counts["synth"]["heldout_samples"] > 0
    # Validation loss on the held-out documents' samples: at start, every 8 steps, at the end.
    from seqpar_train.metrics import read_metrics

    validation = read_metrics(demo_run / "train" / "metrics.jsonl", kind="validation")
    steps = counts["train"]["steps"]
    assert [r["step"] for r in validation] == sorted({0, *range(8, steps + 1, 8), steps})
    assert all(r["samples"] > 0 and r["buckets"] for r in validation)
    assert counts["eval"]["items"] > 0

    assert (demo_run / "rope" / "extended" / "config.json").exists()
    extended = json.loads((demo_run / "rope" / "extended" / "config.json").read_text())
    assert "4000000" in json.dumps(extended) or "4e6" in json.dumps(extended).lower()

    scores = {
        label: ScoreTable.model_validate_json(
            (demo_run / "eval" / label / "scores.json").read_text()
        )
        for label in ("base", "trained")
    }
    for table in scores.values():
        assert len(table.lengths) == 2
        assert table.protocol == "lvlm-judge-v1"
    # The judge-free metric shows base vs trained where rule scores of a tiny model are 0.
    nll = {
        label: json.loads((demo_run / "eval" / label / "answer-nll.json").read_text())
        for label in ("base", "trained")
    }
    for table in nll.values():
        assert len(table["cells"]) == 2 and all(c["nll"] > 0 for c in table["cells"])

    report = demo_run / "report" / "report.md"
    text = report.read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    # Pool tokens, mixture lengths, loss curve, score vs length: each linked and written.
    assert len(figures) == 4, figures
    for figure in figures:
        assert (demo_run / "report" / figure).read_bytes()[:4] == b"\x89PNG", figure
    assert "Reference: the paper's published numbers" in text
    assert "Held-out answer loss" in text
    assert "## Run manifests" in text
    assert "Answer likelihood (answer-nll)" in text


def test_rerun_skips_everything(demo_run: Path) -> None:
    before = _finished_at(demo_run)
    result = _run("run", "demo-tiny", "--run-dir", str(demo_run), cwd=demo_run.parent)
    assert _finished_at(demo_run) == before
    assert "skip" in result.stderr
    status = _run("status", str(demo_run), cwd=demo_run.parent)
    assert status.stdout.count("done") >= len(STAGES)


def test_kill_mid_train_then_rerun_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _run("run", "demo-tiny", "--run-dir", str(run_dir), "--until", "rope", cwd=tmp_path)
    before = _finished_at(run_dir)
    assert set(before) == {"pool", "synth", "mix", "rope"}

    process = subprocess.Popen(
        _mmprolong("run", "demo-tiny", "--run-dir", str(run_dir), "--until", "train"),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + TIMEOUT
    checkpoints = run_dir / "train"
    try:
        # Wait for the first checkpoint, then kill the whole process group (like a lost node).
        while time.monotonic() < deadline and process.poll() is None:
            if any(_COMPLETE.fullmatch(path.name) for path in checkpoints.glob("checkpoints/*")):
                break
            time.sleep(1)
        assert process.poll() is None, "training finished before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)

    manifest = read_manifest(run_dir / "train")
    assert manifest is not None
    assert manifest.status == "running"
    status = _run("status", str(run_dir), cwd=tmp_path)
    assert "partial" in status.stdout

    result = _run("run", "demo-tiny", "--run-dir", str(run_dir), "--until", "train", cwd=tmp_path)
    assert "resume" in result.stderr
    after = _finished_at(run_dir)
    for stage in ("pool", "synth", "mix", "rope"):
        assert after[stage] == before[stage], f"{stage} was redone"
    train = read_manifest(run_dir / "train")
    assert train is not None
    assert train.status == "done"
    assert train.counts["resumed_from_step"] > 0


def _records(run_dir: Path) -> dict[str, object]:
    """What the data stages wrote, order aside: pool documents, QA pairs, mixture rows."""
    import pyarrow.parquet as pq

    from docpool import Pool

    pairs = run_dir / "synth" / "train" / "qa" / "pairs.jsonl"
    rows = [
        (row["sample_id"], row["task"], row["est_tokens"])
        for shard in sorted((run_dir / "mix").glob("samples-*.parquet"))
        for row in pq.read_table(shard, columns=["sample_id", "task", "est_tokens"]).to_pylist()
    ]
    return {
        "documents": sorted(Pool(run_dir / "pool" / "pool").doc_ids()),
        "pairs": sorted(pairs.read_text(encoding="utf-8").splitlines()),
        "mixture": sorted(rows),
    }


def test_data_stages_on_ray_write_what_local_wrote(demo_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    run_dir = tmp_path / "run"
    _run(
        "run", "demo-tiny", "--run-dir", str(run_dir), "--until", "mix", "--executor", "ray",
        cwd=tmp_path,
    )  # fmt: skip
    assert set(_finished_at(run_dir)) == {"pool", "synth", "mix"}
    on_ray, local = _records(run_dir), _records(demo_run)
    assert on_ray["documents"] and on_ray["pairs"] and on_ray["mixture"]
    assert on_ray == local


def test_the_demo_mixture_fills_rows_by_cutting_documents(demo_run: Path) -> None:
    """The samples qasynth assembled carry cut_after, and seqpar-train's fill="cut" fills
    rows with them: fuller rows than whole samples, each cut sample built as planned."""
    from longctx_rope.tiny import tiny_config
    from seqpar_train import TrainerConfig
    from seqpar_train.batch import IGNORE_INDEX
    from seqpar_train.data.mixture import MixtureRows

    recipe = Recipe.model_validate_json((demo_run / "recipe.json").read_text())
    samples = [s for f in sorted((demo_run / "mix").glob("samples-*.parquet"))
               for s in read_parquet(f, Sample)]  # fmt: skip
    assert samples and all(s.cut_after in s.pages for s in samples)  # VQA only in the demo

    def rows(fill: str) -> MixtureRows:
        config = TrainerConfig.from_recipe(
            recipe,
            output_dir=str(demo_run / "unused"),
            model={"tiny": "qwen2.5-vl", "rope": None},
            data={
                "mixture": str(demo_run / "mix"),
                "pool": str(demo_run / "pool" / "pool"),
                "vision": recipe.vision.model_dump(mode="json"),
                "fill": fill,
            },
        )
        return MixtureRows.from_config(config, tiny_config("qwen2.5-vl"))

    def fill(source: MixtureRows, count: int) -> float:
        planned = [sum(m.tokens for m in source.plan(i)[0]) for i in range(count)]
        return sum(planned) / (count * source.max_length)

    whole, cut = rows("whole"), rows("cut")
    count = len(samples) // 4  # rows of the first window, whichever the packing
    assert fill(cut, count) > fill(whole, count)
    index = next(i for i in range(count) if any(m.cut_page is not None for m in cut.plan(i)[0]))
    members, _ = cut.plan(index)
    row, reasons = cut.row(index)
    assert not reasons and row.doc_lens == [m.tokens for m in members]
    assert row.num_tokens <= cut.max_length
    assert int((row.labels != IGNORE_INDEX).sum()) > 0
