"""run_eval with the openai runner on documents and MM-NIAH: separate tables, runner errors
retried on the next run, report over both tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from lvlm_judge.cli import app
from lvlm_judge.context import ContextResolver
from lvlm_judge.datasets import load_data
from lvlm_judge.evaluate import read_results, run_eval
from lvlm_judge.runners import OpenAIRunner
from lvlm_judge.testing import make_doc_benchmark
from mmprolong_runtime.chat_client import ClientSettings
from mmprolong_runtime.testing import ChatServer, Reply


def _answer(body: dict[str, object], seen: int) -> str:
    content = body["messages"][0]["content"]  # type: ignore[index]
    text = "".join(part.get("text", "") for part in content)
    if "How many times" in text:
        return "[1, 0]"
    if "How many rows" in text:
        return "12"
    return "I do not know"


def test_documents_and_niah_in_one_run(chat_server: ChatServer, tmp_path: Path) -> None:
    root = make_doc_benchmark(tmp_path, datasets=("mmlongdoc",), docs=1, pages=1)
    images = tmp_path / "mmlb_image"
    for name in ("h.png", "n.png"):
        Image.new("RGB", (56, 56), "white").save(images / name)
    niah = root / "counting-image_K8.jsonl"
    niah.write_text(json.dumps({
        "id": 0, "ctxs": [{"text": "Hay <image> stack."}], "image_list": ["h.png"],
        "needle_image_list": ["n.png"], "choices_image": [], "depth": [0.3, 0.6],
        "question": "How many times does <image> appear?", "answer": [1, 0],
    }) + "\n")  # fmt: skip
    items = load_data([root, niah], image_root=images, lengths=[8192], datasets=["mmlongdoc"])
    assert len(items) == 6
    chat_server.reply = _answer
    chat_server.script = [Reply(400)]  # the first item fails for good
    settings = ClientSettings(chat_server.url, backoff_s=0.01, concurrency=1)
    runner = OpenAIRunner(settings, "served", ContextResolver(images), chunk=3)
    out = tmp_path / "run"
    summary = run_eval(items, runner, out, item_set="test items")
    assert len(summary.failed_items) == 1
    assert set(summary.tables) == {"scores", "niah-scores"}
    assert summary.tables["niah-scores"].cells[0].score == 100.0
    # The failed item is recorded and counted, and left out of the mean (not scored 0).
    assert summary.tables["scores"].cells[0].n == 4
    assert summary.tables["scores"].excluded == 1
    assert summary.tables["scores"].protocol == "lvlm-judge-v1"
    assert summary.tables["scores"].item_set == "test items"
    record = json.loads((out / "run.json").read_text())
    assert record["complete"] is False and record["manifest"]["counts"]["runner_errors"] == 1
    assert record["manifest"]["config"]["protocol"] == "lvlm-judge-v1"
    assert "| served [lvlm-judge-v1, rules judge] |" in (out / "scores.md").read_text()
    niah_result = next(r for r in read_results(out) if r.metric is not None)
    assert niah_result.scores == {"soft_acc": 1.0, "soft_acc_positional": 1.0}
    assert (out / "niah-scores.png").is_file()

    before = chat_server.count
    summary = run_eval(items, runner, out)
    assert chat_server.count == before + 1  # only the failed item again
    assert summary.failed_items == []
    assert json.loads((out / "run.json").read_text())["complete"] is True
    integer = next(r for r in read_results(out) if r.answer_format == "Integer")
    assert integer.score == 1.0 and integer.parsed_answer == "12"

    report = CliRunner().invoke(app, ["report", str(out), "--no-compare"])
    assert report.exit_code == 0, report.output
    assert "8K.MMLB-D" in report.output and "8K.mm-niah-counting-image" in report.output


def test_rule_scoring_through_an_executor_gives_the_same_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lvlm_judge import scoring
    from mmprolong_runtime.executor import LocalExecutor
    from mmprolong_schemas import Prediction

    root = make_doc_benchmark(tmp_path, datasets=("mmlongdoc", "slidevqa"), docs=3, pages=1)
    items = load_data([root], lengths=[8192], datasets=["mmlongdoc", "slidevqa"], subset="all")
    predictions = {
        item.item_id: Prediction(
            item_id=item.item_id,
            model="m",
            output=f"Answer: {item.answer if n % 2 else 'no idea'}",
            prompt_format="lvlm-judge-v1",
        )
        for n, item in enumerate(items)
    }
    inline = scoring.judge_predictions(items, predictions)
    monkeypatch.setattr(scoring, "RULE_CHUNK", 4)  # several chunks, finishing in any order
    executed = scoring.judge_predictions(items, predictions, executor=LocalExecutor(2, timeout=60))
    assert len(inline) == len(items) == 30
    assert [r.model_dump() for r in executed] == [r.model_dump() for r in inline]
    assert 0 < sum(r.score for r in inline) < len(inline)
