"""The SP=1 path (piecewise forward, Ulysses attention, labelled-only CE) against a plain
transformers forward/backward of the same model on the same packed row."""

import pytest
import torch
import torch.nn.functional as F

from longctx_rope.tiny import tiny_config
from seqpar_train.batch import shift_labels
from seqpar_train.forward import PackedLossModel, row_loss
from seqpar_train.modeling import build_model
from seqpar_train.selfcheck import compare
from seqpar_train.synthetic import MULTI_IMAGE_DOCS, synthetic_row
from seqpar_train.ulysses import install_attention


def _hf_loss(model, row):
    out = model(
        input_ids=row.input_ids[None],
        position_ids=row.position_ids[:, None],
        pixel_values=row.pixel_values,
        image_grid_thw=row.image_grid_thw,
        use_cache=False,
    )
    targets = shift_labels(row.labels, row.cu_seqlens)
    return F.cross_entropy(out.logits[0].float(), targets, reduction="sum")


@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl"])
def test_sp1_equals_plain_transformers_forward_backward(family):
    config = tiny_config(family)
    reference = build_model(config, seed=3)
    ours = build_model(config, seed=3)
    row = synthetic_row(config, MULTI_IMAGE_DOCS, seed=1)

    _hf_loss(reference, row).backward()
    install_attention(ours, None, "sdpa")
    out = row_loss(ours, row, loss_chunk=7)  # several chunks
    out.loss_sum.backward()

    want = _hf_loss(reference, row).detach()
    torch.testing.assert_close(out.loss_sum.detach(), want, rtol=1e-5, atol=1e-5)
    assert out.label_tokens == (shift_labels(row.labels, row.cu_seqlens) != -100).sum()

    def grads(model):
        return {
            name: p.grad if p.grad is not None else torch.zeros_like(p)
            for name, p in model.named_parameters()
        }

    # fp32 tolerance relative to each tensor's scale (elementwise would flag rounding at ~0)
    comparison = compare("SP=1 vs HF", grads(ours), grads(reference), 1e-5)
    assert comparison.passed, comparison.line()


def test_packed_rows_equal_documents_run_alone():
    """Packing must not leak: the loss of a packed row is the sum of its documents' losses."""
    config = tiny_config("qwen2.5-vl")
    model = build_model(config, seed=0)
    install_attention(model, None, "sdpa")
    docs = MULTI_IMAGE_DOCS
    packed = synthetic_row(config, docs, seed=5)
    with torch.no_grad():
        total = row_loss(model, packed).loss_sum
        # Rebuild each document alone with the same tokens: slice the packed row.
        parts = 0.0
        start, image = 0, 0
        for (_, images, _), length in zip(docs, packed.doc_lens, strict=True):
            from seqpar_train.batch import PackedRow

            grids = packed.image_grid_thw[image : image + len(images)] if images else None
            patches = packed.image_grid_thw[:image].prod(-1).sum() if image else 0
            count = int(grids.prod(-1).sum()) if images else 0
            alone = PackedRow(
                packed.input_ids[start : start + length],
                packed.labels[start : start + length],
                packed.position_ids[:, start : start + length],
                [length],
                packed.pixel_values[patches : patches + count] if images else None,
                grids,
            )
            parts += row_loss(model, alone).loss_sum
            start += length
            image += len(images)
    torch.testing.assert_close(total, parts, rtol=1e-5, atol=1e-5)


def test_wrapper_returns_loss_and_token_counts():
    config = tiny_config("qwen3-vl")
    model = build_model(config, seed=0)
    install_attention(model, None, "sdpa")
    wrapper = PackedLossModel(model, pad_token_id=0)
    row = synthetic_row(config, MULTI_IMAGE_DOCS, seed=2)
    loss_sum, labels = wrapper(row)
    assert loss_sum.requires_grad and labels > 0
    assert wrapper.last_tokens == (row.num_tokens, 0)


def test_attention_without_boundaries_is_a_clear_error():
    config = tiny_config("qwen2.5-vl")
    model = build_model(config, seed=0)
    install_attention(model, None, "sdpa")
    with pytest.raises(ValueError, match="document boundaries"):
        model(input_ids=torch.tensor([[1, 2, 3]]), use_cache=False)
