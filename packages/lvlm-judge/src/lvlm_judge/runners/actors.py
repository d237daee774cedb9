"""A runner whose engines run as Ray actors (one per GPU) for data-parallel generation.

Each actor builds its runner once (a vLLM engine loads its weights once) and answers chunks of
the requests; predictions travel back to the driver, which appends them to the run's
predictions file as they arrive, so a rerun resumes from them whichever way they were made.
Needs the ``ray`` extra.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from lvlm_judge.runners.base import GenerationRequest, Runner
from mmprolong_schemas import Prediction


def generate_chunk(runner: Runner, requests: Sequence[GenerationRequest]) -> list[Prediction]:
    """Every prediction of ``requests`` (run on an actor)."""
    return list(runner.generate(requests))


def _identity(runner: Runner, _: None) -> tuple[str, int]:
    return runner.model_name, runner.max_new_tokens


class ActorRunner:
    """``actors`` copies of the runner ``factory`` builds, each a Ray actor with ``num_gpus``
    GPUs; requests go out in chunks of ``chunk`` to whichever actor is free."""

    def __init__(
        self,
        factory: Callable[[], Runner],
        actors: int,
        *,
        num_gpus: float = 1.0,
        chunk: int = 16,
        address: str | None = None,
    ):
        from mmprolong_runtime.ray_executor import ModelActors

        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        self.chunk = chunk
        self._actors = ModelActors(factory, actors, num_gpus=num_gpus, address=address)
        self.model_name, self.max_new_tokens = self._actors.ask(_identity)

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[Prediction]:
        chunks = [
            list(requests[start : start + self.chunk])
            for start in range(0, len(requests), self.chunk)
        ]
        for _, predictions in self._actors.map(generate_chunk, chunks):
            yield from predictions

    def close(self) -> None:
        self._actors.close()


def actor_count(address: str | None, num_gpus: float) -> int:
    """One actor per GPU of the cluster (per CPU when actors take no GPU)."""
    from mmprolong_runtime.ray_executor import connect

    resources: dict[str, Any] = connect(address).cluster_resources()
    if num_gpus:
        count = int(resources.get("GPU", 0) // num_gpus)
        if count < 1:
            raise ValueError("the Ray cluster has no GPU for a runner actor")
        return count
    return max(1, int(resources.get("CPU", 1)))
