"""The vision tower runs our varlen backend over its own windows and images, in one call per
block, and agrees with transformers' own vision attention (its per-window sdpa loop, the
reference: transformers 5 models/qwen2_5_vl and qwen3_vl, VisionAttention.forward)."""

import contextlib

import pytest
import torch

from seqpar_train.attention import backends, document_block_mask
from seqpar_train.modeling import build_model
from seqpar_train.ulysses import VISION_ATTENTION_NAME, install_attention

GRIDS = [[1, 8, 12], [1, 4, 4], [2, 6, 8]]  # several images, one of two frames


def _vision_out(model, pixels, grid):
    visual = model.model.visual
    pixels = pixels.clone().requires_grad_()
    out = visual(pixels, grid_thw=grid).pooler_output
    out.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in visual.named_parameters() if p.grad is not None}
    return out.detach(), pixels.grad, grads


@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl"])
@pytest.mark.parametrize("backend", ["sdpa", "flash"])
def test_vision_tower_matches_transformers_per_window_attention(family, backend, monkeypatch):
    from longctx_rope.tiny import tiny_config

    stack = contextlib.ExitStack()

    if backend == "flash":  # the cast-to-bf16 boundary, through flash-attn's contract fake
        from seqpar_train.contract_fakes import kernel_fakes

        stack.enter_context(kernel_fakes())
    config = tiny_config(family)
    reference = build_model(config, seed=1)  # transformers' default (sdpa, loop per window)
    ours = build_model(config, seed=1)
    install_attention(ours, None, backend)
    assert ours.model.visual.config._attn_implementation == VISION_ATTENTION_NAME
    vision = config.vision_config
    patch_dim = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    grid = torch.tensor(GRIDS)
    pixels = torch.randn(
        int(grid.prod(-1).sum()), patch_dim, generator=torch.Generator().manual_seed(0)
    )

    calls = []
    real = backends.varlen_attention

    def counting(*args, **kwargs):
        calls.append(kwargs.get("causal", True))
        return real(*args, **kwargs)

    monkeypatch.setattr("seqpar_train.ulysses.varlen_attention", counting)
    with stack:
        got = _vision_out(ours, pixels, grid)
    want = _vision_out(reference, pixels, grid)
    assert got[2].keys() == want[2].keys()
    assert calls == [False] * vision.depth  # one non-causal call per block, no window loop
    tolerance = 2e-2 if backend == "flash" else 1e-5
    for got_t, want_t in zip(got[:2], want[:2], strict=True):
        error = (got_t - want_t).abs().max() / want_t.abs().max()
        assert error < tolerance
    for name, grad in want[2].items():
        error = (got[2][name] - grad).abs().max() / grad.abs().max().clamp(min=1e-12)
        assert error < 10 * tolerance, name


def test_non_causal_block_mask_equals_torchs_dense_construction():
    from torch.nn.attention.flex_attention import create_block_mask

    cu = [0, 5, 300, 301, 640, 1000]
    doc = torch.repeat_interleave(
        torch.arange(len(cu) - 1),
        torch.tensor([b - a for a, b in zip(cu[:-1], cu[1:], strict=True)]),
    )

    def same_document(b, h, q_idx, kv_idx):
        return doc[q_idx] == doc[kv_idx]

    ours = document_block_mask(cu, causal=False)
    dense = create_block_mask(same_document, None, None, cu[-1], cu[-1], device="cpu")
    assert torch.equal(ours.to_dense(), dense.to_dense())
    assert torch.equal(ours.full_kv_num_blocks, dense.full_kv_num_blocks)
