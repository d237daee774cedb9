"""The executor protocol on a Ray cluster, and actor pools for model engines (the ``ray`` extra).

Map steps run as plain Ray tasks with ``max_retries``, not as a Ray Data pipeline: a step must
report one outcome per record (a value, the step's own error, a timeout, a memory cap hit)
while the caller consumes a lazy task stream with bounded work in flight, and Ray Data turns a
failing record into a failed block and materialises its input list first. Inside each task the
step runs in a one-worker ``LocalExecutor`` forked from the Ray worker, so docpool's
per-document safety holds on a cluster too: a hostile file that hangs, crashes or eats memory
kills only that forked process and becomes a recorded outcome, never a retry. Only the death
of the Ray worker itself (a killed process, a lost node) makes Ray run the task again; the
driver writes every output, keyed by content, so a retried task cannot add a duplicate.

``ModelActors`` keeps one long-lived object (a vLLM teacher or runner) per actor, one actor per
GPU, and maps batches over them; the caller writes the replies (and the request cache) in the
driver. Ray is imported only here and only when one of these classes is built.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from mmprolong_schemas.executor import LocalExecutor, TaskCrashed, TaskOutcome

KeyT = TypeVar("KeyT")
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

_INSTALL_HINT = "the ray executor needs Ray: pip install 'mmprolong-schemas[ray]'"


def _ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    return ray


def connect(address: str | None = None, num_cpus: int | None = None) -> Any:
    """The ``ray`` module, connected: to ``address`` (a running cluster), to the instance this
    process already joined, or to a new local instance with ``num_cpus`` CPUs."""
    ray = _ray()
    if not ray.is_initialized():
        ray.init(
            address=address,
            num_cpus=num_cpus if address is None else None,
            include_dashboard=False,
            logging_level=logging.WARNING,
        )
    return ray


_WARM: dict[tuple[float, int | None], LocalExecutor] = {}
"""This Ray worker's forked task processes, kept between tasks, by (timeout, memory cap)."""
_SETUP_DONE: list[bytes] = []
"""The setup (pickled) those processes were forked after."""


@dataclass(frozen=True)
class _Pickled:
    """A step whose value leaves its process pickled once: the Ray worker passes the bytes on
    untouched and the driver unpickles them (instead of a second round in the Ray worker)."""

    function: Callable[..., Any]

    def __call__(self, *args: Any) -> bytes:
        return pickle.dumps(self.function(*args), protocol=pickle.HIGHEST_PROTOCOL)


def _run_step(
    function: Callable[..., Any],
    args: tuple[Any, ...],
    timeout: float,
    memory_bytes: int | None,
    setup: Callable[[], None] | None,
) -> TaskOutcome[None]:
    """One task on a Ray worker: the step in a forked process with its deadline and cap. The
    process is reused by later tasks (forking a Ray worker costs more than most steps)."""
    marker = pickle.dumps(setup)
    if marker not in _SETUP_DONE:
        # Processes forked before this setup lack what it loads: retire them first.
        for kept in _WARM.values():
            kept.close()
        _WARM.clear()
        if setup is not None:
            setup()
        _SETUP_DONE[:] = [marker]
    local = _WARM.get((timeout, memory_bytes))
    if local is None:
        local = LocalExecutor(
            1, timeout=timeout, memory_bytes=memory_bytes, start_method="fork", keep_workers=True
        )
        _WARM[(timeout, memory_bytes)] = local
    [outcome] = list(local.run(_Pickled(function), [(None, args)]))
    return outcome


