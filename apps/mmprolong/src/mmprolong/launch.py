"""Multi-node training stages: the launch files `mmprolong run` writes, and the entry point
every process of the launched job runs (`mmprolong launch-train RUN --stage train`).

The run directory must be on a file system every node sees (the usual shared home or
scratch of a cluster). Each node runs torchrun with static rendezvous at node 0; inside the
job, rank 0 does the stage's bookkeeping (plan, clearing a stale folder, the manifest and
the export) and every rank trains. Plain ``srun`` with one task per device works too: the
Slurm variables are translated into torch.distributed's.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mmprolong.orchestrator import Pipeline, load_run_recipe
from mmprolong_schemas import Recipe
from mmprolong_schemas.io import atomic_path

LAUNCH_DIR = "launch"
NODE_SCRIPT = "node.sh"
SBATCH_SCRIPT = "sbatch.sh"
COMMANDS = "commands.txt"
DEFAULT_PORT = 29500
LAUNCHABLE = ("train", "sft")
"""Stages that train with seqpar-train, and so may need several nodes."""


def launch_folder(run_dir: Path, stage: str) -> Path:
    return run_dir / stage / LAUNCH_DIR


def node_commands(run_dir: Path, stage: str, nodes: int) -> list[str]:
    """The command to start on each node, node 0 first (any order works)."""
    script = shlex.quote(str(launch_folder(run_dir, stage).resolve() / NODE_SCRIPT))
    return [f"MASTER_ADDR=<address of node 0> bash {script} {rank}" for rank in range(nodes)]


def _node_script(run_dir: Path, stage: str, recipe: Recipe) -> str:
    parallel = recipe.train.parallel
    worker = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={parallel.nodes}",
        '--node-rank="$NODE_RANK"',
        f"--nproc-per-node={parallel.gpus_per_node}",
        '--master-addr="$MASTER_ADDR"',
        '--master-port="$MASTER_PORT"',
        "-m",
        "mmprolong.cli",
        "launch-train",
        str(run_dir.resolve()),
        "--stage",
        stage,
    ]
    quoted = [part if "$" in part else shlex.quote(part) for part in worker]
    return "\n".join(
        [
            "#!/usr/bin/env bash",
            f"# Stage {stage} of run {recipe.name}: {parallel.nodes} nodes x "
            f"{parallel.gpus_per_node} devices. Start it on every node:",
            "#   MASTER_ADDR=<address of node 0> bash node.sh <node rank>",
            "# (under Slurm the node rank comes from SLURM_NODEID; see sbatch.sh).",
            "set -euo pipefail",
            'NODE_RANK="${1:-${SLURM_NODEID:?give the node rank (0 for the first node)}}"',
            ': "${MASTER_ADDR:?set MASTER_ADDR to the address of node 0}"',
            f'MASTER_PORT="${{MASTER_PORT:-{DEFAULT_PORT}}}"',
            "exec " + " \\\n  ".join(quoted),
            "",
        ]
    )


def _sbatch_script(run_dir: Path, stage: str, recipe: Recipe) -> str:
    parallel = recipe.train.parallel
    folder = launch_folder(run_dir, stage).resolve()
    return "\n".join(
        [
            "#!/usr/bin/env bash",
            f"#SBATCH --job-name={shlex.quote(f'mmprolong-{recipe.name}-{stage}')}",
            f"#SBATCH --nodes={parallel.nodes}",
            "#SBATCH --ntasks-per-node=1",
            f"#SBATCH --gpus-per-node={parallel.gpus_per_node}",
            "#SBATCH --exclusive",
            f"#SBATCH --output={folder}/slurm-%j.out",
            "# One task per node runs torchrun, which starts one process per device.",
            "set -euo pipefail",
            'MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
            f'MASTER_PORT="${{MASTER_PORT:-{DEFAULT_PORT}}}"',
            "export MASTER_ADDR MASTER_PORT",
            f"srun --kill-on-bad-exit=1 bash {shlex.quote(str(folder / NODE_SCRIPT))}",
            "",
        ]
    )


def write_launch_files(run_dir: Path, stage: str, recipe: Recipe) -> list[Path]:
    """Write node.sh (torchrun on one node), sbatch.sh and commands.txt for ``stage``;
    returns their paths."""
    folder = launch_folder(run_dir, stage)
    folder.mkdir(parents=True, exist_ok=True)
    texts = {
        NODE_SCRIPT: _node_script(run_dir, stage, recipe),
        SBATCH_SCRIPT: _sbatch_script(run_dir, stage, recipe),
        COMMANDS: "\n".join(
            [
                f"# Slurm: sbatch {shlex.quote(str((folder / SBATCH_SCRIPT).resolve()))}",
                "# Or start one command per node (node 0's address reachable from all):",
                *node_commands(run_dir, stage, recipe.train.parallel.nodes),
                "",
            ]
        ),
    }
    paths = []
    for name, text in texts.items():
        with atomic_path(folder / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
        if name.endswith(".sh"):
            (folder / name).chmod(0o755)
        paths.append(folder / name)
    return paths


def slurm_to_torch_env(env: Mapping[str, str]) -> dict[str, str]:
    """torch.distributed's variables for a process started by ``srun`` with one task per
    device (torchrun sets them itself, and then nothing is returned)."""
    if "RANK" in env or "SLURM_PROCID" not in env or "SLURM_NTASKS" not in env:
        return {}
    if "MASTER_ADDR" not in env:
        raise ValueError(
            "started by srun without MASTER_ADDR: export it (the first node of the job, e.g. "
            '$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)) before srun'
        )
    # SLURM_NTASKS_PER_NODE reads like "4" or "4(x2)".
    per_node = env.get("SLURM_NTASKS_PER_NODE", "1").split("(")[0]
    return {
        "RANK": env["SLURM_PROCID"],
        "WORLD_SIZE": env["SLURM_NTASKS"],
        "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
        "LOCAL_WORLD_SIZE": per_node,
        "MASTER_ADDR": env["MASTER_ADDR"],
        "MASTER_PORT": env.get("MASTER_PORT", str(DEFAULT_PORT)),
    }


def _join_group(timeout_s: float) -> None:
    """Join the launched job's process group with seqpar-train's helper, which binds this
    process to its LOCAL_RANK device before the first collective (NCCL allows one process
    per device)."""
    from seqpar_train.distributed import init_distributed

    init_distributed(timeout_s=timeout_s)


def _broadcast(value: Any) -> Any:
    import torch.distributed as dist

    message = [value]
    dist.broadcast_object_list(message, src=0)
    return message[0]


def join_stage(
    run_dir: Path,
    stage_name: str,
    *,
    log: Callable[[str], None] = print,
    timeout_s: float = 1800.0,
) -> dict[str, int] | None:
    """Run ``stage_name`` of ``run_dir`` as this process's share of a launched job. Rank 0
    plans, clears a stale folder, writes the manifest and exports; every rank trains.
    Returns rank 0's counts (None on other ranks, or when the stage was already done)."""
    if stage_name not in LAUNCHABLE:
        raise ValueError(f"stage {stage_name!r} is not launched; launched: {LAUNCHABLE}")
    os.environ.update(slurm_to_torch_env(os.environ))
    from mmprolong.stages import default_stages

    recipe = load_run_recipe(run_dir)
    pipeline = Pipeline(default_stages(recipe), run_dir)
    pipeline.index(stage_name)  # a recipe without an SFT stage has no "sft" to join
    _join_group(timeout_s)
    import torch.distributed as dist

    if not dist.is_initialized() and recipe.train.parallel.world_size > 1:
        raise ValueError(
            f"stage {stage_name!r} trains on {recipe.train.parallel.world_size} processes; start "
            "`launch-train` with torchrun or srun on every node (see the stage's launch files)"
        )
    try:
        if not dist.is_initialized():
            return pipeline.run_one(recipe, stage_name, command=sys.argv, log=log)
        if dist.get_rank() == 0:
            return _lead(pipeline, recipe, stage_name, log)
        decision = _broadcast(None)
        if decision != "run":
            if decision != "done":
                raise RuntimeError(f"rank 0 could not start stage {stage_name!r}: {decision}")
            return None
        stage = pipeline.stages[pipeline.index(stage_name)]
        stage.run(pipeline.context(recipe, stage, log))
        return None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _lead(
    pipeline: Pipeline, recipe: Recipe, stage_name: str, log: Callable[[str], None]
) -> dict[str, int] | None:
    """Rank 0: the orchestrator's bookkeeping around the stage; the other ranks wait for its
    word before they touch the stage folder."""
    announced = False

    def announce(will_run: bool) -> None:
        nonlocal announced
        announced = True
        _broadcast("run" if will_run else "done")

    try:
        return pipeline.run_one(recipe, stage_name, command=sys.argv, log=log, on_start=announce)
    except BaseException as error:
        if not announced:
            _broadcast(f"{type(error).__name__}: {error}")
        raise
