"""The shared OpenAI-compatible client: retries, typed errors, raw bodies, reply parsing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest

from mmprolong_runtime.chat_client import ChatClient, ChatError, ChatReply, ClientSettings

FAST = {"backoff_s": 0.001, "max_backoff_s": 0.01}


def completion(content: object, finish: str = "stop") -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "choices": [{"message": {"content": content}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 3},
        },
    )


def run(
    handler: Callable[[httpx.Request], httpx.Response], call: str = "chat", **settings: object
) -> tuple[ChatReply | ChatError, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    async def go() -> ChatReply:
        config = ClientSettings("http://127.0.0.1:9/v1", **{**FAST, **settings})  # type: ignore[arg-type]
        async with ChatClient(config, transport=httpx.MockTransport(record)) as client:
            if call == "post":
                return await client.post({"model": "m"}, encoded=b'{"model":"raw"}')
            return await client.chat([{"role": "user", "content": "hi"}], model="m", max_tokens=8)

    try:
        return asyncio.run(go()), seen
    except ChatError as error:
        return error, seen


def test_transient_failures_are_retried_and_retry_after_honoured() -> None:
    replies = iter([httpx.Response(429, headers={"retry-after": "0"}), httpx.Response(503)])
    result, seen = run(lambda _: next(replies, completion("42")))
    assert isinstance(result, ChatReply)
    assert (result.text, result.attempts, result.prompt_tokens, result.completion_tokens) == (
        "42",
        3,
        11,
        3,
    )
    assert len(seen) == 3
    body = json.loads(seen[0].content)
    assert body["temperature"] == 0.0 and body["max_tokens"] == 8


def test_client_errors_fail_at_once_with_their_status() -> None:
    result, seen = run(lambda _: httpx.Response(400, text="response_format is not supported"))
    assert isinstance(result, ChatError)
    assert (result.status, len(seen)) == (400, 1)
    assert "response_format" in result.detail


def test_retries_are_bounded() -> None:
    result, seen = run(lambda _: httpx.Response(500, text="boom"), max_retries=2)
    assert isinstance(result, ChatError)
    assert len(seen) == 3
    assert result.status == 500 and "failed 3 times" in str(result)


def test_list_content_is_joined_and_raw_bodies_are_sent_as_given() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    result, seen = run(lambda _: completion(parts), call="post")
    assert isinstance(result, ChatReply) and result.text == "ab"
    assert seen[0].content == b'{"model":"raw"}'


def test_api_key_goes_in_the_header_and_never_in_errors() -> None:
    result, seen = run(lambda _: httpx.Response(401, text="bad key"), api_key="sk-secret-123456789")
    assert seen[0].headers["authorization"] == "Bearer sk-secret-123456789"
    assert isinstance(result, ChatError) and "sk-secret" not in str(result)


def test_a_reply_without_choices_is_an_error() -> None:
    result, _ = run(lambda _: httpx.Response(200, json={"nope": 1}))
    assert isinstance(result, ChatError) and "choices[0].message" in str(result)


def test_use_outside_async_with_is_refused() -> None:
    client = ChatClient(ClientSettings("http://127.0.0.1:9"))
    with pytest.raises(RuntimeError, match="outside 'async with'"):
        asyncio.run(client.post({}))