class RayExecutor:
    """Runs steps as Ray tasks, ``workers`` in flight (default: the cluster's CPUs divided by
    ``cpus_per_task``). ``address`` joins a running cluster; without it a local instance with
    ``num_cpus`` CPUs is started (or the one this process already joined is used). A task whose
    Ray worker dies is run again up to ``max_retries`` times, then reported as TaskCrashed."""

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        max_retries: int = 3,
        *,
        workers: int | None = None,
        timeout: float = 300.0,
        memory_bytes: int | None = 4 << 30,
        cpus_per_task: float = 1.0,
    ):
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be at least 0, got {max_retries}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        ray = connect(address, num_cpus)
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        self.workers = workers or max(1, int(cpus // cpus_per_task))
        self.timeout = timeout
        self.memory_bytes = memory_bytes
        self.max_retries = max_retries
        self._task = ray.remote(_run_step).options(
            num_cpus=cpus_per_task, max_retries=max_retries, retry_exceptions=False
        )

    def run(
        self,
        function: Callable[..., Any],
        tasks: Iterable[tuple[KeyT, tuple[Any, ...]]],
        *,
        setup: Callable[[], None] | None = None,
    ) -> Iterator[TaskOutcome[KeyT]]:
        ray = _ray()
        pending = iter(tasks)
        # One task queued behind each running one hides Ray's scheduling round trip.
        depth = 2 * self.workers
        in_flight: dict[Any, KeyT] = {}
        exhausted = False
        try:
            while True:
                while not exhausted and len(in_flight) < depth:
                    try:
                        key, args = next(pending)
                    except StopIteration:
                        exhausted = True
                        break
                    ref = self._task.remote(function, args, self.timeout, self.memory_bytes, setup)
                    in_flight[ref] = key
                if not in_flight:
                    return
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in ready:
                    key = in_flight.pop(ref)
                    try:
                        outcome: TaskOutcome[Any] = ray.get(ref)
                    except ray.exceptions.RayError as error:
                        yield TaskOutcome(
                            key,
                            error=TaskCrashed(
                                f"Ray task failed after {self.max_retries} retries: "
                                f"{type(error).__name__}: {str(error)[:300]}"
                            ),
                        )
                        continue
                    outcome.key = key
                    if outcome.ok:
                        outcome.value = pickle.loads(outcome.value)
                    yield outcome
        finally:
            for ref in in_flight:
                ray.cancel(ref, force=True)


class _Holder:
    """The actor body: one object built once by ``factory`` and the functions applied to it."""

    def __init__(self, factory: Callable[[], Any]):
        self.target = factory()

    def apply(self, function: Callable[[Any, Any], Any], entry: tuple[int, Any]) -> tuple[int, Any]:
        index, item = entry
        return index, function(self.target, item)

    def close(self) -> None:
        close = getattr(self.target, "close", None)
        if callable(close):
            close()


class ModelActors:
    """``actors`` Ray actors, each holding ``factory()`` (an engine-backed teacher or runner)
    with ``num_gpus`` GPUs (one per actor for data-parallel generation). ``map`` applies
    ``function(target, item)`` to every item on whichever actor is free and yields
    ``(index, result)`` in completion order. An actor whose process dies is restarted (its
    object rebuilt) and the call retried, up to ``max_restarts`` times. Actors reserve no CPU
    by default (``num_cpus``), so the stage's CPU tasks still find room beside them."""

    def __init__(
        self,
        factory: Callable[[], Any],
        actors: int,
        *,
        num_gpus: float = 1.0,
        num_cpus: float = 0.0,
        address: str | None = None,
        max_restarts: int = 3,
    ):
        if actors < 1:
            raise ValueError(f"actors must be at least 1, got {actors}")
        ray = connect(address)
        actor_class = ray.remote(_Holder).options(
            num_gpus=num_gpus,
            num_cpus=num_cpus,
            max_restarts=max_restarts,
            max_task_retries=max_restarts,
        )
        self._actors = [actor_class.remote(factory) for _ in range(actors)]

    def __len__(self) -> int:
        return len(self._actors)

    def map(
        self, function: Callable[[Any, ItemT], ResultT], items: Iterable[ItemT]
    ) -> Iterator[tuple[int, ResultT]]:
        from ray.util import ActorPool

        pool = ActorPool(self._actors)
        yield from pool.map_unordered(
            lambda actor, entry: actor.apply.remote(function, entry), list(enumerate(items))
        )

    def ask(self, function: Callable[[Any, None], ResultT]) -> ResultT:
        """``function(target, None)`` on the first actor (a name, a setting)."""
        ray = _ray()
        _, result = ray.get(self._actors[0].apply.remote(function, (0, None)))
        return result

    def close(self) -> None:
        ray = _ray()
        for actor in self._actors:
            # An actor that died has nothing left to release.
            with contextlib.suppress(ray.exceptions.RayError):
                ray.get(actor.close.remote())
            ray.kill(actor)
        self._actors = []
