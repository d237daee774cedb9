"""Running a teacher over segments: prompts, cache, bounded retries, validation, statistics.

Every (segment, task) unit gets up to ``max_attempts`` requests. Attempt k of every unit still
without an accepted pair is sent as one batch (so backends can batch and run concurrently);
replies are stored in the request cache as they arrive and validated afterwards in unit order,
which keeps duplicate detection deterministic. Rejected replies are recorded with their reason.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmprolong_schemas import Document, QAPair, Segment, Task
from mmprolong_schemas.base import Model
from qasynth.cache import RequestCache
from qasynth.grounding import NOT_CHECKED, EvidenceText, grounding_table
from qasynth.parsing import QARejectReason, QAValidator, Rejected
from qasynth.prompts import PROMPT_VERSION, build_prompt
from qasynth.teachers.base import Teacher, TeacherReply, TeacherRequest, request_key


class Rejection(Model):
    """A reply that did not become a QAPair, and why."""

    segment_id: str
    doc_id: str
    task: Task
    attempt: int
    reason: QARejectReason
    detail: str
    teacher: str


@dataclass
class GenerateConfig:
    tasks: tuple[Task, ...] = (Task.EXTRACT_SINGLE, Task.EXTRACT_MULTI, Task.REASONING)
    seed: int = 0
    max_attempts: int = 3
    batch_size: int = 64
    page_labels: bool = True
    exemplars: int = 2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts {self.max_attempts} must be at least 1")
        if self.batch_size < 1:
            raise ValueError(f"batch_size {self.batch_size} must be at least 1")


@dataclass
class GenerateStats:
    units: int = 0
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    grounding: Counter[tuple[str, str]] = field(default_factory=Counter)
    requests_sent: int = 0
    cache_hits: int = 0
    fallbacks: int = 0
    gave_up: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        replies = sum(self.accepted.values()) + sum(self.rejected.values())
        return {
            "units": self.units,
            "accepted": dict(sorted(self.accepted.items())),
            "accepted_total": sum(self.accepted.values()),
            "rejected": dict(sorted(self.rejected.items())),
            "rejected_total": sum(self.rejected.values()),
            "grounding": grounding_table(self.grounding),
            "acceptance_rate": sum(self.accepted.values()) / replies if replies else 0.0,
            "requests_sent": self.requests_sent,
            "cache_hits": self.cache_hits,
            "single_page_fallbacks": self.fallbacks,
            "units_without_pair": self.gave_up,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class GenerateResult:
    pairs: list[QAPair]
    rejections: list[Rejection]
    stats: GenerateStats


Progress = Callable[[int], None]


def generate(
    segments: Sequence[Segment],
    teacher: Teacher,
    cache: RequestCache,
    config: GenerateConfig | None = None,
    progress: Progress | None = None,
    documents: Callable[[str], Document] | None = None,
) -> GenerateResult:
    """One QAPair per (segment, task) where the teacher manages within the attempts.

    ``progress`` is called with the number of units finished (accepted or given up).
    With ``documents`` (a lookup by doc_id, such as ``Pool.get``), answers are checked
    against their evidence pages' text (see ``qasynth.grounding``).
    """
    config = config or GenerateConfig()
    started = time.perf_counter()
    validator = QAValidator()
    stats = GenerateStats(units=len(segments) * len(config.tasks))
    units = [(segment, task) for segment in segments for task in config.tasks]
    prompts = {}
    accepted: dict[int, QAPair] = {}
    rejections: list[Rejection] = []
    pending = list(range(len(units)))
    texts = _evidence_texts(documents) if documents else None
    settings = reply_settings(teacher, config)
    for attempt in range(config.max_attempts):
        requests: dict[int, TeacherRequest] = {}
        for index in pending:
            segment, task = units[index]
            if index not in prompts:
                prompts[index] = build_prompt(
                    segment,
                    task,
                    config.seed,
                    exemplars=config.exemplars,
                    page_labels=config.page_labels,
                )
            key = request_key(
                teacher.name,
                PROMPT_VERSION,
                segment.segment_id,
                task,
                config.seed,
                attempt,
                settings,
            )
            requests[index] = TeacherRequest(key, prompts[index], config.seed, attempt)
        if attempt == 0:
            # Every unit's first request, cached or not: a cached reply may be rejected, and
            # its retries (same prompt, so the same pages) are then sent.
            teacher.prepare(list(requests.values()))
        replies = _collect(requests, teacher, cache, config.batch_size, stats)
        still_pending = []
        for index in pending:
            segment, task = units[index]
            reply = replies[index]
            try:
                if not reply.ok:
                    raise Rejected(QARejectReason.TEACHER_ERROR, reply.error or "no reply")
                if reply.truncated:
                    raise Rejected(QARejectReason.TRUNCATED, "the reply hit its token limit")
                assert reply.text is not None
                evidence = texts(segment.doc_id) if texts else None
                pair = validator.validate(
                    reply.text, segment, task, teacher.name, PROMPT_VERSION, evidence
                )
            except Rejected as rejection:
                stats.rejected[rejection.reason.value] += 1
                rejections.append(
                    Rejection(
                        segment_id=segment.segment_id,
                        doc_id=segment.doc_id,
                        task=task,
                        attempt=attempt,
                        reason=rejection.reason,
                        detail=rejection.detail[:500],
                        teacher=teacher.name,
                    )
                )
                still_pending.append(index)
                continue
            accepted[index] = pair
            stats.accepted[task.value] += 1
            stats.grounding[(task.value, pair.grounding or NOT_CHECKED)] += 1
            if progress:
                progress(1)
        pending = still_pending
        if not pending:
            break
    stats.gave_up = len(pending)
    if progress and pending:
        progress(len(pending))
    stats.fallbacks = validator.fallbacks
    stats.seconds = time.perf_counter() - started
    return GenerateResult([accepted[i] for i in sorted(accepted)], rejections, stats)


def reply_settings(teacher: Teacher, config: GenerateConfig) -> dict[str, Any]:
    """What besides model, prompt version, segment, task, seed and attempt changes a reply:
    the teacher's own settings and the prompt options."""
    return {
        **teacher.reply_settings(),
        "exemplars": config.exemplars,
        "page_labels": config.page_labels,
    }


