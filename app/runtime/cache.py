"""A thread-safe LRU cache bounded in bytes: finished answers and tap tensors alike."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import numpy as np


def size_of(value: Any) -> int:
    """Bytes a cached value holds: arrays by ``nbytes``, bytes by length, containers summed, ``nbytes`` if given."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(size_of(v) for v in value.values()) + 64 * len(value)
    if isinstance(value, list | tuple):
        return sum(size_of(v) for v in value) + 8 * len(value)
    nbytes = getattr(value, "nbytes", None)
    return int(nbytes) if nbytes is not None else 64


class LRUCache:
    """Least-recently-used mapping whose entries together hold at most ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._data: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, key: Hashable) -> Any | None:
        """The cached value for ``key`` (marking it recent), or None."""
        with self._lock:
            item = self._data.get(key)
            if item is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Hashable, value: Any) -> bool:
        """Store ``value``, evicting the least recently used entries to stay in budget; False if it never fits."""
        size = size_of(value)
        if size > self.max_bytes:
            return False  # larger than the whole budget: computed again when asked
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._data[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, freed) = self._data.popitem(last=False)
                self.bytes -= freed
                self.evictions += 1
            return True

    def info(self) -> dict:
        """Entries, bytes, budget, hits, misses and evictions."""
        with self._lock:
            return {
                "entries": len(self._data),
                "bytes": self.bytes,
                "max_bytes": self.max_bytes,
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
            }

    def __len__(self) -> int:
        return len(self._data)
