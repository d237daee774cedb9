"""Process-group setup and a local launcher (N processes on one machine, no torchrun)."""

from __future__ import annotations

import datetime
import os
import socket
import tempfile
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def device_for_rank() -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def init_distributed(backend: str | None = None) -> bool:
    """Join the process group torchrun (or ``spawn_local``) described in the environment.
    Returns False, and does nothing, when the process runs alone."""
    if dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    dist.init_process_group(backend=backend or default_backend())
    return True


def _worker(
    rank: int,
    world: int,
    port: int,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    out_dir: str,
    timeout_s: float,
) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    backend = "nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= world else "gloo"
    dist.init_process_group(
        backend, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout_s)
    )
    try:
        result = fn(*args)
        # Through a file, not a queue: tensors in a queue live in the (exiting) child's memory.
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def spawn_local(
    fn: Callable[..., Any], nprocs: int, *args: Any, timeout_s: float = 600.0
) -> list[Any]:
    """Run ``fn(*args)`` in ``nprocs`` fresh processes joined in a process group on this
    machine (NCCL with one GPU each when there are enough GPUs, else gloo on CPU);
    returns every rank's return value in rank order (they must be picklable).
    ``fn`` must be importable (defined at module level). A collective that waits longer than
    ``timeout_s`` fails instead of hanging."""
    with tempfile.TemporaryDirectory(prefix="seqpar-spawn-") as out_dir:
        mp.start_processes(
            _worker,
            args=(nprocs, free_port(), fn, args, out_dir, timeout_s),
            nprocs=nprocs,
            join=True,
            start_method="spawn",
        )
        return [
            torch.load(os.path.join(out_dir, f"rank{rank}.pt"), weights_only=False)
            for rank in range(nprocs)
        ]
