"""vLLM's offline engine as a teacher: one batched ``LLM.generate`` call per batch of requests.

Pages reach the engine as decoded pixels: ``multi_modal_data={"image": [array, ...]}`` with
arrays MuPDF rasterised the pages into (``qasynth.pixels.PagePixels``), and the prompt
text is the conversation rendered by the engine tokenizer's chat template, one vision
placeholder per page in order. Nothing is JPEG-encoded, base64-encoded or decoded again, as
it would be through ``LLM.chat`` with data URIs. ``np.ndarray`` is one of the image types
vLLM's multi-modal inputs take (``vllm.multimodal.inputs.HfImageItem``); arrays are passed
channels-first, the layout ``vllm.multimodal.parse.ImageProcessorItems.get_image_size`` reads.

The engine is sized for the largest request of the whole job (``prepare``, which ``generate``
calls with every unit's first request, cached or not, since retries of a rejected cached reply
send the same pages): ``limit_mm_per_prompt`` (images per prompt) and
``max_model_len`` (page images counted exactly from the page sizes at the request DPI, text
estimated, plus ``max_tokens``; the arithmetic is ``mmprolong_runtime.vllm_engine``'s),
unless given explicitly in ``settings`` or in the engine options. A request that still does
not fit the engine fails alone, with the reason. Engine options (``engine_kwargs``, the
CLI's ``--engine-option``) go to ``vllm.LLM(model, **kwargs)``, whose keyword arguments beyond
its own are ``vllm.EngineArgs`` fields
(``vllm/entrypoints/llm.py``: ``LLM.__init__(..., **kwargs)`` builds ``EngineArgs(**kwargs)``).
Structured output uses the reply JSON schema through whichever API the installed vLLM has
(``structured_outputs`` from 0.10.2, ``guided_decoding`` before). vLLM is imported only when
an engine is built.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mmprolong_runtime.vllm_engine import EngineSizing, size_engine
from mmprolong_schemas import VisionTokenSpec, image_tokens, page_tokens
from mmprolong_schemas.vision_tokens import CHAT_TURN_TOKENS, estimate_text_tokens
from qasynth.page_images import DEFAULT_CACHE_BYTES, PageRenderer
from qasynth.pixels import PagePixels, RasterPage
from qasynth.prompts import reply_json_schema
from qasynth.teachers.base import ReplyCallback, Teacher, TeacherReply, TeacherRequest
from qasynth.teachers.chat import template_messages


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
class RequestSize:
    """What a request needs of the engine: images, and prompt tokens (reply not included)."""

    images: int
    tokens: int


def _text_cost(request: TeacherRequest) -> int:
    """Estimated tokens of a request's text: system and user text, chat-turn markers."""
    prompt = request.prompt
    return (
        estimate_text_tokens(prompt.system)
        + estimate_text_tokens(prompt.text)
        + 3 * CHAT_TURN_TOKENS
    )


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
    prepares = True

    def __init__(
        self,
        model: str,
        pages: PageRenderer,
        *,
        spec: VisionTokenSpec | None = None,
        max_tokens: int = 1024,
        temperature: float = 0.7,
        structured: bool = True,
        settings: EngineSizing | None = None,
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
        self.engine_kwargs = dict(engine_kwargs or {})
        self._fixed_settings = settings is not None
        self.settings = settings.overridden(self.engine_kwargs) if settings else None
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
        tokens += _text_cost(request)
        return BuiltRequest(request, template_messages(request.prompt), pages, tokens)

    def size(self, request: TeacherRequest, documents: dict[str, Any]) -> RequestSize:
        """A request's size without drawing it: page sizes from the pool's document record
        (``documents`` keeps those read), else from rendering its pages once."""
        numbers = [p.page for p in request.prompt.page_parts]
        get = getattr(self.pages, "get", None)
        if not callable(get):
            built = self.build(request)
            self.pixels.release(recycle=True)
            return RequestSize(built.images, built.tokens)
        doc_id = request.segment.doc_id
        if doc_id not in documents:
            documents[doc_id] = get(doc_id)
        doc = documents[doc_id]
        tokens = sum(page_tokens(doc.page(n).width, doc.page(n).height, self.spec) for n in numbers)
        return RequestSize(len(numbers), tokens + _text_cost(request))

    def prepare(self, requests: Sequence[TeacherRequest]) -> None:
        """Size the engine for the largest of ``requests`` (once, before it is built)."""
        if self._engine is not None or self._fixed_settings or not requests:
            return
        documents: dict[str, Any] = {}
        sizes = []
        for request in requests:
            try:
                sizes.append(self.size(request, documents))
            except Exception:  # an unreadable request fails alone when it is built
                continue
        if sizes:
            planned = self.settings_for(sizes)
            if self.settings is not None:  # a job after another: grow, never shrink
                planned = planned.covering(self.settings)
            self.settings = planned

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

    def settings_for(self, built: Sequence[BuiltRequest | RequestSize]) -> EngineSizing:
        """Engine limits that fit every request of ``built``."""
        return size_engine([b.tokens for b in built], [b.images for b in built], self.max_tokens)

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
            self.settings = (self.settings or self.settings_for(built)).overridden(
                self.engine_kwargs
            )
            kwargs = self.settings.engine_kwargs(self.spec) | self.engine_kwargs
            try:
                self._engine = self._engine_factory(self.model, **kwargs)
            except TypeError as error:  # EngineArgs refuses an unknown option
                raise ValueError(
                    f"vLLM refused the engine options {sorted(self.engine_kwargs)}: {error}"
                ) from error
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
            if item.images > self.settings.images or needed > self.settings.max_model_len:
                on_reply(
                    item.request,
                    TeacherReply(
                        text=None,
                        error=f"request needs {item.images} images and {needed} tokens; the "
                        f"engine allows {self.settings.images} and "
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
