"""The transformers backend on a tiny random Qwen2.5-VL, directly and behind the HTTP server."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from mmprolong_runtime.testing import ChatServer
from mmprolong_schemas import Task
from qasynth.cache import RequestCache
from qasynth.generate import GenerateConfig, generate
from qasynth.prompts import build_prompt
from qasynth.segments import sample_segments
from qasynth.teachers.base import TeacherRequest
from qasynth.teachers.openai import OpenAITeacher
from qasynth.teachers.transformers import TransformersTeacher

tiny = pytest.importorskip("longctx_rope.tiny")


@pytest.fixture(scope="module")
def tiny_model():
    return tiny.build_tiny_model("qwen2.5-vl", seed=0)


@pytest.fixture
def short_doc(doc_factory):
    return doc_factory("tiny", num_pages=9, section_pages=None)


def test_generates_text_from_pages(tiny_model, short_doc, renderer) -> None:
    model, processor = tiny_model
    teacher = TransformersTeacher(model, processor, renderer, name="tiny", max_new_tokens=6)
    (segment,) = sample_segments(short_doc, 1)
    request = TeacherRequest("k", build_prompt(segment, Task.EXTRACT_SINGLE), 0)
    messages = teacher.hf_messages(request, renderer.render(segment.doc_id, segment.pages.pages))
    assert sum(p["type"] == "image" for p in messages[1]["content"]) == len(segment.pages)
    reply = teacher.generate_one(request)
    assert isinstance(reply.text, str) and 1 <= reply.meta["output_tokens"] <= 6
    assert teacher.generate_one(request).text == reply.text  # greedy: deterministic
    assert teacher.name == "transformers:tiny"
    # A random model rarely stops by itself: its six tokens are a reply cut at the limit.
    assert reply.meta["output_tokens"] == 6 and reply.meta["finish_reason"] == "length"
    assert reply.truncated


def test_openai_backend_against_a_server_answering_with_the_tiny_model(
    tiny_model, short_doc, renderer
) -> None:
    """The server speaks chat completions and answers with the local model; random weights
    write no JSON, so every reply is rejected as no-json, cached, and counted."""
    model, processor = tiny_model
    local = TransformersTeacher(model, processor, renderer, name="tiny", max_new_tokens=4)

    def handler(body, seen):
        content = []
        for part in body["messages"][1]["content"]:
            if part["type"] == "image_url":
                data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
                content.append({"type": "image", "image": Image.open(io.BytesIO(data))})
            else:
                content.append(part)
        messages = [
            {
                "role": "system",
                "content": [{"type": "text", "text": body["messages"][0]["content"]}],
            },
            {"role": "user", "content": content},
        ]
        inputs = processor.apply_chat_template(
            messages,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
        )
        output = local.hf_model.generate(**inputs, max_new_tokens=4, do_sample=False)
        text = processor.batch_decode(
            [output[0, inputs["input_ids"].shape[1] :]], skip_special_tokens=True
        )[0]
        return text

    (segment,) = sample_segments(short_doc, 1)
    with ChatServer(handler) as server, RequestCache(":memory:") as cache:
        teacher = OpenAITeacher("tiny", server.url, renderer, concurrency=1)
        config = GenerateConfig(tasks=(Task.EXTRACT_SINGLE,), max_attempts=2)
        result = generate([segment], teacher, cache, config)
        assert server.count == 2 and len(cache) == 2
        assert result.pairs == []
        assert set(result.stats.rejected) <= {"no-json", "bad-fields"}
        again = generate([segment], teacher, cache, config)
        assert again.stats.requests_sent == 0 and server.count == 2
