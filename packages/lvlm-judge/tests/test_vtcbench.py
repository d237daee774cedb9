"""VTCBench-Wild through lvlm-judge: the release's split files, the tiny Qwen2.5-VL answering,
containsAll scoring, resume, the Memory split judged by an LLM on a local server, the
sample-weighted average, and the failures when something is missing."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longctx_rope.tiny import save_tiny_checkpoint, tiny_image
from lvlm_judge.suite import vtc_wild
from lvlm_judge.vtcbench import VtcDataError, contains_all, load_vtc_split

MEMORY_QA = [
    ("When did the hiking trip happen?", ["the week after Easter"]),
    ("Which instrument did she start learning?", ["violin"]),
    ("Who came to the picnic?", ["Ana", "Jonas"]),
]
"""LoCoMo-style conversation questions with short-phrase answers (VTC-Memory is built from
LoCoMo, VTCBench docs/DATA.md); a list of several answers is judged joined by ", "."""


def _release(root: Path) -> Path:
    """Split files as the Hugging Face release MLLM-CL/VTCBench holds them: one Parquet file
    per split named <split>-00000-of-00001.parquet (the Hub's layout for a pushed split), with
    the columns VTCBench's examples/run_wild.py reads (problem, answers, images, _context) and
    each image a datasets Image struct {bytes, path} (async_evaluate.py sends img["bytes"];
    examples/llm_judge.py judges Memory from the same problem and answers). Retrieval and
    Reasoning hold two items, Memory three (MEMORY_QA)."""
    data = root / "data"
    data.mkdir(parents=True)
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([
        ("problem", pa.string()), ("answers", pa.list_(pa.string())),
        ("images", pa.list_(image)), ("_context", pa.string()),
    ])  # fmt: skip
    for n, split in enumerate(("Retrieval", "Reasoning", "Memory")):
        questions = (
            MEMORY_QA if split == "Memory"
            else [(f"What is the magic number {i}?", [str(1000 + i)]) for i in range(2)]
        )  # fmt: skip
        rows = []
        for i, (problem, answers) in enumerate(questions):
            buffer = io.BytesIO()
            tiny_image(56, 84, seed=10 * n + i).save(buffer, format="JPEG")
            rows.append({
                "problem": problem, "answers": answers,
                "images": [{"bytes": buffer.getvalue(), "path": None}], "_context": None,
            })  # fmt: skip
        pq.write_table(pa.Table.from_pylist(rows, schema), data / f"{split}-00000-of-00001.parquet")
    return root


@pytest.mark.slow
def test_vtc_wild_scores_retrieval_and_reasoning_and_resumes(tmp_path: Path) -> None:
    checkpoint = save_tiny_checkpoint("qwen2.5-vl", tmp_path / "ckpt")
    release = _release(tmp_path / "VTCBench")
    instructions = tmp_path / "instructions.json"
    instructions.write_text(json.dumps({"Retrieval": "Find it. ", "Reasoning": "Think. "}))
    evaluate = vtc_wild(checkpoint, release, instructions, max_new_tokens=4, device_map="cpu")
    scores, failures = evaluate(tmp_path / "out")
    assert "--judge-model" in failures.pop("Memory") and failures == {}
    assert {s.task: s.paper_column for s in scores} == {
        "Retrieval": "VTC.Ret",
        "Reasoning": "VTC.Reas",
    }
    for score in scores:
        lines = (tmp_path / "out" / f"{score.task}.jsonl").read_text().splitlines()
        predictions = [json.loads(line)["prediction"] for line in lines]
        expected = [contains_all(p, [str(1000 + i)]) for i, p in enumerate(predictions)]
        assert score.n == 2 and score.score == pytest.approx(100 * sum(expected) / 2)
    again, _ = evaluate(tmp_path / "out")  # everything is predicted: nothing is generated again
    assert [s.score for s in again] == [s.score for s in scores]
    assert len((tmp_path / "out" / "Retrieval.jsonl").read_text().splitlines()) == 2


def test_vtc_wild_failures_name_what_is_missing(tmp_path: Path) -> None:
    scores, failures = vtc_wild("ckpt", tmp_path, None)(tmp_path / "out")
    assert scores == [] and "--vtc-source" in failures["Retrieval"]
    instructions = tmp_path / "i.json"
    instructions.write_text(json.dumps({"Retrieval": "x", "Reasoning": "y"}))
    scores, failures = vtc_wild("ckpt", tmp_path / "absent", instructions)(tmp_path / "out")
    assert "hf download --repo-type dataset MLLM-CL/VTCBench" in failures["Reasoning"]
    bad = tmp_path / "bad" / "data"
    bad.mkdir(parents=True)
    pq.write_table(pa.table({"question": ["q"]}), bad / "Retrieval-00000-of-00001.parquet")
    with pytest.raises(VtcDataError, match="not VTCBench-Wild"):
        load_vtc_split(tmp_path / "bad", "Retrieval", tmp_path / "images")


def _served_model_and_judge(body: dict[str, Any], seen: int) -> str:
    """The answering model (its request carries the page images) answers the even-numbered
    magic numbers and the first two Memory questions; the judge (a text-only request in the
    checkout's wording) says A when the answer holds every gold answer, else B."""
    content = body["messages"][-1]["content"]
    if isinstance(content, str) and content.startswith("GRADE-ME"):
        gold = content.split(" G=")[1].split(" R=")[0]
        answer = content.split(" R=")[1]
        return "A" if all(g in answer for g in gold.split(", ")) else "B"
    text = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    for i, (question, answers) in enumerate(MEMORY_QA):
        if question in text:
            return f"<think>recalling</think> {', '.join(answers) if i < 2 else 'nobody'}"
    return "It is 1000." if "number 0" in text else "No idea."


def test_vtc_group_with_memory_judged_on_a_local_server(
    tmp_path: Path, chat_server: Any, vtc_checkout: Any
) -> None:
    from lvlm_judge.suite import run_suite, suite_row
    from lvlm_judge.vtc_judge import make_memory_judge

    checkout = vtc_checkout(tmp_path / "VTCBench-src")
    chat_server.reply = _served_model_and_judge
    judge = make_memory_judge(
        None, tmp_path / "judge.sqlite", base_url=chat_server.url, vtc_source=checkout
    )
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"rope_theta": 4e6}')
    vtc = vtc_wild(
        "served", _release(tmp_path / "VTCBench"), None, vtc_source=checkout,
        memory_judge=judge, runner="openai", base_url=chat_server.url,
    )  # fmt: skip
    report = run_suite(["vtc"], ckpt, tmp_path / "out", vtc=vtc, log=lambda _: None)
    assert report.failures == {}
    scores = {s.task: s for s in report.scores}
    assert {t: (s.score, s.n) for t, s in scores.items()} == {
        "Retrieval": (50.0, 2), "Reasoning": (50.0, 2), "Memory": (pytest.approx(200 / 3), 3),
    }  # fmt: skip
    memory = scores["Memory"]
    assert memory.metric == "LLM accuracy" and memory.paper_column == "VTC.Mem"
    assert memory.protocol is not None and "VTCBench's protocol vtcbench-llm-judge:" in (
        memory.protocol
    )
    assert "judge gpt-4o-mini" in memory.protocol
    # The paper's overall column weights the splits by their item counts (its Appendix B.5).
    assert suite_row(report)["VTC.AVG"] == pytest.approx((50 * 2 + 50 * 2 + 200) / 7)
    judged = [r.body for r in chat_server.requests if "GRADE-ME" in str(r.body)]
    assert len(judged) == 3
    assert {(b["model"], b["temperature"], b["max_tokens"]) for b in judged} == {
        ("gpt-4o-mini", 0.0, 10)
    }
    first = judged[0]["messages"][0]["content"]
    assert first.startswith("GRADE-ME {braces} Q=") and "<think>" not in first
    asked = [r.body for r in chat_server.requests if "GRADE-ME" not in str(r.body)]
    assert any("Memory instruction. Q: " in str(b) for b in asked)  # from run_wild.py
    verdicts = (tmp_path / "out" / "vtc" / "Memory-judged.jsonl").read_text().splitlines()
    assert [json.loads(line)["verdict"] for line in verdicts] == ["A", "A", "B"]

    before = chat_server.count  # a rerun answers from the predictions and the judge cache
    again = run_suite(["vtc"], ckpt, tmp_path / "out", vtc=vtc, log=lambda _: None)
    assert chat_server.count == before and again.scores == report.scores


def test_cli_vtc_group_builds_the_memory_judge_from_the_checkout(
    tmp_path: Path, vtc_checkout: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from lvlm_judge.cli import app

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    checkout = vtc_checkout(tmp_path / "src")
    base = ["suite", str(ckpt), "--groups", "vtc", "--vtc-data", str(tmp_path / "absent"),
            "--vtc-source", str(checkout), "--out", str(tmp_path / "out")]  # fmt: skip
    no_server = CliRunner().invoke(app, base)
    assert no_server.exit_code == 2 and "--judge-base-url" in no_server.output
    result = CliRunner().invoke(app, [*base, "--judge-base-url", "http://127.0.0.1:9/v1"])
    assert result.exit_code == 1 and "no score was produced" in result.output
    failures = json.loads((tmp_path / "out" / "suite.json").read_text())["failures"]
    # Every split, Memory included (its judge was built), reached the absent release.
    assert all("hf download" in failures[f"vtc/{s}"] for s in ("Retrieval", "Memory"))
