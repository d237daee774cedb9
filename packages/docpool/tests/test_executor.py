"""The local executor: outcomes, timeouts, memory caps and crashes are reported, never raised."""

from __future__ import annotations

import os
import time

import pytest

from docpool.executor import LocalExecutor, TaskCrashed, TaskMemoryExceeded, TaskTimeout


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


def test_memory_cap() -> None:
    executor = LocalExecutor(1, timeout=60, memory_bytes=2 << 30)
    [outcome] = list(executor.run(bytearray, [("big", (8 << 30,))]))
    assert isinstance(outcome.error, TaskMemoryExceeded)


def test_crash_is_reported() -> None:
    executor = LocalExecutor(1, timeout=60)
    [outcome] = list(executor.run(os._exit, [("boom", (3,))]))
    assert isinstance(outcome.error, TaskCrashed)


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="workers"):
        LocalExecutor(0)


def test_failures_map_to_reject_reasons() -> None:
    from docpool.ingest import _verdict
    from docpool.parse import DocumentRejected, RejectReason

    assert _verdict(TaskTimeout("x"))[0] is RejectReason.TIMEOUT
    assert _verdict(TaskMemoryExceeded("x"))[0] is RejectReason.MEMORY
    assert _verdict(TaskCrashed("x"))[0] is RejectReason.CRASHED
    assert _verdict(DocumentRejected("encrypted", "pw")) == (RejectReason.ENCRYPTED, "pw")
    reason, detail = _verdict(KeyError("boom"))
    assert reason is RejectReason.PARSE_ERROR and "KeyError" in detail
