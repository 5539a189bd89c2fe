"""CSV read when the spec says no value holds a line break (input.newlines_in_values: false): every line is a
record, and the first quoted line break fails the file at its line."""

from __future__ import annotations

import pytest

from tests.unit.processing.conftest import Job, csv_text, make_spec, read_as

SINGLE_LINE = [*read_as(), "--no-newlines-in-values"]
ROWS = ["a,1767225600,first,1,x", "b,1767225600,second,2,y", "c,1767225600,third,3,z"]


def reason(line: int) -> str:
    return (
        "the spec says CSV values hold no line breaks (input.newlines_in_values: false) but line "
        f"{line} has one inside quotes; remove the setting"
    )


def test_a_file_without_line_breaks_in_values_reads_as_it_does_by_default(job: Job) -> None:
    # Given rows with quoted commas and quotes, a bad row and a blank line
    text = csv_text(ROWS[0], 'b,1767225600,"sec, ""ond""",2,y', "", "d,1", ROWS[2])
    # When it is read told each line is a record, then as by default
    single_line = job.run(text, make_spec(), read=SINGLE_LINE)
    default = job.run(text, make_spec())
    # Then both give the same records and rejections
    assert single_line.code == default.code == 0, single_line.message
    assert single_line.records == default.records
    assert single_line.rejected == default.rejected
    assert [row["display"]["text"] for row in single_line.records] == ["first", 'sec, "ond"', "third"]


@pytest.mark.parametrize(
    ("rows", "line"),
    [
        # A line feed inside quotes, in a column the spec does not read, in a record of the right width
        ([ROWS[0], ROWS[1], 'c,1767225600,third,3,"z\nz"'], 4),
        # A CRLF inside quotes in a column the spec reads
        ([ROWS[0], 'b,1767225600,"sec\r\nond",2,y', ROWS[2]], 3),
        # A lone CR inside quotes
        (['a,1767225600,"fir\rst",1,x', *ROWS[1:]], 2),
        # A quote left open folds the next lines into a record of the wrong width
        ([ROWS[0], 'b,1767225600,"second,2,y', *ROWS[2:], "d,1767225600,fourth,4,w"], 3),
        # A quote left open at the end of the file
        ([*ROWS, 'd,1767225600,fourth,4,"w'], 5),
    ],
)
def test_the_first_quoted_line_break_fails_the_file_at_its_line(job: Job, rows: list[str], line: int) -> None:
    # Given a file with a quoted line break, read told there is none
    text = csv_text(*rows)
    # When the job runs
    outcome = job.run(text, make_spec(), read=SINGLE_LINE)
    # Then it fails with the reason, at that record's line
    assert (outcome.code, outcome.message) == (2, reason(line))


def test_by_default_a_quoted_line_break_is_part_of_its_value(job: Job) -> None:
    # Given the same file read as by default
    text = csv_text(ROWS[0], 'b,1767225600,"sec\nond",2,y', ROWS[2])
    # When the job runs
    outcome = job.run(text, make_spec())
    # Then the value holds its line break
    assert outcome.code == 0, outcome.message
    assert outcome.records[1]["display"]["text"] == "sec\nond"


def test_the_setting_goes_with_csv_only(job: Job) -> None:
    # Given a JSON Lines file
    # When the job is told its values hold no line breaks
    outcome = job.run(
        '{"id": "a"}\n', make_spec(), name="input.jsonl", read=[*read_as("input.jsonl"), "--no-newlines-in-values"]
    )
    # Then the arguments are refused
    assert outcome.code != 0
    assert "--no-newlines-in-values goes with --format csv only" in outcome.stderr
