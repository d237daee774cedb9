"""The validation loss: teacher-forced answer loss on held-out rows, per length bucket.

Every data-parallel rank runs the same held-out rows (FSDP needs the same forwards on every
rank); an SP group splits each row as in training and sums its loss. Rows are bucketed by
their length rounded up to a power of two (``val_loss_64K`` ...), so a model that learns long
context shows it where it matters.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.distributed import ProcessGroup

from mmprolong_schemas import format_tokens
from seqpar_train.batch import to_device
from seqpar_train.collectives import all_reduce_sum
from seqpar_train.config import TrainConfig
from seqpar_train.data.loader import RowSource

HELDOUT_SEED_OFFSET = 104_729


def length_bucket(tokens: int) -> str:
    """The row length rounded up to a power of two, as a token count (``64K``)."""
    return format_tokens(2 ** max(0, math.ceil(math.log2(max(1, tokens)))))


def heldout_rows(config: TrainConfig, model_config: Any) -> tuple[RowSource, int]:
    """The held-out row source and how many rows to use."""
    if config.data.synthetic is not None:
        from seqpar_train.data.synthetic import SyntheticRows

        seed = config.seed + HELDOUT_SEED_OFFSET  # rows training never sees
        source = SyntheticRows(model_config, config.data.synthetic, config.max_length, seed)
        return source, config.data.heldout_rows
    if config.data.heldout is None:
        raise ValueError("eval_every needs data.heldout: a folder of held-out sample shards")
    from pathlib import Path

    from seqpar_train.data.encode import SampleEncoder
    from seqpar_train.data.mixture import MixtureRows, load_processor, read_mixture

    assert config.data.pool is not None
    samples = read_mixture(config.data.heldout)[: config.data.heldout_rows]
    encoder = SampleEncoder(
        load_processor(config),
        config.data.vision,
        config.data.pool,
        Path(config.data.image_root) if config.data.image_root else None,
    )
    rows = MixtureRows(
        samples, encoder, model_config, max_length=config.max_length, window=1, seed=config.seed
    )
    return rows, len(samples)


def validation_losses(
    model: Any,
    source: RowSource,
    count: int,
    *,
    autocast: Any,
    device: torch.device,
    sp_rank: int,
    sp: int,
    sp_group: ProcessGroup | None,
) -> dict[str, float]:
    """``val_loss`` over ``count`` held-out rows and ``val_loss_<bucket>`` per length bucket."""
    sums: dict[str, float] = {}
    labels: dict[str, float] = {}
    with torch.no_grad():
        for index in range(count):
            row, _ = source.row(index, sp_rank=sp_rank, sp=sp)
            bucket = length_bucket(row.num_tokens)
            with autocast():
                loss_sum, label_count = model(to_device(row, device))
            both = all_reduce_sum(torch.stack([loss_sum.float(), label_count.float()]), sp_group)
            sums[bucket] = sums.get(bucket, 0.0) + float(both[0])
            labels[bucket] = labels.get(bucket, 0.0) + float(both[1])
    result = {"val_loss": sum(sums.values()) / max(1.0, sum(labels.values()))}
    for bucket in sorted(sums, key=lambda b: labels[b]):
        result[f"val_loss_{bucket}"] = sums[bucket] / max(1.0, labels[bucket])
    return result
