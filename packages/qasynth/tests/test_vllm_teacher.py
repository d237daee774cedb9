"""vLLM backend without vLLM: what ``LLM.generate`` receives (prompt text from the engine
tokenizer's chat template, decoded page pixels), engine settings, per-request failures, and
output parsing."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mmprolong_runtime.vllm_engine import EngineSizing
from mmprolong_schemas import Task, VisionTokenSpec, image_tokens
from qasynth.cache import RequestCache
from qasynth.generate import GenerateConfig, generate
from qasynth.prompts import build_prompt
from qasynth.segments import sample_segments
from qasynth.teachers.base import Teacher, TeacherReply, TeacherRequest
from qasynth.teachers.vllm import VLLMTeacher, parse_outputs, sampling_kwargs

VISION = "<|vision_start|><|image_pad|><|vision_end|>"

tiny = pytest.importorskip("longctx_rope.tiny")


def tiny_tokenizer(chat_template: str | None = tiny.TINY_CHAT_TEMPLATE):
    """An offline Qwen-vocabulary tokenizer (no download) with ``chat_template``: ours
    renders each image part as Qwen's templates do."""
    tokenizer = tiny.tiny_tokenizer("qwen2.5-vl")
    tokenizer.chat_template = chat_template
    return tokenizer


class FakeEngine:
    """Records what LLM.generate receives; answers every prompt with a valid pair, and refuses
    a whole batch holding a sampling seed in ``refuse`` (as vLLM does for a bad request)."""

    def __init__(self, model, *, refuse=(), chat_template=tiny.TINY_CHAT_TEMPLATE, **kwargs):
        self.model = model
        self.kwargs = kwargs
        self.refuse = set(refuse)
        self.tokenizer = tiny_tokenizer(chat_template)
        self.calls: list[tuple[list, list]] = []

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((prompts, params))
        if any(param["seed"] in self.refuse for param in params):
            raise ValueError("prompt refused")
        outputs = []
        for prompt, param in zip(prompts, params, strict=True):
            text = prompt["prompt"]
            pages = [int(n) for n in re.findall(r"Page (\d+):" + re.escape(VISION), text)]
            chosen = pages[:1] if "One page only" in text else pages[:2]
            tag = hashlib.sha256(text.encode()).hexdigest()[:8]
            data = {
                "evidence_description": "Text gives 3.",
                "answer": 3,
                "question": f"What is on Page {chosen[0]} ({param['seed']}, {tag})?",
                "answer_format": "Integer",
                "evidence_pages": chosen,
                "evidence_sources": ["Text"],
            }
            completion = SimpleNamespace(
                text=json.dumps(data), finish_reason="stop", token_ids=[1, 2, 3]
            )
            outputs.append(SimpleNamespace(outputs=[completion]))
        return outputs


def _teacher(pages, engines, **kwargs) -> VLLMTeacher:
    def factory(model, **engine_kwargs):
        engines.append(FakeEngine(model, **engine_kwargs))
        return engines[-1]

    kwargs.setdefault("engine_factory", factory)
    return VLLMTeacher("qwen-vl", pages, sampling_factory=lambda kwargs: kwargs, **kwargs)


