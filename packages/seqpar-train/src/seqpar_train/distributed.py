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


def process_group_backend(*, cuda: bool, cpu_offload: bool = False) -> str:
    """The backend string of ``init_process_group``: NCCL for CUDA tensors; with CPU offload
    also gloo for CPU tensors (gradient clipping then reduces CPU DTensors); gloo alone on
    a machine without CUDA."""
    if not cuda:
        return "gloo"
    return "cuda:nccl,cpu:gloo" if cpu_offload else "nccl"


def device_for_rank() -> torch.device:
    """This process's device, made the current CUDA device: ``cuda:LOCAL_RANK`` (or the one
    visible device when the scheduler gives each process its own), else the CPU.

    NCCL needs one device per rank: object collectives (``broadcast_object_list``) and
    barriers stage on ``torch.cuda.current_device()`` (torch/distributed/distributed_c10d.py,
    broadcast_object_list's note), so a process that never calls set_device puts every local
    rank on cuda:0 and NCCL's communicator set-up fails ("Duplicate GPU detected : rank %d
    and rank %d both on CUDA device", ncclInvalidUsage, NCCL src/init.cc) or hangs."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    count = torch.cuda.device_count()
    if local >= count:
        if count != 1:
            raise RuntimeError(
                f"LOCAL_RANK {local} has no CUDA device: this process sees {count} devices; "
                "start at most one process per device on each node"
            )
        local = 0  # CUDA_VISIBLE_DEVICES gave this process its own single device
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


def init_process_group(
    *, cpu_offload: bool = False, timeout_s: float | None = None
) -> torch.device:
    """Join the process group described by the environment (torchrun's, or ``spawn_local``'s
    variables), binding this rank's CUDA device before anything touches NCCL. Returns this
    rank's device. The one place seqpar-train and the mmprolong app create process groups."""
    device = device_for_rank()
    if dist.is_initialized():
        if cpu_offload and device.type == "cuda" and not _has_cpu_backend():
            raise RuntimeError(
                "CPU offload needs a process group with a CPU backend ('cuda:nccl,cpu:gloo'); "
                "the group was created without one: create it with "
                "seqpar_train.distributed.init_process_group(cpu_offload=True)"
            )
        return device
    timeout = datetime.timedelta(seconds=timeout_s) if timeout_s is not None else None
    dist.init_process_group(
        backend=process_group_backend(cuda=device.type == "cuda", cpu_offload=cpu_offload),
        timeout=timeout,
    )
    return device


def _has_cpu_backend() -> bool:
    return torch.device("cpu") in dist.group.WORLD._device_types  # type: ignore[union-attr]


def init_distributed(*, cpu_offload: bool = False, timeout_s: float | None = None) -> bool:
    """Join the process group torchrun (or ``spawn_local``) described in the environment.
    Returns False, and does nothing, when the process runs alone."""
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    init_process_group(cpu_offload=cpu_offload, timeout_s=timeout_s)
    return True


def _worker(
    rank: int,
    world: int,
    port: int,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    out_dir: str,
    timeout_s: float,
    on_cpu: bool,
) -> None:
    if on_cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # read when CUDA first initialises, not yet
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    init_process_group(timeout_s=timeout_s)
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
    machine (NCCL with one GPU each when there are enough GPUs, else gloo on the CPU with
    CUDA hidden: NCCL allows one process per device);
    returns every rank's return value in rank order (they must be picklable).
    ``fn`` must be importable (defined at module level). A collective that waits longer than
    ``timeout_s`` fails instead of hanging."""
    on_cpu = not torch.cuda.is_available() or torch.cuda.device_count() < nprocs
    with tempfile.TemporaryDirectory(prefix="seqpar-spawn-") as out_dir:
        mp.start_processes(
            _worker,
            args=(nprocs, free_port(), fn, args, out_dir, timeout_s, on_cpu),
            nprocs=nprocs,
            join=True,
            start_method="spawn",
        )
        return [
            torch.load(os.path.join(out_dir, f"rank{rank}.pt"), weights_only=False)
            for rank in range(nprocs)
        ]
