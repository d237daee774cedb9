"""First-fit-decreasing packing of samples into rows of at most ``capacity`` tokens, and a
lower bound on the rows any packing needs (so utilisation can be judged against the best
possible, not against 100%)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate


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


def min_rows_bound(lengths: Sequence[int], capacity: int) -> int:
    """A lower bound on the rows any packing of ``lengths`` needs: Martello and Toth's L2.

    For every threshold k <= capacity/2: samples longer than capacity - k each need a row of
    their own, samples longer than half a row need distinct rows too, and samples of at least
    k tokens that are not longer than half a row can only go in the space the latter leave or
    in new rows. k = 0 gives max(samples over half a row, ceil(total / capacity)).
    """
    if capacity < 1:
        raise ValueError(f"capacity must be positive, got {capacity}")
    if any(n < 1 or n > capacity for n in lengths):
        raise ValueError(f"every length must lie in [1, {capacity}]")
    if not lengths:
        return 0
    ordered = sorted(lengths)
    prefix = [0, *accumulate(ordered)]
    half = bisect.bisect_right(ordered, capacity // 2)  # ordered[:half] <= capacity / 2
    best = 0
    for k in [0, *sorted(set(ordered[:half]))]:
        own = bisect.bisect_right(ordered, capacity - k)  # ordered[own:] > capacity - k
        big, big_sum = own - half, prefix[own] - prefix[half]
        first = bisect.bisect_left(ordered, k, 0, half)  # ordered[first:half] in [k, cap/2]
        small_sum = prefix[half] - prefix[first]
        overflow = small_sum - (big * capacity - big_sum)
        rows = len(ordered) - own + big + max(0, -(-overflow // capacity))
        best = max(best, rows)
    return best
