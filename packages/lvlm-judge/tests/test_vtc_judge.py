"""VTCBench-Wild's Memory judge: the answer and reply handling restated from VTCBench's
examples/llm_judge.py, its wording read from a checkout, and the judge against a local
OpenAI-compatible server (retries on a reply that is no verdict, cache, failures counted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lvlm_judge.judge.cache import JudgeCache
from lvlm_judge.vtc_judge import (
    OUR_MEMORY_JUDGE,
    MemoryJudge,
    VtcSourceError,
    final_answer,
    gold_text,
    make_memory_judge,
    parse_verdict,
    read_instructions_from_source,
    read_memory_judge,
)
from mmprolong_runtime.chat_client import ClientSettings
from mmprolong_runtime.testing import ChatServer, Reply


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        # examples/llm_judge.py extract_final_answer: the text after a <think>...</think>
        # block, else after a lone </think>, else the whole response; stripped.
        ("<think>it was May</think>  7 May 2023 ", "7 May 2023"),
        ("still thinking</think>violin", "violin"),
        ("  violin\n", "violin"),
        ("a</think>b<think>c</think> d", "d"),
    ],
)
def test_final_answer_restates_vtcbench(response: str, expected: str) -> None:
    assert final_answer(response) == expected


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        # examples/llm_judge.py evaluate_answer_with_gpt: the stripped reply must be exactly
        # "A", "B" or "C"; anything else is asked again.
        ("A", "A"),
        (" B\n", "B"),
        ("C", "C"),
        ("a", None),
        ("A.", None),
        ("CORRECT", None),
        ("A: CORRECT", None),
        ("", None),
    ],
)
def test_parse_verdict_restates_vtcbench(reply: str, verdict: str | None) -> None:
    assert parse_verdict(reply) == verdict


def test_gold_answers_are_joined_as_vtcbench_does() -> None:
    # examples/llm_judge.py process_single_entry: ", ".join(gold_answers).
    assert gold_text(["Ana", "Jonas"]) == "Ana, Jonas"
    assert gold_text([7]) == "7"


def test_read_memory_judge_and_instructions_from_a_checkout(
    tmp_path: Path, vtc_checkout: Any
) -> None:
    checkout = vtc_checkout(tmp_path / "src")
    prompt = read_memory_judge(checkout)
    assert (prompt.model, prompt.temperature, prompt.max_tokens, prompt.attempts) == (
        "gpt-4o-mini", 0.0, 10, 3,
    )  # fmt: skip
    assert prompt.version.startswith("vtcbench-llm-judge:") and prompt.source == str(
        checkout.resolve()
    )
    assert prompt.prompt("q", "g", "r") == "GRADE-ME {braces} Q=q G=g R=r"
    assert read_instructions_from_source(checkout)["Memory"] == "Memory instruction. Q: "
    other = read_memory_judge(vtc_checkout(tmp_path / "other", judge_model="gpt-4o"))
    assert other.model == "gpt-4o" and other.version == prompt.version  # same wording


def test_a_changed_checkout_is_an_error_naming_what_was_looked_for(
    tmp_path: Path, vtc_checkout: Any
) -> None:
    with pytest.raises(VtcSourceError, match="examples/llm_judge.py: not found"):
        read_memory_judge(tmp_path)
    checkout = vtc_checkout(tmp_path / "src")
    judge_file = checkout / "examples" / "llm_judge.py"
    judge_file.write_text(judge_file.read_text().replace("gold_answer=", "reference="))
    with pytest.raises(VtcSourceError, match="formats its prompt with"):
        read_memory_judge(checkout)
    judge_file.write_text("def evaluate_answer_with_gpt(q):\n    return q\n")
    with pytest.raises(VtcSourceError, match="formats no prompt constant"):
        read_memory_judge(checkout)
    wild_file = checkout / "examples" / "run_wild.py"
    wild_file.write_text("def _select_instruction_prompt(split):\n    return split\n")
    with pytest.raises(VtcSourceError, match="no instruction per split"):
        read_instructions_from_source(checkout)


def _fast(url: str) -> ClientSettings:
    return ClientSettings(base_url=url, max_retries=0, backoff_s=0.0, timeout_s=5.0)


def test_memory_judge_on_a_local_server(chat_server: ChatServer, tmp_path: Path) -> None:
    cache = JudgeCache(tmp_path / "judge.sqlite")
    judge = MemoryJudge(_fast(chat_server.url), "judge-model", cache=cache)
    # Item 1 is answered A; item 2 gets three replies that are no verdict and counts as C
    # (VTCBench asks up to max_retries=3 times); item 3's judge call fails for good.
    chat_server.script = [
        Reply(text=" A "), Reply(text="I think A"), Reply(text="CORRECT"),
        Reply(text="A."), Reply(status=400),
    ]  # fmt: skip
    items = [
        ("m1", "Who came?", ["Ana", "Jonas"], "<think>hm</think>Ana and Jonas"),
        ("m2", "What instrument?", ["violin"], "violin"),
        ("m3", "When?", ["May"], "June"),
    ]
    verdicts = []
    for item in items:  # one at a time, so the scripted replies meet the intended item
        verdicts += judge.judge([item])
    assert [(v.verdict, v.score) if v else None for v in verdicts] == [
        ("A", 1.0), ("C", 0.0), None,
    ]  # fmt: skip
    assert judge.stats.made == 4 and judge.stats.failed == 1 and len(cache) == 2
    first = chat_server.requests[0].body
    assert first["temperature"] == 0.0 and first["max_tokens"] == 10
    content = first["messages"][0]["content"]
    assert content == OUR_MEMORY_JUDGE.prompt("Who came?", "Ana, Jonas", "Ana and Jonas")
    assert "Ana, Jonas" in content and "<think>" not in content

    chat_server.reply = lambda body, seen: "B"
    again = MemoryJudge(_fast(chat_server.url), "judge-model", cache=JudgeCache(cache.path))
    rerun = again.judge(items)
    assert [v.source if v else None for v in rerun] == ["cache", "cache", "llm"]
    assert again.stats.made == 1 and again.stats.cached == 2  # the failed one is asked again


def test_make_memory_judge_needs_a_model_without_a_checkout(
    tmp_path: Path, vtc_checkout: Any
) -> None:
    with pytest.raises(ValueError, match="--judge-model"):
        make_memory_judge(None, tmp_path / "c.sqlite", base_url="http://127.0.0.1:9/v1")
    ours = make_memory_judge("m", tmp_path / "c.sqlite", base_url="http://127.0.0.1:9/v1")
    assert ours.label == "our wording lvlm-judge-vtc-memory-1, judge m"
    checkout = vtc_checkout(tmp_path / "src")
    theirs = make_memory_judge(
        "local-judge", tmp_path / "c.sqlite", base_url="http://127.0.0.1:9/v1", vtc_source=checkout
    )
    assert theirs.label.startswith("VTCBench's protocol vtcbench-llm-judge:")
    assert theirs.label.endswith("judge local-judge (VTCBench's judge is gpt-4o-mini)")