def test_the_engine_gets_rendered_pixels_and_one_placeholder_per_page(corpus_pool) -> None:
    pool, _, _ = corpus_pool
    doc = pool.get(next(pool.documents()).doc_id)
    (segment,) = sample_segments(doc, 1, seed=3, pages=(4, 6))
    engines: list[FakeEngine] = []
    spec = VisionTokenSpec(dpi=72, min_pixels=3136, max_pixels=200704)
    teacher = _teacher(pool, engines, spec=spec, max_tokens=256)
    with RequestCache(":memory:") as cache:
        result = generate([segment], teacher, cache, GenerateConfig(batch_size=100))
    assert len(result.pairs) == 3
    (engine,) = engines
    ((prompts, params),) = engine.calls
    numbers = segment.pages.pages
    reference = pool.render(doc.doc_id, numbers, dpi=72)
    for prompt in prompts:
        text = prompt["prompt"]
        assert text.startswith("<|im_start|>system\n")
        assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
        assert "data:image" not in text
        # One placeholder per page, each after its page label, in page order.
        assert text.count(VISION) == len(numbers)
        labelled = re.findall(r"Page (\d+):" + re.escape(VISION), text)
        assert [int(n) for n in labelled] == numbers
        images = prompt["multi_modal_data"]["image"]
        assert len(images) == len(numbers)
        for array, image in zip(images, reference, strict=True):
            assert isinstance(array, np.ndarray) and array.dtype == np.uint8
            assert array.shape == (3, image.height, image.width)
            assert np.array_equal(array.transpose(1, 2, 0), np.asarray(image))
    # The three tasks share each page's array: rasterised once, no copies.
    for index in range(len(numbers)):
        first = prompts[0]["multi_modal_data"]["image"][index]
        assert all(
            np.shares_memory(first, p["multi_modal_data"]["image"][index]) for p in prompts[1:]
        )
    assert (teacher.pixels.misses, teacher.pixels.hits) == (len(numbers), 2 * len(numbers))
    assert len(params) == 3 and all(isinstance(p["seed"], int) for p in params)
    assert all(p["json_schema"]["required"][0] == "evidence_description" for p in params)
    assert all(p["max_tokens"] == 256 for p in params)
    # Engine settings come from the exact image tokens of the rendered sizes.
    image_cost = sum(image_tokens(im.height, im.width, spec) + 2 for im in reference)
    assert engine.kwargs["limit_mm_per_prompt"] == {"image": len(numbers)}
    assert engine.kwargs["max_model_len"] % 1024 == 0
    assert engine.kwargs["max_model_len"] >= image_cost + 256
    assert engine.kwargs["mm_processor_kwargs"] == {"min_pixels": 3136, "max_pixels": 200704}
    # After the batch only the bounded cache holds pages, and none of the arrays is drawn
    # into again: the engine (this fake records its calls) still refers to them.
    assert teacher.pixels.pinned_bytes == 0
    assert teacher.pixels.cached_bytes <= teacher.pixels.cache_bytes
    assert teacher.pixels.spared_bytes == 0
    teacher.close()


class ForgetfulEngine(FakeEngine):
    """Keeps nothing of a call, as vLLM keeps no input image once generate returned."""

    def generate(self, prompts, params, use_tqdm=True):
        outputs = super().generate(prompts, params, use_tqdm)
        self.calls.clear()
        return outputs


def test_arrays_are_drawn_into_again_once_the_engine_let_go(corpus_pool) -> None:
    pool, _, _ = corpus_pool
    docs = [pool.get(info.doc_id) for info in list(pool.documents())[:2]]
    segments = [sample_segments(doc, 1, seed=1, pages=(3, 3))[0] for doc in docs]
    teacher = _teacher(
        pool,
        [],
        spec=VisionTokenSpec(dpi=72),
        page_cache_bytes=0,
        engine_factory=lambda model, **kw: ForgetfulEngine(model),
    )
    with RequestCache(":memory:") as cache:
        result = generate(segments, teacher, cache, GenerateConfig(batch_size=3))
    assert len(result.pairs) == 6
    # The second segment's pages were drawn into the first one's arrays (same page size).
    assert teacher.pixels.misses == 6 and teacher.pixels.reused == 3
    teacher.close()


def test_requests_settings_and_outputs(document, renderer) -> None:
    engines: list[FakeEngine] = []
    spec = VisionTokenSpec(min_pixels=3136, max_pixels=200704)
    teacher = _teacher(renderer, engines, spec=spec, max_tokens=256)
    segments = sample_segments(document, 2, seed=0)
    with RequestCache(":memory:") as cache:
        result = generate(segments, teacher, cache, GenerateConfig(batch_size=100))
    assert len(result.pairs) == 6
    (engine,) = engines
    longest = max(len(s.pages) for s in segments)
    assert engine.kwargs["limit_mm_per_prompt"] == {"image": longest}
    ((prompts, params),) = engine.calls
    assert len(prompts) == 6 and len(params) == 6
    # The fake renderer's 64x80 pages, channels first.
    shapes = {a.shape for p in prompts for a in p["multi_modal_data"]["image"]}
    assert shapes == {(3, 80, 64)}
    # Each page rendered once for the segment's three tasks.
    assert renderer.rendered == sum(len(s.pages) for s in segments)


