"""Steps, fake engines and factories the Ray tests ship to Ray workers and actors.

A module of its own (not a test file) so Ray workers can import it by name: the tests put this
folder on the workers' PYTHONPATH.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mmprolong_schemas import Prediction

HERE = Path(__file__).parent


@contextlib.contextmanager
def local_ray(num_cpus: int = 2) -> Iterator[str]:
    """A local Ray instance whose workers import this folder's modules by name; yields its
    address and restores PYTHONPATH afterwards."""
    import ray

    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), previous) if p)
    ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if previous is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = previous


def count_attempt(attempts: Path) -> int:
    """Record one more attempt in ``attempts``; returns how many there have been."""
    with open(attempts, "a") as handle:
        handle.write("attempt\n")
    return attempts.read_text().count("attempt")


def stall_to_be_killed(pid_file: Path, seconds: float, pid: int | None = None) -> None:
    """Publish ``pid`` (this process by default) in ``pid_file`` atomically, then wait for
    ``kill_when_written`` to kill it."""
    pid_file.with_suffix(".tmp").write_text(str(os.getpid() if pid is None else pid))
    pid_file.with_suffix(".tmp").replace(pid_file)
    time.sleep(seconds)


def kill_when_written(pid_file: Path, killed: list[int], timeout: float = 90) -> threading.Thread:
    """A started thread that SIGKILLs the pid ``pid_file`` names once it appears and records
    it in ``killed``; join it after the run."""

    def kill() -> None:
        deadline = time.monotonic() + timeout
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def kill_job_when(
    command: list[str], ready: Callable[[], bool], timeout: float = 90, poll: float = 0.05
) -> None:
    """Run ``command`` as a job and SIGKILL it once ``ready()`` holds (it must still be
    running then: its stderr is the failure message otherwise)."""
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and job.poll() is None:
        if ready():
            break
        time.sleep(poll)
    assert job.poll() is None, job.stderr.read().decode() if job.stderr else ""
    job.send_signal(signal.SIGKILL)
    job.wait()
    if job.stderr:
        job.stderr.close()


def square_once_killable(x: int, folder: str, victim: int) -> int:
    """Square ``x``, counting attempts in ``folder``. The first attempt of ``victim`` writes
    its Ray worker's pid (the step runs in a process forked from it) and waits to be killed."""
    if count_attempt(Path(folder) / f"{x}.attempts") == 1 and x == victim:
        stall_to_be_killed(Path(folder) / "victim.pid", 20, pid=os.getppid())
    return x * x


class FakeTokenizer:
    """Renders a conversation as plain text, a marker for each page image."""

    chat_template = "plain"

    def apply_chat_template(self, messages: list[Any], **kwargs: Any) -> str:
        parts = []
        for message in messages:
            content = message["content"]
            if isinstance(content, str):
                parts.append(content)
                continue
            parts.extend("<image>" if p["type"] == "image" else p["text"] for p in content)
        return "\n".join(parts)


class FakeEngine:
    """Stands in for vllm.LLM: answers every prompt with a valid extract pair."""

    def __init__(self, model: str, **kwargs: Any):
        self.model = model

    def get_tokenizer(self) -> FakeTokenizer:
        return FakeTokenizer()

    def generate(self, prompts: list[Any], params: list[Any], use_tqdm: bool = False) -> Any:
        outputs = []
        for prompt, param in zip(prompts, params, strict=True):
            text = prompt["prompt"]
            assert len(prompt["multi_modal_data"]["image"]) == text.count("<image>")
            pages = [int(n) for n in re.findall(r"^Page (\d+):$", text, flags=re.MULTILINE)]
            chosen = pages[:1] if "One page only" in text else pages[:2]
            data = {
                "evidence_description": "The page gives 3.",
                "answer": 3,
                "question": f"What number is on page {chosen[0]} (seed {param['seed']})?",
                "answer_format": "Integer",
                "evidence_pages": chosen,
                "evidence_sources": ["Text"],
            }
            completion = SimpleNamespace(text=json.dumps(data), finish_reason="stop", token_ids=[1])
            outputs.append(SimpleNamespace(outputs=[completion]))
        return outputs


def _plain(kwargs: dict[str, Any]) -> dict[str, Any]:
    return kwargs


def fake_vllm_teacher(pool_path: str) -> Any:
    """The real VLLMTeacher around FakeEngine, rendering pages from the pool at pool_path."""
    from docpool import Pool
    from qasynth.teachers.vllm import VLLMTeacher

    return VLLMTeacher(
        "fake-vl", Pool(pool_path), engine_factory=FakeEngine, sampling_factory=_plain
    )


class EchoRunner:
    """A deterministic runner: the answer is a function of the question."""

    model_name = "echo-model"
    max_new_tokens = 16

    def generate(self, requests: Sequence[Any]) -> Iterator[Prediction]:
        for request in requests:
            text = "".join(s for s in request.prompt.segments if isinstance(s, str))
            yield Prediction(
                item_id=request.item_id,
                model=self.model_name,
                output=f"Answer: {len(text) % 7}",
                prompt_format=request.prompt.prompt_format,
            )


class Doubler:
    """A stand-in engine for the actor tests: doubles numbers, and on its first call for
    ``victim`` (counted in ``folder``) writes its actor's pid and waits to be killed."""

    def __init__(self, folder: str, victim: int):
        self.folder = Path(folder)
        self.victim = victim

    def double(self, x: int) -> int:
        if x == self.victim and count_attempt(self.folder / "actor.attempts") == 1:
            stall_to_be_killed(self.folder / "actor.pid", 20)
        return 2 * x


def double(engine: Doubler, x: int) -> int:
    return engine.double(x)


class StallingRunner:
    """A real runner that, on its first chunk holding ``victim`` (attempts counted in
    ``folder``), writes its actor's pid and waits to be killed."""

    def __init__(self, inner: Any, folder: str, victim: str):
        self.inner = inner
        self.model_name = inner.model_name
        self.max_new_tokens = inner.max_new_tokens
        self.folder = Path(folder)
        self.victim = victim

    def generate(self, requests: Sequence[Any]) -> Iterator[Prediction]:
        victim = any(request.item_id == self.victim for request in requests)
        if victim and count_attempt(self.folder / "runner.attempts") == 1:
            stall_to_be_killed(self.folder / "runner.pid", 60)
        yield from self.inner.generate(requests)


def stalling_tiny_runner(
    folder: str, victim: str, checkpoint: str, image_root: str, max_new_tokens: int
) -> StallingRunner:
    """The transformers runner on the tiny checkpoint, on CPU, inside a StallingRunner."""
    from lvlm_judge.context import ContextResolver
    from lvlm_judge.runners import TransformersRunner

    inner = TransformersRunner(
        checkpoint,
        ContextResolver(image_root),
        max_new_tokens=max_new_tokens,
        device_map="cpu",
        model_name="tiny",
    )
    return StallingRunner(inner, folder, victim)


def sleep_then_square(x: int, seconds: float, folder: str | None = None) -> int:
    """Square ``x`` after ``seconds``; with ``folder``, mark there that it finished."""
    time.sleep(seconds)
    if folder is not None:
        (Path(folder) / f"{x}.done").touch()
    return x * x


def bad_record(kind: str) -> int:
    """One kind of trouble per record: a value, an exception, a hang, a memory hog."""
    if kind == "raise":
        raise ValueError("a bad record")
    if kind == "hang":
        time.sleep(60)
    if kind == "hog":
        return len(bytearray(8 << 30))
    return len(kind)
