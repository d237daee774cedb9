"""The training loop: FSDP2 against one process, resume after a stop, refused checkpoints."""

import shutil

import pytest

from seqpar_train.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from seqpar_train.config import load_config
from seqpar_train.forward import PackedLossModel
from seqpar_train.metrics import read_metrics
from seqpar_train.modeling import build_model
from seqpar_train.selfcheck import check_fsdp
from seqpar_train.trainer import train


def _config(out, *extra):
    return load_config(
        None,
        [
            f"output_dir={out}",
            "max_length=256",
            "global_batch_tokens=512",
            "max_steps=6",
            "parallel.param_dtype=float32",
            "data.num_workers=0",
            "checkpoint.every=2",
            "schedule.peak_lr=1e-3",
            "schedule.final_lr=1e-4",
            "data.synthetic.docs_per_row=3",
            "data.synthetic.prompt_tokens=20",
            *extra,
        ],
    )


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize(
    ("family", "nproc", "sp", "dp_shard"),
    [
        ("qwen2.5-vl", 2, 1, -1),  # FSDP over 2 data-parallel ranks
        ("qwen3-vl", 2, 2, -1),  # FSDP over an SP group of 2
        ("qwen2.5-vl", 4, 2, 1),  # HSDP: 2 replicas x (shard 1 x SP 2)
    ],
)
def test_fsdp_ranks_equal_single_process_after_three_steps(family, nproc, sp, dp_shard):
    comparisons = check_fsdp(family, nproc=nproc, sp=sp, dp_shard=dp_shard)
    assert [c.name.rsplit(" ", 1)[-1] for c in comparisons] == ["losses", "norms", "params"]
    for comparison in comparisons:
        assert comparison.passed, comparison.line()
        if sp == 1:
            # Same per-row gradients added in the same order, clipped by the same norm:
            # nothing but the sharding differs, and the result is bitwise the same.
            assert comparison.max_abs == 0.0, comparison.line()


def test_clipping_norm_does_not_depend_on_how_gradients_are_split():
    import torch

    from seqpar_train.optim import clip_grad_norm

    torch.manual_seed(0)
    grads = [torch.randn(1000) * 10 ** float(e) for e in range(-4, 3)]
    whole = [torch.nn.Parameter(torch.zeros(1000)) for _ in grads]
    halves = [torch.nn.Parameter(torch.zeros(500)) for _ in range(2 * len(grads))]
    for param, grad in zip(whole, grads, strict=True):
        param.grad = grad.clone()
    for index, grad in enumerate(grads):
        halves[2 * index].grad = grad[:500].clone()
        halves[2 * index + 1].grad = grad[500:].clone()
    norm = clip_grad_norm(whole, 1.0)
    assert norm == clip_grad_norm(halves, 1.0)
    assert norm == pytest.approx(float(torch.cat(grads).double().norm()), rel=1e-7)
    clipped = torch.cat([p.grad for p in whole])
    assert torch.equal(clipped, torch.cat([p.grad for p in halves]))
    assert float(clipped.double().norm()) == pytest.approx(1.0, rel=1e-6)
    small = torch.nn.Parameter(torch.zeros(3))
    small.grad = torch.tensor([0.1, 0.2, 0.2])
    assert clip_grad_norm([small], 1.0) == pytest.approx(0.3)
    assert small.grad.tolist() == pytest.approx([0.1, 0.2, 0.2])  # under the limit: untouched


@pytest.mark.slow
def test_stop_and_resume_reproduces_the_loss_curve(tmp_path, capsys):
    whole = train(_config(tmp_path / "whole"))
    log = capsys.readouterr().err  # the chosen attention backend, and why not the better ones
    assert "attention backend sdpa (asked for auto)" in log
    assert "not flash: needs a CUDA device" in log and "not torch-varlen:" in log
    first = train(_config(tmp_path / "cut", "stop_after_steps=3"))
    assert first.stopped_early and first.steps_done == 3
    assert latest_checkpoint(tmp_path / "cut" / "checkpoints").name == "step-00000003"
    resumed = train(_config(tmp_path / "cut"))
    assert resumed.steps_done == 6 and len(resumed.losses) == 3
    curve = [r["loss"] for r in read_metrics(tmp_path / "cut" / "metrics.jsonl")]
    assert len(curve) == 6
    assert curve == pytest.approx(whole.losses, rel=1e-6, abs=1e-6)
    lrs = [r["lr"] for r in read_metrics(tmp_path / "cut" / "metrics.jsonl")]
    assert lrs == pytest.approx(
        [r["lr"] for r in read_metrics(tmp_path / "whole" / "metrics.jsonl")]
    )
    assert (tmp_path / "cut" / "loss_curve.png").stat().st_size > 0


def test_half_written_and_corrupt_checkpoints_are_never_loaded(tmp_path):
    train(_config(tmp_path, "max_steps=2"))
    root = tmp_path / "checkpoints"
    good = latest_checkpoint(root)
    assert good is not None and good.name == "step-00000002"
    # A kill during a save leaves a partial directory, or a final name without the marker.
    shutil.copytree(good, root / "step-00000004.partial-deadbeef")
    shutil.copytree(good, root / "step-00000005")
    (root / "step-00000005" / "COMPLETE.json").unlink()
    assert latest_checkpoint(root) == good
    config = _config(tmp_path)
    model = PackedLossModel(build_model(_tiny(config)))
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        load_checkpoint(root / "step-00000005", model, None)
    # A file truncated after the save: refused by name, and skipped when resuming.
    data_file = next(p for p in good.glob("*.distcp"))
    data_file.write_bytes(data_file.read_bytes()[:10])
    with pytest.raises(CheckpointError, match=f"corrupt: {data_file.name}"):
        load_checkpoint(good, model, None)
    assert latest_checkpoint(root) is None


def _tiny(config):
    from longctx_rope.tiny import tiny_config

    return tiny_config(config.model.tiny)


def test_sigterm_is_caught_and_agreed():
    import os
    import signal

    import torch

    from seqpar_train.checkpoint import StopSignal

    with StopSignal() as stop:
        assert not stop.agreed(torch.device("cpu"))
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.agreed(torch.device("cpu"))
    assert signal.getsignal(signal.SIGTERM) is not stop._handle


def test_cpu_offload_on_a_cpu_run_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cpu_offload"):
        train(_config(tmp_path, "parallel.cpu_offload=true"))


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_curve(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    overrides = ["max_steps=8", "checkpoint.every=2", "checkpoint.keep=1"]
    whole = train(_config(tmp_path / "whole", *overrides))
    config = tmp_path / "run.toml"
    config.write_text("")
    args = [sys.executable, "-m", "seqpar_train.cli", "train", str(config)]
    cli_overrides = [
        f"output_dir={tmp_path / 'killed'}",
        "max_length=256",
        "global_batch_tokens=512",
        "parallel.param_dtype=float32",
        "data.num_workers=0",
        "schedule.peak_lr=1e-3",
        "schedule.final_lr=1e-4",
        "data.synthetic.docs_per_row=3",
        "data.synthetic.prompt_tokens=20",
        *overrides,
    ]
    process = subprocess.Popen(
        [*args, *cli_overrides], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert process.wait(timeout=60) == -signal.SIGKILL, "the run ended before it was killed"
    resumed = train(load_config(None, cli_overrides))
    assert resumed.steps_done == 8 and len(resumed.losses) < 8
    curve = [r["loss"] for r in read_metrics(metrics)]
    assert curve == pytest.approx(whole.losses, rel=1e-6, abs=1e-6)
