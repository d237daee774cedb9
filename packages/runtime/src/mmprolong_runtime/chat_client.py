"""An async client for OpenAI-compatible chat-completions servers (vLLM, SGLang, OpenAI...).

Shared by qasynth's ``openai`` teacher, lvlm-judge's ``openai`` runner and its LLM judge; it
needs the ``http`` extra (httpx). Concurrency is bounded by a semaphore;
429, 5xx, timeouts and dropped connections are retried with exponential backoff (a server's
Retry-After is honoured up to the backoff ceiling); any other 4xx fails at once, because
retrying a bad request cannot help. The API key is sent as a header and never logged.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class ChatError(RuntimeError):
    """A request that failed for good (after retries, or with a non-retryable status).

    ``status`` is the last HTTP status (None after a timeout or a dropped connection) and
    ``detail`` the start of the server's answer, so callers can react to a refused option.
    """

    def __init__(self, message: str, status: int | None = None, detail: str = ""):
        super().__init__(message)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class ChatReply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    finish_reason: str | None = None


@dataclass(frozen=True)
class ClientSettings:
    base_url: str
    api_key: str | None = field(default=None, repr=False)  # a printed settings shows no key
    concurrency: int = 8
    max_retries: int = 4
    timeout_s: float = 120.0
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    @classmethod
    def from_env(cls, base_url: str | None = None, **overrides: Any) -> ClientSettings:
        """Base URL and key from arguments or OPENAI_BASE_URL / OPENAI_API_KEY."""
        url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not url:
            raise ValueError("no server given: pass --base-url or set OPENAI_BASE_URL")
        return cls(base_url=url, api_key=os.environ.get("OPENAI_API_KEY"), **overrides)


class ChatClient:
    """``async with ChatClient(settings) as client: await client.chat(...)``."""

    def __init__(self, settings: ClientSettings, transport: httpx.AsyncBaseTransport | None = None):
        self.settings = settings
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._semaphore = asyncio.Semaphore(max(1, settings.concurrency))
        self.requests_sent = 0

    async def __aenter__(self) -> ChatClient:
        headers = {"Content-Type": "application/json"}
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        self._client = httpx.AsyncClient(
            base_url=self.settings.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(self.settings.timeout_s),
            transport=self._transport,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        ceiling = self.settings.max_backoff_s
        if retry_after:
            try:
                return min(float(retry_after), ceiling)
            except ValueError:
                pass
        base = min(self.settings.backoff_s * 2**attempt, ceiling)
        return base * (0.5 + random.random() / 2)

    async def chat(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        model: str,
        max_tokens: int,
        temperature: float = 0.0,
        extra: dict[str, Any] | None = None,
    ) -> ChatReply:
        """One chat completion, greedy by default, retried on transient failures."""
        body: dict[str, Any] = {
            "model": model,
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
            **(extra or {}),
        }
        return await self.post(body)

    async def post(self, body: dict[str, Any], *, encoded: bytes | None = None) -> ChatReply:
        """Send a complete chat-completions ``body``, retried on transient failures.
        ``encoded`` is the body already serialised as JSON, for callers that encode megabytes
        of images faster than ``json.dumps``."""
        if self._client is None:
            raise RuntimeError("ChatClient is used outside 'async with'")
        content = encoded if encoded is not None else json.dumps(body).encode()
        last_problem, last_status, last_detail = "", None, ""
        attempts = self.settings.max_retries + 1
        for attempt in range(attempts):
            retry_after: str | None = None
            async with self._semaphore:
                self.requests_sent += 1
                try:
                    response = await self._client.post("chat/completions", content=content)
                except (httpx.TimeoutException, httpx.TransportError) as error:
                    last_problem = f"{type(error).__name__}: {error}"
                    last_status, response = None, None
            if response is not None:
                if response.status_code == 200:
                    return _reply(response, attempt + 1)
                last_status, last_detail = response.status_code, response.text[:300]
                last_problem = f"HTTP {last_status}: {last_detail[:200]}"
                if last_status not in RETRYABLE_STATUS:
                    raise ChatError(
                        f"{self.settings.base_url} refused the request: {last_problem}",
                        last_status,
                        last_detail,
                    )
                retry_after = response.headers.get("retry-after")
            if attempt + 1 < attempts:
                await asyncio.sleep(self._delay(attempt, retry_after))
        raise ChatError(
            f"{self.settings.base_url} failed {attempts} times; last: {last_problem}",
            last_status,
            last_detail,
        )


def _reply(response: httpx.Response, attempts: int) -> ChatReply:
    try:
        data = response.json()
        choice = data["choices"][0]
        content = choice["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise ChatError(f"the server sent a reply without choices[0].message: {error}") from None
    # Some servers send the message as a list of typed parts.
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    usage = data.get("usage") or {}
    return ChatReply(
        text=str(content),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        attempts=attempts,
        finish_reason=choice.get("finish_reason"),
    )
