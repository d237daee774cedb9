"""Where steps run: the executor interface every data stage uses, and its local implementation.

A step is a plain picklable function; an executor runs it on many inputs and reports each
outcome, whatever happened: a value, the exception the step raised, a timeout, a memory cap
hit or a crash. The local executor runs tasks in forked worker processes (PyMuPDF is not
thread-safe, and a hostile file must not take the run down), at most ``workers`` at once; a
task past its wall-clock deadline is killed together with its worker, and a fresh worker takes
its place. ``mmprolong_runtime.ray_executor.RayExecutor`` implements the same protocol on a Ray
cluster (the ``ray`` extra); ``make_executor`` builds either from a name.

Forking (not spawning) lets every worker share what the parent loaded once (PyMuPDF,
language profiles, the layout model) copy-on-write, and workers are reused for several tasks
so warm caches are not thrown away after each document. The parent must not run other threads
while it forks; ingest's progress bar refreshes from the main thread for that reason.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import multiprocessing
import os
import pickle
import resource
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, Protocol, TypeVar

KeyT = TypeVar("KeyT")


class TaskTimeout(Exception):
    """The task ran past its wall-clock limit and was killed."""


class TaskMemoryExceeded(Exception):
    """The task needed more memory than its cap."""


class TaskCrashed(Exception):
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
    (in any order). ``tasks`` is consumed lazily, as workers free up. ``setup`` (picklable,
    idempotent) runs once in every process that forks task processes, before it forks them,
    so what it loads (language profiles, a layout model) is shared instead of reloaded."""

    workers: int

    def run(
        self,
        function: Callable[..., Any],
        tasks: Iterable[tuple[KeyT, tuple[Any, ...]]],
        *,
        setup: Callable[[], None] | None = None,
    ) -> Iterator[TaskOutcome[KeyT]]: ...


_MAX_FD = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1 << 16
_MEMORY_WORDS = ("out of memory", "malloc", "cannot allocate", "memory error")
_SAMPLE_SECONDS = 0.2
_NEAR_CAP = 0.9


def _address_space(pid: int | str = "self") -> int:
    """A process's virtual memory size in bytes (0 where /proc is unavailable)."""
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _run_one(function: Callable[..., Any], args: tuple[Any, ...]) -> bytes:
    try:
        message: tuple[str, Any] = ("ok", function(*args))
    except MemoryError as error:
        message = ("error", TaskMemoryExceeded(f"memory cap hit ({error})"))
    except Exception as error:  # every failure is reported; none may end the worker
        text = str(error)
        if any(word in text.lower() for word in _MEMORY_WORDS):
            message = ("error", TaskMemoryExceeded(text[:500]))
        else:
            message = ("error", error)
    try:
        return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # an unpicklable exception still has to be reported
        failure = message[1]
        return pickle.dumps(("error", RuntimeError(f"{type(failure).__name__}: {failure}"[:1000])))


def _worker(connection: Connection, memory_bytes: int | None) -> None:
    """A worker process: run tasks received on ``connection`` until told to stop."""
    # Inherited objects are the parent's: keep the collector from walking them at every
    # collection (that walk made tasks several times slower than the same work in-process).
    gc.freeze()
    # A crash here is an expected verdict on a hostile file, reported by the parent; no
    # traceback dump from an inherited fault handler.
    faulthandler.disable()
    # A worker forked from a Ray worker inherits Ray's fatal-signal handlers; ending it must
    # stay silent and immediate.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # Keep only the task pipe and the standard streams. An inherited socket (a Ray worker's
    # connection to its raylet) would otherwise keep a dead parent looking alive, and the
    # parent's end of the pipe would keep this process from seeing that its parent is gone.
    keep = connection.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, _MAX_FD)
    if memory_bytes:
        # The cap is what the worker may add to the address space it inherited.
        limit = _address_space() + memory_bytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    while True:
        try:
            request = connection.recv_bytes()
        except (EOFError, OSError):
            return
        task = pickle.loads(request)
        if task is None:
            return
        function, args = task
        answer = _run_one(function, args)
        try:
            connection.send_bytes(answer)
        except OSError:  # the parent is gone: nobody to answer
            return


