"""The request cache key covers every setting that changes a reply; cut replies are not kept."""

from collections.abc import Sequence

import pytest

from mmprolong_schemas import Task
from qasynth import prompts
from qasynth.cache import RequestCache
from qasynth.generate import GenerateConfig, generate, reply_settings
from qasynth.segments import sample_segments
from qasynth.teachers.base import ReplyCallback, Teacher, TeacherReply, TeacherRequest
from qasynth.teachers.openai import OpenAITeacher
from qasynth.teachers.vllm import VLLMTeacher


class KeyRecorder(Teacher):
    backend = "fake"

    def __init__(self, settings: dict | None = None, finish_reason: str = "stop") -> None:
        super().__init__("m")
        self.settings = settings or {}
        self.finish_reason = finish_reason
        self.keys: list[str] = []

    def reply_settings(self) -> dict:
        return self.settings

    def complete(self, requests: Sequence[TeacherRequest], on_reply: ReplyCallback) -> None:
        for request in requests:
            self.keys.append(request.key)
            on_reply(
                request,
                TeacherReply(text="Evidence: x", meta={"finish_reason": self.finish_reason}),
            )


def _keys(document, tmp_path, teacher: KeyRecorder, **config) -> list[str]:
    segments = sample_segments(document, 1, seed=0)
    with RequestCache(tmp_path / f"c{len(list(tmp_path.iterdir()))}.sqlite") as cache:
        generate(segments, teacher, cache, GenerateConfig(max_attempts=1, **config))
    return teacher.keys


def test_prompt_version_is_computed_from_the_prompt_texts(monkeypatch) -> None:
    assert prompts._prompt_version() == prompts.PROMPT_VERSION
    assert prompts.PROMPT_VERSION.startswith("qasynth-qa-")
    monkeypatch.setattr(prompts, "SYSTEM_PROMPT", prompts.SYSTEM_PROMPT + " Be brief.")
    assert prompts._prompt_version() != prompts.PROMPT_VERSION
    monkeypatch.undo()
    monkeypatch.setattr(prompts, "CLOSING", "Answer now.")
    assert prompts._prompt_version() != prompts.PROMPT_VERSION


@pytest.mark.parametrize(
    ("settings", "config"),
    [
        ({"temperature": 0.1}, {}),
        ({"max_tokens": 64}, {}),
        ({"structured": False}, {}),
        ({"dpi": 72}, {}),
        ({}, {"exemplars": 0}),
        ({}, {"page_labels": False}),
    ],
)
def test_every_reply_setting_changes_the_key(document, tmp_path, settings, config) -> None:
    base = {"temperature": 0.7, "max_tokens": 1024, "structured": True, "dpi": 144}
    same = _keys(document, tmp_path, KeyRecorder(dict(base)))
    assert _keys(document, tmp_path, KeyRecorder(dict(base))) == same
    changed = _keys(document, tmp_path, KeyRecorder(base | settings), **config)
    assert not set(changed) & set(same)


def test_backends_report_what_changes_their_replies(renderer) -> None:
    config = GenerateConfig()
    openai = [
        reply_settings(OpenAITeacher("m", "http://127.0.0.1:9", renderer, **kw), config)
        for kw in ({}, {"temperature": 0.2}, {"max_tokens": 99}, {"dpi": 96}, {"structured": False})
    ]
    assert len({repr(s) for s in openai}) == len(openai)
    vllm = [
        reply_settings(VLLMTeacher("m", renderer, **kw), config)
        for kw in ({}, {"temperature": 0.2}, {"max_tokens": 99}, {"chat_template": "{{x}}"})
    ]
    assert len({repr(s) for s in vllm}) == len(vllm)
    assert reply_settings(OpenAITeacher("m", "http://127.0.0.1:9", renderer), config)["dpi"] == 144


def test_a_reply_cut_at_its_token_limit_is_rejected_and_never_cached(document, tmp_path) -> None:
    teacher = KeyRecorder(finish_reason="length")
    segments = sample_segments(document, 1, seed=0)
    with RequestCache(tmp_path / "cache.sqlite") as cache:
        result = generate(segments, teacher, cache, GenerateConfig(max_attempts=2))
        assert len(cache) == 0
    assert result.stats.rejected["truncated-reply"] == 2 * len(segments) * 3
    assert {r.task for r in result.rejections} == {
        Task.EXTRACT_SINGLE,
        Task.EXTRACT_MULTI,
        Task.REASONING,
    }
    with RequestCache(tmp_path / "cache.sqlite") as cache:
        generate(segments, KeyRecorder(), cache, GenerateConfig(max_attempts=1))
        assert len(cache) == len(segments) * 3


def test_a_cache_file_written_before_the_runtime_cache_is_read(document, tmp_path) -> None:
    """A replies table as qasynth's own SQLite code created and filled it (the layout and
    the insert it used, column by column), read through today's RequestCache."""
    import json
    import sqlite3

    path = tmp_path / "cache.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE IF NOT EXISTS replies (\n    key TEXT PRIMARY KEY,\n"
        "    teacher TEXT NOT NULL,\n    prompt_version TEXT NOT NULL,\n"
        "    segment_id TEXT NOT NULL,\n    task TEXT NOT NULL,\n    seed INTEGER NOT NULL,\n"
        "    attempt INTEGER NOT NULL,\n    text TEXT NOT NULL,\n    meta TEXT NOT NULL,\n"
        "    created REAL NOT NULL\n)"
    )
    meta = {"finish_reason": "stop", "tokens": 12}
    db.execute(
        "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ("k-old", "m", "v1", "s1", "extract-single", 0, 0, "Evidence: old", json.dumps(meta), 1.0),
    )
    db.commit()
    db.close()
    with RequestCache(path) as cache:
        assert len(cache) == 1
        reply = cache.get("k-old")
        assert reply is not None and reply.text == "Evidence: old" and reply.meta == meta
        (segment,) = sample_segments(document, 1, seed=0)
        prompt = prompts.build_prompt(segment, Task.EXTRACT_SINGLE)
        cache.put("m", TeacherRequest("k-new", prompt, seed=0), TeacherReply(text="new", meta={}))
    with RequestCache(path) as cache:
        assert len(cache) == 2 and cache.get("k-new") is not None
