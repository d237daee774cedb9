"""First-fit-decreasing packing of samples into rows of at most ``capacity`` tokens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class _MaxTree:
    """Free space of rows in creation order; finds the first row with at least ``need``."""

    def __init__(self, size: int) -> None:
        self.size = 1
        while self.size < max(1, size):
            self.size *= 2
        self.tree = [0] * (2 * self.size)

    def set(self, index: int, value: int) -> None:
        node = index + self.size
        self.tree[node] = value
        node //= 2
        while node:
            self.tree[node] = max(self.tree[2 * node], self.tree[2 * node + 1])
            node //= 2

    def first_at_least(self, need: int) -> int | None:
        if self.tree[1] < need:
            return None
        node = 1
        while node < self.size:
            node = 2 * node if self.tree[2 * node] >= need else 2 * node + 1
        return node - self.size


def pack_ffd(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped into rows: longest sample first, each into the first row
    (in creation order) with room, else a new row. Deterministic (ties keep input order).
    A sample longer than ``capacity`` raises ValueError: drop or truncate it before packing."""
    if capacity < 1:
        raise ValueError(f"capacity must be positive, got {capacity}")
    if any(n < 1 for n in lengths):
        raise ValueError("every sample needs at least one token")
    too_long = [i for i, n in enumerate(lengths) if n > capacity]
    if too_long:
        raise ValueError(
            f"{len(too_long)} samples are longer than the row ({capacity} tokens), "
            f"e.g. sample {too_long[0]} with {lengths[too_long[0]]}"
        )
    rows: list[list[int]] = []
    free: list[int] = []
    tree = _MaxTree(len(lengths))
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        need = lengths[index]
        row = tree.first_at_least(need)
        if row is None:
            row = len(rows)
            rows.append([])
            free.append(capacity)
        rows[row].append(index)
        free[row] -= need
        tree.set(row, free[row])
    return rows


@dataclass(frozen=True)
class PackingStats:
    rows: int
    tokens: int
    capacity: int

    @property
    def utilization(self) -> float:
        return self.tokens / (self.rows * self.capacity) if self.rows else 0.0


def packing_stats(
    lengths: Sequence[int], rows: Sequence[Sequence[int]], capacity: int
) -> PackingStats:
    return PackingStats(len(rows), sum(lengths[i] for row in rows for i in row), capacity)
