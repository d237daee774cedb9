"""The GPU-only paths, checked on CPU through contract fakes (seqpar_train.contract_fakes):
process groups bind one device per local rank before any collective (NCCL's rule), the
kernel backends get fp16/bf16 contiguous inputs and int32 boundaries on their device, and
``auto`` chooses by capability (torch varlen_attn signature, flash-attn's import, sm80+)."""

import pytest
import torch
import torch.distributed as dist

from seqpar_train.attention import backends as attention
from seqpar_train.attention import choose_backend, varlen_attention
from seqpar_train.contract_fakes import (
    ContractViolation,
    FakeNcclNode,
    flash_attn_varlen_func,
    kernel_fakes,
    varlen_attn_2_10,
    varlen_attn_2_11,
)
from seqpar_train.distributed import init_distributed
from seqpar_train.selfcheck import BF16_TOLERANCE, check_kernels

CU = [0, 37, 40, 101, 160]


def _packed(q_heads=4, kv_heads=2, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    total = CU[-1]
    return (
        torch.randn(total, q_heads, 16, generator=generator, dtype=dtype),
        torch.randn(total, kv_heads, 16, generator=generator, dtype=dtype),
        torch.randn(total, kv_heads, 16, generator=generator, dtype=dtype),
    )


# --- process groups -----------------------------------------------------------------------


def test_each_local_rank_binds_its_own_device_before_the_first_collective():
    node = FakeNcclNode(gpus=4)
    for rank in range(4):
        with node.process(rank, world=4):
            assert init_distributed(timeout_s=60)
            message = [f"from {rank}"]
            dist.broadcast_object_list(message, src=0)
            assert message == ["from 0"]
    assert node.backends == dict.fromkeys(range(4), "nccl")
    assert {rank: calls[0] for rank, calls in node.set_device_calls.items()} == {
        0: 0,
        1: 1,
        2: 2,
        3: 3,
    }
    assert all(node.bound_before_first_collective(rank) for rank in range(4))
    assert all(events[0] == f"set_device({rank})" for rank, events in node.events.items())


def test_the_fake_enforces_nccls_one_device_per_rank_rule():
    # What launch.py did before: init_process_group("nccl") without set_device.
    node = FakeNcclNode(gpus=2)
    with node.process(0, world=2):
        dist.init_process_group("nccl")
        dist.broadcast_object_list(["x"], src=0)
    with node.process(1, world=2):
        dist.init_process_group("nccl")
        with pytest.raises(ContractViolation, match="Duplicate GPU"):
            dist.broadcast_object_list([None], src=0)
    assert not node.bound_before_first_collective(1)


def test_cpu_offload_joins_nccl_for_cuda_and_gloo_for_cpu_tensors():
    node = FakeNcclNode(gpus=2)
    with node.process(0, world=2):
        init_distributed(cpu_offload=True)
    assert node.backends[0] == "cuda:nccl,cpu:gloo"


def test_a_local_rank_without_a_device_is_named():
    node = FakeNcclNode(gpus=2)
    with (
        node.process(3, world=4, local_rank=3),
        pytest.raises(RuntimeError, match="LOCAL_RANK 3 has no CUDA device"),
    ):
        init_distributed()


# --- kernel contracts ----------------------------------------------------------------------


def test_flash_fake_rejects_what_flash_attn_rejects():
    q, k, v = _packed(dtype=torch.bfloat16)
    cu = torch.tensor(CU, dtype=torch.int32)
    flash_attn_varlen_func(q, k, v, cu, cu, 61, 61, causal=True)
    with pytest.raises(ContractViolation, match="fp16 and bf16"):
        flash_attn_varlen_func(q.float(), k.float(), v.float(), cu, cu, 61, 61)
    with pytest.raises(ContractViolation, match="same dtype"):
        flash_attn_varlen_func(q, k.float(), v, cu, cu, 61, 61)
    with pytest.raises(ContractViolation, match="int32"):
        flash_attn_varlen_func(q, k, v, cu.long(), cu.long(), 61, 61)
    strided = torch.randn(160, 4, 32, dtype=torch.bfloat16)[..., ::2]
    with pytest.raises(ContractViolation, match="contiguous last dim"):
        flash_attn_varlen_func(strided, k, v, cu, cu, 61, 61)
    with pytest.raises(ContractViolation, match="max_seqlen_q"):
        flash_attn_varlen_func(q, k, v, cu, cu, 10, 10)


def test_varlen_attn_fakes_have_each_torch_versions_signature():
    q, k, v = _packed(q_heads=2, kv_heads=2, dtype=torch.bfloat16)
    cu = torch.tensor(CU, dtype=torch.int32)
    with pytest.raises(TypeError, match="scale"):
        varlen_attn_2_10(q, k, v, cu, cu, 61, 61, scale=0.25)
    with pytest.raises(TypeError, match="enable_gqa"):
        varlen_attn_2_11(q, k, v, cu, cu, 61, 61, enable_gqa=True)
    gq, gk, gv = _packed(q_heads=4, kv_heads=2, dtype=torch.bfloat16)
    with pytest.raises(ContractViolation, match="same number of heads"):
        varlen_attn_2_11(gq, gk, gv, cu, cu, 61, 61, window_size=(-1, 0))


@pytest.mark.parametrize("backend", ["flash", "torch-varlen"])
@pytest.mark.parametrize("torch_version", ["2.11", "2.13"])
@pytest.mark.parametrize(
    "dtypes",
    [
        (torch.float32, torch.float32, torch.float32),  # the selfcheck's fp32 model
        (torch.float32, torch.float32, torch.bfloat16),  # rotary q/k in fp32, v in bf16
        (torch.float16, torch.float16, torch.float16),
    ],
)
def test_kernel_backends_cast_at_the_boundary_and_back(backend, torch_version, dtypes):
    q, k, v = (t.to(d) for t, d in zip(_packed(), dtypes, strict=True))
    q.requires_grad_()
    reference = varlen_attention(q.double(), k.double(), v.double(), CU, backend="sdpa")
    with kernel_fakes(torch_varlen=torch_version):
        out = varlen_attention(q, k, v, CU, backend=backend)
    assert out.dtype == q.dtype
    error = (out.double() - reference).abs().max() / reference.abs().max()
    assert error < BF16_TOLERANCE
    out.sum().backward()
    assert q.grad is not None and q.grad.dtype == q.dtype


# --- choosing a backend by capability -------------------------------------------------------


def test_auto_prefers_flash_on_an_sm80_gpu_with_flash_attn_2():
    with kernel_fakes(capability=(8, 0), flash="2"):
        choice = choose_backend("auto", "cuda")
    assert choice.name == "flash" and choice.rejected == {}


def test_flash_attn_4_namespace_package_is_not_flash_attn_2():
    with kernel_fakes(flash="4", torch_varlen="2.13"):
        choice = choose_backend("auto", "cuda")
    assert choice.name == "torch-varlen"
    assert "flash_attn_varlen_func" in choice.rejected["flash"]


def test_torch_2_10_varlen_attn_is_rejected_for_its_signature():
    with kernel_fakes(flash=None, torch_varlen="2.10"):
        choice = choose_backend("auto", "cuda")
        with pytest.raises(ValueError, match="takes no scale or window_size"):
            choose_backend("torch-varlen", "cuda")
    assert choice.name == "sdpa"
    assert "not installed" in choice.rejected["flash"]
    assert "no scale or window_size" in choice.rejected["torch-varlen"]
    assert "not flash: flash-attn is not installed" in choice.explain()


def test_pre_ampere_gpus_get_neither_kernel():
    with kernel_fakes(capability=(7, 5), flash="2", torch_varlen="2.13"):
        choice = choose_backend("auto", "cuda")
    assert choice.name == "sdpa"
    assert all("sm80+" in reason for reason in choice.rejected.values())


def test_no_kernel_on_the_cpu():
    choice = choose_backend("auto", "cpu")
    assert choice.name == "sdpa" and set(choice.rejected) == {"flash", "torch-varlen"}
    assert attention.available_backends("cpu") == ["sdpa"]


# --- the selfcheck's kernel check, against the fakes ----------------------------------------


@pytest.mark.parametrize("torch_version", ["2.11", "2.13"])
def test_selfcheck_checks_the_bf16_kernels_training_uses(torch_version):
    with kernel_fakes(torch_varlen=torch_version):
        # flex trains on CUDA only (no CPU backward), and these tensors are on the CPU.
        names = [n for n in attention.available_backends("cuda") if n != "flex"]
        comparisons = check_kernels("cpu", backends=names)
    assert [c.name.split()[0] for c in comparisons] == ["flash", "torch-varlen", "sdpa"]
    assert all(c.passed for c in comparisons), [c.line() for c in comparisons]
    # bf16, not fp32: the check would be meaningless at a tolerance bf16 cannot meet.
    assert all(c.tolerance == BF16_TOLERANCE and c.max_rel > 1e-5 for c in comparisons[:2])


def test_selfcheck_catches_a_wrong_kernel(monkeypatch):
    def off_by_one(q, k, v, cu_seqlens, scale, causal):  # one token past the causal edge
        return attention._sdpa_loop(q, k.roll(-1, 0), v.roll(-1, 0), cu_seqlens, scale, causal)

    monkeypatch.setitem(attention._IMPLEMENTATIONS, "flash", off_by_one)
    (comparison,) = check_kernels("cpu", backends=["flash"])
    assert not comparison.passed
