"""The suite's parts that need no lmms-eval: the results-file import, the command line given to
lmms-eval, the error when lmms-eval is missing, MM-NIAH's paper columns, containsAll."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from lvlm_judge.lmms import (
    LmmsEvalError,
    LmmsModel,
    import_results,
    lmms_version,
    qwen2_5_vl_model,
    run_tasks,
)
from lvlm_judge.suite import SuiteReport, niah_scores, read_rope, run_suite, suite_row
from lvlm_judge.vtcbench import contains_all
from mmprolong_schemas import ScoreCell, ScoreTable


def _results_file(folder: Path) -> Path:
    """A results file as lmms-eval 0.7.3 writes it (lmms_eval/loggers/evaluation_tracker.py,
    save_results_aggregated: ``<output>/<model_name_sanitized>/<date>_results.json``; keys and
    "metric,filter" result names as lmms_eval/evaluator.py builds them), with the samples log
    of one task (save_results_samples: ``<date>_samples_<task>.jsonl``)."""
    target = folder / "__ckpt" / "20261202_120000_results.json"
    target.parent.mkdir(parents=True)
    data = {
        "results": {
            "videomme": {"alias": "videomme", "videomme_perception_score,none": 65.1,
                         "videomme_perception_score_stderr,none": "N/A"},
            "longvideobench_val_v": {"alias": "longvideobench_val_v", "lvb_acc,none": 0.6043,
                                     "lvb_acc_stderr,none": "N/A"},
        },
        "group_subtasks": {"videomme": [], "longvideobench_val_v": []},
        "configs": {"videomme": {"task": "videomme"}, "longvideobench_val_v": {}},
        "versions": {"videomme": 0.0, "longvideobench_val_v": "Yaml"},
        "n-samples": {"videomme": {"original": 2700, "effective": 2700},
                      "longvideobench_val_v": {"original": 1337, "effective": 1337}},
        "config": {"model": "qwen2_5_vl", "model_args": "pretrained=/ckpt"},
        "lmms_eval_version": "0.7.3",
    }  # fmt: skip
    target.write_text(json.dumps(data), encoding="utf-8")
    target.with_name("20261202_120000_samples_videomme.jsonl").write_text(
        "".join(json.dumps({"doc_id": i}) + "\n" for i in range(3)), encoding="utf-8"
    )
    return target


def test_import_results_scales_to_percent_and_labels_the_producer(tmp_path: Path) -> None:
    scores = {s.task: s for s in import_results(_results_file(tmp_path), group="video")}
    assert scores["videomme"].score == pytest.approx(65.1)  # already percent upstream
    assert scores["longvideobench_val_v"].score == pytest.approx(60.43)  # a fraction upstream
    assert scores["videomme"].n == 3  # the samples log wins over n-samples
    assert scores["longvideobench_val_v"].n == 1337
    # The paper's video sampling differs from lmms-eval's frame cap: the label says both.
    assert scores["videomme"].protocol == (
        "frames not recorded; the paper samples 1 fps, at most 768 frames, 24,576 video tokens "
        "(B.6)"
    )
    path = _results_file(tmp_path / "framed")
    data = json.loads(path.read_text())
    data["config"]["model_args"] = "pretrained=/ckpt,max_num_frames=64,device_map=auto"
    path.write_text(json.dumps(data))
    framed = {s.task: s for s in import_results(path, group="video")}
    assert (framed["videomme"].protocol or "").startswith("max_num_frames=64; the paper")
    assert scores["videomme"].source == "lmms-eval 0.7.3 (qwen2_5_vl)"
    assert scores["longvideobench_val_v"].paper_column == "LongVideoBench"
    report = SuiteReport(checkpoint="/ckpt", groups=["video"], scores=list(scores.values()))
    assert suite_row(report) == {
        "Video-MME": pytest.approx(65.1),
        "LongVideoBench": pytest.approx(60.43),
    }


def test_import_rejects_a_file_that_is_not_lmms_eval_results(tmp_path: Path) -> None:
    bad = tmp_path / "x_results.json"
    bad.write_text('{"scores": {}}', encoding="utf-8")
    with pytest.raises(LmmsEvalError, match="not an lmms-eval results file"):
        import_results(bad, group="video")


def test_qwen2_5_vl_model_args() -> None:
    model = qwen2_5_vl_model(
        "/ckpt", min_pixels=3136, max_pixels=12845056, max_num_frames=64,
        attn_implementation="flash_attention_2",
    )  # fmt: skip
    assert model.name == "qwen2_5_vl"
    assert model.arg_string() == (
        "pretrained=/ckpt,min_pixels=3136,max_pixels=12845056,max_num_frames=64,"
        "device_map=auto,attn_implementation=flash_attention_2"
    )
    with pytest.raises(LmmsEvalError, match="attn_implementation"):
        qwen2_5_vl_model(
            "/c", min_pixels=1, max_pixels=2, max_num_frames=1, attn_implementation="x"
        )
    with pytest.raises(LmmsEvalError, match="cannot contain"):
        LmmsModel("qwen2_5_vl", {"pretrained": "/a,b"}).arg_string()


def test_missing_lmms_eval_names_what_to_install(tmp_path: Path) -> None:
    # This interpreter has no lmms-eval (it is kept out of our environments on purpose).
    with pytest.raises(LmmsEvalError, match="pip install lmms-eval"):
        lmms_version(sys.executable)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"text_config": {"rope_parameters": {"rope_theta": 4e6}}}')
    model = qwen2_5_vl_model(ckpt, min_pixels=3136, max_pixels=200704, max_num_frames=8)
    with pytest.raises(LmmsEvalError, match="pip install lmms-eval"):
        run_suite(["video"], ckpt, tmp_path / "out", lmms_model=model,
                  lmms_python=sys.executable, log=lambda _: None)  # fmt: skip
    assert not (tmp_path / "out" / "suite.json").exists()  # never an empty table


def test_a_failing_task_is_recorded_and_the_others_go_on(tmp_path: Path) -> None:
    # A "python" that fails every task the way an unreachable data set does.
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho \"ConnectionError: Couldn't reach 'lmms-lab' on the Hub\"\n")
    fake.chmod(0o755)
    model = LmmsModel("qwen2_5_vl", {"pretrained": "/ckpt"})
    scores, failures = run_tasks(
        ["videomme", "mlvu_dev"], model, tmp_path / "out", group="video", python=str(fake)
    )
    assert scores == []
    assert set(failures) == {"videomme", "mlvu_dev"}
    assert "lmms-eval/Video-MME is not reachable" in failures["videomme"]
    assert "huggingface-cli download --repo-type dataset sy1998/MLVU_dev" in failures["mlvu_dev"]


def test_read_rope_keeps_both_forms(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({
        "rope_theta": 4e6, "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "text_config": {"rope_parameters": {"rope_type": "default", "rope_theta": 4e6}},
    }))  # fmt: skip
    rope = read_rope(tmp_path)
    assert rope["rope_theta"] == 4e6
    assert rope["rope_parameters"]["rope_theta"] == 4e6
    assert rope["rope_scaling"]["type"] == "mrope"
    (tmp_path / "config.json").write_text(json.dumps({
        "rope_theta": 1e6, "text_config": {"rope_parameters": {"rope_theta": 4e6}},
    }))  # fmt: skip
    with pytest.raises(LmmsEvalError, match="disagree"):
        read_rope(tmp_path)


def test_niah_scores_average_text_and_image_needles_per_paper_column() -> None:
    cells = [
        ScoreCell(dataset="mm-niah-retrieval-text", length=65536, n=50, score=80.0),
        ScoreCell(dataset="mm-niah-retrieval-image", length=65536, n=50, score=60.0),
        ScoreCell(dataset="mm-niah-counting-image", length=65536, n=50, score=10.0),
    ]
    table = ScoreTable(model="m", judge="rules", prompt_format="mmlb-v1.1", cells=cells)
    scores = {s.task: s for s in niah_scores(table, "lvlm-judge MM-NIAH")}
    assert scores["64K.Ret"].score == pytest.approx(70.0) and scores["64K.Ret"].n == 100
    assert scores["64K.Count"].score == pytest.approx(10.0)
    assert scores["64K.Ret"].paper_table == "table17_mm_niah"
    assert "Appendix B.4" in (scores["64K.Ret"].protocol or "")
    assert (scores["64K.Count"].protocol or "").startswith("image needles only")


def _score(group: str, task: str, value: float, n: int = 10, column: str | None = None) -> Any:
    from lvlm_judge.lmms import SuiteScore

    return SuiteScore(group=group, task=task, metric="m", value=value, score=value, n=n,
                      source="s", paper_column=column)  # fmt: skip


def test_paper_averages_are_computed_the_papers_way() -> None:
    from lvlm_judge.suite import paper_averages

    # Paper Table 18, MMProLong: Ret 91.75, Reas 22.88, Mem 40.5 on 800/800/600 items give
    # the overall 52.73 (weighted by items, Appendix B.5); the plain mean would be 51.71.
    vtc = [_score("vtc", "Retrieval", 91.75, 800, "VTC.Ret"),
           _score("vtc", "Reasoning", 22.88, 800, "VTC.Reas"),
           _score("vtc", "Memory", 40.5, 600, "VTC.Mem")]  # fmt: skip
    assert paper_averages(vtc) == {"VTC.AVG": pytest.approx(52.73, abs=0.005)}
    assert paper_averages(vtc[:2]) == {}  # a split missing: no overall
    # Table 17, 64K MMProLong: the macro average of the three families is 56.61.
    niah = [_score("niah", f"64K.{c}", v) for c, v in
            (("Ret", 74.83), ("Count", 27.67), ("Reas", 67.33))]  # fmt: skip
    assert paper_averages(niah) == {"64K.AVG": pytest.approx(56.61, abs=0.005)}
    # Table 3, Qwen2.5-VL-7B: the macro average of the six benchmarks is 66.47.
    short = [_score("short", c, v, column=c) for c, v in (
        ("MMBench", 80.68), ("RWQA", 68.76), ("MMMU", 53.0), ("MMMU-Pro", 37.8),
        ("MathVista", 70.5), ("OCRBench", 88.1))]  # fmt: skip
    assert paper_averages(short) == {"Short.AVG": pytest.approx(66.47, abs=0.005)}
    assert paper_averages(short[1:]) == {}


def test_the_short_group_runs_the_mmmu_pro_setting_the_paper_reports() -> None:
    from lvlm_judge.lmms import LMMS_TASKS
    from lvlm_judge.suite import LMMS_GROUPS, SHORT_COLUMNS

    # The paper (Appendix B.7) reports VLMEvalKit's MMMU_Pro_10c, the standard 10-option
    # setting: lmms-eval's mmmu_pro_standard (dataset_name "standard (10 options)").
    assert LMMS_TASKS["mmmu_pro_standard"].paper_column == "MMMU-Pro"
    assert "mmmu_pro_vision" not in LMMS_GROUPS["short"]
    assert SHORT_COLUMNS == ("MMBench", "RWQA", "MMMU", "MMMU-Pro", "MathVista", "OCRBench")
    assert all(LMMS_TASKS[t].paper_column in SHORT_COLUMNS for t in LMMS_GROUPS["short"])


@pytest.mark.parametrize(
    ("response", "gold", "expected"),
    [
        # The examples of VTCBench's docs/DATA.md (containsAll).
        ("magic number is 6822442", ["6822442"], 1.0),
        ("magic number is 6822442", ["1234567", "6822442"], 0.5),
        ("magic number is 1234567", ["6822442"], 0.0),
        # src/vtcbench/metric.py calc_metrics drops <think> blocks, strips golds, compares
        # them as text, and lower-cases both sides (since its commit b21255d).
        ("<think>6822442</think> no idea", ["6822442"], 0.0),
        ("the answer is 42", [" 42 "], 1.0),
        ("the answer is 42", [42], 1.0),
        ("Paris", ["paris"], 1.0),
        ("PARIS is the capital", ["Paris", "Lyon"], 0.5),
    ],
)
def test_contains_all_restates_vtcbench(response: str, gold: list[object], expected: float) -> None:
    assert contains_all(response, gold) == expected


def _unreachable_python(folder: Path) -> str:
    fake = folder / "python-offline"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$2" in *importlib.metadata*) echo 0.7.3; exit 0;; esac\n'
        'echo "ConnectionError: Couldn\'t reach the Hub"\n'
    )
    fake.chmod(0o755)
    return str(fake)


def _checkpoint(folder: Path) -> Path:
    ckpt = folder / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"text_config": {"rope_parameters": {"rope_theta": 4e6}}}')
    return ckpt


def test_suite_goes_on_after_failing_tasks_and_writes_both(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path)
    model = qwen2_5_vl_model(ckpt, min_pixels=3136, max_pixels=200704, max_num_frames=8)
    niah_table = ScoreTable(model="m", judge="rules", prompt_format="mmlb-v1.1", cells=[
        ScoreCell(dataset="mm-niah-reasoning-text", length=131072, n=4, score=25.0)])  # fmt: skip
    report = run_suite(
        ["video", "niah"], ckpt, tmp_path / "out", lmms_model=model,
        lmms_python=_unreachable_python(tmp_path), niah=lambda out: niah_table,
        log=lambda _: None,
    )  # fmt: skip
    assert set(report.failures) == {
        "video/videomme",
        "video/mlvu_dev",
        "video/longvideobench_val_v",
    }
    assert [(s.task, s.score) for s in report.scores] == [("128K.Reas", 25.0)]
    assert report.rope == {"rope_parameters": {"rope_theta": 4e6}}
    saved = SuiteReport.model_validate_json((tmp_path / "out" / "suite.json").read_text())
    assert saved == report


def test_cli_suite_and_report_beside_the_paper(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lvlm_judge.cli import app

    ckpt = _checkpoint(tmp_path)
    runner = CliRunner()
    base = ["suite", str(ckpt), "--lmms-python"]
    missing = runner.invoke(app, [*base, sys.executable, "--out", str(tmp_path / "a")])
    assert missing.exit_code == 2 and "pip install lmms-eval" in missing.output
    offline = runner.invoke(
        app, [*base, _unreachable_python(tmp_path), "--groups", "short", "--out", str(tmp_path)]
    )
    assert offline.exit_code == 1 and "no score was produced" in offline.output
    assert "lmms-lab-encoder/MMBench is not reachable" in offline.output

    scores = import_results(_results_file(tmp_path / "lmms"), group="video")
    SuiteReport(checkpoint=str(ckpt), groups=["video"], scores=scores).write(tmp_path / "suite")
    paper = Path("/work/shared/reference/paper-tables.json")
    if not paper.is_file():  # the published numbers, restated for what this test reads
        paper = tmp_path / "paper.json"
        paper.write_text(json.dumps({"table19_long_video": {"MMProLong": {"Video-MME": 67.78}}}))
    SuiteReport(checkpoint="/other", groups=["video"], scores=scores[:1]).write(tmp_path / "s2")
    folders = [str(tmp_path / "suite"), str(tmp_path / "s2")]
    shown = runner.invoke(
        app, ["report", *folders, "--paper-table", str(paper), "--paper-row", "MMProLong"]
    )
    assert shown.exit_code == 0, shown.output
    assert "ckpt [suite]" in shown.output and "paper: MMProLong (generalization)" in shown.output
    assert "Video-MME" in shown.output
    assert "65.10" in shown.output and "67.78" in shown.output
    assert "Δ other [suite] - ckpt [suite]" in shown.output  # --compare is the default
    assert "What produced each score of ckpt [suite]:" in shown.output
    assert "- Video-MME: lmms-eval 0.7.3 (qwen2_5_vl); videomme_perception_score, n=3" in (
        shown.output
    )


def test_niah_group_through_our_mmlongbench_loaders(tmp_path: Path, chat_server: Any) -> None:
    """MM-NIAH files in MMLongBench's layout (mmlb_data/NIAH/{task}-{modality}_test_K{n}_dep{d}
    .jsonl, fields as its release: id, ctxs, image_list, needle_image_list, choices_image,
    depth, question, answer), run by the suite through load_data, a runner and run_eval."""
    from PIL import Image

    from lvlm_judge.suite import mm_niah

    data, images = tmp_path / "mmlb_data", tmp_path / "mmlb_image"  # side by side, as released
    (data / "NIAH").mkdir(parents=True)
    images.mkdir()
    for name in ("h.png", "n.png"):
        Image.new("RGB", (56, 56), "white").save(images / name)
    records = {
        "retrieval-text_test_K8_dep3.jsonl": {
            "id": 0, "ctxs": [{"text": "Hay <image>."}, {"text": "The key is 42."}],
            "image_list": ["h.png"], "needle_image_list": [], "choices_image": [],
            "depth": 0.5, "question": "What is the key?", "answer": "42",
        },
        "counting-image_test_K8_dep3.jsonl": {
            "id": 0, "ctxs": [{"text": "Hay <image> stack."}], "image_list": ["h.png"],
            "needle_image_list": ["n.png"], "choices_image": [], "depth": [0.3, 0.6],
            "question": "How many times does <image> appear?", "answer": [1, 0],
        },
        "retrieval-text_test_K16_dep3.jsonl": {},  # another length: not read
    }  # fmt: skip
    for name, record in records.items():
        (data / "NIAH" / name).write_text(json.dumps(record) + "\n")
    chat_server.reply = lambda body, seen: "Answer: [1, 0]" if "How many" in str(body) else "42"
    niah = mm_niah("served", data, lengths=[8192], runner="openai", base_url=chat_server.url)
    report = run_suite(["niah"], _checkpoint(tmp_path), tmp_path / "out", niah=niah,
                       log=lambda _: None)  # fmt: skip
    assert report.failures == {}
    assert {s.task: s.score for s in report.scores} == {"8K.Ret": 100.0, "8K.Count": 100.0}
    assert (tmp_path / "out" / "niah" / "niah-scores.json").is_file()


def test_niah_group_reads_vlmevalkits_256k_tsv(tmp_path: Path, chat_server: Any) -> None:
    """256K MM-NIAH from VLMEvalKit's MMLongBench_256K.tsv (columns of its
    scripts/build_mmlongbench_tsv.py; the prompt <instruction>\n\n<haystack>\n\nQuestion: <q>,
    images under <LMUData>/images/mmlb_image/<length>/ as its mmlongbench.py looks)."""
    import csv

    from PIL import Image

    from lvlm_judge.suite import mm_niah

    Image.new("RGB", (56, 56), "white").save(tmp_path / "h.png")
    (tmp_path / "images" / "mmlb_image" / "256K").mkdir(parents=True)
    (tmp_path / "h.png").rename(tmp_path / "images" / "mmlb_image" / "256K" / "h.png")
    extra = {"question": "What is the key?", "answer": "42", "depth": 0.5,
             "dataset_name": "retrieval-text"}  # fmt: skip
    prompt = (
        "Read on.\nReply briefly.\n\nHay\n\n<image token>\n\nThe key is 42.\n\n"
        "Question: What is the key?"
    )
    path = tmp_path / "MMLongBench_256K.tsv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["index", "question_id", "question", "answer", "image_path",
                         "mmlb_subset", "task", "source_dataset", "question_type", "tags",
                         "extra_info"])  # fmt: skip
        writer.writerow([0, "7", prompt, "42", json.dumps(["h.png"]), "NIAH_256_sr25", "NIAH",
                         "retrieval-text", "open", "[]", json.dumps(extra)])  # fmt: skip
    chat_server.reply = lambda body, seen: "42"
    niah = mm_niah("served", path, lengths=[256 * 1024], runner="openai",
                   base_url=chat_server.url)  # fmt: skip
    report = run_suite(["niah"], _checkpoint(tmp_path), tmp_path / "out", niah=niah,
                       log=lambda _: None)  # fmt: skip
    assert report.failures == {}
    assert {s.task: s.score for s in report.scores} == {"256K.Ret": 100.0}


def test_cli_suite_on_a_served_checkpoint_calls_lmms_evals_openai_model(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lvlm_judge.cli import app

    calls = tmp_path / "calls"
    fake = tmp_path / "python-recording"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$2" in *importlib.metadata*) echo 0.7.3; exit 0;; esac\n'
        f'echo "$@" >> {calls}\n'
    )
    fake.chmod(0o755)
    result = CliRunner().invoke(app, [
        "suite", str(_checkpoint(tmp_path)), "--groups", "video", "--lmms-python", str(fake),
        "--lmms-base-url", "http://h:1/v1", "--lmms-served-name", "served", "--limit", "2",
        "--out", str(tmp_path / "out"),
    ])  # fmt: skip
    assert result.exit_code == 1 and "failed (exit 0, no results file)" in result.output
    lines = calls.read_text().splitlines()
    assert [line.split("--tasks ")[1].split()[0] for line in lines] == [
        "videomme", "mlvu_dev", "longvideobench_val_v"
    ]  # fmt: skip
    assert all("-m lmms_eval --model openai" in line for line in lines)
    assert all("--model_args model_version=served,base_url=http://h:1/v1" in line for line in lines)
    assert all("--limit 2" in line and "--log_samples" in line for line in lines)


def test_a_finished_task_is_not_run_again(tmp_path: Path) -> None:
    _results_file(tmp_path / "out" / "videomme")  # made by qwen2_5_vl with pretrained=/ckpt
    model = LmmsModel("qwen2_5_vl", {"pretrained": "/ckpt"})
    scores, failures = run_tasks(
        ["videomme"], model, tmp_path / "out", group="video", python="/nonexistent/python"
    )
    assert failures == {} and [s.score for s in scores] == [pytest.approx(65.1)]
    other = LmmsModel("qwen2_5_vl", {"pretrained": "/other"})
    _, failures = run_tasks(
        ["videomme"], other, tmp_path / "out", group="video", python="/nonexistent/python"
    )
    assert set(failures) == {"videomme"}  # other arguments: it runs (and here cannot)


def test_cli_import_lmms_eval(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lvlm_judge.cli import app

    results = _results_file(tmp_path / "lmms")
    runner = CliRunner()
    done = runner.invoke(app, ["import-lmms-eval", str(results), "--checkpoint", "ckpt",
                               "--group", "video", "--out", str(tmp_path / "s")])  # fmt: skip
    assert done.exit_code == 0, done.output
    saved = SuiteReport.model_validate_json((tmp_path / "s" / "suite.json").read_text())
    assert {s.task for s in saved.scores} == {"videomme", "longvideobench_val_v"}
    bad = tmp_path / "bad_results.json"
    bad.write_text("[]")
    failed = runner.invoke(app, ["import-lmms-eval", str(bad), "--checkpoint", "c",
                                 "--out", str(tmp_path / "t")])  # fmt: skip
    assert failed.exit_code == 2 and "not an lmms-eval results file" in failed.output
