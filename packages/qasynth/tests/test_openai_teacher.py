"""The openai backend against a real HTTP server on 127.0.0.1 with scripted faults."""

from __future__ import annotations

import base64
import io
import json
import re

import pytest
from PIL import Image

from mmprolong_runtime.testing import ChatServer, Reply
from mmprolong_schemas import Task
from qasynth.cache import RequestCache
from qasynth.generate import GenerateConfig, generate
from qasynth.segments import sample_segments
from qasynth.teachers.openai import OpenAITeacher


def _pages(body) -> list[int]:
    texts = [p["text"] for p in body["messages"][1]["content"] if p["type"] == "text"]
    return [int(m.group(1)) for t in texts for m in [re.fullmatch(r"Page (\d+):", t)] if m]


def good_reply(body, anchored: bool = True) -> str:
    pages = _pages(body)
    text = body["messages"][1]["content"][0]["text"]
    single = "One page only" in text
    chosen = pages[:1] if single else pages[:2]
    where = f"on Page {chosen[0]}" if anchored else "here"
    kind = "single" if single else ("multi" if "Two or more pages" in text else "reasoning")
    data = {
        "question": f"What {kind} value is printed {where} (seed {body['seed']})?",
        "answer": "7",
        "answer_format": "Integer",
        "evidence_pages": chosen,
        "evidence_sources": ["Text"],
    }
    return f"Evidence: Text on Page {chosen[0]} gives 7.\nJSON: {json.dumps(data)}"


def _teacher(server, renderer, **kwargs) -> OpenAITeacher:
    options = {"backoff": 0.01, "max_backoff": 0.05, "timeout": 5.0, "concurrency": 4}
    options.update(kwargs)
    return OpenAITeacher("served-model", server.url, renderer, api_key="secret-key", **options)


def test_payload_has_data_uris_and_schema(document, renderer) -> None:
    (segment,) = sample_segments(document, 1)
    from qasynth.prompts import build_prompt
    from qasynth.teachers.base import TeacherRequest

    with ChatServer() as server:
        teacher = _teacher(server, renderer)
        body = teacher.payload(TeacherRequest("k", build_prompt(segment, Task.REASONING), 3, 1))
    images = [p for p in body["messages"][1]["content"] if p["type"] == "image_url"]
    assert len(images) == len(segment.pages)
    url = images[0]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).format == "JPEG"
    assert body["response_format"]["type"] == "json_schema"
    assert body["seed"] == 3001 and body["model"] == "served-model"


def test_scripted_faults_are_retried_or_rejected_with_reasons(document, renderer) -> None:
    """HTTP faults (500, 429, timeout) are retried inside a request; content faults
    (malformed JSON, no anchor) are rejected and retried as a new attempt."""

    def handler(body, seen):
        attempt = body["seed"] % 1000
        if seen == 0:
            return Reply(500, "internal error")
        if seen == 1:
            return Reply(429, "slow down", headers={"retry-after": "0"})
        if seen == 2:
            return Reply(text="late", delay_s=1.0)
        if attempt == 0:
            return 'Evidence: x\nJSON: {"question": "broken", "answer": '
        if attempt == 1:
            return good_reply(body, anchored=False)
        return good_reply(body)

    segments = sample_segments(document, 2, seed=0)
    with ChatServer(handler) as server, RequestCache(":memory:") as cache:
        teacher = _teacher(server, renderer, timeout=0.4, max_retries=4)
        result = generate(segments, teacher, cache, GenerateConfig(max_attempts=3))
        units = len(segments) * 3
        assert len(result.pairs) == units
        assert result.stats.rejected == {"no-json": units, "no-anchor": units}
        assert result.stats.requests_sent == 3 * units
        # Four HTTP calls per request: 500, 429, timeout, answer.
        assert server.count == 4 * 3 * units
        assert all(p.teacher == "openai:served-model" for p in result.pairs)


def test_client_errors_fail_fast_and_are_not_cached(document, renderer) -> None:
    (segment,) = sample_segments(document, 1)
    with ChatServer(lambda body, seen: Reply(401, "bad key")) as server:
        with RequestCache(":memory:") as cache:
            result = generate(
                [segment],
                _teacher(server, renderer),
                cache,
                GenerateConfig(tasks=(Task.EXTRACT_SINGLE,), max_attempts=2),
            )
            assert result.pairs == [] and result.stats.rejected == {"teacher-error": 2}
            assert len(cache) == 0
        assert server.count == 2
    assert "secret-key" not in json.dumps([r.model_dump(mode="json") for r in result.rejections])


