"""Where steps run: a small executor interface and its local implementation.

A step is a plain picklable function; an executor runs it on many inputs and reports each
outcome, whatever happened: a value, the exception the step raised, a timeout, a memory cap
hit or a crash. The local executor gives every task a fresh process forked from a clean
server process (PyMuPDF is not thread-safe, and a hostile file must not take the run down),
runs up to ``workers`` at once, and kills a task at its wall-clock deadline. A distributed
executor (Ray) implements the same protocol.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import resource
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, Protocol, TypeVar

KeyT = TypeVar("KeyT")


class TaskTimeout(Exception):  # noqa: N818
    """The task ran past its wall-clock limit and was killed."""


class TaskMemoryExceeded(Exception):  # noqa: N818
    """The task needed more memory than its cap."""


class TaskCrashed(Exception):  # noqa: N818
    """The task's process died without reporting (a signal, a native crash)."""


@dataclass
class TaskOutcome(Generic[KeyT]):
    key: KeyT
    value: Any = None
    error: BaseException | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class Executor(Protocol):
    """Runs ``function(*args)`` for every ``(key, args)`` and yields outcomes as they finish
    (in any order). ``tasks`` is consumed lazily, as workers free up."""

    workers: int

    def run(
        self, function: Callable[..., Any], tasks: Iterable[tuple[KeyT, tuple[Any, ...]]]
    ) -> Iterator[TaskOutcome[KeyT]]: ...


_MEMORY_WORDS = ("out of memory", "malloc", "cannot allocate", "memory error")


def _child(
    connection: Connection, function: Callable[..., Any], args: tuple[Any, ...],
    memory_bytes: int | None,
) -> None:
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    try:
        message: tuple[str, Any] = ("ok", function(*args))
    except MemoryError as error:
        message = ("error", TaskMemoryExceeded(f"memory cap hit ({error})"))
    except BaseException as error:  # noqa: BLE001  (every failure is reported, none escapes)
        text = str(error)
        if any(word in text.lower() for word in _MEMORY_WORDS):
            message = ("error", TaskMemoryExceeded(text[:500]))
        else:
            message = ("error", error)
    try:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001  (an unpicklable exception still has to be reported)
        error = message[1]
        payload = pickle.dumps(("error", RuntimeError(f"{type(error).__name__}: {error}"[:1000])))
    connection.send_bytes(payload)
    connection.close()


@dataclass
class _Running:
    process: multiprocessing.process.BaseProcess
    key: Any
    started: float
    deadline: float


class LocalExecutor:
    """Up to ``workers`` tasks at a time, each in its own process with a timeout (seconds)
    and an address-space cap (bytes; None for no cap)."""

    def __init__(
        self,
        workers: int = 1,
        *,
        timeout: float = 300.0,
        memory_bytes: int | None = 4 << 30,
        start_method: str | None = None,
        preload: tuple[str, ...] = ("docpool.parse",),
    ):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self.timeout = timeout
        self.memory_bytes = memory_bytes
        method = start_method or (
            "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        )
        self._context = multiprocessing.get_context(method)
        self._warm = False
        if method == "forkserver":
            # Each task forks from a server that imported PyMuPDF once, before any thread.
            self._context.set_forkserver_preload(list(preload))

    def _warm_up(self) -> None:
        """Start the fork server (it imports PyMuPDF, seconds on a busy machine) before any
        deadline runs, so that start-up time is never charged to a document."""
        if not self._warm:
            process = self._context.Process(target=int, daemon=True)
            process.start()
            process.join()
            self._warm = True

    def run(
        self, function: Callable[..., Any], tasks: Iterable[tuple[KeyT, tuple[Any, ...]]]
    ) -> Iterator[TaskOutcome[KeyT]]:
        self._warm_up()
        pending = iter(tasks)
        running: dict[Connection, _Running] = {}
        exhausted = False
        try:
            while True:
                while not exhausted and len(running) < self.workers:
                    try:
                        key, args = next(pending)
                    except StopIteration:
                        exhausted = True
                        break
                    receiver, sender = self._context.Pipe(duplex=False)
                    process = self._context.Process(
                        target=_child, args=(sender, function, args, self.memory_bytes),
                        daemon=True,
                    )
                    process.start()
                    sender.close()
                    now = time.monotonic()
                    running[receiver] = _Running(process, key, now, now + self.timeout)
                if not running:
                    if exhausted:
                        return
                    continue
                wait_for = max(0.0, min(r.deadline for r in running.values()) - time.monotonic())
                for connection in wait(list(running), timeout=wait_for):
                    assert isinstance(connection, Connection)
                    yield self._collect(connection, running.pop(connection))
                now = time.monotonic()
                for connection, task in list(running.items()):
                    if now >= task.deadline:
                        del running[connection]
                        task.process.kill()
                        task.process.join()
                        connection.close()
                        yield TaskOutcome(
                            task.key, error=TaskTimeout(f"killed after {self.timeout:g} s"),
                            seconds=now - task.started,
                        )
        finally:
            for connection, task in running.items():
                task.process.kill()
                task.process.join()
                connection.close()

    @staticmethod
    def _collect(connection: Connection, task: _Running) -> TaskOutcome[Any]:
        seconds = time.monotonic() - task.started
        try:
            kind, value = pickle.loads(connection.recv_bytes())
        except (EOFError, OSError):
            task.process.join()
            code = task.process.exitcode
            error: BaseException = TaskCrashed(f"worker exited with code {code} without a result")
            if code is not None and code < 0 and -code == 9:
                error = TaskMemoryExceeded("worker was killed (likely out of memory)")
            return TaskOutcome(task.key, error=error, seconds=seconds)
        finally:
            connection.close()
        task.process.join()
        if kind == "ok":
            return TaskOutcome(task.key, value=value, seconds=seconds)
        return TaskOutcome(task.key, error=value, seconds=seconds)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
