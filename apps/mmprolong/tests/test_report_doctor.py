"""The report writer on hand-made inputs, the paper's reference rows, and the doctor."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmprolong.doctor import Machine, machine_findings, stage_picks
from mmprolong.paper import paper_row, rows_for
from mmprolong.recipes import load_recipe
from mmprolong.report import ReportData, write_report
from mmprolong_runtime import RunManifest
from mmprolong_schemas import ScoreCell, ScoreTable


def _table(model: str, scores: dict[int, float]) -> ScoreTable:
    return ScoreTable(
        model=model,
        judge="rules",
        prompt_format="lvlm-judge-v1",
        cells=[ScoreCell(dataset="held-out", length=n, n=4, score=s) for n, s in scores.items()],
        protocol="lvlm-judge-v1",
        item_set="held-out QA pairs, all",
        excluded=1,
    )


def test_report_has_every_section_and_figure(tmp_path: Path) -> None:
    recipe = load_recipe("demo-tiny")
    pool_figure = tmp_path / "tokens_hist.png"
    pool_figure.write_bytes(b"\x89PNG\r\n\x1a\ndocpool")
    manifest = RunManifest.start("mmprolong.pool", {"x": 1}, ["mmprolong"]).finish(documents=3)
    data = ReportData(
        recipe=recipe,
        run_dir=tmp_path,
        manifests={"pool": manifest},
        pool_stats={"documents": 3, "pages": 40},
        package_figures={"pool": ("Tokens per document (drawn by docpool)", pool_figure)},
        sample_tokens=[300, 500, 800, 900],
        task_tokens={"extract-single": 800, "reasoning": 200},
        loss=[(1, 5.0), (2, 4.5), (3, 4.1)],
        scores={
            "base": _table("tiny", {1024: 10.0, 2048: 5.0}),
            "trained": _table("tiny-ft", {1024: 20.0, 2048: 15.0}),
        },
        paper_rows=rows_for(recipe),
        answer_nll={
            label: {
                "model": model,
                "metric": "answer-nll",
                "cells": [{"dataset": "held-out", "length": 1024, "n": 4, "nll": nll}],
            }
            for label, model, nll in (("base", "tiny", 2.5), ("trained", "tiny-ft", 1.25))
        },  # fmt: skip
    )
    path = write_report(data, tmp_path / "report")
    text = path.read_text()
    assert "| base: tiny | 2.500 (n=4) |" in text and "| trained: tiny-ft | 1.250 (n=4) |" in text
    for heading in (
        "## Stages",
        "## Document pool",
        "## Training mixture",
        "## Training",
        "## Evaluation (this run)",
        "## Reference: the paper's published numbers",
        "## Recipe",
        "## Run manifests",
    ):
        assert heading in text
    for figure in ("tokens_hist.png", "mixture_lengths.png", "loss.png", "score_vs_length.png"):
        assert f"]({figure})" in text
        assert (tmp_path / "report" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "not" in text.split("## Reference")[1].split("\n\n")[1]  # labelled: not our results
    assert "| MMProLong | 36.00 |" in text
    assert "20.00 (n=4)" in text
    # Every eval row names the protocol that produced it, and excluded items are counted.
    assert "| base: tiny | lvlm-judge-v1, rules judge |" in text
    assert "Protocol: lvlm-judge-v1" in text and "items: held-out QA pairs, all" in text
    assert "tiny random-weight stand-in" in text
    assert 'name = "demo-tiny"' in text


def test_report_without_results_says_so(tmp_path: Path) -> None:
    text = write_report(
        ReportData(recipe=load_recipe("demo-tiny"), run_dir=tmp_path), tmp_path
    ).read_text()
    assert "No training log found." in text
    assert "No evaluation scores found." in text


def test_paper_rows() -> None:
    assert paper_row("table2_extraction_reasoning_ratio", "8:2").values["AVG"] == 57.7
    with pytest.raises(KeyError):
        paper_row("table2_extraction_reasoning_ratio", "9:1")
    qwen3 = rows_for(load_recipe("qwen3-vl-8b"))
    assert [row.table for row in qwen3] == ["table20_qwen3vl_doc"] * 2
    extra = rows_for(
        load_recipe("mmprolong-qwen2.5-vl-7b"), ("table16_mrope_base", "reasoning/8e6")
    )
    assert extra[-1].values["AVG"] == 54.34


def _machine(**changes: object) -> Machine:
    fields: dict[str, object] = {
        "gpus": [],
        "cuda": None,
        "gpu_capability": None,
        "flash_attn": None,
        "torch_varlen": True,
        "vllm": None,
        "ray": None,
        "pymupdf_layout": "2.0",
        "tesseract": None,
        "gloo": True,
        "nccl": False,
        "cpus": 2,
        "disk_free": 50 * 2**30,
        "disk_path": Path("."),
    }
    fields.update(changes)
    return Machine(**fields)  # type: ignore[arg-type]


def test_doctor_on_a_cpu_box() -> None:
    machine = _machine()
    found = {f.name: f for f in machine_findings(machine)}
    assert found["GPUs"].status == "missing"
    assert found["torch varlen attention"].status == "warn"
    assert found["vllm"].status == "missing"
    assert "qasynth[vllm]" in found["vllm"].detail
    assert found["process groups"].detail == "gloo"
    assert "mmprolong" in found
    picks = {
        (f.area, f.name): f for f in stage_picks(load_recipe("mmprolong-qwen2.5-vl-7b"), machine)
    }
    assert picks[("synth", "teacher")].status == "warn"
    assert picks[("eval", "runner")].status == "warn"
    assert picks[("train", "devices")].status == "warn"
    demo = {(f.area, f.name): f for f in stage_picks(load_recipe("demo-tiny"), machine)}
    assert demo[("synth", "teacher")].detail.startswith("rules")
    assert demo[("eval", "runner")].status == "ok"


def test_doctor_on_a_gpu_node() -> None:
    machine = _machine(
        gpus=["H100 (80 GiB)"] * 8,
        cuda="12.8",
        gpu_capability=(9, 0),
        vllm="0.11",
        flash_attn="2.8",
        nccl=True,
        disk_free=2**30,
    )
    found = {f.name: f for f in machine_findings(machine)}
    assert found["torch varlen attention"].status == "ok"
    assert found["disk"].status == "warn"
    picks = {
        (f.area, f.name): f for f in stage_picks(load_recipe("mmprolong-qwen2.5-vl-7b"), machine)
    }
    assert picks[("synth", "teacher")].status == "ok"
    assert picks[("train", "devices")].status == "ok"
    assert picks[("train", "devices")].detail.startswith("nccl on cuda")


def test_doctor_says_why_better_attention_backends_were_not_chosen() -> None:
    """On a GPU node whose torch varlen_attn has 2.10's signature and whose flash_attn is
    flash-attn-4's namespace package (seqpar_train.contract_fakes stand in for both)."""
    from seqpar_train.contract_fakes import kernel_fakes

    machine = _machine(gpus=["H100 (80 GiB)"] * 8, gpu_capability=(9, 0), nccl=True)
    with kernel_fakes(flash="4", torch_varlen="2.10"):
        picks = {
            (f.area, f.name): f
            for f in stage_picks(load_recipe("mmprolong-qwen2.5-vl-7b"), machine)
        }
    detail = picks[("train", "attention")].detail
    assert detail.startswith("sdpa; not flash: `from flash_attn import flash_attn_varlen_func`")
    assert "not torch-varlen: torch" in detail and "takes no scale or window_size" in detail


