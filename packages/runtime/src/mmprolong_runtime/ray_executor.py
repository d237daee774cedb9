"""The executor protocol on a Ray cluster, and actor pools for model engines (the ``ray`` extra).

Map steps run as Ray Data pipelines. The task stream is read a window at a time (128 records
per worker); each window becomes a dataset (``from_items``: an index and the pickled arguments
per record, the keys stay in the driver) cut into blocks of up to 16 records, mapped by
``map_batches`` on a task pool of ``workers`` tasks, one task per block, and each block's rows
come back to the driver as soon as its task ends. The next window opens once half the records
out have come back, so the input is never held whole (``from_items`` would materialise it), at
most one window of arguments sits in the object store, and a straggler (a document running
into its timeout) holds up only the records queued behind it in its own task, never the other
workers or the next window.

Every record gets its own outcome. Inside the map task each record runs in a one-worker
``LocalExecutor`` forked from the Ray worker, so docpool's per-document safety holds on a
cluster too: a step that raises, hangs, crashes or eats memory kills at most that forked
process and becomes the record's row (its value or its error), never a failed block (Ray Data
fails a block, and then the pipeline, when its function raises). Only the death of the Ray
worker itself (a killed process, a lost node) fails a map task; Ray runs it again up to
``max_retries`` times, then Ray Data drops the block (``max_errored_blocks`` is unlimited) and
the driver reports its records as TaskCrashed. The driver writes every output, keyed by
content, and skips a record it already reported, so a retried task cannot add a duplicate.

Why large windows and several records per task: each pipeline costs a start (Ray Data runs a
new pipeline on one task for up to a second, until it learns the resources the cluster granted
it) and Ray Data leaves a worker idle about 20 ms between two tasks. With 32-record windows and
4-record tasks these cost docpool ingest 15-20% against the local executor on a 2-core
machine; with 128-record windows and 16-record tasks the two run level (docs/scale-out.md has
the figures). ``mode="tasks"`` runs one plain Ray task per record instead (same forked step
process, outcomes and retries), two in flight per worker.

``ModelActors`` keeps one long-lived object (a vLLM teacher or runner) per actor, one actor per
GPU, and maps batches over them through a Ray ``ActorPool``: a Ray Data actor pool would live
only as long as one pipeline and rebuild the engines for every window. The caller writes the
replies (and the request cache) in the driver. Ray is imported only here and only when one of
these classes is built.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import pickle
import queue
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from mmprolong_runtime.executor import LocalExecutor, TaskCrashed, TaskOutcome

KeyT = TypeVar("KeyT")
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

_INSTALL_HINT = "the ray executor needs Ray: pip install 'mmprolong-runtime[ray]'"

WINDOW_PER_WORKER = 128
"""Records per Ray Data window, per worker: enough that a window's start-up is noise."""
MAX_RECORDS_PER_TASK = 16
"""Records one Ray Data task runs in turn: enough to spread the idle time between two tasks,
few enough that a task is a small share of a worker's window."""
MODES = ("data", "tasks")
"""How map steps run: Ray Data pipelines (the default) or plain Ray tasks (see
``RayExecutor``)."""
COLD_PIPELINES = 8
"""Pipelines a window is split into when none is running (see ``RayExecutor._pipelines``)."""
TASKS_PER_WORKER = 4
"""Tasks per worker a window is cut into at least (fewer records per task in small windows),
so the workers finish a window's last tasks at about the same time."""


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
    """One record on a Ray worker: the step in a forked process with its deadline and cap. The
    process is reused by later records (forking a Ray worker costs more than most steps)."""
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


