import pytest
import torch
import torch.nn.functional as F

from seqpar_train.batch import IGNORE_INDEX
from seqpar_train.loss import group_mean_loss, labelled_cross_entropy


@pytest.mark.parametrize("chunk", [1, 3, 4096])
def test_chunked_loss_equals_full_logits_loss_and_gradients(chunk):
    torch.manual_seed(0)
    hidden = torch.randn(40, 16, requires_grad=True)
    head = torch.nn.Linear(16, 50, bias=False)
    labels = torch.full((40,), IGNORE_INDEX)
    labels[[3, 7, 8, 20, 39]] = torch.tensor([1, 4, 9, 49, 0])
    total, count = labelled_cross_entropy(hidden, head, labels, chunk_size=chunk)
    total.backward()
    got = (hidden.grad.clone(), head.weight.grad.clone())
    hidden.grad, head.weight.grad = None, None
    want = F.cross_entropy(head(hidden), labels, reduction="sum", ignore_index=IGNORE_INDEX)
    want.backward()
    assert count == 5
    torch.testing.assert_close(total, want)
    torch.testing.assert_close(got[0], hidden.grad)
    torch.testing.assert_close(got[1], head.weight.grad)


def test_no_labelled_token_gives_zero_with_a_graph():
    hidden = torch.randn(6, 8, requires_grad=True)
    head = torch.nn.Linear(8, 11)
    total, count = labelled_cross_entropy(hidden, head, torch.full((6,), IGNORE_INDEX))
    assert float(total.detach()) == 0.0 and float(count) == 0.0
    total.backward()  # still reaches the parameters, so every rank runs the same backward
    assert head.weight.grad is not None and not head.weight.grad.any()
    assert float(group_mean_loss(total, count, None)) == 0.0


def test_group_mean_is_token_weighted():
    assert float(group_mean_loss(torch.tensor(6.0), torch.tensor(3.0), None)) == 2.0