def test_a_package_figure_replaces_the_reports_own(tmp_path: Path) -> None:
    drawn = tmp_path / "loss_curve.png"
    drawn.write_bytes(b"\x89PNG\r\n\x1a\nfrom-the-package")
    data = ReportData(
        recipe=load_recipe("demo-tiny"),
        run_dir=tmp_path,
        loss=[(1, 2.0), (2, 1.0)],
        package_figures={"loss": ("Loss (drawn by seqpar-train)", drawn)},
    )
    text = write_report(data, tmp_path / "report").read_text()
    assert "![Loss (drawn by seqpar-train)](loss_curve.png)" in text
    assert (tmp_path / "report" / "loss_curve.png").read_bytes() == drawn.read_bytes()
    assert not (tmp_path / "report" / "loss.png").exists()


def test_a_missing_reader_costs_its_section_not_the_report(tmp_path: Path) -> None:
    from mmprolong.orchestrator import StageContext, StageUnavailable
    from mmprolong.stages.report import Contributor, ReportStage

    class Broken(Contributor):
        name = "broken"

        def config(self, recipe: object) -> dict[str, object]:
            return {}

        def run(self, ctx: StageContext) -> dict[str, int]:
            return {}

        def contribute(self, ctx: StageContext, data: ReportData) -> None:
            raise StageUnavailable("stage 'broken' needs pkg.reader")

    stage = ReportStage([Broken()])
    counts = stage.run(StageContext(tmp_path, load_recipe("demo-tiny"), "report"))
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Notes" in text
    assert "- stage 'broken' needs pkg.reader" in text
    assert counts["sections"] >= 5


