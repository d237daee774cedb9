"""Any OpenAI-compatible server (vLLM serve, SGLang, hosted APIs) as the model under test.
Pages go as PNG data URLs; the prefill ends the user turn, as chat APIs cannot prefill."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from lvlm_judge.context import ContextResolver
from lvlm_judge.runners.base import DEFAULT_MAX_NEW_TOKENS, GenerationRequest
from mmprolong_runtime.chat_client import ChatClient, ChatError, ClientSettings
from mmprolong_schemas import Prediction


def image_url(image: Any) -> dict[str, Any]:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}}


def openai_messages(request: GenerationRequest, resolver: ContextResolver) -> list[dict[str, Any]]:
    content: list[dict[str, Any]] = []
    for segment in request.prompt.segments:
        if isinstance(segment, str):
            content.append({"type": "text", "text": segment})
        else:
            content.append(image_url(resolver.load(segment)))
    content.append({"type": "text", "text": "\n" + request.prompt.prefill})
    return [{"role": "user", "content": content}]


class OpenAIRunner:
    def __init__(
        self,
        settings: ClientSettings,
        model: str,
        resolver: ContextResolver,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        chunk: int = 32,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.settings = settings
        self.model_name = model
        self.resolver = resolver
        self.max_new_tokens = max_new_tokens
        self.chunk = max(1, chunk)
        self.transport = transport

    async def _one(self, client: ChatClient, request: GenerationRequest) -> Prediction:
        loop = asyncio.get_running_loop()
        started = loop.time()
        fields: dict[str, Any] = {
            "item_id": request.item_id,
            "model": self.model_name,
            "prompt_format": request.prompt.prompt_format,
        }
        try:
            messages = openai_messages(request, self.resolver)
            reply = await client.chat(
                messages, model=self.model_name, max_tokens=self.max_new_tokens, temperature=0.0
            )
        except (ChatError, FileNotFoundError, ValueError) as error:
            return Prediction(output="", error=f"{type(error).__name__}: {error}", **fields)
        return Prediction(
            output=reply.text,
            input_tokens=reply.prompt_tokens or None,
            output_tokens=reply.completion_tokens or None,
            latency_s=loop.time() - started,
            **fields,
        )

    async def _chunk(self, requests: Sequence[GenerationRequest]) -> list[Prediction]:
        async with ChatClient(self.settings, transport=self.transport) as client:
            return list(await asyncio.gather(*(self._one(client, r) for r in requests)))

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[Prediction]:
        """Chunks run concurrently (bounded by the client), each saved before the next."""
        for start in range(0, len(requests), self.chunk):
            yield from asyncio.run(self._chunk(requests[start : start + self.chunk]))
