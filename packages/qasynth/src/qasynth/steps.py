"""Running a stage's map steps: in this process, or on an executor (local processes, Ray)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from mmprolong_runtime.executor import Executor

KeyT = TypeVar("KeyT")
ResultT = TypeVar("ResultT")


def run_steps(
    executor: Executor | None,
    function: Callable[..., ResultT],
    tasks: Iterable[tuple[KeyT, tuple[Any, ...]]],
    *,
    passthrough: tuple[type[Exception], ...] = (),
) -> Iterator[tuple[KeyT, ResultT]]:
    """``(key, function(*args))`` for every task, in any order: in this process without an
    executor, else as the executor's tasks. A step that fails stops the stage with its key, as
    it would in this process; an error of a ``passthrough`` type (a bad input the step names
    itself) is raised as it is."""
    if executor is None:
        for key, args in tasks:
            yield key, function(*args)
        return
    for outcome in executor.run(function, tasks):
        if not outcome.ok:
            if isinstance(outcome.error, passthrough):
                raise outcome.error
            raise RuntimeError(f"step {function.__name__} failed on {outcome.key}: {outcome.error}")
        yield outcome.key, outcome.value
