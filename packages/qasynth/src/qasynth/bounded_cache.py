"""The one in-memory cache of qasynth: entries by key, bounded by their total size in bytes,
the least recently used dropped first. Page images, raster pages and mixture input tables
are each kept in one."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ByteBoundedLRU(Generic[K, V]):
    """At most ``max_bytes`` of sized entries. An entry put without a size is pinned: it counts
    nothing and is never dropped until ``set_size`` gives it one (a page still being made).
    An entry larger than the bound is not kept, unless ``keep_newest``: then the most recent
    entry stays whatever its size, so a run of reads of one large item reads it once.

    Not thread-safe: the owner guards it with its own lock, which usually guards more."""

    def __init__(self, max_bytes: int, *, keep_newest: bool = False) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes {max_bytes} must not be negative")
        self.max_bytes = max_bytes
        self.keep_newest = keep_newest
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._sizes: dict[K, int] = {}
        self._nbytes = 0

    @property
    def nbytes(self) -> int:
        """Total size of the sized entries."""
        return self._nbytes

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        """The entry, now the most recently used; None if absent."""
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def peek(self, key: K) -> V | None:
        """The entry without touching its recency."""
        return self._entries.get(key)

    def is_pinned(self, key: K) -> bool:
        return key in self._entries and key not in self._sizes

    def put(self, key: K, value: V, nbytes: int | None) -> None:
        """Keep ``value`` as the most recent entry: sized (then the oldest entries go until
        the bound holds) or, with ``nbytes=None``, pinned."""
        self.discard(key)
        if nbytes is not None and nbytes > self.max_bytes and not self.keep_newest:
            return
        self._entries[key] = value
        if nbytes is not None:
            self.set_size(key, nbytes)

    def set_size(self, key: K, nbytes: int) -> None:
        """Size a pinned entry (it becomes droppable), then drop the oldest until the bound
        holds; the entry itself goes too if it alone is over the bound."""
        self._nbytes += nbytes - self._sizes.get(key, 0)
        self._sizes[key] = nbytes
        self._evict()

    def discard(self, key: K) -> None:
        if key in self._entries:
            del self._entries[key]
            self._nbytes -= self._sizes.pop(key, 0)

    def clear(self) -> None:
        self._entries.clear()
        self._sizes.clear()
        self._nbytes = 0

    def _evict(self) -> None:
        newest = next(reversed(self._entries), None) if self.keep_newest else None
        for key in list(self._entries):
            if self._nbytes <= self.max_bytes:
                return
            if key in self._sizes and key != newest:
                del self._entries[key]
                self._nbytes -= self._sizes.pop(key)
