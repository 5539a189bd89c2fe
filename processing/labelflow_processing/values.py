"""Cell values, a column at a time: text, numbers and event times, with what is missing and what is bad.

The rules are those of one cell: text is stripped and empty text is missing; a number is what Python's
`float()` accepts (Arrow parses the common case, Python the rest); an event time is ISO-8601 (naive means
UTC) or epoch seconds, cut to whole seconds. Typed values (JSON, Parquet) become text first, except numbers,
which keep their value.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EPOCH_PATTERN = re.compile(r"[+-]?\d+(\.\d+)?")
# The seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the years Python's datetime can hold.
MIN_SECONDS, MAX_SECONDS = -62_135_596_800, 253_402_300_799
_TEXT = pa.string()


def as_text(column: pa.Array) -> pa.Array:
    """The column as text (null where the value is null): numbers and booleans as Arrow writes them."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        return as_text(column.dictionary_decode())
    if pa.types.is_string(kind):
        return column
    if pa.types.is_null(kind):
        return pa.nulls(len(column), _TEXT)
    if pa.types.is_boolean(kind):
        return pc.if_else(column, "true", "false")
    if pa.types.is_large_string(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return column.cast(_TEXT)
    if pa.types.is_decimal(kind) or pa.types.is_temporal(kind):
        return column.cast(_TEXT)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return pa.array([None if v is None else v.decode("utf-8", "replace") for v in column.to_pylist()], _TEXT)
    return pa.array([None if v is None else json.dumps(v, ensure_ascii=False, default=str) for v in column.to_pylist()])


def stripped(column: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The column as stripped text, null where missing, and the missing mask."""
    text = as_text(column)
    if _needs_trim(text):
        text = pc.utf8_trim_whitespace(text)
    offsets, data = text_buffers(text)
    missing = offsets[1:] == offsets[:-1]
    if text.null_count:
        missing |= _mask(text.is_null())
    if not missing.any():
        return text, missing
    if text.offset:
        return pc.if_else(pa.array(missing), pa.scalar(None, _TEXT), text), missing
    # The same values with a validity bitmap: no copy of the text.
    validity = pa.py_buffer(np.packbits(~missing, bitorder="little"))
    _, offsets_buffer, data_buffer = text.buffers()
    nulled = pa.StringArray.from_buffers(len(text), offsets_buffer, data_buffer, validity, int(missing.sum()))
    return nulled, missing


def text_buffers(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string array's value offsets and UTF-8 bytes."""
    _, offsets_buffer, data_buffer = text.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int32, count=len(text) + 1, offset=text.offset * 4)
    data = np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.empty(0, np.uint8)
    return offsets, data


def text_sizes(column: pa.Array) -> np.ndarray:
    """Each value's size as UTF-8 text, in bytes (0 when null)."""
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_boolean(column.type):
        return np.zeros(len(column), dtype=np.int64)
    offsets, _ = text_buffers(as_text(column))
    return np.diff(offsets).astype(np.int64)


def has_control(text: pa.Array) -> np.ndarray:
    """Which values hold a C0 control character (U+0000 to U+001F) or DEL (U+007F)."""
    offsets, data = text_buffers(text)
    data = data[offsets[0] : offsets[-1]]
    bad = (data < 0x20) | (data == 0x7F)
    if not bad.any():
        return np.zeros(len(text), dtype=bool)
    # Control bytes per value, from prefix sums at the value boundaries (UTF-8 never has them inside a character).
    counts = np.concatenate(([0], np.cumsum(bad)))
    found: np.ndarray = counts[offsets[1:] - offsets[0]] > counts[offsets[:-1] - offsets[0]]
    return found


def _needs_trim(text: pa.Array) -> bool:
    """Whether a value may start or end with whitespace (or a non-ASCII byte, which may be Unicode whitespace)."""
    offsets, data = text_buffers(text)
    if not len(data):
        return False
    # An empty value's "edges" belong to its neighbours: at worst a needless trim.
    edges = data.take(np.concatenate((offsets[:-1], offsets[1:] - 1)), mode="clip")
    return bool(((edges <= 0x20) | (edges >= 0x80)).any())


def _mask(values: pa.Array) -> np.ndarray:
    mask: np.ndarray = values.to_numpy(zero_copy_only=False)
    return mask.astype(bool, copy=False)


def numbers(column: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float64 values, missing, not a finite number): typed numbers keep their value, text is parsed."""
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        missing = _mask(column.is_null())
    else:
        text, missing = stripped(column)
        try:
            values = text.cast(pa.float64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            values = np.array([_float(v) for v in text.to_pylist()], dtype=np.float64)
    values = np.where(missing, np.nan, values)
    bad = ~missing & ~np.isfinite(values)
    return values, missing, bad


def _float(text: str | None) -> float:
    if text is None:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


def event_times(column: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array]:
    """(epoch seconds, missing, unparsable, stripped text) of an event-time column."""
    text, missing = stripped(column)
    seconds = np.zeros(len(text), dtype=np.int64)
    bad = np.zeros(len(text), dtype=bool)
    present = np.flatnonzero(~missing)
    if len(present):
        values = text.take(pa.array(present))
        parsed, ok = _parse_times(values)
        seconds[present] = parsed
        bad[present] = ~ok
    return seconds, missing, bad, text


def _parse_times(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Seconds and success for non-missing time texts: vectorised for all-epoch or all-ISO batches, else per value."""
    vectorised = _iso_seconds(text)
    if vectorised is None:
        vectorised = _epoch_seconds(text)
    if vectorised is not None:
        seconds, ok = vectorised
        return seconds, ok & (seconds >= MIN_SECONDS) & (seconds <= MAX_SECONDS)
    values = text.to_pylist()
    seconds = np.zeros(len(values), dtype=np.int64)
    ok = np.zeros(len(values), dtype=bool)
    for index, value in enumerate(values):
        parsed = _seconds(value)
        if parsed is not None:
            seconds[index], ok[index] = parsed, True
    return seconds, ok


def _epoch_seconds(text: pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        values = text.cast(pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        return None
    if not pc.all(pc.match_substring_regex(text, f"^{EPOCH_PATTERN.pattern}$")).as_py():
        return None
    ok = np.abs(values) <= -MIN_SECONDS
    return np.floor(np.where(ok, values, 0.0)).astype(np.int64), ok


def _iso_seconds(text: pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
    # Only texts that start with a four-digit year and a hyphen: anything else follows Python's rules.
    if not pc.all(pc.equal(pc.utf8_slice_codeunits(text, 4, 5), "-")).as_py():
        return None
    for kind in (pa.timestamp("us", "UTC"), pa.timestamp("us")):
        try:
            micros = text.cast(kind).cast(pa.int64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            continue
        return micros // 1_000_000, np.ones(len(text), dtype=bool)
    return None


def _seconds(text: str) -> int | None:
    """One time text as whole epoch seconds (floored), None when it is not a time."""
    try:
        if EPOCH_PATTERN.fullmatch(text):
            value = math.floor(float(text))
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            value = math.floor(moment.timestamp())
    except (ValueError, OverflowError):
        return None
    return value if MIN_SECONDS <= value <= MAX_SECONDS else None


def parse_event_time(text: str) -> str:
    """Normalise ISO-8601 (naive means UTC) or epoch seconds to `YYYY-MM-DDTHH:MM:SSZ`; ValueError otherwise."""
    seconds, missing, bad, _ = event_times(pa.array([text], _TEXT))
    if missing[0] or bad[0]:
        raise ValueError(f"not a timestamp: {text!r}")
    return format_seconds(int(seconds[0]))


def format_seconds(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
