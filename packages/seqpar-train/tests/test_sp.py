"""Ulysses SP=2 (two gloo processes) against one process on the same packed rows."""

import math

import pytest
import torch

from seqpar_train.attention import varlen_attention
from seqpar_train.batch import IGNORE_INDEX, PackedRow, shard_row, shift_labels
from seqpar_train.selfcheck import Scenario, check_sp, sp_loss_and_grads
from seqpar_train.synthetic import MULTI_IMAGE_DOCS
from seqpar_train.ulysses import _adapt_heads, plan_heads

SCENARIOS = [
    Scenario("qwen2.5-vl"),
    # One image in the row: the second rank owns none and encodes a dummy; odd length pads.
    Scenario("qwen2.5-vl", documents=((7, ((4, 4),), 5), (30, (), 6))),
    # One KV head for SP 2: KV heads are repeated.
    Scenario("qwen2.5-vl", text_overrides=(("num_key_value_heads", 1),)),
    Scenario("qwen3-vl"),
    # Three query heads for SP 2: dummy heads are padded.
    Scenario("qwen3-vl", text_overrides=(("num_attention_heads", 3), ("num_key_value_heads", 1))),
    # A text-only row: every rank encodes a dummy image and still joins every collective.
    Scenario("qwen3-vl", documents=((21, (), 5), (14, (), 4))),
    # No labelled token anywhere: loss 0 and zero gradients, never NaN.
    Scenario("qwen2.5-vl", documents=((9, ((4, 4),), 0), (12, ((2, 4),), 0))),
]


@pytest.mark.slow
@pytest.mark.distributed
def test_sp2_equals_single_process_loss_and_every_gradient():
    comparisons = check_sp(SCENARIOS, sp=2)
    for scenario, comparison in zip(SCENARIOS, comparisons, strict=True):
        assert comparison.passed, (scenario, comparison.line())


def test_zero_label_row_gives_zero_loss_not_nan():
    loss, grads = sp_loss_and_grads(SCENARIOS[-1])
    assert loss == 0.0
    assert all(torch.isfinite(g).all() and not g.any() for g in grads.values())


def test_head_plans():
    assert plan_heads(28, 4, 2).kv_repeat == 1  # Qwen2.5-VL-7B at SP 2: as is
    assert plan_heads(32, 4, 8).kv_repeat == 2  # 4 KV heads for 8 ranks: repeat twice
    qwen7b_sp8 = plan_heads(28, 4, 8)  # 28 query heads do not split 8 ways: pad to 32
    assert (qwen7b_sp8.kv_repeat, qwen7b_sp8.pad_heads) == (7, 4)
    assert plan_heads(4, 1, 2).kv_repeat == 2
    padded = plan_heads(3, 1, 2)
    assert (padded.kv_repeat, padded.pad_heads) == (3, 1)
    with pytest.raises(ValueError, match="larger than the model's 4 attention heads"):
        plan_heads(4, 2, 8)


@pytest.mark.parametrize(
    ("q_heads", "kv_heads", "sp"), [(4, 1, 2), (3, 1, 2), (6, 2, 4), (5, 5, 4)]
)
def test_adapted_heads_do_not_change_attention(q_heads, kv_heads, sp):
    torch.manual_seed(0)
    cu = [0, 11, 24]
    q, k, v = (
        torch.randn(24, q_heads, 8),
        torch.randn(24, kv_heads, 8),
        torch.randn(24, kv_heads, 8),
    )
    plan = plan_heads(q_heads, kv_heads, sp)
    qa, ka, va = _adapt_heads(q, k, v, plan)
    assert qa.shape[1] % sp == 0 and ka.shape[1] % sp == 0
    adapted = varlen_attention(qa, ka, va, cu)[:, :q_heads]
    torch.testing.assert_close(adapted, varlen_attention(q, k, v, cu))


def _row(doc_lens, labelled):
    total = sum(doc_lens)
    ids = torch.arange(total)
    labels = torch.where(torch.tensor(labelled), ids, torch.full_like(ids, IGNORE_INDEX))
    positions = torch.cat([torch.arange(n) for n in doc_lens]).expand(4, total).clone()
    return PackedRow(ids, labels, positions, list(doc_lens))


def test_labels_are_shifted_on_the_full_row_and_never_cross_documents():
    row = _row([4, 3], [False, True, True, True, True, True, True])
    shifted = shift_labels(row.labels, row.cu_seqlens)
    # Last token of document 0 must not predict document 1's first token (id 4).
    assert shifted.tolist() == [1, 2, 3, IGNORE_INDEX, 5, 6, IGNORE_INDEX]


def test_shards_pad_to_a_multiple_of_sp_and_cover_the_row():
    row = _row([4, 3], [True] * 7)
    shards = [shard_row(row, rank, 4, pad_token_id=99) for rank in range(4)]
    assert all(s.input_ids.numel() == 2 for s in shards)
    assert shards[0].cu_seqlens == [0, 4, 7, 8]  # the pad token is its own document
    whole = torch.cat([s.shifted_labels for s in shards])
    assert whole.tolist() == shift_labels(row.labels, row.cu_seqlens).tolist() + [IGNORE_INDEX]
    assert shards[-1].input_ids.tolist() == [6, 99]
    # Rank 1's last label (position 3) is the document end, decided from the full row.
    assert shards[1].shifted_labels.tolist() == [3, IGNORE_INDEX]


def test_multi_image_rows_put_images_on_both_ranks():
    from seqpar_train.vision import assign_images

    patches = [h * w for _, images, _ in MULTI_IMAGE_DOCS for h, w in images]
    owner = assign_images(patches, 2)
    loads = [sum(p for p, o in zip(patches, owner, strict=True) if o == r) for r in range(2)]
    assert set(owner) == {0, 1}
    assert abs(loads[0] - loads[1]) <= max(patches)
    assert math.isclose(sum(loads), sum(patches))
