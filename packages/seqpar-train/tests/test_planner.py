"""The planner: the real training step under FakeTensorMode on a fake process group."""

import json

import pytest
import torch
import torch.distributed as dist

from seqpar_train.flops import arch_from_config, page_row
from seqpar_train.planner import (
    PlanSetup,
    candidate_setups,
    flash_memory_attention,
    flash_profile_attention,
    measure_step,
    plan,
    plan_pair,
    planned_row,
    relative_cost,
    search_setups,
)


def _tiny(family="qwen2.5-vl"):
    from longctx_rope.tiny import tiny_config

    return tiny_config(family)


def _row(config, seq_len=1024):
    shape = page_row(
        arch_from_config(config),
        seq_len=seq_len,
        page_px=(280, 224),
        factor=28 if config.model_type == "qwen2_5_vl" else 32,
        min_pixels=3136,
        max_pixels=12845056,
        answer_tokens=16,
    )
    return planned_row(config, shape, 0)


@pytest.mark.parametrize("causal", [True, False])  # the decoder's, the vision tower's
def test_flash_profile_attention_equals_document_sdpa_with_gradients(causal):
    from seqpar_train.attention import varlen_attention

    torch.manual_seed(0)
    q = torch.randn(12, 4, 8, requires_grad=True)
    k = torch.randn(12, 2, 8, requires_grad=True)
    v = torch.randn(12, 2, 8, requires_grad=True)
    cu = [0, 5, 12]
    ours = flash_profile_attention(q, k, v, cu, 8**-0.5, causal)
    reference = varlen_attention(q, k, v, cu, backend="sdpa", causal=causal)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad(ours.square().sum(), (q, k, v))
    expected = torch.autograd.grad(reference.square().sum(), (q, k, v))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with flash_memory_attention():
        routed = varlen_attention(q, k, v, cu, backend="sdpa", causal=causal)
    torch.testing.assert_close(routed, ours)


