"""Teacher actors without Ray: a failing teacher or actor fails only its own requests.

``FakeActors`` stands in for ``mmprolong_runtime.ray_executor.ModelActors`` and keeps its
contract: ``map(function, items)`` yields ``(index, function(target, item))`` in completion
order and stops with the exception of a call whose actor died (as ``ray.util.ActorPool``'s
``map_unordered`` does: it raises from ``ray.get`` and the iteration ends there);
``broadcast`` applies a function on every actor; ``ask`` on the first.
"""

from collections.abc import Sequence

from mmprolong_schemas import Task
from qasynth.cache import RequestCache
from qasynth.generate import GenerateConfig, generate, reply_settings
from qasynth.prompts import build_prompt
from qasynth.segments import sample_segments
from qasynth.teachers.actors import ActorTeacher, _identity, complete_slice
from qasynth.teachers.base import ReplyCallback, TeacherRequest
from qasynth.teachers.rules import RulesTeacher
from qasynth.teachers.vllm import VLLMTeacher


class ActorDied(RuntimeError):
    pass


class Poisoned(RulesTeacher):
    """Raises on any batch holding a request about ``segment_id``; records what it was asked
    to prepare for."""

    prepares = True

    def __init__(self, documents, segment_id: str):
        super().__init__(documents)
        self.segment_id = segment_id
        self.prepared: list[int] = []

    def prepare(self, requests: Sequence[TeacherRequest]) -> None:
        self.prepared.append(len(requests))

    def complete(self, requests: Sequence[TeacherRequest], on_reply: ReplyCallback) -> None:
        if any(r.segment.segment_id == self.segment_id for r in requests):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        super().complete(requests, on_reply)


class FakeActors:
    def __init__(self, targets, dies_on: str | None = None):
        self.targets = targets
        self.dies_on = dies_on
        self.broadcasts = 0

    def __len__(self) -> int:
        return len(self.targets)

    def map(self, function, items):
        for index, item in enumerate(items):
            if self.dies_on and any(r.segment.segment_id == self.dies_on for r in item):
                raise ActorDied("The actor died unexpectedly before finishing this task.")
            yield index, function(self.targets[index % len(self.targets)], item)

    def broadcast(self, function, item):
        self.broadcasts += 1
        return [function(target, item) for target in self.targets]

    def ask(self, function):
        return function(self.targets[0], None)


def _actor_teacher(actors: FakeActors) -> ActorTeacher:
    """ActorTeacher.__init__ without Ray: what it asks its first actor, asked of the fake."""
    teacher = ActorTeacher.__new__(ActorTeacher)
    teacher._actors = actors
    backend, model, settings, prepares = actors.ask(_identity)
    teacher.model, teacher.backend, teacher._reply_settings = model, backend, settings
    teacher.prepares = prepares
    return teacher


def test_a_teacher_that_raises_fails_only_its_slice(document) -> None:
    segments = sample_segments(document, 2, seed=0)
    teacher = Poisoned(lambda doc_id: document, segments[0].segment_id)
    requests = [
        TeacherRequest(f"k{i}", build_prompt(segment, Task.EXTRACT_SINGLE), 0)
        for i, segment in enumerate(segments)
    ]
    replies = complete_slice(teacher, requests[:1])
    assert not replies[0].ok and "illegal memory access" in (replies[0].error or "")
    assert complete_slice(teacher, requests[1:])[0].ok


def _run(document, actors: FakeActors, segments) -> tuple:
    """generate() through an ActorTeacher over ``actors``: its result and the replies cached."""
    teacher = _actor_teacher(actors)
    with RequestCache(":memory:") as cache:
        result = generate(segments, teacher, cache, GenerateConfig(batch_size=6))
        cached = len(cache)
    return result, cached


def test_one_failing_actor_does_not_fail_the_stage(document) -> None:
    segments = sample_segments(document, 3, seed=0)
    poisoned = segments[1].segment_id
    targets = [Poisoned(lambda doc_id: document, poisoned) for _ in range(2)]
    result, cached = _run(document, FakeActors(targets), segments)
    # The poisoned segment's slice failed three times (every attempt), the rest answered.
    assert result.stats.rejected["teacher-error"] == 3 * 3
    assert {r.segment_id for r in result.rejections if r.reason == "teacher-error"} == {poisoned}
    assert len(result.pairs) == 2 * 3 and cached == len(result.pairs)
    # Each actor was asked to prepare for the whole job before the first batch.
    assert all(t.prepared == [len(segments) * 3] for t in targets)


def test_a_dead_actor_fails_only_the_slices_it_held(document) -> None:
    segments = sample_segments(document, 3, seed=0)
    targets = [RulesTeacher(lambda doc_id: document) for _ in range(2)]
    dead = segments[2].segment_id
    actors = FakeActors(targets, dies_on=dead)
    result, cached = _run(document, actors, segments)
    assert actors.broadcasts == 0  # the rules teacher prepares nothing: no requests shipped
    failed = {r.segment_id for r in result.rejections if r.reason == "teacher-error"}
    assert failed == {dead}
    details = [r.detail for r in result.rejections if r.reason == "teacher-error"]
    assert all("died" in d for d in details)
    assert len(result.pairs) == 2 * 3 and cached == len(result.pairs)


def test_actor_teacher_keys_like_the_teacher_it_wraps(renderer) -> None:
    inner = VLLMTeacher("m", renderer, temperature=0.3)
    wrapped = _actor_teacher(FakeActors([inner]))
    config = GenerateConfig()
    assert wrapped.name == inner.name
    assert reply_settings(wrapped, config) == reply_settings(inner, config)
    assert reply_settings(wrapped, config)["temperature"] == 0.3
