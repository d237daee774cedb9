"""The openai runner against a local server; vLLM sizing and requests without vLLM."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from lvlm_judge.context import ContextResolver
from lvlm_judge.datasets import load_data
from lvlm_judge.prompting import build_prompt
from lvlm_judge.runners import OpenAIRunner, chat_messages
from lvlm_judge.runners.base import GenerationRequest
from lvlm_judge.runners.vllm_runner import vllm_request
from lvlm_judge.testing import make_doc_benchmark
from mmprolong_runtime.chat_client import ClientSettings
from mmprolong_runtime.testing import ChatServer, Reply


@pytest.fixture
def doc_items(tmp_path: Path) -> tuple[Path, list[GenerationRequest]]:
    data = make_doc_benchmark(tmp_path, datasets=("slidevqa",), docs=1, pages=2)
    items = load_data([data], lengths=[8192], datasets=["slidevqa"], subset="all")
    return tmp_path / "mmlb_image", [
        GenerationRequest(item.item_id, build_prompt(item)) for item in items
    ]


def test_openai_runner_sends_pages_and_prefill(
    chat_server: ChatServer, doc_items: tuple[Path, list[GenerationRequest]]
) -> None:
    root, requests = doc_items
    chat_server.reply = lambda body, seen: "12"
    chat_server.script = [Reply(429), Reply(500)]
    settings = ClientSettings(chat_server.url, backoff_s=0.01, max_backoff_s=0.02, concurrency=2)
    runner = OpenAIRunner(settings, "served-model", ContextResolver(root), max_new_tokens=16,
                          chunk=2)  # fmt: skip
    predictions = list(runner.generate(requests))
    assert [p.item_id for p in predictions] == [r.item_id for r in requests]
    assert all(p.output == "12" and p.error is None for p in predictions)
    assert predictions[0].prompt_format == "lvlm-judge-v1"
    assert chat_server.count == len(requests) + 2
    body = chat_server.requests[-1].body
    assert body["model"] == "served-model"
    assert body["max_tokens"] == 16
    assert body["temperature"] == 0.0
    content = body["messages"][0]["content"]
    images = [part for part in content if part["type"] == "image_url"]
    assert len(images) == 2
    data = images[0]["image_url"]["url"].removeprefix("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(data))).size == (224, 280)
    assert content[-1] == {"type": "text", "text": "\nAnswer:"}
    assert "Document slidevqa-doc0: " in content[2]["text"]


def test_openai_runner_records_failures(doc_items: tuple[Path, list[GenerationRequest]]) -> None:
    root, requests = doc_items
    settings = ClientSettings("http://127.0.0.1:9/v1", max_retries=0, timeout_s=0.5)
    runner = OpenAIRunner(settings, "m", ContextResolver(root))
    (prediction,) = list(runner.generate(requests[:1]))
    assert prediction.output == ""
    assert prediction.error is not None and "ChatError" in prediction.error


def test_vllm_request_building(doc_items: tuple[Path, list[GenerationRequest]]) -> None:
    root, requests = doc_items
    seen = []

    def template(prompt: object) -> str:
        seen.append(prompt)
        return "templated"

    entry = vllm_request(requests[0], template, ContextResolver(root))
    assert entry["prompt"] == "templated"
    assert [image.size for image in entry["multi_modal_data"]["image"]] == [(224, 280)] * 2
    assert seen == [requests[0].prompt]


def test_chat_messages_places_images() -> None:
    from lvlm_judge.prompting import Prompt
    from mmprolong_schemas import ImagePart

    prompt = Prompt(["a ", ImagePart(path="x.png"), " b"], "Answer:", "lvlm-judge-v1")
    assert chat_messages(prompt) == [{"role": "user", "content": [
        {"type": "text", "text": "a "}, {"type": "image"}, {"type": "text", "text": " b"},
    ]}]  # fmt: skip