def test_servers_without_structured_output_are_asked_plainly(document, renderer) -> None:
    def handler(body, seen):
        if "response_format" in body:
            return Reply(400, "response_format json_schema unsupported")
        return good_reply(body)

    segments = sample_segments(document, 1)
    with ChatServer(handler) as server, RequestCache(":memory:") as cache:
        teacher = _teacher(server, renderer)
        result = generate(segments, teacher, cache, GenerateConfig(tasks=(Task.EXTRACT_SINGLE,)))
        assert len(result.pairs) == 1 and teacher.structured is False
        assert server.count == 2


def test_rerun_sends_no_finished_request_again(document, renderer, tmp_path) -> None:
    def handler(body, seen):
        return good_reply(body)

    segments = sample_segments(document, 2, seed=1)
    config = GenerateConfig()
    with ChatServer(handler) as server:
        with RequestCache(tmp_path / "cache.sqlite") as cache:
            first = generate(segments[:1], _teacher(server, renderer), cache, config)
        sent_first = server.count
        with RequestCache(tmp_path / "cache.sqlite") as cache:
            second = generate(segments, _teacher(server, renderer), cache, config)
        assert second.stats.cache_hits == 3
        assert server.count == sent_first + 3
        assert max(server.answered.values()) == 1
        assert [p.qa_id for p in second.pairs[:3]] == [p.qa_id for p in first.pairs]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_is_bounded(document, renderer, concurrency):
    import threading

    active, peak, lock = [0], [0], threading.Lock()

    def handler(body, seen):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        import time

        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return good_reply(body)

    segments = sample_segments(document, 2, seed=2)
    with ChatServer(handler) as server, RequestCache(":memory:") as cache:
        generate(segments, _teacher(server, renderer, concurrency=concurrency), cache)
    assert peak[0] <= concurrency


def test_a_page_that_cannot_render_fails_alone(doc_factory) -> None:
    good, broken = doc_factory("good"), doc_factory("broken")

    class Renderer:
        def render(self, doc_id, pages, dpi=144):
            if doc_id == broken.doc_id:
                raise RuntimeError("cannot open broken.pdf")
            return [Image.new("RGB", (64, 80), "white") for _ in pages]

    segments = sample_segments(good, 1) + sample_segments(broken, 1)

    def handler(body, seen):
        return good_reply(body)

    config = GenerateConfig(tasks=(Task.EXTRACT_SINGLE,), max_attempts=1)
    with ChatServer(handler) as server, RequestCache(":memory:") as cache:
        result = generate(segments, _teacher(server, Renderer()), cache, config)
    assert [p.doc_id for p in result.pairs] == [good.doc_id]
    (rejection,) = result.rejections
    assert rejection.doc_id == broken.doc_id and "broken.pdf" in rejection.detail


def test_encoded_body_is_the_json_of_the_payload(document, renderer) -> None:
    from qasynth.page_images import data_uri
    from qasynth.prompts import build_prompt
    from qasynth.teachers.chat import chat_messages, encode_body

    (segment,) = sample_segments(document, 1)
    prompt = build_prompt(segment, Task.EXTRACT_MULTI)
    urls = [data_uri(im) for im in renderer.render(segment.doc_id, segment.pages.pages)]
    body = {"model": "m", "messages": chat_messages(prompt, urls), "note": 'quote " é'}
    assert json.loads(encode_body(body)) == json.loads(json.dumps(body))


def test_a_segments_pages_are_rendered_once_for_all_its_tasks(document, renderer) -> None:
    def handler(body, seen):
        return good_reply(body)

    segments = sample_segments(document, 2, seed=3)
    pages = sum(len(s.pages) for s in segments)
    with ChatServer(handler) as server, RequestCache(":memory:") as cache:
        teacher = _teacher(server, renderer)
        result = generate(segments, teacher, cache)
        teacher.close()
    assert result.stats.requests_sent >= 6
    # Three tasks per segment, each page rendered once.
    assert renderer.rendered == pages
