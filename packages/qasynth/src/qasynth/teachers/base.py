"""The one interface every teacher backend implements, and its request and reply records."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmprolong_schemas import Segment, Task
from qasynth.prompts import Prompt


def request_key(
    teacher: str,
    prompt_version: str,
    segment_id: str,
    task: Task,
    seed: int,
    attempt: int,
    settings: Mapping[str, Any] | None = None,
) -> str:
    """Cache key of one teacher request: everything that decides its reply. ``teacher`` names
    backend and model; ``settings`` holds the rest (``Teacher.reply_settings`` and the prompt
    options, see ``qasynth.generate``)."""
    material = json.dumps(
        [teacher, prompt_version, segment_id, task.value, seed, attempt, settings or {}],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class TeacherRequest:
    """One prompt to send; ``attempt`` > 0 is a retry after a rejected reply."""

    key: str
    prompt: Prompt
    seed: int
    attempt: int = 0

    @property
    def segment(self) -> Segment:
        return self.prompt.segment

    @property
    def task(self) -> Task:
        return self.prompt.task

    @property
    def sampling_seed(self) -> int:
        """The seed a sampling backend uses, different for every attempt."""
        return self.seed * 1000 + self.attempt


@dataclass
class TeacherReply:
    """The teacher's text, or the error that kept it from answering (never cached)."""

    text: str | None
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.text is not None

    @property
    def truncated(self) -> bool:
        """The reply stopped at its token limit ("length"): never cached as an answer."""
        return self.meta.get("finish_reason") == "length"


ReplyCallback = Callable[[TeacherRequest, TeacherReply], None]


class Teacher(ABC):
    """A QA generator. ``complete`` answers every request exactly once through ``on_reply``,
    as soon as each reply is known, so a caller can store it before the next one arrives."""

    backend: str = ""
    prepares: bool = False
    """Whether ``prepare`` does anything (so a wrapper need not ship the job's requests)."""

    def __init__(self, model: str):
        self.model = model

    @property
    def name(self) -> str:
        """Backend and model, e.g. 'openai:Qwen2.5-VL-72B-Instruct'; recorded on QAPairs."""
        return f"{self.backend}:{self.model}"

    def reply_settings(self) -> dict[str, Any]:
        """Every setting of this teacher that changes a reply (sampling, length, structured
        output, image resolution): part of each request's cache key. The default has none."""
        return {}

    def prepare(self, requests: Sequence[TeacherRequest]) -> None:  # noqa: B027
        """Called once before the first batch with every unit's first request, cached or
        not (a cached reply may be rejected; retries have the same prompt), so a backend can
        size itself for the largest request the job may send. The default needs nothing."""

    @abstractmethod
    def complete(self, requests: Sequence[TeacherRequest], on_reply: ReplyCallback) -> None: ...

    def close(self) -> None:  # noqa: B027  (optional hook: most backends hold nothing)
        """Release engines or connections; the default has none."""
