"""A sharded run of a checkpoint never holds the whole model: built with meta parameters,
sharded by FSDP2, then each rank reads only its rows of each safetensors tensor (2 gloo
ranks on CPU, byte counts of the real tensors at each step)."""

from __future__ import annotations

import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

from seqpar_train import trainer
from seqpar_train.distributed import spawn_local
from seqpar_train.modeling import (
    build_meta_model,
    build_model,
    checkpoint_key_candidates,
    parameters_on_meta,
)

# Spawned ranks unpickle their worker by module name, and pytest's importlib mode gives test
# files names no child can import: the worker lives in a plain module of this folder, put on
# sys.path here (spawned children inherit the parent's sys.path).
sys.path.insert(0, str(Path(__file__).parent))
from sharded_load_worker import sharded_build_worker, sharded_config


@pytest.mark.distributed
def test_each_rank_loads_only_its_shard_of_the_checkpoint(tmp_path: Path) -> None:
    from longctx_rope.tiny import tiny_config

    reference = build_model(tiny_config("qwen2.5-vl"), seed=3)
    reference.save_pretrained(tmp_path / "ckpt")
    ranks = spawn_local(sharded_build_worker, 2, str(tmp_path / "ckpt"), str(tmp_path / "run"))

    expected = dict(reference.named_parameters())
    total = sum(p.nbytes for p in expected.values())
    # A unit is the largest FSDP unit's parameters; the embedding (root) dominates here.
    largest_tensor = max(p.nbytes for p in expected.values())
    for rank in ranks:
        assert rank["real_param_bytes"] == 0  # built with meta parameters
        reads = rank["reads"]
        assert len(reads) == len(expected)
        # Every read is this rank's rows only: never a whole tensor that was split.
        assert all(read == local for _, read, local in reads)
        assert sum(read for _, read, _ in reads) <= total / 2 + largest_tensor
        assert rank["held"] <= total / 2 + largest_tensor
        # The weights are the checkpoint's, whoever loaded which rows.
        for name, tensor in rank["full"].items():
            torch.testing.assert_close(tensor, expected[name].detach(), rtol=0, atol=0)
    assert sum(rank["held"] for rank in ranks) <= total + 2 * largest_tensor


def test_meta_build_holds_no_weights_and_keeps_real_rotary_buffers(tmp_path: Path) -> None:
    from longctx_rope.tiny import tiny_config

    reference = build_model(tiny_config("qwen2.5-vl"), seed=3)
    reference.save_pretrained(tmp_path)
    meta = build_meta_model(tmp_path)
    assert all(p.is_meta for p in meta.parameters())
    buffers = dict(reference.named_buffers())
    for name, buffer in meta.named_buffers():
        torch.testing.assert_close(buffer, buffers[name])
    # The patch is undone on leaving the context.
    with parameters_on_meta():
        pass
    assert not torch.nn.Linear(2, 2).weight.is_meta


def test_checkpoint_keys_of_both_layouts() -> None:
    assert checkpoint_key_candidates("model.language_model.layers.0.mlp.up_proj.weight") == [
        "model.language_model.layers.0.mlp.up_proj.weight",
        "model.layers.0.mlp.up_proj.weight",
    ]
    assert checkpoint_key_candidates("model.visual.blocks.0.attn.qkv.weight")[1] == (
        "visual.blocks.0.attn.qkv.weight"
    )
    assert checkpoint_key_candidates("lm_head.weight") == ["lm_head.weight"]
    wrapped = "model.visual.blocks.0._checkpoint_wrapped_module.norm1.weight"
    assert checkpoint_key_candidates(wrapped)[1] == "visual.blocks.0.norm1.weight"


class _Built(Exception):
    pass


@pytest.mark.parametrize("offload", [True, False])
def test_cpu_offload_builds_on_the_cpu_never_on_the_gpu(tmp_path: Path, offload: bool) -> None:
    """With CPU offload the model is built (and its shards materialised) on the CPU; only
    fully_shard moves a unit at a time to the GPU. Checked at the build call on a fake CUDA
    machine (the build is stopped there: this CPU cannot run CUDA)."""
    from seqpar_train.contract_fakes import kernel_fakes

    config = sharded_config(str(tmp_path), str(tmp_path / "run"))
    config.parallel.cpu_offload = offload
    seen: list[tuple[torch.device, bool]] = []

    def record(config, device, meta=False):
        seen.append((device, meta))
        raise _Built

    mesh = mock.Mock(sp_group=None)
    with (
        kernel_fakes(),
        mock.patch.object(trainer, "build_training_model", record),
        pytest.raises(_Built),
    ):
        trainer._prepare_model(config, torch.device("cuda", 1), mesh)
    assert seen == [(torch.device("cpu") if offload else torch.device("cuda", 1), True)]
