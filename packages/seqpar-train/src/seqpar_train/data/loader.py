"""Rows for one data-parallel rank, from a resumable global row cursor.

Row sources number their rows globally (0, 1, 2, ...). Optimizer step s with accumulation a
and data-parallel degree dp uses rows s*a*dp ... (s+1)*a*dp - 1; rank d takes every dp-th of
them. The cursor saved in a checkpoint is the next unused global row, so a restart resumes
with the next unseen row. Rows are built (pages rendered, processor run) in DataLoader
worker processes; the ranks of an SP group build the same row but render only the pages
whose images they encode.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from torch.utils.data import DataLoader, Dataset, Sampler

from seqpar_train.batch import PackedRow


class RowSource(Protocol):
    def row(self, index: int, sp_rank: int = 0, sp: int = 1) -> tuple[PackedRow, list[str]]:
        """Row ``index`` and the reasons of samples skipped while building it. With ``sp``
        > 1 the row may carry only the pixels SP rank ``sp_rank`` encodes (``pixel_share``)."""
        ...

    def row_tokens(self, index: int) -> int:
        """Real (non-padding) tokens row ``index`` is planned to hold, without building it."""
        ...


class _Rows(Dataset[tuple[PackedRow, list[str]]]):
    def __init__(self, source: RowSource, sp_rank: int, sp: int) -> None:
        self.source, self.sp_rank, self.sp = source, sp_rank, sp

    def __getitem__(self, index: int) -> tuple[PackedRow, list[str]]:
        return self.source.row(index, sp_rank=self.sp_rank, sp=self.sp)


class _RankIndices(Sampler[int]):
    def __init__(self, start: int, stop: int, dp_rank: int, dp: int) -> None:
        self.start, self.stop, self.dp_rank, self.dp = start, stop, dp_rank, dp

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start + self.dp_rank, self.stop, self.dp))

    def __len__(self) -> int:
        return len(range(self.start + self.dp_rank, self.stop, self.dp))


def _first(batch: list[Any]) -> Any:
    return batch[0]


def rank_rows(
    source: RowSource,
    *,
    start: int,
    stop: int,
    dp_rank: int,
    dp: int,
    num_workers: int,
    sp_rank: int = 0,
    sp: int = 1,
) -> DataLoader[tuple[PackedRow, list[str]]]:
    """This rank's rows among global rows [start, stop), in order: the ranks of an SP group
    read the same rows, each rendering only the images it encodes."""
    return DataLoader(
        _Rows(source, sp_rank, sp),
        batch_size=1,
        sampler=_RankIndices(start, stop, dp_rank, dp),
        collate_fn=_first,
        num_workers=num_workers,
        prefetch_factor=2 if num_workers else None,
        persistent_workers=False,
        multiprocessing_context="spawn" if num_workers else None,
    )
