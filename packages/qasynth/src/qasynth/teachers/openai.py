"""Any OpenAI-compatible chat-completions endpoint: ``vllm serve``, SGLang, hosted APIs.

Requests go through the toolkit's shared client (``mmprolong_runtime.chat_client``):
concurrent up to ``concurrency``; 429, 5xx, timeouts and dropped connections retried with
exponential backoff and jitter (a Retry-After header is honoured); other 4xx fail at once.
JSON-schema structured output is asked for when ``structured`` is on; a server that rejects
``response_format`` with a 400 is asked again without it, and it is not asked for again in
this run. Page images travel as JPEG data URIs (``qasynth.page_images.PageImages``: rasterised
one page at a time, encoded in threads, cached for the segment's other tasks). The server and
API key come from the arguments, else OPENAI_BASE_URL and OPENAI_API_KEY as the shared
client's ``ClientSettings.from_env`` reads them; the key is never logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from mmprolong_runtime.chat_client import ChatClient, ChatError, ClientSettings
from qasynth.page_images import DEFAULT_CACHE_BYTES, JPEG_QUALITY, PageImages, PageRenderer
from qasynth.prompts import reply_json_schema
from qasynth.teachers.base import ReplyCallback, Teacher, TeacherReply, TeacherRequest
from qasynth.teachers.chat import chat_messages, encode_body


class OpenAITeacher(Teacher):
    backend = "openai"

    def __init__(
        self,
        model: str,
        base_url: str | None,
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
        jpeg_quality: int = JPEG_QUALITY,
        page_cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        super().__init__(model)
        if concurrency < 1:
            raise ValueError(f"concurrency {concurrency} must be at least 1")
        try:  # the toolkit's one reader of OPENAI_BASE_URL and OPENAI_API_KEY
            settings = ClientSettings.from_env(
                base_url,
                concurrency=concurrency,
                max_retries=max_retries,
                timeout_s=timeout,
                backoff_s=backoff,
                max_backoff_s=max_backoff,
            )
        except ValueError:
            raise ValueError(
                "the openai teacher needs a base URL, e.g. http://localhost:8000/v1 "
                "(or set OPENAI_BASE_URL)"
            ) from None
        if api_key is not None:
            settings = replace(settings, api_key=api_key or None)
        self.client_settings = replace(settings, base_url=settings.base_url.rstrip("/"))
        self.base_url = self.client_settings.base_url
        self.pages = pages
        self.structured = structured
        self._structured_asked = structured
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.dpi = dpi
        self.jpeg_quality = jpeg_quality
        self.images = PageImages(pages, dpi=dpi, quality=jpeg_quality, cache_bytes=page_cache_bytes)

    def reply_settings(self) -> dict[str, Any]:
        # ``structured`` as asked: a server that refuses it is asked without, for every
        # request, so the asked value names the replies as well.
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "structured": self._structured_asked,
            "dpi": self.dpi,
            "jpeg_quality": self.jpeg_quality,
        }

    def payload(self, request: TeacherRequest) -> dict[str, Any]:
        """The chat-completions body of one request, images rendered and encoded."""
        pages = [p.page for p in request.prompt.page_parts]
        urls = [page.uri for page in self.images.get(request.segment.doc_id, pages)]
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
        async with ChatClient(self.client_settings) as client:

            async def one(request: TeacherRequest) -> None:
                try:
                    body = await asyncio.to_thread(self.payload, request)
                except Exception as error:  # an untrusted PDF may fail any way
                    reply = TeacherReply(text=None, error=f"request not built: {error}")
                else:
                    reply = await self._send(client, body)
                on_reply(request, reply)

            await asyncio.gather(*(one(r) for r in requests))

    def close(self) -> None:
        self.images.close()

    async def _send(self, client: ChatClient, body: dict[str, Any]) -> TeacherReply:
        try:
            try:
                answer = await client.post(body, encoded=encode_body(body))
            except ChatError as error:
                if not (error.status == 400 and "response_format" in body):
                    raise
                if not _mentions_format(error.detail):
                    raise
                # The server has no structured output: ask plainly, and not again this run.
                self.structured = False
                plain = {k: v for k, v in body.items() if k != "response_format"}
                answer = await client.post(plain, encoded=encode_body(plain))
        except ChatError as error:
            return TeacherReply(text=None, error=str(error))
        usage = {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
        }
        return TeacherReply(
            text=answer.text, meta={"finish_reason": answer.finish_reason, "usage": usage}
        )


def _mentions_format(detail: str) -> bool:
    lowered = detail.lower()
    return any(word in lowered for word in ("response_format", "json_schema", "structured"))
