"""A generate run killed with SIGKILL and started again sends no finished request again."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from mmprolong_runtime.testing import ChatServer, Reply
from mmprolong_schemas import read_jsonl, write_jsonl
from qasynth.cache import RequestCache
from qasynth.generate import GenerateConfig, generate
from qasynth.segments import sample_segments
from qasynth.teachers.openai import OpenAITeacher

SCRIPT = """
import sys
from PIL import Image
from mmprolong_schemas import Segment, read_jsonl
from qasynth.cache import RequestCache
from qasynth.generate import GenerateConfig, generate
from qasynth.teachers.openai import OpenAITeacher

class Grey:
    def render(self, doc_id, pages, dpi=144):
        return [Image.new("RGB", (64, 80), (200, 200, 200)) for _ in pages]

url, segments_path, cache_path = sys.argv[1:4]
segments = list(read_jsonl(segments_path, Segment))
teacher = OpenAITeacher("m", url, Grey(), concurrency=2, backoff=0.01)
with RequestCache(cache_path) as cache:
    generate(segments, teacher, cache, GenerateConfig(batch_size=4))
"""


def _reply(body) -> str:
    texts = [p["text"] for p in body["messages"][1]["content"] if p["type"] == "text"]
    pages = [int(m.group(1)) for t in texts for m in [re.fullmatch(r"Page (\d+):", t)] if m]
    single = "One page only" in texts[0]
    chosen = pages[:1] if single else pages[:2]
    kind = texts[0][:40]
    data = {
        "question": f"Which value ({kind}) is on Page {chosen[0]}?",
        "answer": 1,
        "answer_format": "Integer",
        "evidence_pages": chosen,
        "evidence_sources": ["Text"],
    }
    return "Evidence: e\nJSON: " + json.dumps(data)


class Recording(OpenAITeacher):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sent: list[str] = []

    def complete(self, requests, on_reply):
        self.sent += [r.key for r in requests]
        super().complete(requests, on_reply)


@pytest.mark.slow
def test_killed_run_resumes_without_resending(doc_factory, renderer, tmp_path) -> None:
    docs = [doc_factory(f"d{i}") for i in range(3)]
    segments = [s for d in docs for s in sample_segments(d, 2, seed=0)]
    write_jsonl(tmp_path / "segments.jsonl", segments)
    (tmp_path / "run.py").write_text(SCRIPT)
    cache_path = tmp_path / "cache.sqlite"

    def handler(body, seen):
        return Reply(text=_reply(body), delay_s=0.15)

    with ChatServer(handler) as server:
        process = subprocess.Popen(
            [
                sys.executable,
                str(tmp_path / "run.py"),
                server.url,
                str(tmp_path / "segments.jsonl"),
                str(cache_path),
            ],
        )
        deadline = time.time() + 60
        while server.count < 6 and time.time() < deadline and process.poll() is None:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        with sqlite3.connect(cache_path) as db:
            finished = {row[0] for row in db.execute("SELECT key FROM replies")}
        assert 0 < len(finished) < len(segments) * 3
        before = server.count
        teacher = Recording("m", server.url, renderer, concurrency=2, backoff=0.01)
        segments = list(read_jsonl(tmp_path / "segments.jsonl", type(segments[0])))
        with RequestCache(cache_path) as cache:
            result = generate(segments, teacher, cache, GenerateConfig(batch_size=4))
        assert not finished & set(teacher.sent)
        assert len(teacher.sent) == len(segments) * 3 - len(finished)
        assert server.count - before == len(teacher.sent)
        assert len(result.pairs) == len(segments) * 3
