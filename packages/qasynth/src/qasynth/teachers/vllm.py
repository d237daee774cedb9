"""vLLM's offline engine as a teacher: one batched ``LLM.generate`` call per batch of requests.

Pages reach the engine as decoded pixels: ``multi_modal_data={"image": [array, ...]}`` with
arrays MuPDF rasterised the pages into (``qasynth.pixels.PagePixels``), and the prompt
text is the conversation rendered by the engine tokenizer's chat template, one vision
placeholder per page in order. Nothing is JPEG-encoded, base64-encoded or decoded again, as
it would be through ``LLM.chat`` with data URIs. ``np.ndarray`` is one of the image types
vLLM's multi-modal inputs take (``vllm.multimodal.inputs.HfImageItem``); arrays are passed
channels-first, the layout ``vllm.multimodal.parse.ImageProcessorItems.get_image_size`` reads.

The engine is created on the first batch with ``limit_mm_per_prompt`` (images per prompt) and
``max_model_len`` taken from the largest request of that batch (page images counted exactly
from the rendered sizes, text estimated, plus ``max_tokens``), unless given explicitly. A later
request that does not fit the engine fails alone, with the reason. Structured output uses the
reply JSON schema through whichever API the installed vLLM has (``structured_outputs`` from
0.10.2, ``guided_decoding`` before). vLLM is imported only when an engine is built.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mmprolong_schemas import VisionTokenSpec, image_tokens
from qasynth.pixels import PagePixels, RasterPage
from qasynth.prompts import reply_json_schema
from qasynth.render import DEFAULT_CACHE_BYTES, PageRenderer
from qasynth.teachers.base import ReplyCallback, Teacher, TeacherReply, TeacherRequest
from qasynth.teachers.chat import template_messages
from qasynth.tokens import CHAT_TURN_TOKENS, text_tokens

LENGTH_ROUNDING = 1024


@dataclass(frozen=True)
class BuiltRequest:
    """A request ready for the engine: its conversation (pages as image placeholders), its
    pages' pixels in prompt order, and its prompt length in tokens."""

    request: TeacherRequest
    messages: list[dict[str, Any]]
    pages: list[RasterPage]
    tokens: int

    @property
    def images(self) -> int:
        return len(self.pages)


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
    """Replies from ``LLM.generate`` results (``RequestOutput``: ``.outputs[0].text``)."""
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
        page_cache_bytes: int = DEFAULT_CACHE_BYTES,
        chat_template: str | None = None,
    ):
        """``chat_template`` replaces the engine tokenizer's own (needed only for a model
        whose tokenizer has none). ``page_cache_bytes`` bounds the pixels kept across
        batches; a batch's own pages are held until its engine call returns."""
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
        self.chat_template = chat_template
        self.pixels = PagePixels(pages, dpi=self.spec.dpi, cache_bytes=page_cache_bytes)
        self._engine: Any = None
        self._tokenizer: Any = None

    def reply_settings(self) -> dict[str, Any]:
        template = self.chat_template
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "structured": self.structured,
            "spec": self.spec.model_dump(),
            "chat_template": hashlib.sha256(template.encode()).hexdigest() if template else None,
        }

    def build(self, request: TeacherRequest) -> BuiltRequest:
        numbers = [p.page for p in request.prompt.page_parts]
        pages = self.pixels.get(request.segment.doc_id, numbers)
        tokens = sum(image_tokens(p.height, p.width, self.spec) + 2 for p in pages)
        tokens += text_tokens(request.prompt.system) + text_tokens(request.prompt.text)
        tokens += 3 * CHAT_TURN_TOKENS
        return BuiltRequest(request, template_messages(request.prompt), pages, tokens)

    def prompt_text(self, built: BuiltRequest) -> str:
        """The conversation as the engine's chat template renders it, ending with the
        assistant turn's opening."""
        text = self._tokenizer.apply_chat_template(
            built.messages,
            chat_template=self.chat_template,
            tokenize=False,
            add_generation_prompt=True,
        )
        return str(text)

    def engine_input(self, built: BuiltRequest) -> dict[str, Any]:
        """One ``LLM.generate`` prompt: the text and the pages' pixels, channels-first views
        of the rasterised pages (no copy)."""
        return {
            "prompt": self.prompt_text(built),
            "multi_modal_data": {"image": [page.channels_first() for page in built.pages]},
        }

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
        try:
            self._complete(requests, on_reply)
        finally:
            # The engine has read the batch's pixels: what the cache does not keep is drawn
            # into again by later batches.
            self.pixels.release(recycle=True)

    def _complete(self, requests: Sequence[TeacherRequest], on_reply: ReplyCallback) -> None:
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
            self._tokenizer = self._engine.get_tokenizer()
            if self.chat_template is None and not getattr(self._tokenizer, "chat_template", None):
                raise ValueError(
                    f"the tokenizer of {self.model} has no chat template; pass chat_template="
                )
        assert self.settings is not None
        fitting = []
        inputs = []
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
                continue
            try:
                inputs.append(self.engine_input(item))
            except Exception as error:  # the template may refuse a conversation
                on_reply(item.request, TeacherReply(text=None, error=f"prompt not built: {error}"))
                continue
            fitting.append(item)
        if not fitting:
            return
        params = [
            self._sampling_factory(
                sampling_kwargs(b.request, self.max_tokens, self.temperature, self.structured)
            )
            for b in fitting
        ]
        try:
            replies = parse_outputs(self._engine.generate(inputs, params, use_tqdm=False))
        except Exception as error:
            if len(fitting) == 1:
                replies = [TeacherReply(text=None, error=f"engine failed: {error}")]
            else:
                # vLLM refuses a whole batch for one request it rejects: send each alone,
                # so only the bad one fails.
                replies = [
                    self._generate_one(one, param)
                    for one, param in zip(inputs, params, strict=True)
                ]
        del inputs
        for item, reply in zip(fitting, replies, strict=True):
            on_reply(item.request, reply)

    def _generate_one(self, engine_input: dict[str, Any], params: Any) -> TeacherReply:
        try:
            (reply,) = parse_outputs(
                self._engine.generate([engine_input], [params], use_tqdm=False)
            )
        except Exception as error:
            return TeacherReply(text=None, error=f"engine failed: {error}")
        return reply

    def close(self) -> None:
        self._engine = None
        self._tokenizer = None
        self.pixels.close()
