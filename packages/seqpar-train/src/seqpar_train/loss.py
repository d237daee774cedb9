"""Cross-entropy at labelled positions only, in chunks.

Answer-only labels make the labelled positions a small share of a 128K row; logits are
computed for those positions only, ``chunk_size`` rows at a time, and each chunk is
recomputed in backward instead of kept, so at most one chunk of vocab-wide logits is alive.
Full logits for every position of a 131072-token row with a 152064 vocabulary would be
152064 x 131072 x 4 bytes, about 80 GB.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.distributed import ProcessGroup
from torch.utils.checkpoint import checkpoint

from seqpar_train.batch import IGNORE_INDEX
from seqpar_train.collectives import all_reduce_sum


def _chunk_loss_sum(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor
) -> torch.Tensor:
    logits = F.linear(hidden, weight, bias).float()
    return F.cross_entropy(logits, targets, reduction="sum")


def labelled_cross_entropy(
    hidden: torch.Tensor,
    lm_head: Any,
    shifted_labels: torch.Tensor,
    *,
    chunk_size: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of token losses and the number of labelled tokens.

    hidden: (S, H) final hidden states; shifted_labels: (S,) with IGNORE_INDEX where no loss.
    The sum keeps its graph even with no labelled token (a zero that still reaches
    ``lm_head``), so every rank runs the same backward.
    """
    weight = lm_head.weight
    bias = getattr(lm_head, "bias", None)
    positions = (shifted_labels != IGNORE_INDEX).nonzero(as_tuple=True)[0]
    count = torch.tensor(positions.numel(), device=hidden.device, dtype=torch.float32)
    total = (hidden[:1] @ weight[:1].T).sum().float() * 0.0
    for start in range(0, positions.numel(), chunk_size):
        index = positions[start : start + chunk_size]
        chunk = hidden.index_select(0, index)
        targets = shifted_labels.index_select(0, index)
        if torch.is_grad_enabled():
            total = total + checkpoint(
                _chunk_loss_sum, chunk, weight, bias, targets, use_reentrant=False
            )
        else:
            total = total + _chunk_loss_sum(chunk, weight, bias, targets)
    return total, count


def group_mean_loss(
    loss_sum: torch.Tensor, count: torch.Tensor, group: ProcessGroup | None
) -> torch.Tensor:
    """The token-weighted mean over ``group`` (an SP group, or the whole world), detached.
    A group with no labelled token reports 0, not NaN."""
    total = all_reduce_sum(loss_sum, group)
    tokens = all_reduce_sum(count, group)
    return total / tokens.clamp(min=1.0)
