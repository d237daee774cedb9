"""Any OpenAI-compatible chat-completions endpoint: ``vllm serve``, SGLang, hosted APIs.

Requests run concurrently up to ``concurrency``; 429, 5xx, timeouts and dropped connections
are retried with exponential backoff and jitter (a Retry-After header is honoured); other 4xx
fail the request at once. JSON-schema structured output is asked for when ``structured`` is
on; a server that rejects ``response_format`` with a 400 is asked again without it, and it is
not asked for again in this run. Page images travel as JPEG data URIs. The API key is read
from the argument or OPENAI_API_KEY and never logged.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Sequence
from typing import Any

import httpx

from qasynth.prompts import reply_json_schema
from qasynth.render import PageRenderer, data_uri
from qasynth.teachers.base import ReplyCallback, Teacher, TeacherReply, TeacherRequest
from qasynth.teachers.chat import chat_messages, encode_body

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAITeacher(Teacher):
    backend = "openai"

    def __init__(
        self,
        model: str,
        base_url: str,
        pages: PageRenderer,
        *,
        api_key: str | None = None,
        concurrency: int = 8,
        max_retries: int = 5,
        timeout: float = 300.0,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        structured: bool = True,
        max_tokens: int = 1024,
        temperature: float = 0.7,
        dpi: float = 144,
        jpeg_quality: int = 90,
    ):
        super().__init__(model)
        if concurrency < 1:
            raise ValueError(f"concurrency {concurrency} must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.pages = pages
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.structured = structured
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.dpi = dpi
        self.jpeg_quality = jpeg_quality

    def payload(self, request: TeacherRequest) -> dict[str, Any]:
        """The chat-completions body of one request, images rendered and encoded."""
        pages = [p.page for p in request.prompt.page_parts]
        images = self.pages.render(request.segment.doc_id, pages, dpi=self.dpi)
        urls = [data_uri(image, self.jpeg_quality) for image in images]
        body: dict[str, Any] = {
            "model": self.model,
            "messages": chat_messages(request.prompt, urls),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "seed": request.sampling_seed,
        }
        if self.structured:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "qa_pair", "schema": reply_json_schema(), "strict": True},
            }
        return body

    def complete(self, requests: Sequence[TeacherRequest], on_reply: ReplyCallback) -> None:
        asyncio.run(self._complete(requests, on_reply))

    async def _complete(self, requests: Sequence[TeacherRequest], on_reply: ReplyCallback) -> None:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        limits = httpx.Limits(max_connections=self.concurrency)
        gate = asyncio.Semaphore(self.concurrency)
        async with httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=self.timeout, limits=limits
        ) as client:

            async def one(request: TeacherRequest) -> None:
                async with gate:
                    try:
                        body = await asyncio.to_thread(self.payload, request)
                        reply = await self._send(client, body)
                    except Exception as error:  # an untrusted PDF may fail any way
                        reply = TeacherReply(text=None, error=f"request not built: {error}")
                on_reply(request, reply)

            await asyncio.gather(*(one(r) for r in requests))

    async def _send(self, client: httpx.AsyncClient, body: dict[str, Any]) -> TeacherReply:
        last_error = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(self._delay(attempt, last_error))
            try:
                response = await client.post(
                    "/chat/completions",
                    content=encode_body(body),
                    headers={"content-type": "application/json"},
                )
            except (httpx.TimeoutException, httpx.TransportError) as error:
                last_error = f"{type(error).__name__}"
                continue
            if response.status_code == 200:
                return _reply_from(response)
            detail = response.text[:300]
            if (
                response.status_code == 400
                and "response_format" in body
                and _mentions_format(detail)
            ):
                self.structured = False
                body = {k: v for k, v in body.items() if k != "response_format"}
                last_error = "structured output not supported"
                continue
            last_error = f"HTTP {response.status_code}: {detail}"
            retry_after = response.headers.get("retry-after")
            if response.status_code not in RETRY_STATUS:
                return TeacherReply(text=None, error=last_error)
            if retry_after:
                last_error += f" retry-after={retry_after}"
        return TeacherReply(
            text=None, error=f"gave up after {self.max_retries + 1} tries: {last_error}"
        )

    def _delay(self, attempt: int, last_error: str) -> float:
        if "structured output" in last_error:
            return 0.0
        if "retry-after=" in last_error:
            try:
                return min(self.max_backoff, float(last_error.rsplit("retry-after=", 1)[1]))
            except ValueError:
                pass
        base = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return base * (0.5 + random.random() / 2)


def _mentions_format(detail: str) -> bool:
    lowered = detail.lower()
    return any(word in lowered for word in ("response_format", "json_schema", "structured"))


def _reply_from(response: httpx.Response) -> TeacherReply:
    try:
        data = response.json()
        choice = data["choices"][0]
        content = choice["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return TeacherReply(text=None, error=f"not a chat completion: {response.text[:200]}")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    meta = {"finish_reason": choice.get("finish_reason"), "usage": data.get("usage") or {}}
    return TeacherReply(text=content or "", meta=meta)
