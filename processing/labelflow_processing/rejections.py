"""The wording of every rejection reason in rejected.jsonl: one definition that every engine renders with."""

from __future__ import annotations

MISSING_ID = "missing record id"
MISSING_TIME = "missing event time"
DUPLICATE = "duplicate record id"
OVERFLOW = "a scaled feature value is beyond the float range"


def short(text: str | None, limit: int = 40) -> str:
    """Quote a cell for a rejection reason, cut to a readable length."""
    text = text or ""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def cell_too_large(column: str, size: int, limit: int) -> str:
    return f"{column} is {size:,} bytes, above {limit:,}"


def row_too_large(size: int, limit: int) -> str:
    return f"the row's cells are {size:,} bytes, above {limit:,}"


def control_in_id(record_id: str | None) -> str:
    return f"control character in the record id: {short(record_id)}"


def bad_time(text: str | None) -> str:
    return f"unparsable event time: {short(text)}"


def missing_value(feature: str) -> str:
    return f"missing value for {feature}"


def not_a_number(feature: str, text: str | None) -> str:
    """`text` is the cell stripped of whitespace at its ends."""
    return f"{feature} is not a number: {short(text)}"


def field_count(expected: int, found: int) -> str:
    return f"expected {expected} fields, found {found}"
