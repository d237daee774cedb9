"""vLLM's offline engine as a teacher: one batched ``LLM.chat`` call per batch of requests.

The engine is created on the first batch with ``limit_mm_per_prompt`` (images per prompt) and
``max_model_len`` taken from the largest request of that batch (page images counted exactly
from the rendered sizes, text estimated, plus ``max_tokens``), unless given explicitly. A later
request that does not fit the engine fails alone, with the reason. Structured output uses the
reply JSON schema through whichever API the installed vLLM has (``structured_outputs`` from
0.10.2, ``guided_decoding`` before). vLLM is imported only when an engine is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mmprolong_schemas import VisionTokenSpec, image_tokens
from qasynth.prompts import reply_json_schema
from qasynth.render import DEFAULT_CACHE_BYTES, JPEG_QUALITY, PageImages, PageRenderer
from qasynth.teachers.base import ReplyCallback, Teacher, TeacherReply, TeacherRequest
from qasynth.teachers.chat import chat_messages
from qasynth.tokens import CHAT_TURN_TOKENS, text_tokens

LENGTH_ROUNDING = 1024


@dataclass(frozen=True)
class BuiltRequest:
    request: TeacherRequest
    messages: list[dict[str, Any]]
    tokens: int
    images: int


@dataclass(frozen=True)
class EngineSettings:
    limit_mm_per_prompt: int
    max_model_len: int

    def engine_kwargs(self, spec: VisionTokenSpec) -> dict[str, Any]:
        return {
            "limit_mm_per_prompt": {"image": self.limit_mm_per_prompt},
            "max_model_len": self.max_model_len,
            "mm_processor_kwargs": {"min_pixels": spec.min_pixels, "max_pixels": spec.max_pixels},
        }


def sampling_kwargs(
    request: TeacherRequest, max_tokens: int, temperature: float, structured: bool
) -> dict[str, Any]:
    """Arguments of ``vllm.SamplingParams`` for one request (structured output added apart)."""
    kwargs: dict[str, Any] = {
        "max_tokens": max_tokens,
        "temperature": temperature,
        "seed": request.sampling_seed,
    }
    if structured:
        kwargs["json_schema"] = reply_json_schema()
    return kwargs


def make_sampling_params(kwargs: dict[str, Any]) -> Any:
    """Real ``SamplingParams``, the JSON schema wired through the installed vLLM's API."""
    from vllm import SamplingParams

    kwargs = dict(kwargs)
    schema = kwargs.pop("json_schema", None)
    if schema is not None:
        try:
            from vllm.sampling_params import StructuredOutputsParams

            kwargs["structured_outputs"] = StructuredOutputsParams(json=schema)
        except ImportError:
            from vllm.sampling_params import GuidedDecodingParams

            kwargs["guided_decoding"] = GuidedDecodingParams(json=schema)
    return SamplingParams(**kwargs)


def _default_engine(model: str, **kwargs: Any) -> Any:
    from vllm import LLM

    return LLM(model=model, **kwargs)


def parse_outputs(outputs: Sequence[Any]) -> list[TeacherReply]:
    """Replies from ``LLM.chat`` results (``RequestOutput``: ``.outputs[0].text``)."""
    replies = []
    for output in outputs:
        completions = getattr(output, "outputs", None) or []
        if not completions:
            replies.append(TeacherReply(text=None, error="the engine returned no completion"))
            continue
        first = completions[0]
        replies.append(
            TeacherReply(
                text=str(first.text),
                meta={
                    "finish_reason": getattr(first, "finish_reason", None),
                    "output_tokens": len(getattr(first, "token_ids", None) or []),
                },
            )
        )
    return replies


class VLLMTeacher(Teacher):
    backend = "vllm"

    def __init__(
        self,
        model: str,
        pages: PageRenderer,
        *,
        spec: VisionTokenSpec | None = None,
        max_tokens: int = 1024,
        temperature: float = 0.7,
        structured: bool = True,
        settings: EngineSettings | None = None,
        engine_kwargs: dict[str, Any] | None = None,
        engine_factory: Callable[..., Any] = _default_engine,
        sampling_factory: Callable[[dict[str, Any]], Any] = make_sampling_params,
        jpeg_quality: int = JPEG_QUALITY,
        page_cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        super().__init__(model)
        self.pages = pages
        self.spec = spec or VisionTokenSpec()
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.structured = structured
        self.settings = settings
        self.engine_kwargs = engine_kwargs or {}
        self._engine_factory = engine_factory
        self._sampling_factory = sampling_factory
        self.jpeg_quality = jpeg_quality
        self.images = PageImages(
            pages, dpi=self.spec.dpi, quality=jpeg_quality, cache_bytes=page_cache_bytes
        )
        self._engine: Any = None

    def build(self, request: TeacherRequest) -> BuiltRequest:
        pages = [p.page for p in request.prompt.page_parts]
        images = self.images.get(request.segment.doc_id, pages)
        tokens = sum(image_tokens(im.height, im.width, self.spec) + 2 for im in images)
        tokens += text_tokens(request.prompt.system) + text_tokens(request.prompt.text)
        tokens += 3 * CHAT_TURN_TOKENS
        urls = [image.uri for image in images]
        return BuiltRequest(request, chat_messages(request.prompt, urls), tokens, len(images))

    def settings_for(self, built: Sequence[BuiltRequest]) -> EngineSettings:
        """Engine limits that fit every request of ``built``."""
        longest = max(b.tokens for b in built) + self.max_tokens
        return EngineSettings(
            limit_mm_per_prompt=max(b.images for b in built),
            max_model_len=math.ceil(longest / LENGTH_ROUNDING) * LENGTH_ROUNDING,
        )

    def complete(self, requests: Sequence[TeacherRequest], on_reply: ReplyCallback) -> None:
        if not requests:
            return
        built = []
        for request in requests:
            try:
                built.append(self.build(request))
            except Exception as error:  # an untrusted PDF may fail any way
                on_reply(request, TeacherReply(text=None, error=f"request not built: {error}"))
        if not built:
            return
        if self._engine is None:
            self.settings = self.settings or self.settings_for(built)
            kwargs = self.settings.engine_kwargs(self.spec) | self.engine_kwargs
            self._engine = self._engine_factory(self.model, **kwargs)
        assert self.settings is not None
        fitting = []
        for item in built:
            needed = item.tokens + self.max_tokens
            if (
                item.images > self.settings.limit_mm_per_prompt
                or needed > self.settings.max_model_len
            ):
                on_reply(
                    item.request,
                    TeacherReply(
                        text=None,
                        error=f"request needs {item.images} images and {needed} tokens; the "
                        f"engine allows {self.settings.limit_mm_per_prompt} and "
                        f"{self.settings.max_model_len}",
                    ),
                )
            else:
                fitting.append(item)
        if not fitting:
            return
        params = [
            self._sampling_factory(
                sampling_kwargs(b.request, self.max_tokens, self.temperature, self.structured)
            )
            for b in fitting
        ]
        outputs = self._engine.chat([b.messages for b in fitting], params, use_tqdm=False)
        for item, reply in zip(fitting, parse_outputs(outputs), strict=True):
            on_reply(item.request, reply)

    def close(self) -> None:
        self._engine = None
        self.images.close()
