"""The HTTP client and the LLM judge against a real local server: retries on 429, 500 and
timeouts, cache hits counted at the server, pre-judge skips, and judge-reply parsing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from lvlm_judge.judge.cache import CachedVerdict, JudgeCache, cache_key
from lvlm_judge.judge.llm import JudgeRequest, LLMJudge
from lvlm_judge.judge.parse import list_f1, parse_list_verdict, parse_single_verdict
from lvlm_judge.judge.prompts import OUR_JUDGE
from mmprolong_runtime.chat_client import ChatClient, ChatError, ClientSettings
from mmprolong_runtime.testing import ChatServer, Reply
from mmprolong_schemas import AnswerFormat, JudgeSource


def fast(url: str, **overrides: object) -> ClientSettings:
    values: dict[str, object] = {
        "base_url": url, "api_key": "sk-test", "backoff_s": 0.01, "max_backoff_s": 0.05,
        "timeout_s": 2.0, "max_retries": 3,
    }  # fmt: skip
    values.update(overrides)
    return ClientSettings(**values)  # type: ignore[arg-type]


async def _chat(settings: ClientSettings, text: str = "hi") -> object:
    async with ChatClient(settings) as client:
        return await client.chat([{"role": "user", "content": text}], model="m", max_tokens=8)


def test_client_retries_429_and_500_then_succeeds(chat_server: ChatServer) -> None:
    chat_server.script = [Reply(429, headers={"Retry-After": "0"}), Reply(500),
                          Reply(503), Reply(200, "fine")]  # fmt: skip
    reply = asyncio.run(_chat(fast(chat_server.url)))
    assert reply.text == "fine"  # type: ignore[attr-defined]
    assert reply.attempts == 4  # type: ignore[attr-defined]
    assert chat_server.count == 4
    sent = chat_server.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.auth == "Bearer sk-test"
    assert sent.body["temperature"] == 0.0


def test_client_retries_a_timeout(chat_server: ChatServer) -> None:
    chat_server.script = [Reply(200, "late", delay_s=1.0), Reply(200, "on time")]
    reply = asyncio.run(_chat(fast(chat_server.url, timeout_s=0.3)))
    assert reply.text == "on time"  # type: ignore[attr-defined]
    assert chat_server.count == 2


def test_client_gives_up_after_bounded_retries(chat_server: ChatServer) -> None:
    chat_server.script = [Reply(500)] * 10
    with pytest.raises(ChatError, match="failed 3 times"):
        asyncio.run(_chat(fast(chat_server.url, max_retries=2)))
    assert chat_server.count == 3


def test_client_does_not_retry_a_bad_request(chat_server: ChatServer) -> None:
    chat_server.script = [Reply(400)]
    with pytest.raises(ChatError, match="HTTP 400"):
        asyncio.run(_chat(fast(chat_server.url)))
    assert chat_server.count == 1


def test_client_concurrency_is_bounded(chat_server: ChatServer) -> None:
    chat_server.script = [Reply(200, str(i), delay_s=0.2) for i in range(4)]

    async def many() -> float:
        loop = asyncio.get_running_loop()
        async with ChatClient(fast(chat_server.url, concurrency=2)) as client:
            started = loop.time()
            await asyncio.gather(*(
                client.chat([{"role": "user", "content": "x"}], model="m", max_tokens=4)
                for _ in range(4)
            ))  # fmt: skip
            return loop.time() - started

    elapsed = asyncio.run(many())
    assert elapsed >= 0.38  # 4 requests of 0.2 s, 2 at a time


# --- judge-reply parsing ------------------------------------------------------------------
# Restated from MMLongBench's utils.py (EdinburghNLP/MMLongBench, v1.1): parse_judge_output
# takes the first "[Score]: <digits> point(s)" as an int, else robust_json_extraction's
# answer_score (the object after "[JSON]:", else a regex per key), else 0.0, and
# eval_docqa_score_with_llm_judge returns it unclamped; eval_docqa_list_score_with_llm_judge
# needs both counts (cover_key), gives 0.0 when covered_count <= 0, else the F1 of
# covered/len(json.loads(gt)) and covered/student_answer_count clamped by max(min(., 1), 0).


@pytest.mark.parametrize(
    ("reply", "score", "parsed", "in_range"),
    [
        ('[Scoring Rationale]: same.\n[Score]: 1 points\n[JSON]: {"answer_score": 1}', 1, True,
         True),
        ('[Scoring Rationale]: no.\n[Score]: 0 points\n[JSON]: {"answer_score": 1}', 0, True,
         True),  # the [Score] line wins over the JSON
        ('[Scoring Rationale]: same.\n[JSON]: {"answer_score": 1}', 1, True, True),
        ('[Scoring Rationale]: cut off\n[JSON]: {"answer_score": 1', 1, True, True),  # regex
        ("[Scoring Rationale]: cut off before the score", 0, False, True),  # MMLongBench: 0.0
        ("I think it is right", 0, False, True),
        ("", 0, False, True),
        ("[Score]: 1 point", 1, True, True),
        ("[Score]: 7 points", 7, True, False),  # not clamped: 7 goes into the mean there too
        ("[Score]: 1", 0, False, True),  # no "point": the line does not count, no JSON
        ('[Score]: 1\n[JSON]: {"answer_score": 0}', 0, True, True),
        ('[Score]: -1 points\n[JSON]: {"answer_score": -1}', -1, True, False),  # \d+ misses "-"
        ('[Score]: 0.5 points\n[JSON]: {"answer_score": 0.5}', 0.5, True, True),
        ('{"answer_score": 0.5}', 0.5, True, True),  # no [JSON] marker: the key looked up alone
        ('[JSON]: {"verdict": 1}', 0, False, True),  # an object without the key: 0.0
        ('[JSON]: {"answer_score": "1"}', 0, False, True),  # a string its mean cannot take
        ('[JSON]: {"answer_score": null}', 0, False, True),
        ('[JSON]: {"answer_score": true}', 1, True, True),  # a bool averages as 1
    ],
)  # fmt: skip
def test_parse_single_verdict_as_mmlongbench(
    reply: str, score: float, parsed: bool, in_range: bool
) -> None:
    verdict = parse_single_verdict(reply)
    assert verdict.score == score
    assert verdict.parsed is parsed
    assert verdict.in_range is in_range


def test_single_verdict_keeps_the_rationale() -> None:
    verdict = parse_single_verdict("[Scoring Rationale]: Same city.\n[Score]: 1 points")
    assert verdict.rationale == "Same city."


def _f1(recall: float, precision: float) -> float:
    return 2 * recall * precision / (recall + precision)


@pytest.mark.parametrize(
    ("reply", "reference_count", "score", "parsed"),
    [
        ('[Rationale]: ok\n[JSON]: {"student_answer_count": 3, "covered_count": 2}', 4,
         _f1(2 / 4, 2 / 3), True),
        ('[JSON]: {"student_answer_count": 2, "covered_count": 2}', 2, 1.0, True),
        ('[JSON]: {"student_answer_count": 2, "covered_count": 0}', 2, 0.0, True),
        ('[JSON]: {"student_answer_count": 2, "covered_count": -1}', 2, 0.0, True),
        ('[JSON]: {"student_answer_count": 2}', 2, 0.0, False),  # a key missing: 0.0
        ('[JSON]: {"student_answer_count": 2, "covered_co', 2, 0.0, False),  # truncated
        ('[JSON]: {"student_answer_count": 1, "covered_count": 1, "no', 2, _f1(1 / 2, 1), True),
        ("nothing useful", 2, 0.0, False),
        ('[JSON]: {"student_answer_count": 1, "covered_count": 3}', 2, 1.0, True),  # clamped
        ('[JSON]: {"student_answer_count": -1, "covered_count": 2}', 2, 1.0, True),  # F1 4.0
        ('[JSON]: {"student_answer_count": 0, "covered_count": 3}', 2, 0.0, False),  # x / 0
        ('[JSON]: {"student_answer_count": 2, "covered_count": 1}', 0, 0.0, False),  # x / 0
        ('[JSON]: {"student_answer_count": "2", "covered_count": 1}', 2, 0.0, False),  # str
    ],
)  # fmt: skip
def test_parse_list_verdict_as_mmlongbench(
    reply: str, reference_count: int, score: float, parsed: bool
) -> None:
    verdict = parse_list_verdict(reply, reference_count)
    assert verdict.score == pytest.approx(score)
    assert verdict.parsed is parsed
    assert verdict.in_range


def test_list_f1_is_clamped_and_none_where_mmlongbench_divides_by_zero() -> None:
    assert list_f1(1, 5, 2) == 1.0  # more covered than given: clamped
    assert list_f1(3, 0, 3) == 0.0
    assert list_f1(0, 2, 3) is None
    assert list_f1(-1, 1, 1) is None  # recall 1 + precision -1 = 0


def test_a_judge_score_out_of_range_is_kept_and_counted(
    chat_server: ChatServer, tmp_path: Path
) -> None:
    chat_server.reply = lambda body, seen: "[Scoring Rationale]: very good.\n[Score]: 3 points"
    judge = LLMJudge(fast(chat_server.url), "judge-model", pre_judge=False)
    (judgement,) = judge.judge([JudgeRequest("q", "Capital?", "Paris", AnswerFormat.STRING, "x")])
    assert judgement is not None and judgement.score == 3.0
    assert judge.stats.out_of_range == 1 and judge.stats.unparsed == 0


def test_a_cached_verdict_is_read_again_from_its_reply(
    chat_server: ChatServer, tmp_path: Path
) -> None:
    """A verdict cached when scores were clamped scores as its stored reply reads today."""
    cache = JudgeCache(tmp_path / "judge.sqlite")
    request = JudgeRequest("q", "Capital?", "Paris", AnswerFormat.STRING, "x")
    key = cache_key("judge-model", OUR_JUDGE.version, "Capital?", "Paris", "x")
    cache.put(key, CachedVerdict(1.0, "clamped", "[Score]: 2 points", 10))
    judge = LLMJudge(fast(chat_server.url), "judge-model", cache=cache, pre_judge=False)
    (judgement,) = judge.judge([request])
    assert judgement is not None and judgement.score == 2.0
    assert judgement.source is JudgeSource.CACHE
    assert judge.stats.cached == 1 and judge.stats.out_of_range == 1 and chat_server.count == 0


# --- the judge end to end -----------------------------------------------------------------


def _judge_reply(body: dict[str, object], seen: int) -> str:
    prompt = body["messages"][0]["content"]  # type: ignore[index]
    assert body["temperature"] == 0.0
    assert body["max_tokens"] >= 512  # type: ignore[operator]
    if "student_answer_count" in prompt:
        return '[Rationale]: two of three.\n[JSON]: {"student_answer_count": 2, "covered_count": 2}'
    if "Student answer: Lyon" in prompt:
        return (
            '[Scoring Rationale]: different city.\n[Score]: 0 points\n[JSON]: {"answer_score": 0}'
        )
    return '[Scoring Rationale]: same meaning.\n[Score]: 1 points\n[JSON]: {"answer_score": 1}'


REQUESTS = [
    JudgeRequest("q1", "Capital?", "Paris", AnswerFormat.STRING, "It is Paris"),
    JudgeRequest("q2", "Capital?", "Paris", AnswerFormat.STRING, "Lyon"),
    JudgeRequest("q3", "Colours?", ["red", "blue", "green"], AnswerFormat.LIST, "red and blue"),
    JudgeRequest("q4", "Count?", 12, AnswerFormat.INTEGER, "12"),  # certain: pre-judged
    JudgeRequest("q5", "Capital?", "Paris", AnswerFormat.STRING, "It is Paris"),  # duplicate of q1
    JudgeRequest("q6", "Why?", "Not answerable", AnswerFormat.NONE, "Not answerable."),
]


def test_llm_judge_scores_caches_and_skips(chat_server: ChatServer, tmp_path: Path) -> None:
    chat_server.reply = _judge_reply
    cache = JudgeCache(tmp_path / "judge.sqlite")
    judge = LLMJudge(fast(chat_server.url), "judge-model", cache=cache)
    first = judge.judge(REQUESTS)
    assert [j.score if j else None for j in first] == pytest.approx([1.0, 0.0, 0.8, 1.0, 1.0, 1.0])
    assert [j.source for j in first if j] == [
        JudgeSource.LLM, JudgeSource.LLM, JudgeSource.LLM, JudgeSource.PRE_JUDGE,
        JudgeSource.CACHE, JudgeSource.PRE_JUDGE,
    ]  # fmt: skip
    assert chat_server.count == 3
    assert judge.stats.as_dict() == {
        "made": 3, "cached": 1, "skipped": 2, "failed": 0, "unparsed": 0, "out_of_range": 0,
        "prompt_tokens": 33, "completion_tokens": 21,
    }  # fmt: skip
    assert first[1] is not None and first[1].rationale == "different city."

    # A rerun (or a second checkpoint with the same answers) makes no call at all.
    again = LLMJudge(fast(chat_server.url), "judge-model", cache=JudgeCache(cache.path))
    second = again.judge(REQUESTS)
    assert chat_server.count == 3
    assert again.stats.made == 0 and again.stats.cached == 4
    assert [j.score for j in second if j] == [j.score for j in first if j]

    # Another judge model is another key.
    other = LLMJudge(fast(chat_server.url), "other-judge", cache=JudgeCache(cache.path))
    other.judge(REQUESTS[:1])
    assert chat_server.count == 4


def test_llm_judge_without_pre_judge_asks_for_everything(chat_server: ChatServer) -> None:
    chat_server.reply = _judge_reply
    judge = LLMJudge(fast(chat_server.url), "judge-model", pre_judge=False)
    settled: list[int] = []
    judge.judge(REQUESTS, settled.append)
    assert sum(settled) == len(REQUESTS)
    assert judge.stats.skipped == 0
    assert chat_server.count == 5  # six requests, one duplicate


def test_llm_judge_survives_server_trouble(chat_server: ChatServer, tmp_path: Path) -> None:
    chat_server.reply = _judge_reply
    chat_server.script = [Reply(429), Reply(500), Reply(200, "garbage without a score")]
    judge = LLMJudge(fast(chat_server.url), "judge-model", cache=JudgeCache(tmp_path / "c.db"))
    (verdict,) = judge.judge(REQUESTS[:1])
    assert verdict is not None
    assert verdict.score == 0.0
    assert verdict.rationale.startswith("unparsed reply")
    assert chat_server.count == 3


def test_llm_judge_records_a_dead_server_as_failed(tmp_path: Path) -> None:
    settings = fast("http://127.0.0.1:9", max_retries=1, timeout_s=0.5)
    judge = LLMJudge(settings, "judge-model", cache=JudgeCache(tmp_path / "c.db"))
    (verdict,) = judge.judge(REQUESTS[:1])
    assert verdict is None
    assert judge.stats.failed == 1
    assert "failed 2 times" in judge.stats.errors[0]


def test_judge_sees_list_reference_as_json(chat_server: ChatServer) -> None:
    chat_server.reply = _judge_reply
    LLMJudge(fast(chat_server.url), "judge-model").judge(REQUESTS[2:3])
    prompt = chat_server.requests[0].body["messages"][0]["content"]
    assert json.dumps(["red", "blue", "green"]) in prompt


def test_a_judge_cache_written_before_the_runtime_cache_is_read(tmp_path: Path) -> None:
    """A verdicts table as lvlm-judge's own SQLite code created and filled it, read and
    extended through today's JudgeCache."""
    import sqlite3

    path = tmp_path / "judge.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, score REAL NOT NULL, "
        "rationale TEXT NOT NULL, reply TEXT NOT NULL, tokens INTEGER NOT NULL)"
    )
    db.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?)", ("k", 0.5, "r", "x", 7))
    db.commit()
    db.close()
    cache = JudgeCache(path)
    assert cache.get("k") == CachedVerdict(0.5, "r", "x", 7) and len(cache) == 1
    cache.put("k2", CachedVerdict(1.0, "right", "[Score]: 2 points", 3))
    cache.close()
    reopened = JudgeCache(path)
    assert reopened.get("k2") == CachedVerdict(1.0, "right", "[Score]: 2 points", 3)
    reopened.close()
