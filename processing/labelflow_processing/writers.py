"""JSON Lines built a column at a time: every value of a batch is rendered to JSON text with Arrow and NumPy,
the texts of a row are joined element-wise into its line, and the batch's lines are written as one buffer.

Strings are escaped as `json.dumps(value, ensure_ascii=False)` escapes them. A float is written with six
decimals (`0.500000`: the value is already rounded to six places, so the text reads back as exactly that
float), or in Arrow's shortest form beyond 2**52 / 10**6, where no rounding applies.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelflow_processing.transforms import ROUNDING_LIMIT

_TEXT = pa.string()
_SECONDS_PER_DAY = 86_400
_MICRO = 1_000_000
# Whole parts below this are spelled by a lookup table (with the member's key) instead of a cast.
_SMALL_WHOLE = 10_000
_QUOTE, _BACKSLASH = ord('"'), ord("\\")


class Parts:
    """The texts of each row, in order: literals (the same in every row) and arrays (one text per row)."""

    def __init__(self) -> None:
        self._parts: list[pa.Array | str] = []

    def text(self, literal: str) -> None:
        if self._parts and isinstance(self._parts[-1], str):
            self._parts[-1] += literal
        else:
            self._parts.append(literal)

    def values(self, texts: pa.Array) -> None:
        self._parts.append(texts)

    def join(self) -> pa.Array:
        """Each row's texts joined into one."""
        return pc.binary_join_element_wise(*self._parts, "")

    def filter(self, keep: pa.Array) -> Parts:
        kept = Parts()
        kept._parts = [part if isinstance(part, str) else part.filter(keep) for part in self._parts]
        return kept


def key(name: str) -> str:
    """`"name":`, the start of an object member."""
    return json.dumps(name, ensure_ascii=False) + ":"


