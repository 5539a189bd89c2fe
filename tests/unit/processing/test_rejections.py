"""The rejection reasons' wording, shared by the single-machine and the Spark engines."""

from __future__ import annotations

from labelflow_processing import rejections


def test_a_long_cell_is_quoted_and_cut_in_a_reason() -> None:
    # Given a cell longer than a reason quotes
    cell = "x" * 50

    # When a reason quotes it
    reason = rejections.not_a_number("price", cell)

    # Then it shows the first 40 characters, quoted, and marks the cut
    assert reason == f"price is not a number: '{'x' * 40}...'"


def test_sizes_in_a_reason_have_thousands_separators() -> None:
    # Given a cell and a row above their limits
    # When their reasons are written
    cell, row = rejections.cell_too_large("text", 70_000, 65_536), rejections.row_too_large(2_000_000, 1_048_576)

    # Then both sizes read with separators
    assert cell == "text is 70,000 bytes, above 65,536"
    assert row == "the row's cells are 2,000,000 bytes, above 1,048,576"


def test_a_missing_cell_quotes_as_empty() -> None:
    # Given no text (a null cell)
    # When a reason quotes it
    # Then it reads as an empty quoted string
    assert rejections.bad_time(None) == "unparsable event time: ''"
