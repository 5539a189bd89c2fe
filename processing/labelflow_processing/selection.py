"""Exact medians of more values than memory should hold.

Each value becomes an unsigned key in the order of the floats; a histogram of the keys' top 16 bits, merged
across batches, says which bucket holds a rank; one pass over the keys (spilled to a file) keeps that bucket's,
and NumPy selects among them. A bucket too large to keep is split by its next 16 bits in another pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

import numpy as np

BITS = 16
BUCKETS = 1 << BITS
# Keys of one bucket held at once at most (8 MB).
HOLD = 1 << 20
CHUNK_BYTES = 8 << 20
_SIGN = np.uint64(1 << 63)


def sort_keys(values: np.ndarray) -> np.ndarray:
    """Keys whose unsigned order is the values' order (-0.0 before 0.0); the values have no NaN."""
    bits = values.view(np.uint64)
    keys: np.ndarray = np.where(bits & _SIGN, ~bits, bits | _SIGN)
    return keys


def _value(key: int) -> float:
    bits = key ^ (1 << 63) if key >> 63 else key ^ ((1 << 64) - 1)
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


def _histogram(keys: np.ndarray, shift: int) -> np.ndarray:
    digits = (keys >> np.uint64(shift)) & np.uint64(BUCKETS - 1)
    counts: np.ndarray = np.bincount(digits.astype(np.intp), minlength=BUCKETS)
    return counts


class Observed:
    """A feature's finite values across batches, as keys: in memory, or appended to a spill file."""

    def __init__(self, spill: IO[bytes] | None = None) -> None:
        self.count = 0
        self.histogram = np.zeros(BUCKETS, dtype=np.int64)
        self._parts: list[np.ndarray] = []
        self._spill = spill

    @classmethod
    def of(cls, values: np.ndarray) -> Observed:
        """A batch's values, held in memory."""
        return cls.of_keys(sort_keys(values))

    @classmethod
    def of_keys(cls, keys: np.ndarray) -> Observed:
        """Values already turned into keys (another shard's, read back), held in memory."""
        observed = cls()
        observed.count = len(keys)
        observed.histogram = _histogram(keys, 64 - BITS)
        observed._parts.append(keys)
        return observed

    def merge(self, other: Observed) -> None:
        self.count += other.count
        self.histogram += other.histogram
        for keys in other._parts:
            if self._spill is None:
                self._parts.append(keys)
            else:
                self._spill.write(np.ascontiguousarray(keys).data)

    def clear(self) -> None:
        """Drop the values (and close the spill file)."""
        self._parts = []
        if self._spill is not None:
            self._spill.close()

    def median(self) -> float | None:
        if not self.count:
            return None
        middle = self.count // 2
        if self.count % 2:
            return self._select(middle)
        # Halves first: the sum of two huge values would overflow.
        return self._select(middle - 1) * 0.5 + self._select(middle) * 0.5

    def key_chunks(self) -> Iterator[np.ndarray]:
        """The values' keys, a chunk at a time."""
        return self._keys()

    def _keys(self) -> Iterator[np.ndarray]:
        if self._spill is None:
            yield from self._parts
            return
        self._spill.flush()
        self._spill.seek(0)
        while chunk := self._spill.read(CHUNK_BYTES):
            yield np.frombuffer(chunk, np.uint64)

    def _select(self, rank: int) -> float:
        """The value of the given rank (0 is the smallest)."""
        counts, prefix, shift = self.histogram, 0, 64 - BITS
        while True:
            below = np.cumsum(counts)
            bucket = int(np.searchsorted(below, rank, side="right"))
            rank -= int(below[bucket - 1]) if bucket else 0
            prefix = prefix << BITS | bucket
            if not shift:
                return _value(prefix)
            wanted, at = np.uint64(prefix), np.uint64(shift)
            if counts[bucket] <= HOLD:
                held = np.concatenate([keys[keys >> at == wanted] for keys in self._keys()])
                held.partition(rank)
                return _value(int(held[rank]))
            shift -= BITS
            counts = sum(
                (_histogram(keys[keys >> at == wanted], shift) for keys in self._keys()),
                np.zeros(BUCKETS, dtype=np.int64),
            )
