"""The byte-bounded LRU shared by the page-image, raster and mixture-table caches."""

from __future__ import annotations

import pytest

from qasynth.bounded_cache import ByteBoundedLRU


def test_oldest_sized_entries_go_first_and_a_read_makes_an_entry_recent() -> None:
    cache: ByteBoundedLRU[str, str] = ByteBoundedLRU(10)
    cache.put("a", "A", 4)
    cache.put("b", "B", 4)
    assert cache.get("a") == "A"  # "b" is now the oldest
    cache.put("c", "C", 4)
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.nbytes == 8


def test_pinned_entries_count_nothing_and_stay_until_sized() -> None:
    cache: ByteBoundedLRU[str, str] = ByteBoundedLRU(5)
    cache.put("pending", "P", None)
    cache.put("done", "D", 5)
    cache.put("next", "N", 5)  # over the bound: "done" goes, the pinned entry stays
    assert "pending" in cache and cache.is_pinned("pending") and "done" not in cache
    assert cache.peek("pending") == "P" and cache.nbytes == 5
    cache.set_size("pending", 3)  # now the oldest sized entry: it goes first
    assert "pending" not in cache and "next" in cache and cache.nbytes == 5


def test_an_entry_over_the_bound_is_not_kept_unless_it_is_the_newest_kept_one() -> None:
    strict: ByteBoundedLRU[str, str] = ByteBoundedLRU(4)
    strict.put("small", "s", 2)
    strict.put("huge", "h", 9)
    assert "huge" not in strict and "small" in strict and strict.nbytes == 2
    lenient: ByteBoundedLRU[str, str] = ByteBoundedLRU(4, keep_newest=True)
    lenient.put("small", "s", 2)
    lenient.put("huge", "h", 9)
    assert "huge" in lenient and "small" not in lenient and lenient.nbytes == 9
    lenient.put("small", "s", 2)  # the large one is no longer the newest
    assert "huge" not in lenient and lenient.nbytes == 2


def test_a_zero_bound_keeps_only_pinned_entries_and_a_negative_one_is_refused() -> None:
    cache: ByteBoundedLRU[str, str] = ByteBoundedLRU(0)
    cache.put("pending", "P", None)
    cache.put("done", "D", 1)
    assert len(cache) == 1 and cache.is_pinned("pending")
    cache.set_size("pending", 1)
    assert len(cache) == 0 and cache.nbytes == 0
    with pytest.raises(ValueError, match="max_bytes -1"):
        ByteBoundedLRU(-1)
