"""Multi-node training inside `mmprolong run`, for real on one machine: two "nodes" on
localhost (two torchrun invocations of the written node script, one process each, static
rendezvous at 127.0.0.1, gloo), a tiny model trained with SP = 2 across them, LongPT and
then the SFT stage, each launched the same way; then `run` continues with eval and the report.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmprolong.cli import LAUNCH_EXIT, app
from mmprolong.launch import launch_folder
from mmprolong.orchestrator import AWAITING_LAUNCH, read_manifest
from mmprolong.recipes import apply_overrides, load_recipe, recipe_to_toml

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

runner = CliRunner()

TWO_NODES = {
    "name": "two-nodes",
    "mixture.token_budget": "16K",
    "train.token_budget": "8K",  # 5 steps: 8K tokens trained in partly filled 2K rows
    "train.checkpoint_every": 2,
    "train.parallel": {"sp": 2, "fsdp": 1, "gpus_per_node": 1, "nodes": 2},
    "train.extra_sft": True,
    "sft.token_budget": "4K",  # 3 steps: 4K tokens trained in partly filled 2K rows
    "sft.checkpoint_every": 2,
    "eval.lengths": ["1.5K"],
    "eval.max_new_tokens": 4,
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launch_two_nodes(folder: Path) -> None:
    """Start the written node script as node 0 and node 1 on this machine; wait for both."""
    env = os.environ | {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "OMP_NUM_THREADS": "1",
    }
    nodes = [
        subprocess.Popen(
            ["bash", str(folder / "node.sh"), str(rank)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    for node, output in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, output


def test_run_writes_launch_files_then_continues_after_the_job(tmp_path: Path) -> None:
    recipe_file = tmp_path / "two-nodes.toml"
    recipe = apply_overrides(load_recipe("demo-tiny"), TWO_NODES, "test")
    recipe_file.write_text(recipe_to_toml(recipe))
    run_dir = tmp_path / "run"

    stopped = runner.invoke(app, ["run", str(recipe_file), "--run-dir", str(run_dir)])
    assert stopped.exit_code == LAUNCH_EXIT, stopped.output
    assert "sbatch" in stopped.output and "node.sh" in stopped.output
    folder = launch_folder(run_dir, "train")
    sbatch = (folder / "sbatch.sh").read_text()
    assert "#SBATCH --nodes=2" in sbatch and "srun" in sbatch
    assert (folder / "commands.txt").read_text().count("node.sh") >= 2
    manifest = read_manifest(run_dir / "train")
    assert manifest is not None and manifest.counts.get(AWAITING_LAUNCH) == 1
    status = runner.invoke(app, ["status", str(run_dir)])
    assert "partial" in status.output and "waiting" in status.output
    assert not (run_dir / "eval").exists()

    _launch_two_nodes(folder)

    train = read_manifest(run_dir / "train")
    assert train is not None and train.status == "done"
    assert train.counts["steps"] == 5 and AWAITING_LAUNCH not in train.counts
    assert (run_dir / "train" / "hf" / "config.json").exists()

    # The next run stops again at the SFT stage, which trains on the same two nodes.
    at_sft = runner.invoke(app, ["run", str(recipe_file), "--run-dir", str(run_dir)])
    assert at_sft.exit_code == LAUNCH_EXIT, at_sft.output
    assert read_manifest(run_dir / "train").finished_at == train.finished_at  # type: ignore[union-attr]
    _launch_two_nodes(launch_folder(run_dir, "sft"))
    sft = read_manifest(run_dir / "sft")
    assert sft is not None and sft.status == "done" and sft.counts["steps"] == 3
    assert (run_dir / "sft" / "hf" / "config.json").exists()

    resumed = runner.invoke(app, ["run", str(recipe_file), "--run-dir", str(run_dir)])
    assert resumed.exit_code == 0, resumed.output
    for stage in ("train", "sft"):
        assert read_manifest(run_dir / stage).status == "done"  # type: ignore[union-attr]
    for stage in ("eval", "report"):
        done = read_manifest(run_dir / stage)
        assert done is not None and done.status == "done", stage
