"""Repeated record ids found with 8 bytes a row held: a 64-bit tabulation hash of each id, spilled to a file
during the scan and sorted once after it; only the rows whose hash repeats are compared as text, so a
collision rejects no row."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

import numpy as np
import pyarrow as pa

from labelflow_processing.values import text_buffers

# Byte positions with their own random table; later bytes reuse them cyclically (collisions are re-checked).
POSITIONS = 64
_TABLE = np.random.default_rng(0x1ABE1F10).integers(0, 2**64, size=POSITIONS * 256, dtype=np.uint64)
# A second, independent table: ids of different parts of a sharded input are compared by both hashes (128 bits),
# as their texts are not at hand together.
_SECOND_TABLE = np.random.default_rng(0x5EC0D).integers(0, 2**64, size=POSITIONS * 256, dtype=np.uint64)
_LENGTH = np.uint64(0x9E3779B97F4A7C15)
CHUNK_BYTES = 8 << 20


def hashes(ids: pa.Array, table: np.ndarray = _TABLE) -> np.ndarray:
    """A 64-bit hash of each id's UTF-8 bytes."""
    offsets, data = text_buffers(ids)
    starts, lengths = offsets[:-1] - offsets[0], np.diff(offsets)
    if not len(ids):
        return np.empty(0, np.uint64)
    data = data[offsets[0] : offsets[-1]]
    position = np.arange(len(data)) - np.repeat(starts, lengths)
    terms = table[(position % POSITIONS) * 256 + data]
    # reduceat needs every start inside the array; an empty id's start may be its end.
    folded = np.bitwise_xor.reduceat(np.append(terms, np.uint64(0)), starts)
    folded[lengths == 0] = 0
    result: np.ndarray = folded ^ lengths.astype(np.uint64) * _LENGTH
    return result


def pair_hashes(ids: pa.Array) -> np.ndarray:
    """Two independent 64-bit hashes of each id, one row per id."""
    return np.column_stack([hashes(ids), hashes(ids, _SECOND_TABLE)])


def seen_before(earlier: np.ndarray, own: np.ndarray) -> np.ndarray:
    """Which of `own`'s hash pairs are among `earlier`'s (both n x 2)."""
    found = np.isin(own[:, 0], earlier[:, 0])
    if found.any():
        # Only ids whose first hash matches are compared on the second: a handful, as Python pairs.
        matching = earlier[np.isin(earlier[:, 0], own[found, 0])]
        known = set(zip(matching[:, 0].tolist(), matching[:, 1].tolist(), strict=True))
        found[found] = [pair in known for pair in zip(own[found, 0].tolist(), own[found, 1].tolist(), strict=True)]
    return found


def repeated(spill: IO[bytes]) -> np.ndarray:
    """The hashes of the spill file that occur more than once, sorted."""
    spill.flush()
    spill.seek(0)
    ordered = np.fromfile(spill, np.uint64)
    ordered.sort()
    same = ordered[1:] == ordered[:-1]
    found: np.ndarray = np.unique(ordered[1:][same])
    return found


def _chunks(spill: IO[bytes]) -> Iterator[np.ndarray]:
    spill.seek(0)
    while chunk := spill.read(CHUNK_BYTES):
        yield np.frombuffer(chunk, np.uint64)


def rows_with(spill: IO[bytes], wanted: np.ndarray) -> np.ndarray:
    """The positions, in the spill file, of the hashes in `wanted`."""
    found, start = [], 0
    for chunk in _chunks(spill):
        found.append(start + np.flatnonzero(np.isin(chunk, wanted)))
        start += len(chunk)
    return np.concatenate(found) if found else np.empty(0, np.int64)


def later_occurrences(ids: pa.ChunkedArray) -> np.ndarray:
    """The positions of the ids that an earlier position has, sorted."""
    found: list[np.ndarray] = []
    start, highest = 0, -1
    # Arrow numbers distinct values in order of first appearance, so a position is a first occurrence exactly
    # when its code is higher than every code before it.
    for chunk in ids.dictionary_encode().chunks:
        codes = chunk.indices.to_numpy()
        highest_before = np.maximum.accumulate(np.concatenate(([highest], codes[:-1])))
        found.append(start + np.flatnonzero(codes <= highest_before))
        start, highest = start + len(codes), max(highest, int(codes.max(initial=-1)))
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)
