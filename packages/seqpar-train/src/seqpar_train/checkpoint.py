"""Sharded DCP checkpoints that are atomic, and the SIGTERM trigger that writes one.

A checkpoint is written into ``step-NNNNNNNN.partial-<nonce>/``; after every rank has
finished, rank 0 writes ``COMPLETE.json`` (step and the size of every file) and renames the
directory to ``step-NNNNNNNN``. A directory without the marker, or whose files no longer match
it, is never loaded: ``latest_checkpoint`` skips it and ``load_checkpoint`` refuses it with a
``CheckpointError`` naming what is wrong.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import random
import re
import shutil
import signal
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_state_dict,
)

MARKER = "COMPLETE.json"


@contextlib.contextmanager
def _quiet_single_process() -> Iterator[None]:
    """DCP warns that it "assumes a single process" whenever no process group exists; that
    is exactly the single-process case here (one-rank runs, export), so the note is noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


_STEP_DIR = re.compile(r"^step-(\d{8})$")


class CheckpointError(RuntimeError):
    """A checkpoint directory that cannot be trusted."""


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _broadcast_str(value: str) -> str:
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


TRAIN_STATE_KEY = "train_state"


@dataclass
class TrainState:
    """What besides model and optimizer a resumed run needs: the step, the scheduler, the
    global data cursor and (rank 0's) RNG states. It goes through DCP with the model and
    optimizer, so a run saved on N ranks resumes on M."""

    step: int
    scheduler: dict[str, Any]
    data_cursor: dict[str, Any]
    rng: dict[str, Any]


def _verify(path: Path) -> dict[str, Any]:
    marker = path / MARKER
    if not marker.is_file():
        raise CheckpointError(
            f"{path} is not a complete checkpoint (no {MARKER}): it was being written when the "
            "run stopped; delete it or resume from an earlier step"
        )
    try:
        manifest = json.loads(marker.read_text())
        files: dict[str, int] = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path}/{MARKER} is unreadable ({error})") from None
    for name, size in files.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint {path} is corrupt: {name} is missing")
        if file.stat().st_size != size:
            raise CheckpointError(
                f"checkpoint {path} is corrupt: {name} has {file.stat().st_size} bytes, "
                f"{size} were written"
            )
    return manifest


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete, intact checkpoint under ``root``, or None."""
    base = Path(root)
    if not base.is_dir():
        return None
    for path in sorted((p for p in base.iterdir() if _STEP_DIR.match(p.name)), reverse=True):
        try:
            _verify(path)
        except CheckpointError:
            continue
        return path
    return None


def save_checkpoint(
    root: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    *,
    keep: int = 2,
) -> Path:
    """Collective: every rank calls it. Returns the final directory."""
    base = Path(root)
    final = base / f"step-{state.step:08d}"
    # Not mmprolong_runtime.atomic_dir: every rank writes into this directory, so its name is
    # broadcast, and only rank 0 renames it after a barrier, once COMPLETE.json is written;
    # a with-block in one process cannot span that. ``_prune`` clears what a kill left.
    partial = Path(_broadcast_str(str(base / f"{final.name}.partial-{uuid.uuid4().hex[:8]}")))
    if _rank() == 0:
        partial.mkdir(parents=True, exist_ok=True)
    _barrier()
    model_state, optim_state = get_state_dict(model, optimizer)
    # One pickled blob: DCP stores a non-tensor value once (deduplicated across ranks), and
    # every rank of any later world size reads it back.
    blob = pickle.dumps(
        {
            "step": state.step,
            "scheduler": state.scheduler,
            "data_cursor": state.data_cursor,
            "rng": state.rng,
        }
    )
    with _quiet_single_process():
        dcp.save(
            {"model": model_state, "optimizer": optim_state, TRAIN_STATE_KEY: blob},
            checkpoint_id=str(partial),
        )
    _barrier()
    if _rank() == 0:
        files = {
            str(p.relative_to(partial)): p.stat().st_size for p in partial.rglob("*") if p.is_file()
        }
        (partial / MARKER).write_text(json.dumps({"step": state.step, "files": files}, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        _prune(base, keep)
    _barrier()
    return final


def _prune(base: Path, keep: int) -> None:
    complete = sorted(p for p in base.iterdir() if _STEP_DIR.match(p.name))
    for old in complete[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in base.glob("step-*.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)


def load_checkpoint(
    path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None
) -> TrainState:
    """Load model (and optimizer) state in place; returns this rank's TrainState."""
    source = Path(path)
    manifest = _verify(source)
    # Checkpoints written before the train state went through DCP keep it per rank.
    state_file = source / f"train_state-rank{_rank():05d}.pt"
    in_dcp = not any(source.glob("train_state-rank*.pt"))
    if not in_dcp and not state_file.is_file():
        raise CheckpointError(
            f"{source} has no train state for rank {_rank()}: it was written per rank by a "
            "run with a different number of ranks"
        )
    if optimizer is not None:
        model_state, optim_state = get_state_dict(model, optimizer)
        target: dict[str, Any] = {"model": model_state, "optimizer": optim_state}
    else:
        target = {"model": get_state_dict(model, [])[0]}
    if in_dcp:
        target[TRAIN_STATE_KEY] = b""
    try:
        with _quiet_single_process():
            dcp.load(target, checkpoint_id=str(source))
    except Exception as error:  # DCP raises many types; all mean the same thing here
        raise CheckpointError(f"checkpoint {source} could not be read: {error}") from error
    set_state_dict(
        model,
        optimizer if optimizer is not None else [],
        model_state_dict=target["model"],
        optim_state_dict=target.get("optimizer", {}),
        options=StateDictOptions(strict=True),
    )
    if in_dcp:
        extra = pickle.loads(target[TRAIN_STATE_KEY])
    else:
        extra = torch.load(state_file, weights_only=False)
    if extra["step"] != manifest["step"]:
        raise CheckpointError(
            f"{source}'s train state is for step {extra['step']}, not {manifest['step']}"
        )
    return TrainState(extra["step"], extra["scheduler"], extra["data_cursor"], extra["rng"])


class StopSignal:
    """Set when SIGTERM (preemption) arrives; the training loop checkpoints and exits."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def __enter__(self) -> StopSignal:
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self._previous)

    def agreed(self, device: torch.device) -> bool:
        """True on every rank if any rank was signalled (ranks must stop together)."""
        if not dist.is_initialized():
            return self.requested
        flag = torch.tensor([1.0 if self.requested else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)


def load_model_weights(path: str | Path, model: torch.nn.Module) -> int:
    """Load only the model weights of a checkpoint (any rank count) into ``model``, e.g. a
    plain unsharded model in one process for export or comparison. Returns its step."""
    source = Path(path)
    manifest = _verify(source)
    model_state = get_state_dict(model, [])[0]
    try:
        with _quiet_single_process():
            dcp.load({"model": model_state}, checkpoint_id=str(source))
    except Exception as error:  # DCP raises many types; all mean the same thing here
        raise CheckpointError(f"checkpoint {source} could not be read: {error}") from error
    set_state_dict(
        model,
        [],
        model_state_dict=model_state,
        optim_state_dict={},
        options=StateDictOptions(strict=True),
    )
    return int(manifest["step"])