def test_engine_length_comes_from_the_segment(document, renderer) -> None:
    (segment,) = sample_segments(document, 1)
    teacher = VLLMTeacher("m", renderer, max_tokens=100)
    built = teacher.build(TeacherRequest("k", build_prompt(segment, Task.EXTRACT_SINGLE), 0))
    # The fake renderer's 64x80 images cost smart_resize(80, 64) = 84x56 -> 3x2 = 6 tokens + 2.
    assert built.images == len(segment.pages)
    assert built.tokens > 8 * len(segment.pages)
    settings = teacher.settings_for([built])
    assert settings == EngineSizing(-(-(built.tokens + 100) // 1024) * 1024, len(segment.pages))


def test_requests_that_do_not_fit_fail_alone(document, renderer) -> None:
    segments = sample_segments(document, 2, seed=0)
    teacher = _teacher(
        renderer,
        [],
        settings=EngineSizing(max_model_len=1 << 20, images=min(len(s.pages) for s in segments)),
    )
    with RequestCache(":memory:") as cache:
        result = generate(segments, teacher, cache, GenerateConfig(max_attempts=1))
    if len({len(s.pages) for s in segments}) > 1:
        assert result.stats.rejected["teacher-error"] == 3
    assert len(result.pairs) >= 3


def test_a_request_the_engine_refuses_fails_alone(document, renderer) -> None:
    segments = sample_segments(document, 1, seed=0)
    tasks = (Task.EXTRACT_SINGLE, Task.EXTRACT_MULTI, Task.REASONING)
    requests = [
        TeacherRequest(f"k{n}", build_prompt(segments[0], task, seed=n), n)
        for n, task in enumerate(tasks)
    ]
    refused = requests[1].sampling_seed
    engines: list[FakeEngine] = []
    teacher = _teacher(
        renderer,
        engines,
        engine_factory=lambda model, **kw: (
            engines.append(FakeEngine(model, refuse=[refused])) or engines[-1]
        ),
    )
    replies: dict[str, TeacherReply] = {}
    teacher.complete(requests, lambda request, reply: replies.__setitem__(request.key, reply))
    assert len(replies) == 3
    assert "engine failed: prompt refused" in (replies[requests[1].key].error or "")
    assert replies[requests[0].key].ok and replies[requests[2].key].ok
    # The batch, then each request alone.
    assert [len(prompts) for prompts, _ in engines[0].calls] == [3, 1, 1, 1]


class PathPool:
    """Pages from PDF files by document id, as ``docpool.Pool.pdf_path`` gives them."""

    def __init__(self, paths: dict[str, Path]):
        self.paths = paths

    def pdf_path(self, doc_id: str) -> Path:
        return self.paths[doc_id]

    def render(self, doc_id, pages, dpi=144):  # never used: pdf_path is preferred
        raise AssertionError("rendered through Pillow")


def test_a_broken_pdf_fails_its_requests_with_its_name(tmp_path, doc_factory) -> None:
    import pymupdf

    good = doc_factory("good", num_pages=12, section_pages=(1, 5))
    bad = doc_factory("bad", num_pages=12, section_pages=(1, 5))
    with pymupdf.open() as pdf:
        for _ in range(12):
            pdf.new_page(width=60, height=80)
        pdf.save(tmp_path / "good.pdf")
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.7\nthis is not a pdf at all")
    pool = PathPool({good.doc_id: tmp_path / "good.pdf", bad.doc_id: tmp_path / "bad.pdf"})
    segments = [*sample_segments(good, 1, seed=0), *sample_segments(bad, 1, seed=0)]
    teacher = _teacher(pool, [])
    with RequestCache(":memory:") as cache:
        result = generate(segments, teacher, cache, GenerateConfig(max_attempts=1))
    assert {pair.doc_id for pair in result.pairs} == {good.doc_id}
    errors = [r.detail for r in result.rejections if r.reason == "teacher-error"]
    assert len(errors) == 3
    assert all(bad.doc_id in e and "bad.pdf" in e for e in errors)


def test_a_tokenizer_without_chat_template_is_refused(document, renderer) -> None:
    (segment,) = sample_segments(document, 1)
    request = TeacherRequest("k", build_prompt(segment, Task.EXTRACT_SINGLE), 0)
    teacher = _teacher(
        renderer, [], engine_factory=lambda model, **kw: FakeEngine(model, chat_template=None)
    )
    with pytest.raises(ValueError, match="no chat template; pass chat_template="):
        teacher.complete([request], lambda *_: None)
    # Given one, the same tokenizer renders the prompt.
    teacher = _teacher(
        renderer,
        [],
        chat_template=tiny.TINY_CHAT_TEMPLATE,
        engine_factory=lambda model, **kw: FakeEngine(model, chat_template=None),
    )
    replies: list[TeacherReply] = []
    teacher.complete([request], lambda _, reply: replies.append(reply))
    assert replies[0].ok


def test_channels_first_pixels_process_like_the_pil_page() -> None:
    """Hugging Face's Qwen2-VL image processor (what vLLM runs for Qwen2.5-VL) gives the same
    patches and grid for our channels-first view as for the page as a Pillow image, and the
    grid matches our token count."""
    from PIL import Image
    from transformers import Qwen2VLImageProcessorPil

    from qasynth.pixels import RasterPage

    spec = VisionTokenSpec(min_pixels=3136, max_pixels=200704)
    pixels = np.random.default_rng(0).integers(0, 256, (311, 197, 3), dtype=np.uint8)
    page = RasterPage(pixels)
    processor = Qwen2VLImageProcessorPil(min_pixels=spec.min_pixels, max_pixels=spec.max_pixels)
    ours = processor(images=[page.channels_first()], return_tensors="np")
    reference = processor(images=[Image.fromarray(pixels)], return_tensors="np")
    assert np.array_equal(ours["image_grid_thw"], reference["image_grid_thw"])
    assert np.array_equal(ours["pixel_values"], reference["pixel_values"])
    t, h, w = ours["image_grid_thw"][0]
    assert t * h * w // 4 == image_tokens(311, 197, spec)


def test_sampling_and_output_parsing() -> None:
    request = SimpleNamespace(sampling_seed=7)
    kwargs = sampling_kwargs(request, 64, 0.5, structured=False)  # type: ignore[arg-type]
    assert kwargs == {"max_tokens": 64, "temperature": 0.5, "seed": 7}
    replies = parse_outputs(
        [
            SimpleNamespace(outputs=[]),
            SimpleNamespace(outputs=[SimpleNamespace(text="hi", finish_reason="length")]),
        ]
    )
    assert replies[0].text is None and "no completion" in (replies[0].error or "")
    assert replies[1].text == "hi" and replies[1].meta["finish_reason"] == "length"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed")
def test_real_sampling_params() -> None:
    from qasynth.teachers.vllm import make_sampling_params

    params = make_sampling_params(
        {"max_tokens": 8, "temperature": 0.0, "seed": 1, "json_schema": {"type": "object"}}
    )
    assert params.max_tokens == 8


class SizedPool:
    """Documents and pages drawn at their true size at the request DPI, as docpool's pool
    renders them (``pixels_at_dpi``), so sizes read from records and from pixels agree."""

    def __init__(self, *documents):
        self.documents = {d.doc_id: d for d in documents}
        self.rendered = 0

    def get(self, doc_id):
        return self.documents[doc_id]

    def render(self, doc_id, pages, dpi=144):
        from PIL import Image

        from mmprolong_schemas.vision_tokens import pixels_at_dpi

        self.rendered += len(pages)
        doc = self.documents[doc_id]
        return [
            Image.new(
                "RGB",
                (pixels_at_dpi(doc.page(p).width, dpi), pixels_at_dpi(doc.page(p).height, dpi)),
                "white",
            )
            for p in pages
        ]


def test_the_engine_is_sized_for_the_largest_request_of_the_job(doc_factory) -> None:
    """A first batch of few Letter pages, later batches of more and larger pages: every
    request fits, because the engine was sized for the whole job before the first batch."""
    from qasynth.segments import DocOutline

    letter = doc_factory("letter", num_pages=20, section_pages=None)
    large = doc_factory("large", num_pages=20, section_pages=None, width=842, height=1191)
    small_segment = sample_segments(DocOutline.of(letter), 1, seed=0, pages=(8, 8))
    big_segment = sample_segments(DocOutline.of(large), 1, seed=0, pages=(15, 15))
    pool = SizedPool(letter, large)
    engines: list[FakeEngine] = []
    spec = VisionTokenSpec(dpi=36)
    teacher = _teacher(pool, engines, spec=spec, max_tokens=128)
    with RequestCache(":memory:") as cache:
        result = generate(
            small_segment + big_segment,
            teacher,
            cache,
            GenerateConfig(max_attempts=1, batch_size=3),
        )
    assert "teacher-error" not in result.stats.rejected, result.rejections
    # Sizing read the page sizes from the records: each page was rendered once, for its batch.
    assert pool.rendered == 8 + 15
    (engine,) = engines
    assert len(engine.calls) == 2  # two batches, one engine
    assert engine.kwargs["limit_mm_per_prompt"] == {"image": 15}
    largest = max(
        teacher.build(TeacherRequest("k", build_prompt(big_segment[0], t), 0)).tokens
        for t in (Task.EXTRACT_SINGLE, Task.EXTRACT_MULTI, Task.REASONING)
    )
    assert engine.kwargs["max_model_len"] >= largest + 128


class RejectedReplies(Teacher):
    """Answers as the vllm teacher would be keyed (same name and settings), with a reply
    every validation rejects: a killed first run whose attempt-1 replies are all cached."""

    backend = "vllm"

    def __init__(self, model: str, settings: dict) -> None:
        super().__init__(model)
        self.settings = settings

    def reply_settings(self) -> dict:
        return self.settings

    def complete(self, requests, on_reply) -> None:
        for request in requests:
            on_reply(request, TeacherReply(text="no pair here", meta={"finish_reason": "stop"}))


def test_a_resumed_job_sizes_the_engine_for_retries_of_cached_replies(
    doc_factory, tmp_path
) -> None:
    """Rerun after a kill: every first reply is cached and rejected, so every request sent
    is a retry. The engine is sized for them all, the larger pages of the later batch
    included, not for the first batch."""
    from qasynth.segments import DocOutline

    letter = doc_factory("letter", num_pages=20, section_pages=None)
    large = doc_factory("large", num_pages=20, section_pages=None, width=842, height=1191)
    small_segment = sample_segments(DocOutline.of(letter), 1, seed=0, pages=(8, 8))
    big_segment = sample_segments(DocOutline.of(large), 1, seed=0, pages=(15, 15))
    engines: list[FakeEngine] = []
    teacher = _teacher(
        SizedPool(letter, large), engines, spec=VisionTokenSpec(dpi=36), max_tokens=128
    )
    segments = small_segment + big_segment
    with RequestCache(tmp_path / "cache.sqlite") as cache:
        first_run = RejectedReplies(teacher.model, teacher.reply_settings())
        generate(segments, first_run, cache, GenerateConfig(max_attempts=1, batch_size=3))
        assert len(cache) == 6
        result = generate(segments, teacher, cache, GenerateConfig(max_attempts=2, batch_size=3))
    assert result.stats.cache_hits == 6 and result.stats.requests_sent == 6
    assert "teacher-error" not in result.stats.rejected, result.rejections
    assert len(result.pairs) == 6
    (engine,) = engines
    assert engine.kwargs["limit_mm_per_prompt"] == {"image": 15}


def test_engine_options_reach_the_engine_and_its_limits(document, renderer) -> None:
    segments = sample_segments(document, 1, seed=0)
    engines: list[FakeEngine] = []
    options = {"max_model_len": 512, "gpu_memory_utilization": 0.8, "enforce_eager": True}
    teacher = _teacher(renderer, engines, engine_kwargs=options)
    with RequestCache(":memory:") as cache:
        result = generate(segments, teacher, cache, GenerateConfig(max_attempts=1))
    (engine,) = engines
    assert engine.kwargs["gpu_memory_utilization"] == 0.8 and engine.kwargs["enforce_eager"]
    assert engine.kwargs["max_model_len"] == 512 == teacher.settings.max_model_len
    # 512 tokens hold no request here: each fails alone, with the engine's limit named.
    assert result.stats.rejected["teacher-error"] == 3
    assert all("512" in r.detail for r in result.rejections)
