import subprocess
import sys
from importlib import metadata

import pytest
from typer.testing import CliRunner

from seqpar_train import __version__
from seqpar_train.cli import app

runner = CliRunner()


def test_version_matches_distribution() -> None:
    assert __version__ == metadata.version("seqpar-train")
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"seqpar-train {__version__}"


def test_flops_for_the_recipe_on_64_h20() -> None:
    result = runner.invoke(app, ["flops", "--gpus", "64", "--peak-tflops", "148"])
    assert result.exit_code == 0, result.output
    assert "1280" in result.output  # 5B / 4M steps
    assert "causal" in result.output and "GPU-hours" in result.output


def test_train_prints_its_config_and_trains(tmp_path) -> None:
    config = tmp_path / "run.toml"
    config.write_text(
        f'output_dir = "{tmp_path / "run"}"\n'
        'max_length = "256"\nglobal_batch_tokens = 256\nmax_steps = 2\n'
        '[parallel]\nparam_dtype = "float32"\n'
        "[data]\nnum_workers = 0\n[data.synthetic]\ndocs_per_row = 2\nprompt_tokens = 16\n"
        '[model]\ntiny = "qwen3-vl"\n'
    )
    result = runner.invoke(app, ["train", str(config), "checkpoint.every=1"])
    assert result.exit_code == 0, result.output
    assert "seqpar-train config" in result.output and "checkpoint.every" in result.output
    assert (tmp_path / "run" / "checkpoints" / "step-00000002").is_dir()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and '"mfu_causal"' in lines[0]


def test_bad_config_is_a_clear_error(tmp_path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("max_length = 100\nglobal_batch_tokens = 150\n")
    result = runner.invoke(app, ["train", str(config)])
    assert result.exit_code == 2
    assert "whole number" in result.output


@pytest.mark.slow
@pytest.mark.distributed
def test_train_relaunches_itself_through_torchrun_with_sp2(tmp_path) -> None:
    from seqpar_train.distributed import free_port

    config = tmp_path / "run.toml"
    config.write_text(
        f'output_dir = "{tmp_path / "run"}"\n'
        "max_length = 256\nglobal_batch_tokens = 512\nmax_steps = 2\n"
        '[parallel]\nsp = 2\nparam_dtype = "float32"\n'
        "[data]\nnum_workers = 0\n[data.synthetic]\ndocs_per_row = 2\nprompt_tokens = 16\n"
    )
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "seqpar_train.cli",
            "train",
            str(config),
            "--nproc-per-node",
            "2",
            "--master-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "torch.distributed.run" in completed.stderr
    assert (tmp_path / "run" / "checkpoints" / "step-00000002" / "COMPLETE.json").is_file()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2
