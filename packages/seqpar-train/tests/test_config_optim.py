import math

import pytest
import torch

from mmprolong_schemas import Recipe
from mmprolong_schemas.recipe import ScheduleConfig
from mmprolong_schemas.units import B, M
from seqpar_train.config import TrainerConfig, config_table, load_config
from seqpar_train.flops import preset_arch, steps_for_budget, training_flops
from seqpar_train.optim import build_optimizer, build_scheduler, lr_at
from seqpar_train.parallel_dims import ParallelDims


def test_recipe_steps_and_schedule():
    assert steps_for_budget(5 * B, 4 * M) == 1280
    schedule = ScheduleConfig()
    lrs = [lr_at(step, 1280, schedule) for step in range(1280)]
    assert lrs[0] == pytest.approx(1e-5 / 128)  # linear warmup over the first 10% (128 steps)
    assert lrs[127] == pytest.approx(1e-5)
    assert max(lrs) == pytest.approx(1e-5)
    assert lrs[-1] == pytest.approx(1e-6)
    middle = 128 + (1279 - 128) // 2
    assert lrs[middle] == pytest.approx(5.5e-6, rel=2e-3)  # halfway down the cosine
    assert all(a >= b for a, b in zip(lrs[127:], lrs[128:], strict=False))


def test_scheduler_and_optimizer_follow_the_recipe():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    config = TrainerConfig()
    optimizer = build_optimizer(model, config.optimizer, config.schedule)
    assert optimizer.defaults["betas"] == (0.9, 0.95)
    decays = sorted(group["weight_decay"] for group in optimizer.param_groups)
    assert decays == [0.0, 0.1]  # biases and norms are not decayed
    scheduler = build_scheduler(optimizer, 20, config.schedule)
    seen = []
    for _ in range(20):
        seen.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([lr_at(s, 20, config.schedule) for s in range(20)])


def test_config_from_recipe_and_overrides(tmp_path):
    config = TrainerConfig.from_recipe(Recipe(), data={"synthetic": {}})
    assert config.steps == 1280 and config.rows_per_step == 32
    assert (config.parallel.sp, config.parallel.dp_shard, config.parallel.nnodes) == (2, 4, 8)
    assert config.model.rope is not None and config.model.rope.base == 4e6
    path = tmp_path / "c.toml"
    path.write_text('max_length = "64K"\nglobal_batch_tokens = "1M"\n[parallel]\nsp = 4\n')
    loaded = load_config(path, ["parallel.sp=2", "max_steps=7", "output_dir=runs/x"])
    assert (loaded.max_length, loaded.parallel.sp, loaded.steps) == (65536, 2, 7)
    assert ("parallel.sp", "2") in config_table(loaded)
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["parallel.sp"])


def test_mesh_dimensions():
    assert ParallelDims.for_world(64, sp=2, dp_shard=4) == ParallelDims(8, 4, 2)  # the recipe
    dims = ParallelDims.for_world(8, sp=2)
    assert (dims.dp_replicate, dims.dp_shard, dims.dp) == (1, 4, 4)
    with pytest.raises(ValueError, match="does not divide the world size"):
        ParallelDims.for_world(6, sp=4)
    with pytest.raises(ValueError, match="dp_shard 3"):
        ParallelDims.for_world(8, sp=2, dp_shard=3)


def test_causal_attention_flops_are_half_the_non_causal_share():
    arch = preset_arch("qwen2.5-vl-7b")
    one = training_flops(arch, [131072], label_tokens=131072)
    split = training_flops(arch, [65536, 65536], label_tokens=131072)
    # With every token labelled the conventions differ by half the attention and the
    # embedding VeOmni counts as a matmul.
    embedding = 6 * arch.hidden * arch.vocab * 131072
    attention_full = 2 * (one.veomni - one.causal - embedding)
    # Two half-length documents cost half the attention of one long one.
    assert math.isclose(split.veomni - split.causal - embedding, attention_full / 4)
    # ~7.6B matmul parameters: 6 N per token dominates the row's non-attention FLOPs.
    assert 6.5e9 < arch.matmul_params < 8e9