def test_flash_profile_saves_o_of_s_not_s_squared():
    """What autograd keeps for backward: q, k, v, out and the log-sum-exp, as flash-attn."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    with FakeTensorMode(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        s, heads, kv, dim = 65536, 4, 2, 64
        q = torch.empty(s, heads, dim, dtype=torch.bfloat16, requires_grad=True)
        k = torch.empty(s, kv, dim, dtype=torch.bfloat16, requires_grad=True)
        v = torch.empty(s, kv, dim, dtype=torch.bfloat16, requires_grad=True)
        flash_profile_attention(q, k, v, [0, s], dim**-0.5)
    expected = 2 * s * (heads + 2 * kv + heads) * dim + 4 * heads * s
    assert sum(saved) == expected  # no S x S term


@pytest.mark.slow
def test_fake_step_agrees_with_the_real_step_on_one_rank():
    """The same step for real (gloo group of one, real tensors) and under fake mode: the
    tracked peaks agree, so the fake path allocates what the real kernels do."""
    config = _tiny()
    row = _row(config)
    options = {
        "sp": 1,
        "fsdp": -1,
        "activation_checkpointing": True,
        "loss_chunk": 64,
    }
    fake = measure_step(config, row, world_size=1, **options)[False]
    from seqpar_train.distributed import free_port

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1
    )
    try:
        torch.manual_seed(0)
        real = measure_step(config, row, world_size=1, fake=False, **options)[False]
    finally:
        dist.destroy_process_group()
    assert real.peak == pytest.approx(fake.peak, rel=0.02)
    assert real.optimizer_state == fake.optimizer_state > 0
    assert fake.vit_activations > 0 and fake.text_activations > 0


@pytest.mark.slow
def test_sharding_and_sp_shrink_the_measured_peak():
    config = _tiny()
    row = _row(config, 2048)
    base = {"activation_checkpointing": True, "loss_chunk": 64}
    alone = measure_step(config, row, world_size=1, sp=1, fsdp=-1, **base)[False]
    sharded = measure_step(config, row, world_size=8, sp=2, fsdp=-1, **base)[False]
    # Parameters, gradients and optimizer state are sharded 8 ways (up to padding).
    assert sharded.optimizer_state == pytest.approx(alone.optimizer_state / 8, rel=0.1)
    assert sharded.text_activations < alone.text_activations
    no_ac = measure_step(
        config, row, world_size=8, sp=2, fsdp=-1, **(base | {"activation_checkpointing": False})
    )[False]
    assert no_ac.text_activations > 2 * sharded.text_activations


def test_gradient_accumulation_holds_every_unsharded_gradient_between_rows():
    """The trainer reduce-scatters only after a step's last micro-row: FSDP keeps each
    unit's unsharded fp32 gradient in between, the whole model's on every rank."""
    from seqpar_train.modeling import model_class

    config = _tiny()
    row = _row(config)
    options = {"world_size": 8, "sp": 2, "fsdp": -1, "activation_checkpointing": True,
               "loss_chunk": 64}  # fmt: skip
    one = measure_step(config, row, **options)[False]
    two = measure_step(config, row, micro_rows=2, **options)[False]
    params = sum(p.numel() for p in model_class(config)(config).parameters())
    assert two.gradients == 4 * params  # fp32 (the reduce dtype), unsharded
    assert two.peak > one.peak + 0.8 * 4 * params


def test_plan_fits_or_not_against_the_gpu_and_names_its_label(tmp_path):
    from mmprolong_schemas import VisionTokenSpec

    config = _tiny()
    vision = VisionTokenSpec(min_pixels=3136, max_pixels=80000)
    setup = PlanSetup(model="tiny", gpus=8, sp=2, seq_len=2048, gpu="H20", answer_tokens=16)
    result = plan(setup, config=config, vision=vision)
    assert result.fits is True and result.capacity_bytes == 96 * 10**9
    assert "estimate" in result.label and result.step_seconds is not None
    tight = plan(
        setup.model_copy(update={"memory_gb": result.memory.peak / 1e9}),
        config=config,
        vision=vision,
    )
    assert tight.fits is False  # the margin keeps 10% free
    assert json.loads(tight.model_dump_json())["memory"]["peak"] == result.memory.peak


def test_search_candidates_are_ordered_fastest_first():
    setup = PlanSetup(model="qwen2.5-vl-7b", gpus=64)
    ordered = sorted(candidate_setups(setup), key=relative_cost)
    first, last = ordered[0], ordered[-1]
    assert (first.sp, first.activation_checkpointing, first.cpu_offload) == (1, False, False)
    assert (last.sp, last.activation_checkpointing, last.cpu_offload) == (8, True, True)
    assert len(ordered) == 16


def test_offload_moves_the_sharded_state_to_the_host_and_adds_its_copies():
    from mmprolong_schemas import VisionTokenSpec

    config = _tiny()
    vision = VisionTokenSpec(min_pixels=3136, max_pixels=80000)
    setup = PlanSetup(model="tiny", gpus=8, sp=2, seq_len=2048, gpu="H20", answer_tokens=16)
    pair = plan_pair(setup, config=config, vision=vision)  # one measured step, both plans
    plain, offloaded = pair[False], pair[True]
    off = offloaded.memory
    assert offloaded.setup.cpu_offload and not plain.setup.cpu_offload
    assert off.optimizer_state == 0 and plain.memory.optimizer_state > 0
    # The host holds at least the sharded fp32 parameters, their gradients and AdamW's two
    # moments: four times the parameter shards.
    assert off.host >= 4 * off.host_parameters > 0
    assert off.offload_staging > 0 and off.peak < plain.memory.peak
    # The copies: two parameter shards in per micro-row (forward, backward), gradients out
    # once; 4M-token steps of 2K rows over 4 data-parallel groups are 512 micro-rows.
    expected = (512 * 2 + 1) * off.host_parameters / 25e9
    assert offloaded.offload_copy_seconds == pytest.approx(expected)
    assert offloaded.step_seconds == pytest.approx(plain.step_seconds + expected)


def test_search_measures_each_sp_and_checkpointing_once_for_both_offload_settings(monkeypatch):
    import seqpar_train.planner as planner
    from mmprolong_schemas import VisionTokenSpec

    measured = []

    def fake_measure(config, row, *, sp, activation_checkpointing, **_):
        measured.append((sp, activation_checkpointing))
        gib = 2**30
        base = 40 * gib // sp - (10 * gib if activation_checkpointing else 0)
        zero = dict.fromkeys(planner.MemoryBreakdown.model_fields, 0)
        return {
            False: planner.MemoryBreakdown(**(zero | {"peak": base + 20 * gib})),
            True: planner.MemoryBreakdown(**(zero | {"peak": base, "host": 30 * gib})),
        }

    monkeypatch.setattr(planner, "measure_step", fake_measure)
    setup = PlanSetup(model="tiny", gpus=4, gpus_per_node=4, seq_len=2048, memory_gb=40.0)
    found = search_setups(setup, config=_tiny(), vision=VisionTokenSpec())
    assert sorted(measured) == sorted({(sp, ac) for sp in (1, 2, 4) for ac in (False, True)})
    assert len(measured) == 6  # not 12: one step serves both offload settings
    # 36 GiB usable: only offload fits at SP 1 (30 GiB with AC); fastest first.
    names = [(p.setup.sp, p.setup.activation_checkpointing, p.setup.cpu_offload) for p in found]
    assert names == sorted(names, key=lambda n: relative_cost(setup.model_copy(
        update={"sp": n[0], "activation_checkpointing": n[1], "cpu_offload": n[2]})))  # fmt: skip
    assert (1, True, True) in names and (1, True, False) not in names
    assert all(p.fits for p in found)


def test_plan_cli_reads_a_checkpoint_folder_and_prints_json(tmp_path):
    from typer.testing import CliRunner

    from seqpar_train.cli import app

    _tiny().save_pretrained(tmp_path)
    # preprocessor_config.json as Qwen2.5-VL checkpoints publish it (min/max_pixels, patch).
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"min_pixels": 3136, "max_pixels": 80000, "patch_size": 14, "merge_size": 2})
    )
    args = ["plan", "--model", str(tmp_path), "--gpus", "4", "--sp", "2", "--seq-len", "1024"]
    result = CliRunner().invoke(app, [*args, "--gpu", "H100", "--json"])
    assert result.exit_code == 0, result.output
    (planned,) = json.loads(result.stdout)
    assert planned["fits"] is True and planned["setup"]["sp"] == 2
    assert planned["memory"]["peak"] > planned["memory"]["optimizer_state"] > 0
    tiny_gpu = CliRunner().invoke(app, [*args, "--memory-gb", "0.001"])
    assert tiny_gpu.exit_code == 1 and "does NOT fit" in tiny_gpu.stdout
    offloaded = CliRunner().invoke(app, [*args, "--gpu", "H100", "--offload", "--link-gbps", "10"])
    assert offloaded.exit_code == 0, offloaded.output
    words = " ".join(offloaded.stdout.split())  # the table may wrap its labels
    assert "offload on" in words and "host memory" in words
    assert "host<->GPU copies" in words and "10 GB/s" in words
