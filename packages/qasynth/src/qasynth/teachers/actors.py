"""A teacher whose engines run as Ray actors (one per GPU) while the driver keeps the cache.

Each actor builds its own teacher once (a vLLM engine loads its weights once) and answers
slices of every batch; replies travel back to the driver, which hands them to ``on_reply``,
so the request cache is written by one process beside the run's outputs, exactly as with a
local teacher. A teacher's name (backend and model) is kept, so cache keys and QAPairs are the
same whichever way the teacher runs. Needs the ``ray`` extra.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from qasynth.teachers.base import ReplyCallback, Teacher, TeacherReply, TeacherRequest

GPU_BACKENDS = ("vllm", "transformers")
"""Backends that hold a model, so an actor gets a GPU by default."""


def complete_slice(teacher: Teacher, requests: Sequence[TeacherRequest]) -> list[TeacherReply]:
    """Replies to ``requests`` in their order (run on an actor). A teacher that raises fails
    the requests it has not answered, not the actor's other work or the stage."""
    replies: dict[str, TeacherReply] = {}
    try:
        teacher.complete(requests, lambda request, reply: replies.__setitem__(request.key, reply))
    except Exception as error:
        failed = f"teacher failed on its actor: {type(error).__name__}: {error}"
        return [replies.get(r.key, TeacherReply(text=None, error=failed)) for r in requests]
    return [
        replies.get(request.key, TeacherReply(text=None, error=f"no reply to {request.key}"))
        for request in requests
    ]


def _identity(teacher: Teacher, _: None) -> tuple[str, str, dict[str, Any], bool]:
    return teacher.backend, teacher.model, teacher.reply_settings(), teacher.prepares


def _prepare(teacher: Teacher, requests: Sequence[TeacherRequest]) -> None:
    teacher.prepare(requests)


class ActorTeacher(Teacher):
    """``actors`` copies of the teacher ``factory`` builds, each a Ray actor with ``num_gpus``
    GPUs; every ``complete`` batch is split evenly between them. Backend, model and reply
    settings (hence ``name`` and cache keys) are the wrapped teacher's. A failing actor fails
    only the requests of its slice: they are answered with an error (never cached), so
    ``generate`` retries them and the stage goes on."""

    def __init__(
        self,
        factory: Callable[[], Teacher],
        actors: int,
        *,
        num_gpus: float = 1.0,
        address: str | None = None,
    ):
        from mmprolong_runtime.ray_executor import ModelActors

        self._actors = ModelActors(factory, actors, num_gpus=num_gpus, address=address)
        backend, model, settings, prepares = self._actors.ask(_identity)
        super().__init__(model)
        self.backend = backend
        self.prepares = prepares
        self._reply_settings = settings

    def reply_settings(self) -> dict[str, Any]:
        return dict(self._reply_settings)

    def prepare(self, requests: Sequence[TeacherRequest]) -> None:
        if requests and self.prepares:
            self._actors.broadcast(_prepare, list(requests))

    def complete(self, requests: Sequence[TeacherRequest], on_reply: ReplyCallback) -> None:
        if not requests:
            return
        size = math.ceil(len(requests) / len(self._actors))
        slices = [list(requests[start : start + size]) for start in range(0, len(requests), size)]
        answered: set[int] = set()
        try:
            for index, replies in self._actors.map(complete_slice, slices):
                answered.add(index)
                _hand_over(slices[index], replies, on_reply)
        except Exception:
            # An actor died past its restarts (or Ray lost its result): the slices still
            # out go one at a time, so only the one that fails again fails.
            for index, part in enumerate(slices):
                if index not in answered:
                    _hand_over(part, self._complete_alone(part), on_reply)

    def _complete_alone(self, part: list[TeacherRequest]) -> list[TeacherReply]:
        try:
            for _, replies in self._actors.map(complete_slice, [part]):
                return list(replies)
        except Exception as error:
            failed = f"teacher actor failed: {type(error).__name__}: {error}"
            return [TeacherReply(text=None, error=failed[:2000]) for _ in part]
        return [TeacherReply(text=None, error="the teacher actor returned nothing") for _ in part]

    def close(self) -> None:
        self._actors.close()


def _hand_over(
    part: Sequence[TeacherRequest], replies: Sequence[TeacherReply], on_reply: ReplyCallback
) -> None:
    for request, reply in zip(part, replies, strict=True):
        on_reply(request, reply)


def _teacher_on_actor(kind: str, pool_path: str, options: dict[str, Any]) -> Teacher:
    from docpool import Pool
    from qasynth.teachers.factory import make_teacher

    return make_teacher(kind, Pool(pool_path), **options)


def make_actor_teacher(
    kind: str,
    pool_path: str | Path,
    *,
    actors: int = 0,
    num_gpus: float | None = None,
    address: str | None = None,
    **options: Any,
) -> ActorTeacher:
    """The ``kind`` teacher (``make_teacher`` ``options``) on Ray actors that open the pool at
    ``pool_path`` themselves (every node must see it). ``num_gpus`` defaults to 1 per actor
    for model backends and 0 otherwise; ``actors`` 0 means one per GPU of the cluster (model
    backends) or per CPU."""
    from mmprolong_runtime.ray_executor import connect

    gpus = num_gpus if num_gpus is not None else (1.0 if kind in GPU_BACKENDS else 0.0)
    if not actors:
        resources = connect(address).cluster_resources()
        actors = int(resources.get("GPU", 0) // gpus) if gpus else int(resources.get("CPU", 1))
        if actors < 1:
            raise ValueError(
                f"the Ray cluster has no GPU for a {kind} teacher actor; "
                "give actor GPUs 0 to run it on CPUs"
            )
    factory = functools.partial(_teacher_on_actor, kind, str(pool_path), options)
    return ActorTeacher(factory, actors, num_gpus=gpus, address=address)