def _pickled_error(error: BaseException) -> bytes:
    try:
        return pickle.dumps(error, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # an unpicklable exception still has to be reported
        return pickle.dumps(RuntimeError(f"{type(error).__name__}: {error}"[:1000]))


@dataclass(frozen=True)
class _MapRecords:
    """The Ray Data batch function: every record of an Arrow batch (``index``, pickled
    ``args``) through ``_run_step``, one output row each (``value`` pickled, or ``error``)."""

    function: Callable[..., Any]
    timeout: float
    memory_bytes: int | None
    setup: Callable[[], None] | None

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        values: list[bytes | None] = []
        errors: list[bytes | None] = []
        seconds: list[float] = []
        for args in batch.column("args").to_pylist():
            try:
                outcome = _run_step(
                    self.function, pickle.loads(args), self.timeout, self.memory_bytes, self.setup
                )
            except Exception as error:  # one record's failure must not fail its block
                outcome = TaskOutcome(None, error=TaskCrashed(f"{type(error).__name__}: {error}"))
            values.append(outcome.value if outcome.ok else None)
            errors.append(None if outcome.error is None else _pickled_error(outcome.error))
            seconds.append(outcome.seconds)
        return pa.table({
            "index": batch.column("index"),
            "value": pa.array(values, pa.binary()),
            "error": pa.array(errors, pa.binary()),
            "seconds": pa.array(seconds, pa.float64()),
        })  # fmt: skip


@dataclass
class _Finished:
    """A window's pipeline ended; ``failure`` says why it ended early, if it did."""

    window: int
    failure: BaseException | None = None


class _Window:
    """One Ray Data pipeline over a slice of the records, streamed by a thread of its own into
    the run's queue (windows overlap, and one blocking iterator cannot serve two)."""

    def __init__(self, number: int, dataset: Any, indices: list[int], out: queue.Queue[Any]):
        self.number = number
        self.dataset = dataset
        self.indices = indices
        self._out = out
        self._stop = threading.Event()
        threading.Thread(target=self._stream, name=f"ray-data-window-{number}", daemon=True).start()

    def _stream(self) -> None:
        failure: BaseException | None = None
        try:
            # One batch is one task's block; without prefetching it is handed over as soon
            # as it is done (with it, only once the next one is done too).
            batches = self.dataset.iter_batches(
                batch_size=None, prefetch_batches=0, batch_format="pyarrow"
            )
            for batch in batches:
                if self._stop.is_set():
                    break
                for row in batch.to_pylist():
                    self._out.put((row["index"], row["value"], row["error"], row["seconds"]))
        except Exception as error:  # reported as the window's records that never came back
            failure = error
        finally:
            self._out.put(_Finished(self.number, failure))

    def stop(self) -> None:
        """Stop at the next block that comes back: dropping its iterator shuts the pipeline
        down, which cancels the tasks still running and starts no more."""
        self._stop.set()


def _quiet_ray_data() -> None:
    """Keep Ray Data's per-dataset notices (a few per window) off the console, where the stage
    shows its own progress; its log file in the Ray session folder still has them."""
    import ray.data  # configures the "ray.data" logger on import

    for handler in logging.getLogger(ray.data.__name__).handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(max(handler.level, logging.WARNING))


class RayExecutor:
    """Runs steps through Ray Data, ``workers`` tasks at once (default: the cluster's CPUs
    divided by ``cpus_per_task``). ``address`` joins a running cluster; without it a local
    instance with ``num_cpus`` CPUs is started (or the one this process already joined is
    used). A record whose Ray worker dies is run again up to ``max_retries`` times, then
    reported as TaskCrashed. At most ``window`` records (default: 128 per worker) are out at
    once, their arguments in the object store. ``mode="tasks"`` runs one plain Ray task per
    record instead of Ray Data pipelines: same outcomes and retries, and no pipeline start-up
    (docs/scale-out.md compares the two)."""

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
        window: int | None = None,
        mode: str = "data",
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be at least 0, got {max_retries}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if window is not None and window < 2:
            raise ValueError(f"window must be at least 2, got {window}")
        ray = connect(address, num_cpus)
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        self.workers = workers or max(1, int(cpus // cpus_per_task))
        self.timeout = timeout
        self.memory_bytes = memory_bytes
        self.max_retries = max_retries
        self.cpus_per_task = cpus_per_task
        self.window = window or WINDOW_PER_WORKER * self.workers
        self.mode = mode
        self._task = ray.remote(_run_step).options(
            num_cpus=cpus_per_task, max_retries=max_retries, retry_exceptions=False
        )
        _quiet_ray_data()

    def _pipelines(
        self, step: _MapRecords, items: list[dict[str, Any]], cold: bool
    ) -> Iterator[tuple[Any, list[int]]]:
        """The pipelines of one window, each with the indices of its records. A pipeline runs
        one task during its first second or so (until Ray Data learns the resources granted
        to it): with none running yet (``cold``), start one per worker, up to a few, so no
        worker idles meanwhile."""
        starts = min(self.workers, COLD_PIPELINES, len(items)) if cold else 1
        per_task = len(items) // (TASKS_PER_WORKER * self.workers)
        per_task = max(1, min(MAX_RECORDS_PER_TASK, per_task))
        for start in range(starts):
            part = items[start::starts]
            yield self._dataset(step, part, per_task), [item["index"] for item in part]

    def _dataset(self, step: _MapRecords, items: list[dict[str, Any]], per_task: int) -> Any:
        """A pipeline over ``items``: blocks of ``per_task`` records, one task per block."""
        import ray.data

        blocks = -(-len(items) // per_task)
        with warnings.catch_warnings():
            # Ray 2.60 warns about its own deprecated context fields when it copies the
            # context, and about task options passed to map_batches, for which it has nothing
            # else yet to bound retries on worker death (Ray Data's default: retry forever).
            warnings.simplefilter("ignore", DeprecationWarning)
            dataset = ray.data.from_items(items, override_num_blocks=blocks)
            context = dataset.context  # this dataset's own copy
            context.enable_progress_bars = False
            context.print_on_execution_start = False
            # A block fails only when its task's Ray worker died more than max_retries times:
            # carry on, and the driver reports the block's records as crashed.
            context.max_errored_blocks = -1
            return dataset.map_batches(
                step,
                batch_size=None,  # a block (one task) is one batch
                batch_format="pyarrow",
                compute=ray.data.TaskPoolStrategy(size=min(self.workers, blocks)),
                num_cpus=self.cpus_per_task,
                max_retries=self.max_retries,
            )

    def run(
        self,
        function: Callable[..., Any],
        tasks: Iterable[tuple[KeyT, tuple[Any, ...]]],
        *,
        setup: Callable[[], None] | None = None,
    ) -> Iterator[TaskOutcome[KeyT]]:
        if self.mode == "tasks":
            yield from self._run_tasks(function, tasks, setup)
            return
        step = _MapRecords(function, self.timeout, self.memory_bytes, setup)
        pending = iter(tasks)
        indices = itertools.count()
        numbers = itertools.count()
        keys: dict[int, KeyT] = {}  # records sent and not yet reported, by index
        rows: queue.Queue[Any] = queue.Queue()
        windows: dict[int, _Window] = {}
        exhausted = False
        try:
            while True:
                # The next window opens once half the records out have come back, so the
                # workers never run dry while a window's last tasks finish.
                if not exhausted and len(keys) <= self.window // 2:
                    room = self.window - len(keys)
                    batch = list(itertools.islice(pending, room))
                    exhausted = len(batch) < room
                    if batch:
                        items: list[dict[str, Any]] = []
                        for key, args in batch:
                            index = next(indices)
                            keys[index] = key
                            items.append({"index": index, "args": pickle.dumps(args, -1)})
                        for dataset, sent in self._pipelines(step, items, cold=not windows):
                            number = next(numbers)
                            windows[number] = _Window(number, dataset, sent, rows)
                if not windows:
                    return
                message = rows.get()
                if isinstance(message, _Finished):
                    window = windows.pop(message.window)
                    lost = self._lost(message.failure)
                    for index in window.indices:
                        if index in keys:
                            yield TaskOutcome(keys.pop(index), error=lost)
                    continue
                index, value, error, seconds = message
                if index not in keys:  # a retried task's record already reported
                    continue
                key = keys.pop(index)
                if error is None:
                    yield TaskOutcome(key, value=pickle.loads(value), seconds=seconds)
                else:
                    yield TaskOutcome(key, error=pickle.loads(error), seconds=seconds)
        finally:
            for window in windows.values():
                window.stop()

    def _run_tasks(
        self,
        function: Callable[..., Any],
        tasks: Iterable[tuple[KeyT, tuple[Any, ...]]],
        setup: Callable[[], None] | None,
    ) -> Iterator[TaskOutcome[KeyT]]:
        """``mode="tasks"``: one plain Ray task per record, two in flight per worker (one
        queued behind each running one hides Ray's scheduling round trip)."""
        ray = _ray()
        pending = iter(tasks)
        in_flight: dict[Any, KeyT] = {}
        exhausted = False
        try:
            while True:
                while not exhausted and len(in_flight) < 2 * self.workers:
                    try:
                        key, args = next(pending)
                    except StopIteration:
                        exhausted = True
                        break
                    ref = self._task.remote(function, args, self.timeout, self.memory_bytes, setup)
                    in_flight[ref] = key
                if not in_flight:
                    return
                [ref], _ = ray.wait(list(in_flight), num_returns=1)
                key = in_flight.pop(ref)
                try:
                    outcome: TaskOutcome[Any] = ray.get(ref)
                except ray.exceptions.RayError as error:
                    yield TaskOutcome(key, error=self._lost(None if _died(ray, error) else error))
                    continue
                outcome.key = key
                if outcome.ok:
                    outcome.value = pickle.loads(outcome.value)
                yield outcome
        finally:
            for ref in in_flight:
                ray.cancel(ref, force=True)

    def _lost(self, failure: BaseException | None) -> TaskCrashed:
        if failure is None:
            return TaskCrashed(
                f"its Ray task failed on all {self.max_retries + 1} attempts (its worker died)"
            )
        text = f"Ray failed to run it: {type(failure).__name__}: {failure}"
        return TaskCrashed(text[:500])


def _died(ray: Any, error: BaseException) -> bool:
    """Whether a Ray task failed because its worker died (not for another Ray error)."""
    return isinstance(error, ray.exceptions.WorkerCrashedError | ray.exceptions.NodeDiedError)


class _Holder:
    """The actor body: one object built once by ``factory`` and the functions applied to it."""

    def __init__(self, factory: Callable[[], Any]):
        self.target = factory()

    def apply(self, function: Callable[[Any, Any], Any], entry: tuple[int, Any]) -> tuple[int, Any]:
        index, item = entry
        return index, function(self.target, item)

    def broadcast(self, function: Callable[[Any, Any], Any], item: Any) -> Any:
        return function(self.target, item)

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

    def broadcast(self, function: Callable[[Any, ItemT], ResultT], item: ItemT) -> list[ResultT]:
        """``function(target, item)`` on every actor (a setting each must know); ``item`` is
        sent once."""
        ray = _ray()
        shared = ray.put(item)
        calls = [actor.broadcast.remote(function, shared) for actor in self._actors]
        return list(ray.get(calls))

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