@dataclass
class _Worker:
    process: Any
    connection: Connection
    limit: int | None  # the worker's address-space cap, as the parent estimates it
    tasks_done: int = 0
    key: Any = None
    started: float = 0.0
    deadline: float = 0.0
    peak: int = 0  # largest address space seen while the current task ran
    inherited: int = 0  # the address space the worker started with

    def sample(self) -> None:
        self.peak = max(self.peak, _address_space(self.process.pid))

    @property
    def near_cap(self) -> bool:
        # Near the cap means most of the allowance used, not most of the address space: a
        # process forked from a Ray worker inherits gigabytes of mappings.
        if self.limit is None:
            return False
        return self.peak >= self.inherited + _NEAR_CAP * (self.limit - self.inherited)


class LocalExecutor:
    """Up to ``workers`` worker processes, each running one task at a time. A task is killed
    (with its worker) after ``timeout`` seconds; a worker may use ``memory_bytes`` of address
    space beyond what it inherited (None for no cap) and is replaced after
    ``tasks_per_worker`` tasks, so a leak or a poisoned state never outlives a few documents.
    With ``keep_workers`` idle workers outlive ``run`` and serve the next call (a Ray worker
    keeps its forked process warm this way) until ``close``."""

    def __init__(
        self,
        workers: int = 1,
        *,
        timeout: float = 300.0,
        memory_bytes: int | None = 4 << 30,
        tasks_per_worker: int = 32,
        start_method: str | None = None,
        keep_workers: bool = False,
    ):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.workers = workers
        self.timeout = timeout
        self.memory_bytes = memory_bytes
        self.tasks_per_worker = max(1, tasks_per_worker)
        method = start_method or (
            "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        )
        self._context: Any = multiprocessing.get_context(method)
        self.keep_workers = keep_workers
        self._idle: list[_Worker] = []

    def _spawn(self) -> _Worker:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker, args=(child_end, self.memory_bytes), daemon=True
        )
        # The child inherits this process's address space; its cap comes on top of that.
        inherited = _address_space()
        limit = inherited + self.memory_bytes if self.memory_bytes else None
        process.start()
        child_end.close()
        return _Worker(process, parent_end, limit, inherited=inherited)

    def _idle_or_new(self, idle: list[_Worker]) -> _Worker:
        """An idle worker still alive (one kept between calls may have died), else a new one."""
        while idle:
            worker = idle.pop()
            if worker.process.is_alive():
                return worker
            self._stop(worker, kill=True)
        return self._spawn()

    @staticmethod
    def _stop(worker: _Worker, kill: bool) -> None:
        if kill:
            worker.process.kill()
        else:
            try:
                worker.connection.send_bytes(pickle.dumps(None))
            except OSError:
                worker.process.kill()
        worker.process.join()
        worker.connection.close()

    def run(
        self,
        function: Callable[..., Any],
        tasks: Iterable[tuple[KeyT, tuple[Any, ...]]],
        *,
        setup: Callable[[], None] | None = None,
    ) -> Iterator[TaskOutcome[KeyT]]:
        if setup is not None:
            setup()
        pending = iter(tasks)
        idle: list[_Worker] = self._idle if self.keep_workers else []
        busy: dict[Connection, _Worker] = {}
        exhausted = False
        try:
            while True:
                while not exhausted and len(busy) < self.workers:
                    try:
                        key, args = next(pending)
                    except StopIteration:
                        exhausted = True
                        break
                    worker = self._idle_or_new(idle)
                    worker.key = key
                    worker.peak = 0
                    worker.started = time.monotonic()
                    worker.deadline = worker.started + self.timeout
                    # A dead worker's outcome is collected as a crash below.
                    with contextlib.suppress(OSError):
                        worker.connection.send_bytes(pickle.dumps((function, args)))
                    busy[worker.connection] = worker
                if not busy:
                    return
                wait_for = max(0.0, min(w.deadline for w in busy.values()) - time.monotonic())
                # Wake up a few times a second to sample memory: a native library that runs
                # out of address space tends to crash rather than raise.
                ready = wait(list(busy), timeout=min(wait_for, _SAMPLE_SECONDS))
                for worker in busy.values():
                    worker.sample()
                for connection in ready:
                    assert isinstance(connection, Connection)
                    worker = busy.pop(connection)
                    outcome, alive = self._collect(worker)
                    if alive and worker.tasks_done < self.tasks_per_worker:
                        idle.append(worker)
                    else:
                        self._stop(worker, kill=not alive)
                    yield outcome
                now = time.monotonic()
                for connection, worker in list(busy.items()):
                    if now >= worker.deadline:
                        del busy[connection]
                        worker.sample()
                        self._stop(worker, kill=True)
                        error: BaseException = TaskTimeout(f"killed after {self.timeout:g} s")
                        if worker.near_cap:
                            # Allocation failures can leave native code stuck, not crashed.
                            error = TaskMemoryExceeded(
                                f"worker stalled at its memory cap ({worker.peak >> 20} MiB of "
                                f"address space) and was killed after {self.timeout:g} s"
                            )
                        yield TaskOutcome(worker.key, error=error, seconds=now - worker.started)
        finally:
            for worker in list(busy.values()):
                self._stop(worker, kill=True)
            if not self.keep_workers:
                for worker in idle:
                    self._stop(worker, kill=False)

    def close(self) -> None:
        """Stop the idle workers kept for later calls."""
        while self._idle:
            self._stop(self._idle.pop(), kill=False)

    @staticmethod
    def _collect(worker: _Worker) -> tuple[TaskOutcome[Any], bool]:
        """The worker's answer, and whether the worker is still usable."""
        seconds = time.monotonic() - worker.started
        try:
            kind, value = pickle.loads(worker.connection.recv_bytes())
        except (EOFError, OSError):
            worker.process.join()
            code = worker.process.exitcode
            error: BaseException = TaskCrashed(f"worker exited with code {code} without a result")
            if code == -9 or worker.near_cap:
                error = TaskMemoryExceeded(
                    f"worker died (exit code {code}) at {worker.peak >> 20} MiB of address "
                    "space, at its memory cap"
                )
            return TaskOutcome(worker.key, error=error, seconds=seconds), False
        worker.tasks_done += 1
        if kind == "ok":
            return TaskOutcome(worker.key, value=value, seconds=seconds), True
        # A worker that ran out of memory keeps a heap grown to its cap (freed memory is not
        # always returned to the system): retire it, or the next task inherits the shortage.
        usable = not isinstance(value, TaskMemoryExceeded)
        return TaskOutcome(worker.key, error=value, seconds=seconds), usable


