"""The local executor: outcomes, timeouts, memory caps and crashes are reported, never raised."""

from __future__ import annotations

import functools
import os
import time

import pytest

from mmprolong_runtime.executor import (
    LocalExecutor,
    TaskCrashed,
    TaskMemoryExceeded,
    TaskTimeout,
    default_workers,
    make_executor,
)


def test_values_and_exceptions_come_back() -> None:
    executor = LocalExecutor(2, timeout=60)
    outcomes = {o.key: o for o in executor.run(int, [("a", ("12",)), ("b", ("x",)), ("c", ("7",))])}
    assert outcomes["a"].value == 12 and outcomes["c"].value == 7
    assert isinstance(outcomes["b"].error, ValueError)


def test_timeout_kills_the_task_and_others_finish() -> None:
    executor = LocalExecutor(2, timeout=1.0)
    started = time.monotonic()
    outcomes = {o.key: o for o in executor.run(time.sleep, [("slow", (60,)), ("quick", (0,))])}
    assert isinstance(outcomes["slow"].error, TaskTimeout)
    assert outcomes["quick"].ok
    assert time.monotonic() - started < 30


def test_a_timeout_in_a_large_parent_is_not_taken_for_a_memory_stall() -> None:
    # A worker forked from a large process (a Ray worker maps gigabytes) inherits its address
    # space; only what it adds counts against the cap.
    import mmap

    reserved = mmap.mmap(-1, 4 << 30)  # address space only: the pages are never touched
    try:
        executor = LocalExecutor(1, timeout=1.0, memory_bytes=256 << 20)
        [outcome] = list(executor.run(time.sleep, [("slow", (60,))]))
    finally:
        reserved.close()
    assert isinstance(outcome.error, TaskTimeout)


def test_memory_cap() -> None:
    executor = LocalExecutor(1, timeout=60, memory_bytes=2 << 30)
    [outcome] = list(executor.run(bytearray, [("big", (8 << 30,))]))
    assert isinstance(outcome.error, TaskMemoryExceeded)


def test_a_worker_that_ran_out_of_memory_is_replaced() -> None:
    executor = LocalExecutor(1, timeout=60, memory_bytes=2 << 30)
    tasks = [
        ("before", (os.getpid,)),
        ("big", (bytearray, 8 << 30)),
        ("after", (os.getpid,)),
        ("again", (os.getpid,)),
    ]
    outcomes = {o.key: o for o in executor.run(_call, tasks)}
    assert isinstance(outcomes["big"].error, TaskMemoryExceeded)
    # A fresh process serves the next task; ordinary tasks keep their worker.
    assert outcomes["before"].value != outcomes["after"].value == outcomes["again"].value


def _call(function, *args):  # type: ignore[no-untyped-def]
    return function(*args)


def test_crash_is_reported() -> None:
    executor = LocalExecutor(1, timeout=60)
    [outcome] = list(executor.run(os._exit, [("boom", (3,))]))
    assert isinstance(outcome.error, TaskCrashed)


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="workers"):
        LocalExecutor(0)


def _mark(path: str) -> None:
    with open(path, "a") as handle:
        handle.write(f"{os.getpid()}\n")


def test_setup_runs_in_the_parent_before_workers_fork(tmp_path) -> None:
    marks = tmp_path / "setup.txt"
    executor = LocalExecutor(1, timeout=60)
    outcomes = list(executor.run(len, [("a", ("xy",))], setup=functools.partial(_mark, str(marks))))
    assert outcomes[0].value == 2
    assert marks.read_text().split() == [str(os.getpid())]


def test_make_executor_builds_a_local_executor_with_its_options() -> None:
    executor = make_executor("local", 3, timeout=5.0, memory_bytes=None, tasks_per_worker=2)
    assert isinstance(executor, LocalExecutor)
    assert (executor.workers, executor.timeout, executor.memory_bytes) == (3, 5.0, None)
    assert executor.tasks_per_worker == 2
    assert make_executor("local").workers == default_workers()


def test_make_executor_rejects_bad_combinations() -> None:
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("dask", 2)
    with pytest.raises(ValueError, match="ray-address"):
        make_executor("local", 2, ray_address="auto")
    with pytest.raises(ValueError, match="local executor"):
        make_executor("ray", 2, tasks_per_worker=3)


def test_ray_executor_without_ray_says_how_to_install(monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ImportError, match=r"mmprolong-runtime\[ray\]"):
        make_executor("ray", 2)


def test_kept_workers_serve_later_calls_until_closed() -> None:
    executor = LocalExecutor(1, timeout=60, keep_workers=True)
    [first] = list(executor.run(os.getpid, [("a", ())]))
    [second] = list(executor.run(os.getpid, [("b", ())]))
    assert first.value == second.value != os.getpid()
    executor.close()
    [third] = list(executor.run(os.getpid, [("c", ())]))
    assert third.value != first.value
    executor.close()


def test_a_kept_worker_that_died_is_replaced_not_reported() -> None:
    executor = LocalExecutor(1, timeout=60, keep_workers=True)
    [first] = list(executor.run(os.getpid, [("a", ())]))
    os.kill(first.value, 9)
    time.sleep(0.2)
    [second] = list(executor.run(os.getpid, [("b", ())]))
    assert second.ok and second.value != first.value
    executor.close()


def _open_descriptors() -> list[int]:
    return sorted(int(fd) for fd in os.listdir("/proc/self/fd"))


def test_workers_keep_only_their_pipe_and_the_standard_streams(tmp_path) -> None:
    with open(tmp_path / "held-open", "w"):
        [outcome] = list(LocalExecutor(1, timeout=60).run(_open_descriptors, [("fds", ())]))
    # 0-2, the task pipe, and the descriptor listdir itself opened.
    assert outcome.ok and len([fd for fd in outcome.value if fd > 2]) <= 2


def test_ray_executor_checks_its_arguments_before_connecting() -> None:
    from mmprolong_runtime.ray_executor import RayExecutor

    with pytest.raises(ValueError, match="timeout"):
        RayExecutor(timeout=0)
    with pytest.raises(ValueError, match="max_retries"):
        RayExecutor(max_retries=-1)
    with pytest.raises(ValueError, match="workers"):
        RayExecutor(workers=0)


def test_ray_executor_rejects_an_unknown_mode() -> None:
    from mmprolong_runtime.ray_executor import RayExecutor

    # Checked before Ray is imported or started.
    with pytest.raises(ValueError, match="mode"):
        RayExecutor(mode="threads")
