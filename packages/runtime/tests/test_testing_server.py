"""mmprolong_runtime.testing's ChatServer, spoken to by the runtime's own ChatClient over a real
socket: scripted faults, the reply function, the seen/answered counters, delays, statuses."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

pytest.importorskip("httpx")

from mmprolong_runtime.chat_client import ChatClient, ChatError, ChatReply, ClientSettings
from mmprolong_runtime.testing import ChatServer, Reply, body_key


def settings(server: ChatServer, **overrides: Any) -> ClientSettings:
    values: dict[str, Any] = {"api_key": "sk-test", "backoff_s": 0.01, "max_backoff_s": 0.02,
                              "timeout_s": 2.0, "max_retries": 2}  # fmt: skip
    return ClientSettings(server.url, **{**values, **overrides})


def ask(config: ClientSettings, *questions: str) -> list[ChatReply]:
    async def go() -> list[ChatReply]:
        async with ChatClient(config) as client:
            return [
                await client.chat([{"role": "user", "content": q}], model="m", max_tokens=8)
                for q in questions
            ]

    return asyncio.run(go())


def test_a_scripted_429_is_retried_then_the_reply_function_answers() -> None:
    with ChatServer(
        lambda body, seen: "42", script=[Reply(429, headers={"Retry-After": "0"})]
    ) as server:
        (reply,) = ask(settings(server), "the answer?")
    assert reply.text == "42" and reply.attempts == 2 and reply.finish_reason == "stop"
    assert (reply.prompt_tokens, reply.completion_tokens) == (11, 7)
    assert server.count == 2 and server.script == []
    sent = server.requests[-1]
    assert sent.path == "/v1/chat/completions" and sent.auth == "Bearer sk-test"
    assert sent.body["messages"] == [{"role": "user", "content": "the answer?"}]


def test_seen_counts_identical_bodies_and_answered_counts_delivered_200s() -> None:
    def reply(body: dict[str, Any], seen: int) -> str | Reply:
        return Reply(500) if seen == 0 else f"seen {seen} before"

    with ChatServer(reply) as server:
        first, again, other = ask(settings(server), "a", "a", "b")
    assert (first.text, first.attempts) == ("seen 1 before", 2)
    assert (again.text, again.attempts) == ("seen 2 before", 1)
    assert (other.text, other.attempts) == ("seen 1 before", 2)
    keys = {body_key(r.body) for r in server.requests}
    assert len(keys) == 2 and server.count == 5
    assert sorted(server.seen.values()) == [2, 3]
    assert sorted(server.answered.values()) == [1, 2]  # the 500s are not answers


def test_a_reply_slower_than_the_timeout_is_retried_and_not_counted_answered() -> None:
    script = [Reply(text="late", delay_s=0.4), Reply(text="cut", finish_reason="length")]
    with ChatServer(script=script) as server:
        (reply,) = ask(settings(server, timeout_s=0.15), "slow?")
        time.sleep(0.4)  # the late reply's handler wakes up to a client that has left
    key = body_key(server.requests[0].body)
    assert reply.text == "cut" and reply.finish_reason == "length" and reply.attempts == 2
    assert server.seen[key] == 2 and server.answered[key] == 1


def test_a_custom_status_fails_with_its_message() -> None:
    refusal = Reply(400, "response_format json_schema unsupported")
    with ChatServer(script=[refusal]) as server, pytest.raises(ChatError) as failed:
        ask(settings(server), "structured?")
    assert failed.value.status == 400 and "json_schema unsupported" in failed.value.detail
    assert server.count == 1 and not server.answered