def _evidence_texts(documents: Callable[[str], Document]) -> Callable[[str], EvidenceText]:
    """Page texts by doc_id; units come document by document, so a few are kept."""
    kept: dict[str, EvidenceText] = {}

    def lookup(doc_id: str) -> EvidenceText:
        if doc_id not in kept:
            if len(kept) >= 8:
                kept.pop(next(iter(kept)))
            kept[doc_id] = EvidenceText.of(documents(doc_id))
        return kept[doc_id]

    return lookup


def _collect(
    requests: dict[int, TeacherRequest],
    teacher: Teacher,
    cache: RequestCache,
    batch_size: int,
    stats: GenerateStats,
) -> dict[int, TeacherReply]:
    """Replies for every request: from the cache, else from the teacher (then cached)."""
    replies: dict[int, TeacherReply] = {}
    to_send: list[tuple[int, TeacherRequest]] = []
    for index, request in requests.items():
        cached = cache.get(request.key)
        if cached is not None:
            replies[index] = cached
            stats.cache_hits += 1
        else:
            to_send.append((index, request))
    by_key = {request.key: index for index, request in to_send}

    def on_reply(request: TeacherRequest, reply: TeacherReply) -> None:
        cache.put(teacher.name, request, reply)
        replies[by_key[request.key]] = reply

    for start in range(0, len(to_send), batch_size):
        batch = [request for _, request in to_send[start : start + batch_size]]
        stats.requests_sent += len(batch)
        teacher.complete(batch, on_reply)
    for index, request in to_send:
        replies.setdefault(index, TeacherReply(text=None, error=f"no reply to {request.key}"))
    return replies
