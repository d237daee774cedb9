import pytest
import torch

from seqpar_train.attention import available_backends, resolve_backend, varlen_attention


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
    with pytest.raises(ValueError, match="needs flash-attn"):
        resolve_backend("flash", "cpu")
    with pytest.raises(ValueError, match="CUDA sm80"):
        resolve_backend("torch-varlen", "cpu")
    with pytest.raises(ValueError, match="unknown"):
        resolve_backend("xformers", "cpu")


def test_bad_shapes_are_named():
    q = torch.randn(10, 3, 4)
    with pytest.raises(ValueError, match="multiple of 2 KV heads"):
        varlen_attention(q, torch.randn(10, 2, 4), torch.randn(10, 2, 4), [0, 10])
    with pytest.raises(ValueError, match="cu_seqlens"):
        varlen_attention(q, q, q, [0, 9])
