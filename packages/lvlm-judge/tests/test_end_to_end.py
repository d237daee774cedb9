"""End to end: a tiny Qwen2.5-VL through the transformers runner on a generated set, judged
by rules and by the LLM judge on a local server, resumed, reported; and the CLI commands."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lvlm_judge.cli import app
from lvlm_judge.context import ContextResolver
from lvlm_judge.datasets import load_data
from lvlm_judge.evaluate import read_results, run_eval
from lvlm_judge.judge.cache import JudgeCache
from lvlm_judge.judge.llm import LLMJudge
from lvlm_judge.runners import TransformersRunner
from lvlm_judge.runners.base import GenerationRequest
from lvlm_judge.testing import make_doc_benchmark
from mmprolong_runtime.chat_client import ClientSettings
from mmprolong_runtime.testing import ChatServer
from mmprolong_schemas import Prediction, ScoreTable

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tiny = pytest.importorskip("longctx_rope.tiny")
    return tiny.save_tiny_checkpoint("qwen2.5-vl", tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_doc_benchmark(
        tmp_path_factory.mktemp("data"),
        datasets=("mmlongdoc", "slidevqa"),
        lengths=(8, 16),
        docs=1,
        pages=2,
    )


class CountingRunner:
    """Wraps a runner and counts the items it is asked to generate."""

    def __init__(self, inner: TransformersRunner):
        self.inner = inner
        self.model_name = inner.model_name
        self.max_new_tokens = inner.max_new_tokens
        self.asked = 0

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[Prediction]:
        self.asked += len(requests)
        yield from self.inner.generate(requests)


def test_tiny_model_run_resume_and_llm_judge(
    tiny_checkpoint: Path, data_root: Path, tmp_path: Path, chat_server: ChatServer
) -> None:
    items = load_data([data_root], lengths=[8192, 16384], datasets=["mmlongdoc", "slidevqa"])
    assert len(items) == 20
    runner = CountingRunner(
        TransformersRunner(
            tiny_checkpoint,
            ContextResolver(data_root.parent / "mmlb_image"),
            max_new_tokens=6,
            device_map="cpu",
            model_name="tiny-qwen2.5-vl",
        )  # fmt: skip
    )
    out = tmp_path / "run"
    summary = run_eval(items, runner, out)
    assert runner.asked == 20 and summary.generated == 20
    results = read_results(out)
    assert len(results) == 20
    assert {r.prompt_format for r in results} == {"lvlm-judge-v1"}
    assert all(0.0 <= r.score <= 1.0 and r.judge == "rules" for r in results)
    table = ScoreTable.model_validate_json((out / "scores.json").read_text())
    assert table.lengths == [8192, 16384]
    assert {c.n for c in table.cells} == {5}
    assert "8K.MMLB-D" in (out / "scores.md").read_text()
    assert (out / "scores.csv").read_text().startswith("model,8K.MMLB-D,8K.SLIDE,8K.AVG,16K.")
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A killed run: only 12 lines survived, the last one torn. The rerun does only the rest.
    lines = (out / "predictions.jsonl").read_text().splitlines(keepends=True)
    (out / "predictions.jsonl").write_text("".join(lines[:12]) + lines[12][:20])
    runner.asked = 0
    run_eval(items, runner, out)
    assert runner.asked == 8
    runner.asked = 0
    run_eval(items, runner, out)
    assert runner.asked == 0

    # The LLM judge on top; a rerun costs no call.
    chat_server.reply = lambda body, seen: (
        '[Rationale]: x\n[JSON]: {"student_answer_count": 1, "covered_count": 1}'
        if "student_answer_count" in body["messages"][0]["content"]
        else "[Scoring Rationale]: wrong.\n[Score]: 0 points"
    )
    settings = ClientSettings(chat_server.url, backoff_s=0.01)
    judge = LLMJudge(settings, "judge", cache=JudgeCache(out / "judge.sqlite"))
    judged = run_eval(items, runner, out, judge="llm", llm_judge=judge)
    calls = chat_server.count
    assert calls + judge.stats.skipped + judge.stats.cached == 20
    assert judged.judge_stats["made"] == calls
    llm_results = read_results(out)
    assert all("llm" in r.scores and r.judge == "llm" for r in llm_results)
    again = LLMJudge(settings, "judge", cache=JudgeCache(out / "judge.sqlite"))
    run_eval(items, runner, out, judge="llm", llm_judge=again)
    assert chat_server.count == calls
    assert again.stats.made == 0
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["judge"]["made"] == 0
    assert "mmlongdoc@8192" in run_json["doc_scores"]
    assert run_json["manifest"]["status"] == "done"
    assert run_json["manifest"]["counts"]["judge_made"] == 0


def test_cli_run_report_extend(tiny_checkpoint: Path, data_root: Path, tmp_path: Path) -> None:
    cli = CliRunner()
    config = tmp_path / "run.toml"
    config.write_text(
        f'[run]\nmodel = "{tiny_checkpoint}"\nmodel_name = "tiny"\ndata = ["{data_root}"]\n'
        'lengths = "8K"\ndatasets = "mmlongdoc,slidevqa"\nmax_new_tokens = 4\n'
        'device_map = "cpu"\n'
    )
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    result = cli.invoke(app, ["run", str(config), "--out", str(out_a)])
    assert result.exit_code == 0, result.output
    result = cli.invoke(app, ["run", str(config), "--out", str(out_b), "--prompt-format",
                              "lvlm-judge-v1-page-index", "--model-name", "tiny-b"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert {r.prompt_format for r in read_results(out_b)} == {"lvlm-judge-v1-page-index"}

    paper = tmp_path / "paper.json"
    paper.write_text(json.dumps({"t4": {"MMProLong": {"64K.MMLB-D": 36.0, "AVG": 57.7}}}))
    result = cli.invoke(app, ["report", str(out_a), str(out_b), "--paper-table", str(paper),
                              "--paper-section", "t4", "--paper-row", "MMProLong",
                              "--out", str(tmp_path / "report")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "| tiny [lvlm-judge-v1, rules judge] |" in result.output
    assert (
        "| Δ tiny-b [lvlm-judge-v1-page-index, rules judge] - tiny [lvlm-judge-v1, rules judge] |"
        in result.output
    )
    assert "| paper: MMProLong (t4) |" in result.output
    assert (tmp_path / "report" / "report.png").is_file()

    extended = tmp_path / "ext"
    source = make_doc_benchmark(tmp_path / "many", datasets=("mmlongdoc", "slidevqa"), docs=4)
    result = cli.invoke(app, [
        "extend", str(source), "--source-lengths", "8K", "--to", "1K,2K",
        "--datasets", "mmlongdoc,slidevqa", "--tokenizer", str(tiny_checkpoint),
        "--out", str(extended),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    ext_items = load_data([extended / "mmlongdoc_K2.jsonl"])
    assert len(ext_items) == 20
    assert {item.length for item in ext_items} == {2048}
    assert all(item.original_positions for item in ext_items)

    bad = cli.invoke(app, ["run", "--model", str(tiny_checkpoint), "--data",
                           str(tmp_path / "missing.jsonl")])  # fmt: skip
    assert bad.exit_code == 2
    assert "no such data file" in bad.output


def test_rope_spec_is_applied(tiny_checkpoint: Path, data_root: Path, tmp_path: Path) -> None:
    from longctx_rope import make_spec
    from lvlm_judge.runners.transformers_runner import read_rope_spec

    spec = make_spec("set-base", original_base=1e6, original_context=32768,
                     target_context=131072, base=4e6)  # fmt: skip
    path = tmp_path / "rope.json"
    path.write_text(type(spec).model_dump_json(spec))
    images = ContextResolver(data_root.parent / "mmlb_image")
    runner = TransformersRunner(tiny_checkpoint, images, device_map="cpu",
                                rope_spec=read_rope_spec(path))  # fmt: skip
    text = runner.model.config.get_text_config()
    assert text.rope_parameters["rope_theta"] == 4e6
    assert text.max_position_embeddings == 131072


def test_cli_score(
    tmp_path: Path, chat_server: ChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [
        {"question": "Q1", "answer": "12", "answer_format": "Integer", "prediction": "Answer: 12"},
        {"question": "Q2", "answer": '["red", "blue"]', "answer_format": "List",
         "prediction": "red"},
        {"question": "Q3", "answer": "Not answerable", "answer_format": "None",
         "prediction": "Not answerable", "extra": 1},
        {"question": "Q4", "answer": "[1, 2]", "metric": "soft_acc", "prediction": "[2, 1]"},
        {"question": "Q5", "answer": 1, "metric": "mc_acc", "prediction": "Answer: B"},
        {"question": "Q6", "answer": "key 42", "metric": "sub_em", "prediction": "the KEY 42."},
    ]  # fmt: skip
    source = tmp_path / "preds.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "scored.jsonl"
    cli = CliRunner()
    result = cli.invoke(app, ["score", str(source), "--judge", "rules", "--out", str(out)])
    assert result.exit_code == 0, result.output
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["score"] for r in scored] == pytest.approx([1.0, 2 / 3, 1.0, 1.0, 1.0, 1.0])
    assert all(
        {k: v for k, v in s.items() if k != "score"} == r
        for s, r in zip(scored, records, strict=True)
    )

    chat_server.reply = lambda body, seen: '[JSON]: {"student_answer_count": 2, "covered_count": 1}'
    monkeypatch.setenv("OPENAI_BASE_URL", chat_server.url)
    result = cli.invoke(app, [
        "score", str(source), "--judge", "llm", "--judge-model", "j",
        "--judge-cache", str(tmp_path / "c.db"), "--out", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert chat_server.count == 1  # Q1 and Q3 pre-judged, NIAH by rules
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert scored[1]["score"] == pytest.approx(0.5)

    source.write_text('{"answer": "x", "answer_format": "Blob", "prediction": "x"}\nnot json\n')
    result = cli.invoke(app, ["score", str(source), "--out", str(out)])
    assert result.exit_code == 2
    assert "preds.jsonl:1: unknown answer_format 'Blob'" in result.output
    assert "preds.jsonl:2: not valid JSON" in result.output
