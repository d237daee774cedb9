"""vLLM backend: request building, engine settings and output parsing, without vLLM."""

from __future__ import annotations

import importlib.util
import json
from types import SimpleNamespace

import pytest

from mmprolong_schemas import Task, VisionTokenSpec
from qasynth.cache import RequestCache
from qasynth.generate import GenerateConfig, generate
from qasynth.prompts import build_prompt
from qasynth.segments import sample_segments
from qasynth.teachers.base import TeacherRequest
from qasynth.teachers.vllm import EngineSettings, VLLMTeacher, parse_outputs, sampling_kwargs


class FakeEngine:
    """Records what LLM.chat receives; answers every conversation with a valid pair."""

    def __init__(self, model, **kwargs):
        self.model = model
        self.kwargs = kwargs
        self.calls: list[tuple[list, list]] = []

    def chat(self, conversations, params, use_tqdm=False):
        self.calls.append((conversations, params))
        outputs = []
        for conversation, param in zip(conversations, params, strict=True):
            texts = [p["text"] for p in conversation[1]["content"] if p["type"] == "text"]
            pages = [int(t[5:-1]) for t in texts if t.startswith("Page ") and t.endswith(":")]
            chosen = pages[:1] if "One page only" in texts[0] else pages[:2]
            data = {
                "evidence_description": "Text gives 3.",
                "answer": 3,
                "question": f"What is on Page {chosen[0]} ({param['seed']}, {texts[0][5:60]})?",
                "answer_format": "Integer",
                "evidence_pages": chosen,
                "evidence_sources": ["Text"],
            }
            outputs.append(
                SimpleNamespace(
                    outputs=[
                        SimpleNamespace(
                            text=json.dumps(data), finish_reason="stop", token_ids=[1, 2, 3]
                        )
                    ]
                )
            )
        return outputs


def test_requests_settings_and_outputs(document, renderer) -> None:
    engines = []

    def factory(model, **kwargs):
        engines.append(FakeEngine(model, **kwargs))
        return engines[-1]

    spec = VisionTokenSpec(min_pixels=3136, max_pixels=200704)
    teacher = VLLMTeacher(
        "qwen-vl",
        renderer,
        spec=spec,
        engine_factory=factory,
        sampling_factory=lambda kwargs: kwargs,
        max_tokens=256,
    )
    segments = sample_segments(document, 2, seed=0)
    with RequestCache(":memory:") as cache:
        result = generate(segments, teacher, cache, GenerateConfig(batch_size=100))
    assert len(result.pairs) == 6
    (engine,) = engines
    longest = max(len(s.pages) for s in segments)
    assert engine.kwargs["limit_mm_per_prompt"] == {"image": longest}
    assert engine.kwargs["max_model_len"] % 1024 == 0
    assert engine.kwargs["mm_processor_kwargs"] == {"min_pixels": 3136, "max_pixels": 200704}
    ((conversations, params),) = engine.calls
    assert len(conversations) == 6
    assert params[0]["json_schema"]["required"][0] == "evidence_description"
    images = [p for p in conversations[0][1]["content"] if p["type"] == "image_url"]
    assert images[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_engine_length_comes_from_the_segment(document, renderer) -> None:
    (segment,) = sample_segments(document, 1)
    teacher = VLLMTeacher("m", renderer, max_tokens=100)
    built = teacher.build(TeacherRequest("k", build_prompt(segment, Task.EXTRACT_SINGLE), 0))
    # The fake renderer's 64x80 images cost smart_resize(80, 64) = 84x56 -> 3x2 = 6 tokens + 2.
    assert built.images == len(segment.pages)
    assert built.tokens > 8 * len(segment.pages)
    settings = teacher.settings_for([built])
    assert settings == EngineSettings(len(segment.pages), -(-(built.tokens + 100) // 1024) * 1024)


def test_requests_that_do_not_fit_fail_alone(document, renderer) -> None:
    segments = sample_segments(document, 2, seed=0)
    teacher = VLLMTeacher(
        "m",
        renderer,
        engine_factory=FakeEngine,
        sampling_factory=lambda kwargs: kwargs,
        settings=EngineSettings(
            limit_mm_per_prompt=min(len(s.pages) for s in segments), max_model_len=1 << 20
        ),
    )
    with RequestCache(":memory:") as cache:
        result = generate(segments, teacher, cache, GenerateConfig(max_attempts=1))
    if len({len(s.pages) for s in segments}) > 1:
        assert result.stats.rejected["teacher-error"] == 3
    assert len(result.pairs) >= 3


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
