"""Packing samples into rows of at most ``capacity`` tokens: first-fit-decreasing of whole
samples, a lower bound on the rows any such packing needs (so utilisation can be judged
against the best possible, not against 100%), and a packer that fills rows by cutting
samples that allow it.

Samples longer than half a row cannot share one whole, and pool-native samples mostly are
(32K-127K tokens, mean 85K, at 128K): whole-sample packing stops at about 77% there, however
it is done. Filling rows to the brim therefore means leaving part of some samples out;
``pack_cut`` does that at the points each sample allows (for a document QA sample: after the
pages its question and answer depend on), trading left-out tokens for full rows."""

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


Placement = tuple[int, int | None]
"""(sample index, None for the whole sample or the index of the cut into its cut lengths)."""


def _largest_at_most(points: Sequence[int], limit: int) -> int | None:
    at = bisect.bisect_right(points, limit)
    return points[at - 1] if at else None


def _split(room: int, first: Sequence[int], second: Sequence[int]) -> tuple[int, int] | None:
    """Lengths (a, b) from the two ascending ``points`` lists with a + b <= room, as full as
    the points allow, each sample keeping about the same share of itself; None if even the
    shortest two do not fit."""
    if first[0] + second[0] > room:
        return None
    share = room / (first[-1] + second[-1])
    a = _largest_at_most(first, max(first[0], int(share * first[-1])))
    assert a is not None
    b = _largest_at_most(second, room - a)
    if b is None:  # the proportional cut of the first leaves too little: cut it further
        a = _largest_at_most(first, room - second[0])
        assert a is not None
        b = _largest_at_most(second, room - a)
        assert b is not None
    return a, b


def pack_cut(
    lengths: Sequence[int],
    cuts: Sequence[Sequence[int]],
    capacity: int,
    *,
    min_keep: float = 0.5,
    partners: int = 64,
) -> list[list[Placement]]:
    """Rows whose free space is filled by cutting samples.

    ``cuts[i]`` lists, ascending, the lengths sample ``i`` may be cut to (empty: it cannot be
    cut); a cut keeps at least ``min_keep`` of the sample. Each row starts with the longest
    sample left and takes whole samples while one fits (the largest that fits first: with
    no cut points this is first-fit-decreasing, row by row). If
    room is left, the row takes one more sample from the ``partners`` shortest left (short
    partners leave out the fewest tokens), the one whose split fills the row best, and the
    two (the row's first sample and the new one) are cut to share the row, each keeping
    about the same share of itself. Deterministic; rows come in creation order, longest
    first sample first.
    """
    if capacity < 1:
        raise ValueError(f"capacity must be positive, got {capacity}")
    if len(cuts) != len(lengths):
        raise ValueError(f"{len(lengths)} lengths but {len(cuts)} cut lists")
    if not 0 < min_keep <= 1:
        raise ValueError(f"min_keep must lie in (0, 1], got {min_keep}")
    points: list[list[int]] = []
    for index, (length, allowed) in enumerate(zip(lengths, cuts, strict=True)):
        if not 1 <= length <= capacity:
            raise ValueError(f"sample {index} has {length} tokens, outside [1, {capacity}]")
        if list(allowed) != sorted(set(allowed)) or any(not 0 < c < length for c in allowed):
            raise ValueError(
                f"sample {index}: cut lengths must increase and lie below its {length} tokens"
            )
        points.append([c for c in allowed if c >= min_keep * length] + [length])
    left = sorted(range(len(lengths)), key=lambda i: (lengths[i], -i))  # longest at the end
    keys = [lengths[i] for i in left]
    rows: list[list[Placement]] = []
    while left:
        keys.pop()
        first = left.pop()
        row: list[Placement] = [(first, None)]
        room = capacity - lengths[first]
        while room and left:
            at = bisect.bisect_right(keys, room)
            if not at:
                break
            keys.pop(at - 1)
            index = left.pop(at - 1)
            row.append((index, None))
            room -= lengths[index]
        if room:
            room += lengths[first]
            best: tuple[int, int, int, int] | None = None  # (-filled, at, a, b)
            for at, index in enumerate(left[:partners]):
                split = _split(room, points[first], points[index])
                if split is None or sum(split) <= lengths[first]:
                    continue  # the first sample alone fills the row as well
                if best is None or -sum(split) < best[0]:
                    best = (-sum(split), at, *split)
            if best is not None:
                _, at, a, b = best
                keys.pop(at)
                index = left.pop(at)
                row[0] = (first, _cut_index(cuts[first], a))
                row.append((index, _cut_index(cuts[index], b)))
        rows.append(row)
    return rows


def _cut_index(cuts: Sequence[int], kept: int) -> int | None:
    return None if kept not in cuts else list(cuts).index(kept)


def placed_tokens(
    lengths: Sequence[int], cuts: Sequence[Sequence[int]], placement: Placement
) -> int:
    index, cut = placement
    return lengths[index] if cut is None else cuts[index][cut]
