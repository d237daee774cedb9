"""Validation while training: the teacher-forced answer loss on held-out samples, per length.

Every ``validation.every`` steps (and after the last one, and before the first of a fresh run)
every rank runs the trainer's own forward, ``PackedLossModel``, without gradient and in eval
mode, over held-out rows built by the trainer's own row builders, one sample per row: the loss
is the cross-entropy over the tokens training labels (the answers), exactly as a training step
computes it. Held-out sample ``i`` goes to data-parallel rank ``i % dp``; the ranks of an SP
group share its rows, as in training. Every rank runs the same number of forwards (a rank
short of samples runs one more row without counting it), so FSDP's collectives stay in
step. The held-out set is a fixed, seeded order, so every pass scores the same samples.

Length buckets are powers of two: a sample of ``n`` tokens falls in ``(2^(e-1), 2^e]`` with
``2^e`` the smallest power of two >= n, named "32K-64K". On pool-native rows of 8K-128K that
gives the buckets 4K-8K, 8K-16K, 16K-32K, 32K-64K and 64K-128K. A bucket's loss is the
token-weighted mean over its samples' answer tokens, like the training loss.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from mmprolong_schemas import Sample, format_tokens, read_parquet
from seqpar_train.batch import IGNORE_INDEX, PackedRow, to_device
from seqpar_train.collectives import all_reduce_sum
from seqpar_train.config import TrainerConfig
from seqpar_train.data.loader import RowSource, rank_rows

VALIDATION = "validation"
"""The ``kind`` of validation records in metrics.jsonl (training records carry no kind)."""

_EXPONENTS = 48  # bucket slots: sample lengths up to 2^47 tokens


def bucket_exponent(tokens: int) -> int:
    """``e`` with ``2^(e-1) < tokens <= 2^e``."""
    return max(0, (tokens - 1).bit_length())


def bucket_name(exponent: int) -> str:
    """ "32K-64K" for exponent 16: samples of more than 32K and at most 64K tokens."""
    upper = format_tokens(2**exponent)
    return upper if exponent == 0 else f"{format_tokens(2 ** (exponent - 1))}-{upper}"


def read_held_out(path: str | Path) -> list[Sample]:
    """Samples of a Parquet file, or of every Parquet file of a folder (in name order)."""
    source = Path(path)
    files = [source] if source.is_file() else sorted(source.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"validation.mixture {source} holds no Parquet samples")
    samples = [sample for file in files for sample in read_parquet(file, Sample)]
    if not samples:
        raise ValueError(f"validation.mixture {source} holds no samples")
    return samples


def held_out_rows(config: TrainerConfig, model_config: Any) -> tuple[RowSource, int]:
    """One held-out sample per row, in a seeded order, and how many are scored."""
    if config.validation.mixture is None:
        from seqpar_train.data.synthetic import SyntheticRows

        assert config.data.synthetic is not None
        # Single-document rows from another seed than the training rows.
        settings = config.data.synthetic.model_copy(update={"docs_per_row": 1})
        source: Any = SyntheticRows(model_config, settings, config.max_length, config.seed + 1)
        return source, config.validation.samples
    from seqpar_train.data.encode import SampleEncoder
    from seqpar_train.data.mixture import MixtureRows, load_processor

    assert config.data.pool is not None
    samples = read_held_out(config.validation.mixture)
    encoder = SampleEncoder(
        load_processor(config),
        config.data.vision,
        config.data.pool,
        Path(config.data.image_root) if config.data.image_root else None,
    )
    # A packing window of one sample makes row i the i-th sample of a seeded permutation,
    # alone and whole; samples longer than a row are skipped (a row with no label).
    rows = MixtureRows(
        samples, encoder, model_config, max_length=config.max_length, window=1, seed=config.seed
    )
    return rows, min(config.validation.samples, len(samples))


def validate(
    model: torch.nn.Module,
    source: RowSource,
    count: int,
    *,
    step: int,
    dp_rank: int,
    dp: int,
    sp_rank: int,
    sp: int,
    device: torch.device,
    autocast: Callable[[], Any],
    prepare: Callable[[PackedRow], PackedRow] = lambda row: row,
    num_workers: int = 0,
) -> dict[str, Any]:
    """The validation record of ``step`` (the same on every rank): loss, answer tokens and
    samples per length bucket and over all, and the seconds the pass took. ``prepare``
    agrees a row's failed documents across its SP group, as training does; rows are built
    by ``num_workers`` loader processes, as training rows are."""
    began = time.perf_counter()
    # rows: loss sum, answer tokens, samples, samples without an answer token (skipped)
    totals = torch.zeros(4, _EXPONENTS, dtype=torch.float64, device=device)
    # Rows past ``count`` (a rank short of samples) are run and not counted.
    rows = rank_rows(
        source,
        start=0,
        stop=math.ceil(count / dp) * dp,
        dp_rank=dp_rank,
        dp=dp,
        num_workers=num_workers,
        sp_rank=sp_rank,
        sp=sp,
    )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for local, (built, _) in enumerate(rows):
                counted = local * dp + dp_rank < count
                row = prepare(built)
                with autocast():
                    loss_sum, label_tokens = model(to_device(row, device))
                if not counted:
                    continue
                slot = bucket_exponent(row.num_tokens)
                totals[0, slot] += loss_sum.detach().double()
                totals[1, slot] += label_tokens.double()
                if sp_rank == 0:  # the SP group shares the row: count it once
                    labelled = bool((row.labels != IGNORE_INDEX).any())
                    totals[2 if labelled else 3, slot] += 1
    finally:
        model.train(was_training)
    totals = all_reduce_sum(totals, dist.group.WORLD if dist.is_initialized() else None)
    buckets = {
        bucket_name(e): {
            "loss": float(totals[0, e] / totals[1, e]),
            "label_tokens": int(totals[1, e]),
            "samples": int(totals[2, e]),
            "max_tokens": 2**e,
        }
        for e in range(_EXPONENTS)
        if totals[1, e] > 0
    }
    tokens = float(totals[1].sum())
    return {
        "kind": VALIDATION,
        "step": step,
        "loss": float(totals[0].sum()) / tokens if tokens else float("nan"),
        "label_tokens": int(tokens),
        "samples": int(totals[2].sum()),
        "skipped_samples": int(totals[3].sum()),
        "buckets": buckets,
        "seconds": time.perf_counter() - began,
    }
