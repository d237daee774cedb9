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
@pytest.mark.parametrize(("family", "sp"), [("qwen2.5-vl", 1), ("qwen3-vl", 2)])
def test_fsdp_two_ranks_equal_single_process_after_three_steps(family, sp):
    for comparison in check_fsdp(family, nproc=2, sp=sp):
        assert comparison.passed, comparison.line()


@pytest.mark.slow
def test_stop_and_resume_reproduces_the_loss_curve(tmp_path):
    whole = train(_config(tmp_path / "whole"))
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
    from longctx_rope import tiny_config

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
