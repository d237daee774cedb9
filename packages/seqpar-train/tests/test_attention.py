import pytest
import torch

from seqpar_train.attention import (
    available_backends,
    document_block_mask,
    resolve_backend,
    varlen_attention,
)


def _dense_reference(q, k, v, cu):
    """Softmax attention with an explicit block-diagonal causal mask."""
    total = q.shape[0]
    doc = torch.zeros(total, dtype=torch.long)
    for i, (a, b) in enumerate(zip(cu[:-1], cu[1:], strict=True)):
        doc[a:b] = i
    allowed = (doc[:, None] == doc[None, :]) & torch.ones(total, total).tril().bool()
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    scores = torch.einsum("qhd,khd->hqk", q, k) * q.shape[-1] ** -0.5
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), v)


CPU_BACKENDS = available_backends("cpu", training=False)
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize(("q_heads", "kv_heads"), [(4, 4), (4, 2), (6, 1)])
def test_backends_match_dense_reference(backend, q_heads, kv_heads):
    torch.manual_seed(0)
    cu = [0, 37, 40, 101, 128]
    q = torch.randn(128, q_heads, 16)
    k, v = torch.randn(128, kv_heads, 16), torch.randn(128, kv_heads, 16)
    out = varlen_attention(q, k, v, cu, backend=backend)
    torch.testing.assert_close(out, _dense_reference(q, k, v, cu), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", available_backends("cpu", training=True))
def test_training_backends_give_reference_gradients(backend):
    torch.manual_seed(1)
    cu = [0, 50, 51, 130, 200]
    base = [torch.randn(200, 4, 8), torch.randn(200, 2, 8), torch.randn(200, 2, 8)]
    weights = torch.linspace(-1, 1, 200 * 4 * 8).view(200, 4, 8)
    grads = []
    for attention in (lambda q, k, v: varlen_attention(q, k, v, cu, backend=backend), None):
        q, k, v = (t.clone().requires_grad_() for t in base)
        out = attention(q, k, v) if attention else _dense_reference(q, k, v, cu)
        (out * weights).sum().backward()
        grads.append((q.grad, k.grad, v.grad))
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_flex_is_forward_only_on_cpu():
    assert "flex" not in available_backends("cpu", training=True)
    assert resolve_backend("flex", "cpu", training=False) == "flex"


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_documents_never_attend_across_boundaries(backend):
    torch.manual_seed(2)
    cu = [0, 30, 70, 96]
    q, k, v = torch.randn(96, 2, 8), torch.randn(96, 2, 8), torch.randn(96, 2, 8)
    out = varlen_attention(q, k, v, cu, backend=backend)
    # Perturb the middle document only: the first and last documents must not move at all.
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    for t in (q2, k2, v2):
        t[30:70] += torch.randn_like(t[30:70])
    out2 = varlen_attention(q2, k2, v2, cu, backend=backend)
    assert torch.equal(out[:30], out2[:30])
    assert torch.equal(out[70:], out2[70:])
    assert not torch.allclose(out[30:70], out2[30:70])


def test_resolve_backend_rules():
    assert resolve_backend("auto", "cpu") == "sdpa"
    with pytest.raises(ValueError, match="no CPU backward"):
        resolve_backend("flex", "cpu")
    with pytest.raises(ValueError, match="flash'? cannot run here: needs a CUDA device"):
        resolve_backend("flash", "cpu")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_backend("torch-varlen", "cpu")
    with pytest.raises(ValueError, match="unknown"):
        resolve_backend("xformers", "cpu")


def test_bad_shapes_are_named():
    q = torch.randn(10, 3, 4)
    with pytest.raises(ValueError, match="multiple of 2 KV heads"):
        varlen_attention(q, torch.randn(10, 2, 4), torch.randn(10, 2, 4), [0, 10])
    with pytest.raises(ValueError, match="cu_seqlens"):
        varlen_attention(q, q, q, [0, 9])


@pytest.mark.parametrize(
    "cu",
    [
        [0, 700],  # one document, last block partial
        [0, 128, 256, 640],  # boundaries on block edges
        [0, 1, 130, 131, 400, 900, 901, 1000],  # one-token documents, boundaries inside blocks
    ],
)
def test_document_block_mask_equals_torchs_dense_construction(cu):
    """Our O(S) construction against torch's create_block_mask over the same mask_mod (which
    evaluates it on the dense S x S grid): the same token mask, and no block it calls empty
    that holds an allowed token; full blocks are exactly the all-allowed ones."""
    from torch.nn.attention.flex_attention import create_block_mask

    total = cu[-1]
    doc = torch.repeat_interleave(
        torch.arange(len(cu) - 1),
        torch.tensor([b - a for a, b in zip(cu[:-1], cu[1:], strict=True)]),
    )

    def document_causal(b, h, q_idx, kv_idx):
        return (doc[q_idx] == doc[kv_idx]) & (kv_idx <= q_idx)

    ours = document_block_mask(cu)
    dense = create_block_mask(document_causal, None, None, total, total, device="cpu")
    assert torch.equal(ours.to_dense(), dense.to_dense())
    assert torch.equal(ours.full_kv_num_blocks, dense.full_kv_num_blocks)
    allowed = (doc[:, None] == doc[None, :]) & torch.ones(total, total).tril().bool()
    q_idx, kv_idx = torch.meshgrid(torch.arange(total), torch.arange(total), indexing="ij")
    assert torch.equal(ours.mask_mod(0, 0, q_idx, kv_idx), allowed)


def test_flex_compiles_once_for_varying_row_lengths():
    """Rows change length every step: the compiled flex path must not recompile for each
    (dynamo's frame counter, with a counting backend: recompiles are decided at capture, so
    this runs on CPU). torch 2.13 specialises the block tables' sizes once (the second length
    recompiles, with every size dynamic), then never again; a static compile recompiled for
    every length until the recompile limit (8), then fell back to the eager, dense path."""
    import torch._dynamo
    from torch._dynamo.testing import CompileCounter
    from torch.nn.attention.flex_attention import flex_attention

    torch._dynamo.reset()
    counter = CompileCounter()
    kernel = torch.compile(flex_attention, dynamic=True, backend=counter)
    counts = []
    for total in (256, 384, 520, 700, 900, 1300, 1301, 2000, 2100, 3000):
        cu = [0, total // 3, total - 5, total]
        q = torch.randn(1, 2, total, 16)
        mask = document_block_mask(cu)
        out = kernel(q, q, q, block_mask=mask)
        reference = varlen_attention(q[0].transpose(0, 1), *(q[0].transpose(0, 1),) * 2, cu)
        torch.testing.assert_close(out[0].transpose(0, 1), reference, rtol=1e-4, atol=1e-4)
        counts.append(counter.frame_count)
    assert counts[1:] == [2] * (len(counts) - 1)