def test_report_shows_tokens_trained_against_the_budget_and_both_mfus(tmp_path: Path) -> None:
    import json

    from mmprolong.orchestrator import StageContext
    from mmprolong.stages._training import training_books

    recipe = load_recipe("demo-tiny")
    ctx = StageContext(tmp_path, recipe, "train", lambda _: None)
    ctx.dir.mkdir(parents=True)
    step = {"step": 1, "loss": 5.0, "tokens_trained": 3_860_000, "token_budget": 5_000_000}
    last = step | {"step": 2, "row_fill": 0.77, "mfu_causal": 0.31, "mfu_veomni": 0.52}
    (ctx.dir / "metrics.jsonl").write_text(json.dumps(step) + "\n" + json.dumps(last) + "\n")
    books = training_books(ctx)
    assert books["tokens trained / budget"] == "3,860,000 / 5,000,000 (77.2%)"
    assert books["MFU causal (ours) / 12*sum(s^2) (VeOmni)"] == "31.0% / 52.0%"
    text = write_report(
        ReportData(recipe=recipe, run_dir=tmp_path, training_books=books), tmp_path / "r"
    ).read_text()
    assert "| tokens trained / budget | 3,860,000 / 5,000,000 (77.2%) |" in text
    # A device without a known peak: no MFU, and the report says why.
    (ctx.dir / "metrics.jsonl").write_text(json.dumps(step | {"mfu_causal": None}) + "\n")
    assert "not reported" in training_books(ctx)["MFU causal (ours) / 12*sum(s^2) (VeOmni)"]


def test_report_shows_the_held_out_loss_per_length_bucket(tmp_path: Path) -> None:
    import json

    from mmprolong.orchestrator import StageContext
    from mmprolong.stages._training import logged_losses, validation_losses

    recipe = load_recipe("demo-tiny")
    ctx = StageContext(tmp_path, recipe, "train", lambda _: None)
    ctx.dir.mkdir(parents=True)

    def validation(step: int, short: float, long: float) -> dict[str, object]:
        # the record seqpar-train's validation pass writes (seqpar_train.validation)
        return {
            "kind": "validation",
            "step": step,
            "loss": (short * 10 + long * 30) / 40,
            "label_tokens": 40,
            "samples": 3,
            "skipped_samples": 0,
            "buckets": {
                "512-1K": {"loss": short, "label_tokens": 10, "samples": 1, "max_tokens": 1024},
                "1K-2K": {"loss": long, "label_tokens": 30, "samples": 2, "max_tokens": 2048},
            },
            "seconds": 0.5,
        }

    lines = [
        validation(0, 6.0, 7.0),
        {"step": 1, "loss": 5.0, "lr": 1e-3},
        {"step": 2, "loss": 4.0, "lr": 1e-3},
        validation(2, 3.5, 4.5),
    ]
    (ctx.dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    # The training loss reader is not confused by validation records.
    assert logged_losses(ctx) == [(1, 5.0), (2, 4.0)]
    losses = validation_losses(ctx)
    assert list(losses) == ["512-1K", "1K-2K", "all"]
    assert losses["1K-2K"] == [(0, 7.0, 2), (2, 4.5, 2)]
    assert losses["all"][-1] == (2, 4.25, 3)
    text = write_report(
        ReportData(
            recipe=recipe, run_dir=tmp_path, loss=logged_losses(ctx), validation_loss=losses
        ),
        tmp_path / "r",
    ).read_text()
    assert "| length bucket (tokens) | samples | step 0 | step 2 |" in text
    assert "| 1K-2K | 2 | 7.0000 | 4.5000 |" in text
    assert "| all | 3 | 6.7500 | 4.2500 |" in text
    assert (tmp_path / "r" / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_the_stages_table_shows_a_done_stage_with_its_failures(tmp_path: Path) -> None:
    start = RunManifest.start("mmprolong.eval", {"x": 1}, ["mmprolong"])
    data = ReportData(
        recipe=load_recipe("demo-tiny"),
        run_dir=tmp_path,
        manifests={
            "eval": start.finish(items=4, base_failures=1, trained_failures=0),
            "pool": start.finish(documents=3),
        },
    )
    text = write_report(data, tmp_path / "report").read_text()
    assert "| eval | done (1 failure) |" in text
    assert "| pool | done |" in text
