"""MMLongBench's protocol, read from a checkout at run time, and secrets kept out of output.

The fake checkout below has MMLongBench's structure (data.py's loader functions assigning
user_template / item_template / system_template and prefixing the question in ``update``;
utils.py's two judge functions building ``prompt = TASK + CASE.format(...)`` with a
``max_tokens`` request; utils_prompt.py holding the texts) in our own placeholder wording: the
tests restate where MMLongBench keeps its prompts (EdinburghNLP/MMLongBench data.py, utils.py,
utils_prompt.py), never its text.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lvlm_judge.cli import app
from lvlm_judge.context import ContextResolver
from lvlm_judge.datasets import load_data
from lvlm_judge.evaluate import read_results, run_eval
from lvlm_judge.judge.llm import LLMJudge
from lvlm_judge.mmlb_source import MMLBSourceError, read_judge_prompts, read_templates
from lvlm_judge.prompting import build_prompt
from lvlm_judge.runners.openai_runner import OpenAIRunner
from lvlm_judge.testing import make_doc_benchmark
from mmprolong_runtime.chat_client import ClientSettings
from mmprolong_runtime.testing import ChatServer, Reply
from mmprolong_schemas.units import K

DATA_PY = """
def load_doc_qa(args, path, max_test_samples=None):
    user_template = "OLD LOADER {context} {question}"
    item_template = "old {doc_id}: <image>"
    system_template = "Answer:"


def load_doc_qa_with_llm_judge(args, path, max_test_samples=None):
    user_template = "PLACEHOLDER DOC TASK.\\n\\n{context}\\n\\nQ: {question}"
    item_template = "Pg of {doc_id:.15}: <image>"  # a comment
    system_template = "Answer:"
    prompt_template = user_template + "\\n" + system_template

    def update(sample):
        question = sample["question"]
        doc_id = sample["doc_name"]
        question = "[doc {doc_id:.15}] ".format(doc_id=doc_id) + question
        return {"question": question}

    return {"user_template": user_template}


def load_mm_niah_text(args, path, max_test_samples=None):
    user_template = "PLACEHOLDER TEXT NIAH {context} Q: {question}"
    system_template = "Answer:"


def load_mm_niah_image_count(args, path, max_test_samples=None):
    user_template = "PLACEHOLDER COUNT NIAH {context} Q: {question}"
    system_template = "Answer:"


def load_mm_niah_image_mc(args, path, max_test_samples=None):
    user_template = "PLACEHOLDER MC NIAH {context} Q: {question}"
    system_template = "Answer:"
"""

UTILS_PY = """
from functools import partial
from utils_prompt import PH_TASK, PH_CASE, PH_LIST_TASK, PH_LIST_CASE


def eval_docqa_score_with_llm_judge(gt, pred, extra_info):
    question = extra_info["question"]
    prompt = PH_TASK + PH_CASE.format(question=question, reference=gt, prediction=pred)
    func = partial(client.create, model=extra_info["m"], messages=[prompt], max_tokens=256)


def eval_docqa_list_score_with_llm_judge(gt, pred, extra_info):
    question = extra_info["question"]
    prompt = PH_LIST_TASK + PH_LIST_CASE.format(question=question, reference=gt, prediction=pred)
    func = partial(client.create, model=extra_info["m"], messages=[prompt], max_tokens=256)