def _bytes(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes of a string array's values and each value's offset within them."""
    _, offsets_buffer, data_buffer = text.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int32, count=len(text) + 1, offset=text.offset * 4)
    data = np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.empty(0, np.uint8)
    return data[offsets[0] : offsets[-1]], offsets - offsets[0]


def _rows_with(flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per value, whether any of its bytes is flagged."""
    counts = np.concatenate(([0], np.cumsum(flags, dtype=np.int64)))
    found: np.ndarray = counts[offsets[1:]] - counts[offsets[:-1]] > 0
    return found


def escaped(text: pa.Array) -> pa.Array:
    """The inside of JSON string literals (no quotes) of non-null text."""
    text = text.cast(_TEXT)
    data, offsets = _bytes(text)
    special = (data < 0x20) | (data == _QUOTE) | (data == _BACKSLASH)
    if not special.any():
        return text
    rows = _rows_with(special, offsets)
    inside = [json.dumps(value, ensure_ascii=False)[1:-1] for value in text.filter(pa.array(rows)).to_pylist()]
    return pc.replace_with_mask(text, pa.array(rows), pa.array(inside, _TEXT))


def string_member(parts: Parts, prefix: str, text: pa.Array) -> None:
    parts.text(prefix + '"')
    parts.values(escaped(text))
    parts.text('"')


def _fixed_width(texts: np.ndarray) -> pa.Array:
    """A string array from a matrix of ASCII bytes, one row per value."""
    count, width = texts.shape
    offsets = np.arange(0, (count + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(texts)))


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """The zero-padded decimal digits of non-negative integers, as ASCII bytes, one row per value."""
    digits = np.empty((len(values), width), dtype=np.uint8)
    remaining = values.astype(np.uint32)
    for place in range(width - 1, -1, -1):
        remaining, digit = np.divmod(remaining, 10)
        digits[:, place] = digit + ord("0")
    return digits


@cache
def _fractions() -> pa.Array:
    """`.000000` to `.999999`."""
    point = np.full((_MICRO, 1), ord("."), dtype=np.uint8)
    return _fixed_width(np.hstack([point, _digits(np.arange(_MICRO), 6)]))


@cache
def _wholes(prefix: str) -> pa.Array:
    """`prefix` then 0 to _SMALL_WHOLE - 1, then the same negated."""
    digits = pa.array(np.arange(_SMALL_WHOLE)).cast(_TEXT)
    positive = pc.binary_join_element_wise(prefix, digits, "")
    negative = pc.binary_join_element_wise(prefix + "-", digits, "")
    return pa.concat_arrays([positive, negative])


def number_member(parts: Parts, prefix: str, values: np.ndarray) -> None:
    """Finite floats as JSON numbers after `prefix` (a member's key, or nothing).

    Below ROUNDING_LIMIT a value is spelled from two lookup tables: its sign and whole part (with the prefix),
    then its six decimals.
    """
    if not (np.abs(values) < ROUNDING_LIMIT).all():
        parts.text(prefix)
        parts.values(_shortest(values))
        return
    negative = values < 0
    whole, fraction = np.divmod(np.rint(np.abs(values) * _MICRO).astype(np.int64), _MICRO)
    if whole.max(initial=0) < _SMALL_WHOLE:
        parts.values(_wholes(prefix).take(pa.array(whole + negative * _SMALL_WHOLE)))
    else:
        parts.values(pa.array([prefix, prefix + "-"], _TEXT).take(pa.array(negative.astype(np.int8))))
        parts.values(pa.array(whole).cast(_TEXT))
    parts.values(_fractions().take(pa.array(fraction)))


def _shortest(values: np.ndarray) -> pa.Array:
    """Arrow's shortest round-trip spelling, with `.0` added where it would read back as an integer."""
    text = pa.array(values, pa.float64()).cast(_TEXT)
    data, offsets = _bytes(text)
    as_float = _rows_with((data == ord(".")) | (data == ord("e")), offsets)
    suffix = pa.array(["", ".0"], _TEXT).take(pa.array((~as_float).astype(np.int8)))
    return pc.binary_join_element_wise(text, suffix, "")


@cache
def _clock() -> pa.Array:
    """`HH:MM:SSZ` for every second of a day."""
    second = np.arange(_SECONDS_PER_DAY)
    colon, zulu = np.full((_SECONDS_PER_DAY, 1), ord(":"), np.uint8), np.full((_SECONDS_PER_DAY, 1), ord("Z"), np.uint8)
    hours, minutes, seconds = (_digits(part, 2) for part in (second // 3600, second // 60 % 60, second % 60))
    return _fixed_width(np.hstack([hours, colon, minutes, colon, seconds, zulu]))


def time_member(parts: Parts, prefix: str, seconds: np.ndarray) -> None:
    """Epoch seconds as `"YYYY-MM-DDTHH:MM:SSZ"` after `prefix`."""
    days, second_of_day = np.divmod(seconds, _SECONDS_PER_DAY)
    if len(days) and days.max() - days.min() < len(days):
        first = int(days.min())
        day_index, calendar = days - first, range(first, int(days.max()) + 1)
    else:
        unique_days, day_index = np.unique(days, return_inverse=True)
        calendar = unique_days.tolist()
    dates = [datetime.fromtimestamp(day * _SECONDS_PER_DAY, tz=UTC).strftime("%Y-%m-%dT") for day in calendar]
    parts.text(prefix + '"')
    parts.values(pa.array(dates, _TEXT).take(pa.array(day_index)))
    parts.values(_clock().take(pa.array(second_of_day)))
    parts.text('"')


def bucket_members(outputs: list[list[dict[str, int]]], prefixes: list[str], buckets: list[np.ndarray]) -> pa.Array:
    """Encoded features' members for each row's buckets, by one lookup in the table of their combinations.

    `outputs[i]` lists feature i's members per bucket, bucket -1 first.
    """
    texts = [""]
    index = np.zeros(len(buckets[0]), dtype=np.int64)
    for feature_outputs, prefix, feature_buckets in zip(outputs, prefixes, buckets, strict=True):
        members = [prefix + ",".join(f"{key(name)}{value}" for name, value in row.items()) for row in feature_outputs]
        texts = [before + member for before in texts for member in members]
        index = index * len(members) + feature_buckets + 1
    return pa.array(texts, _TEXT).take(pa.array(index))


def write_lines(handle: IO[bytes], text: pa.Array) -> None:
    """Write a string array's values back to back (they carry their own line ends)."""
    if len(text):
        data, _ = _bytes(text)
        handle.write(memoryview(data))


def json_line(value: object) -> str:
    return json.dumps(value, ensure_ascii=False) + "\n"