def default_workers() -> int:
    """The cores this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


EXECUTOR_KINDS = ("local", "ray")


def make_executor(
    kind: str,
    workers: int | None = None,
    *,
    ray_address: str | None = None,
    timeout: float = 300.0,
    memory_bytes: int | None = 4 << 30,
    **local_options: Any,
) -> Executor:
    """An executor by name. ``workers`` is the local process count (default: one per core) or,
    for Ray, the number of tasks kept in flight (default: the cluster's CPUs). ``timeout`` and
    ``memory_bytes`` bound every task on either executor; ``local_options`` go to
    ``LocalExecutor`` (``tasks_per_worker``, ``start_method``). ``ray_address`` is a running
    cluster (``auto``, ``ray://host:10001``, ``host:6379``); without one a local Ray instance
    is started."""
    if kind == "local":
        if ray_address is not None:
            raise ValueError("--ray-address only applies to the ray executor")
        return LocalExecutor(
            workers or default_workers(),
            timeout=timeout,
            memory_bytes=memory_bytes,
            **local_options,
        )
    if kind == "ray":
        from mmprolong_runtime.ray_executor import RayExecutor

        if local_options:
            raise ValueError(f"options {sorted(local_options)} only apply to the local executor")
        return RayExecutor(ray_address, workers=workers, timeout=timeout, memory_bytes=memory_bytes)
    raise ValueError(f"unknown executor {kind!r}; expected one of {', '.join(EXECUTOR_KINDS)}")