"""

UTILS_PROMPT_PY = '''
PH_TASK = """PLACEHOLDER single grading task.
Reply [Score]: n points and [JSON]: {"answer_score": n}
"""
PH_CASE = """CASE q={question} ref={reference} pred={prediction}"""
PH_LIST_TASK = """PLACEHOLDER list grading task with student_answer_count and covered_count.
"""
PH_LIST_CASE = """LIST CASE q={question} ref={reference} pred={prediction}"""
'''


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "MMLongBench"
    root.mkdir()
    (root / "data.py").write_text(DATA_PY)
    (root / "utils.py").write_text(UTILS_PY)
    (root / "utils_prompt.py").write_text(UTILS_PROMPT_PY)
    return root


def test_templates_and_judge_prompts_are_read_from_the_checkout(checkout: Path) -> None:
    templates = read_templates(checkout)
    assert templates.name == "mmlb-v1.1"
    assert templates.doc_user.startswith("PLACEHOLDER DOC TASK.")  # the v1.1 loader wins
    assert templates.doc_page == "Pg of {doc_id:.15}: <image>"
    assert templates.doc_question == "[doc {doc_id:.15}] "
    assert templates.niah_user["text_count"].startswith("PLACEHOLDER TEXT NIAH")
    assert templates.niah_user["image_mc"].startswith("PLACEHOLDER MC NIAH")
    judge = read_judge_prompts(checkout)
    assert judge.max_tokens == 256 and judge.temperature is None
    assert judge.version.startswith("mmlb-v1.1:")
    assert judge.single_prompt("Q", "R", "P").endswith("CASE q=Q ref=R pred=P")
    assert judge.list_prompt("Q", "R", "P").startswith("PLACEHOLDER list grading")

    (checkout / "utils_prompt.py").write_text("PH_TASK = 'x'\n")
    with pytest.raises(MMLBSourceError, match="no string constant PH_CASE"):
        read_judge_prompts(checkout)
    (checkout / "data.py").write_text("def unrelated():\n    pass\n")
    with pytest.raises(MMLBSourceError, match="no function load_doc_qa_with_llm_judge or"):
        read_templates(checkout)


def test_a_checkout_prefixing_generations_otherwise_is_refused(checkout: Path) -> None:
    # MMLongBench's eval.py prepends data["system_template"] to each generation and data.py's
    # post-processing parses after the same prefix (parse_output(..., prefix=system_template));
    # our scoring does both with "Answer:", so a checkout with another prefix cannot be exact.
    text = (checkout / "data.py").read_text()
    count_loader = text.index("def load_mm_niah_image_count")
    changed = text[:count_loader] + text[count_loader:].replace('"Answer:"', '"Response:"', 1)
    (checkout / "data.py").write_text(changed)
    with pytest.raises(
        MMLBSourceError, match=r"load_mm_niah_image_count prefixes generations with 'Response:'"
    ):
        read_templates(checkout)


def test_prompt_built_from_mmlongbench_templates(checkout: Path, tmp_path: Path) -> None:
    data = make_doc_benchmark(tmp_path, datasets=("mmlongdoc",), docs=1, pages=2)
    item = load_data([data], lengths=[8 * K], datasets=["mmlongdoc"], subset="all")[0]
    prompt = build_prompt(item, read_templates(checkout))
    assert prompt.text() == (
        "PLACEHOLDER DOC TASK.\n\nPg of mmlongdoc-doc0: <image>\n\nPg of mmlongdoc-doc0: "
        "<image>\n\nQ: [doc mmlongdoc-doc0] What is the title word on page 1?"
    )
    assert prompt.images == item.context
    assert prompt.prompt_format == "mmlb-v1.1"
    assert prompt.question == "[doc mmlongdoc-doc0] What is the title word on page 1?"


def _answer(body: dict[str, object], seen: int) -> str:
    if body["model"] == "judge":
        prompt = json.dumps(body["messages"])
        if "LIST CASE" in prompt:
            return '[Rationale]: ok\n[JSON]: {"student_answer_count": 2, "covered_count": 1}'
        return '[Scoring Rationale]: fine\n[Score]: 1 points\n[JSON]: {"answer_score": 1}'
    text = json.dumps(body["messages"])
    if "title word" in text:
        return ""  # an empty output: left out of the mean, as MMLongBench v1.1 does
    return "apple"


def test_official_protocol_judges_every_item_as_mmlongbench_asks(
    checkout: Path, tmp_path: Path, chat_server: ChatServer
) -> None:
    data = make_doc_benchmark(tmp_path, datasets=("mmlongdoc",), docs=1, pages=1)
    items = load_data([data], lengths=[8 * K], datasets=["mmlongdoc"], subset="all")
    chat_server.reply = _answer
    settings = ClientSettings(chat_server.url, backoff_s=0.01, max_backoff_s=0.02, max_retries=1)
    runner = OpenAIRunner(settings, "served", ContextResolver(tmp_path / "mmlb_image"))
    judge = LLMJudge(settings, "judge", pre_judge=False, prompts=read_judge_prompts(checkout))
    out = tmp_path / "run"
    templates = read_templates(checkout)
    judge_calls: list[dict[str, object]] = []

    def respond(body: dict[str, object], seen: int) -> str:
        if body["model"] == "judge":
            judge_calls.append(body)
        return _answer(body, seen)

    chat_server.reply = respond
    summary = run_eval(items, runner, out, prompt_format=templates, judge="llm", llm_judge=judge)
    table = summary.tables["scores"]
    assert table.protocol == "mmlb-v1.1" and table.prompt_format == "mmlb-v1.1"
    assert summary.empty_outputs == ["mmlongdoc:8K:mmlongdoc_0"]
    # Every non-empty item is judged, "apple" == "apple" included (no rule pre-judge).
    assert len(judge_calls) == 4
    body = judge_calls[0]
    assert body["max_tokens"] == 256 and "temperature" not in body
    sent = [json.dumps(call["messages"]) for call in judge_calls]
    # The judge gets the question as the model saw it, with the checkout's document prefix.
    assert any("q=[doc mmlongdoc-doc0] How many rows does the table have?" in s for s in sent)
    assert table.excluded == 1 and table.cells[0].n == 4
    results = {r.item_id: r for r in read_results(out)}
    listed = results["mmlongdoc:8K:mmlongdoc_3"]
    assert listed.score == pytest.approx(2 * 0.5 * 0.5 / 1.0)  # covered 1 of 2, 2 given
    record = json.loads((out / "run.json").read_text())
    assert record["protocol"] == "mmlb-v1.1"
    assert record["manifest"]["config"]["judge_prompts"].startswith("mmlb-v1.1:")


def test_failed_judge_call_is_recorded_counted_and_retried_next_run(
    tmp_path: Path, chat_server: ChatServer
) -> None:
    data = make_doc_benchmark(tmp_path, datasets=("slidevqa",), docs=1, pages=1)
    items = load_data([data], lengths=[8 * K], datasets=["slidevqa"], subset="all")[:2]
    settings = ClientSettings(chat_server.url, backoff_s=0.01, max_backoff_s=0.02, max_retries=2,
                              concurrency=1)  # fmt: skip
    runner = OpenAIRunner(settings, "served", ContextResolver(tmp_path / "mmlb_image"))
    judge = LLMJudge(settings, "judge", pre_judge=False)
    chat_server.reply = lambda body, seen: (
        "[Score]: 1 points" if body["model"] == "judge" else "something"
    )
    # Two model calls (one empty output, never judged), then the one judge call fails 3 times:
    # retried, then given up.
    chat_server.script = [Reply(200, "a"), Reply(200, ""), *[Reply(503)] * 3]
    out = tmp_path / "run"
    summary = run_eval(items, runner, out, judge="llm", llm_judge=judge)
    assert len(summary.judge_failed) == 1 and summary.failures == 1
    assert len(summary.empty_outputs) == 1
    # Under our protocol the empty output scores 0; the judge failure is left out.
    table = summary.tables["scores"]
    assert table.excluded == 1 and table.cells[0].n == 1 and table.cells[0].score == 0.0
    failed = next(r for r in read_results(out) if r.judge_source == "judge-failed")
    assert failed.excluded and failed.error
    record = json.loads((out / "run.json").read_text())
    assert record["complete"] is False and record["manifest"]["counts"]["judge_failures"] == 1
    assert "503" in record["judge_errors"][0]
    summary = run_eval(items, runner, out, judge="llm", llm_judge=LLMJudge(settings, "judge"))
    assert summary.judge_failed == [] and summary.tables["scores"].excluded == 0


SECRET = "sk-test-DO-NOT-LEAK-4242"


def test_api_key_never_in_a_repr() -> None:
    settings = ClientSettings("http://127.0.0.1:1/v1", api_key=SECRET)
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    judge = LLMJudge(settings, "judge")
    assert SECRET not in repr(judge.settings)


def test_api_key_never_in_logs_results_or_manifests(
    tmp_path: Path, chat_server: ChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_doc_benchmark(tmp_path, datasets=("mmlongdoc",), docs=1, pages=1)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_BASE_URL", chat_server.url)
    chat_server.reply = lambda body, seen: "12"
    chat_server.script = [Reply(401)]  # one refused call: its error is recorded
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "run", "--model", "served", "--runner", "openai", "--data", str(data), "--lengths", "8K",
        "--datasets", "mmlongdoc", "--judge", "llm", "--judge-model", "judge", "--all",
        "--out", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert chat_server.requests[-1].auth == f"Bearer {SECRET}"  # the key was used
    assert SECRET not in result.output
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_api_key_never_in_a_traceback(tmp_path: Path) -> None:
    """typer prints a failing command's locals when pretty_exceptions_show_locals is on (its
    default in some versions); lvlm-judge turns it off. The same failure under an app with it
    on shows the key, so the check can see a leak."""
    script = tmp_path / "boom.py"
    script.write_text(
        "import os, sys, typer\n"
        "from lvlm_judge.cli import app\n"
        "if sys.argv[1] == 'loud':\n"
        "    app = typer.Typer(pretty_exceptions_show_locals=True)\n"
        "@app.command('boom')\n"
        "def boom() -> None:\n"
        "    api_key = os.environ['LEAK_CHECK_KEY']\n"
        "    raise RuntimeError('judge server down')\n"
        "@app.command('other')\n"
        "def other() -> None:\n"
        "    pass\n"
        "app(['boom'])\n"
    )
    env = {**os.environ, "COLUMNS": "200", "TERM": "dumb", "LEAK_CHECK_KEY": SECRET}
    env.pop("_TYPER_STANDARD_TRACEBACK", None)
    ours = subprocess.run([sys.executable, str(script), "ours"], capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip
    loud = subprocess.run([sys.executable, str(script), "loud"], capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip
    assert "judge server down" in ours.stderr
    assert SECRET not in ours.stderr + ours.stdout
    assert SECRET in loud.stderr + loud.stdout
