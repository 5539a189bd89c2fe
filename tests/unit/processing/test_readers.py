"""Reading the input as planning resolved it: CSV dialects and encodings, JSON Lines, Parquet, gzip of each."""

from __future__ import annotations

import csv
import gzip
import io
import json
from typing import Any

import pytest

from tests.unit.processing.conftest import HEADER, Job, csv_text, in_image, make_spec, read_as

ROWS = ["a,1767225600,first,1,x", "b,1767225600,second,2,y"]
EXPECTED = [("a", "first", 1.0, "x"), ("b", "second", 2.0, "y")]


def summary(records: list[dict[str, Any]]) -> list[tuple[str, str, float, str]]:
    return [(r["record_id"], r["display"]["text"], r["features"]["num"], r["features"]["cat"]) for r in records]


def parquet_bytes(job: Job, rows: list[dict[str, Any]]) -> bytes:
    """A Parquet file of `rows`, written by the image's pyarrow (typed as the values are)."""
    code = (
        "import io, json, sys, pyarrow as pa, pyarrow.parquet as pq\n"
        f"table = pa.Table.from_pylist(json.loads({json.dumps(json.dumps(rows))}))\n"
        "buffer = io.BytesIO(); pq.write_table(table, buffer)\n"
        "print(json.dumps(buffer.getvalue().hex()))"
    )
    return bytes.fromhex(in_image(job.python, code))


# --- CSV --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_rows_are_split_on_the_delimiter_planning_resolved(job: Job, delimiter: str) -> None:
    # Given a file separated by something other than commas, with a comma inside a value
    text = csv_text(*ROWS).replace(",", delimiter).replace("first", "first, really")

    # When the job runs told that delimiter
    outcome = job.run(text, make_spec(), read=read_as(delimiter=delimiter))

    # Then the columns are found and the comma stays inside its value
    assert outcome.code == 0, outcome.message
    assert summary(outcome.records)[0] == ("a", "first, really", 1.0, "x")


def test_the_header_is_split_on_the_given_delimiter_only(job: Job) -> None:
    # Given a ";" file
    text = csv_text(*ROWS).replace(",", ";")

    # When the job runs told "|" / Then the header is one column, so no required column is found
    outcome = job.run(text, make_spec(), read=read_as(delimiter="|"))
    assert (outcome.code, outcome.message) == (2, "missing required columns: cat, id, num, text, ts")


def test_utf8_bom_and_crlf_are_handled(job: Job) -> None:
    # Given a file saved with a UTF-8 byte order mark (as Excel does) and CRLF line ends
    data = "\ufeff" + csv_text("a,1767225600,café,1,x").replace("\n", "\r\n")

    # When the job runs
    outcome = job.run(data, make_spec())

    # Then the first column is still found as "id" and the text is intact
    assert outcome.code == 0, outcome.message
    assert outcome.records[0]["record_id"] == "a"
    assert outcome.records[0]["display"] == {"text": "café"}


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
@pytest.mark.parametrize("encoding", ["latin-1", "cp1252", "utf-16"])
def test_a_configured_encoding_is_honoured(job: Job, kind: str, encoding: str) -> None:
    # Given a file in a single-byte encoding (with a character cp1252 has at 0x80), or in UTF-16 with its BOM
    text = "caf" + ("é€" if encoding == "cp1252" else "é")
    row = {"id": "a", "ts": 1767225600, "text": text, "num": 1, "cat": "x"}
    rows = csv_text(f"a,1767225600,{text},1,x") if kind == "csv" else json.dumps(row, ensure_ascii=False) + "\n"

    # When the job runs told that encoding
    outcome = job.run(
        rows.encode(encoding), make_spec(), name=f"input.{kind}", read=read_as(f"input.{kind}", encoding=encoding)
    )

    # Then the text is decoded with it
    assert outcome.code == 0, outcome.message
    assert outcome.records[0]["display"]["text"] == text


def test_bytes_that_are_not_utf8_are_fatal_naming_the_offset(job: Job) -> None:
    # Given a file whose undecodable byte comes after many good rows (and a rejected one)
    good = "".join(f"r{i},1767225600,text,{i},x\n" for i in range(20_000))
    head = (HEADER + "\n,1767225600,t,1,x\n" + good).encode()
    data = head + b"z,1767225600,\xe9t\xe9,1,x\n"

    # When the job runs with the default encoding (utf-8, with or without a byte order mark)
    outcome = job.run(data, make_spec())

    # Then it is fatal, names the byte and says to set input.encoding; no partial output is left
    assert outcome.code == 2
    offset = len(head) + len("z,1767225600,")
    assert outcome.message == (
        f"input is not valid utf-8 text: input.csv at byte {offset}; "
        "set input.encoding to the file's encoding (e.g. cp1252)"
    )
    assert not (outcome.out / "rejected.jsonl").exists()


def test_quoted_cells_keep_commas_quotes_and_newlines(job: Job) -> None:
    # Given a text cell with commas, doubled quotes and a line break, followed by a bad row
    tricky = 'She said "it\'s fine", then\nchanged her mind, sadly'
    buffer = io.StringIO()
    csv.writer(buffer).writerows(
        [HEADER.split(","), ["a", "1767225600", tricky, "1", "x"], ["b", "1767225600", "t", "oops", "x"]]
    )

    # When the job runs
    outcome = job.run(buffer.getvalue(), make_spec())

    # Then the cell comes back exactly, and the next row's line is its record number (header = 1)
    assert outcome.records[0]["display"]["text"] == tricky
    assert outcome.rejected == [{"line": 3, "record_id": "b", "reason": "num is not a number: 'oops'"}]


def test_rows_with_the_wrong_field_count_keep_their_place(job: Job) -> None:
    # Given short and long rows between good ones, in a file of several batches
    rows = [f"r{i},1767225600,t,{i},x" for i in range(40_000)]
    rows[5], rows[30_000] = "r5,1767225600,t", "r30000,1767225600,t,1,x,extra"

    # When the job runs
    outcome = job.run(csv_text(*rows), make_spec())

    # Then they are rejected at their lines, and every other row is kept
    assert outcome.rejected == [
        {"line": 7, "record_id": "r5", "reason": "expected 5 fields, found 3"},
        {"line": 30_002, "record_id": "r30000", "reason": "expected 5 fields, found 6"},
    ]
    assert outcome.stats["records_out"] == 39_998


def test_several_input_files_are_processed_in_name_order(job: Job) -> None:
    # Given two files in the input folder, with an id repeated across them, and a nested one
    files = {
        "b.csv": csv_text("b1,1767225600,t,1,x", "a1,1767225600,t,1,x"),
        "a.csv": csv_text("a1,1767225600,t,1,x"),
        "c/nested.csv": csv_text("c1,1767225600,t,1,x"),
    }

    # When the job runs
    outcome = job.run(files, make_spec())

    # Then a.csv comes first and the repeated id in b.csv is rejected
    assert outcome.stats["input_files"] == ["a.csv", "b.csv", "c/nested.csv"]
    stats = outcome.stats
    assert (stats["records_in"], stats["records_out"], stats["rejected"]) == (4, 3, 1)


# --- JSON Lines and Parquet -------------------------------------------------------------------------------


def test_json_lines_with_typed_values_blank_lines_and_bad_lines(job: Job) -> None:
    # Given objects with numbers, strings and nulls, a blank line, a non-object line and broken JSON
    lines = [
        json.dumps({"id": "a", "ts": "2026-01-01T00:00:00Z", "text": "first", "num": 1, "cat": "x"}),
        "",
        json.dumps({"id": 7, "ts": 1767225600, "text": "second", "num": "2.5", "cat": None}),
        json.dumps(["not", "an", "object"]),
        '{"id": "c", "ts": ',
        json.dumps({"id": "d", "ts": "2026-01-01T00:00:00Z", "text": "no num", "cat": "y", "extra": {"k": 1}}),
    ]

    # When the job runs (format from the extension)
    outcome = job.run("\n".join(lines) + "\n", make_spec(), name="input.jsonl")

    # Then objects become rows (numbers keep their value, ids become text), missing keys are missing values
    assert outcome.code == 0, outcome.message
    assert [(r["record_id"], r["features"]) for r in outcome.records] == [
        ("a", {"num": 1.0, "cat": "x"}),
        ("7", {"num": 2.5, "cat": "x"}),
        ("d", {"num": 1.75, "cat": "y"}),
    ]
    # And other lines are rejected with their physical line number
    assert [(r["line"], r["reason"].split(":")[0]) for r in outcome.rejected] == [
        (4, "not a JSON object"),
        (5, "not valid JSON"),
    ]


def test_a_required_key_absent_from_every_object_is_fatal(job: Job) -> None:
    # Given JSON Lines without any "cat" / When the job runs / Then it is fatal, naming the column
    text = json.dumps({"id": "a", "ts": 1767225600, "text": "t", "num": 1}) + "\n"
    outcome = job.run(text, make_spec(), name="input.ndjson")
    assert (outcome.code, outcome.message) == (2, "missing required columns: cat")


def test_parquet_with_typed_columns(job: Job) -> None:
    # Given a Parquet file with integer ids, float numbers (one null), string categories
    rows = [
        {"id": 1, "ts": "2026-01-01T00:00:00Z", "text": "first", "num": 1.0, "cat": "x"},
        {"id": 2, "ts": "2026-01-01T00:00:00Z", "text": "second", "num": None, "cat": "y"},
    ]

    # When the job runs
    outcome = job.run(parquet_bytes(job, rows), make_spec(), name="input.parquet")

    # Then values keep their meaning, and line is the row number
    assert outcome.code == 0, outcome.message
    assert [(r["record_id"], r["features"]["num"]) for r in outcome.records] == [("1", 1.0), ("2", 1.0)]


# --- format and gzip, as told -------------------------------------------------------------------------------


def two_rows(job: Job, kind: str) -> bytes:
    """The same two rows as CSV, JSON Lines or Parquet."""
    records = [
        {"id": "a", "ts": "2026-01-01T00:00:00Z", "text": "first", "num": 1.0, "cat": "x"},
        {"id": "b", "ts": "2026-01-01T00:00:00Z", "text": "second", "num": 2.0, "cat": "y"},
    ]
    if kind == "csv":
        return csv_text(*ROWS).encode()
    if kind == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in records).encode()
    return parquet_bytes(job, records)


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("name", ["landed-object-key", "misleading.csv"])
def test_each_format_is_read_as_told_gzipped_or_not_whatever_the_file_name(
    job: Job, kind: str, gzipped: bool, name: str
) -> None:
    # Given the same two rows as CSV, JSON Lines or Parquet, gzipped or not, under a name that says nothing or lies
    data = two_rows(job, kind)
    body = gzip.compress(data) if gzipped else data

    # When the job runs told the format and compression
    outcome = job.run(body, make_spec(), name=name, read=read_as(format=kind, gzip=gzipped))

    # Then the rows are read the same way
    assert outcome.code == 0, outcome.message
    assert summary(outcome.records) == EXPECTED


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda body: body[: len(body) // 2], "Truncated compressed stream"),
        (lambda body: body[10:], "zlib inflate failed: incorrect header check"),
    ],
)
def test_a_corrupt_gzip_stream_is_fatal(job: Job, kind: str, damage: Any, reason: str) -> None:
    # Given a gzip stream cut short, or one whose header is gone
    body = damage(gzip.compress(two_rows(job, kind) * (1 if kind == "parquet" else 50)))

    # When the job runs told it is gzip
    outcome = job.run(body, make_spec(), name="input.gz", read=read_as(format=kind, gzip=True))

    # Then it stops with one line naming the file, and leaves no partial output
    assert (outcome.code, outcome.message) == (2, f"input file input.gz is not readable as gzip: {reason}")
    assert not (outcome.out / "rejected.jsonl").exists()


# --- the reading arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("read", "error"),
    [
        (["--format", "csv"], "--delimiter is required with --format csv, and only with it"),
        (["--format", "jsonl", "--delimiter", ","], "--delimiter is required with --format csv, and only with it"),
        (["--format", "csv", "--delimiter", ";;"], "a delimiter is one character, not ';;'"),
        (["--format", "csv", "--delimiter", ",", "--encoding", "klingon"], "unknown text encoding 'klingon'"),
        (["--format", "xlsx"], "invalid choice: 'xlsx'"),
        ([], "the following arguments are required: --format"),
    ],
)
def test_reading_arguments_that_do_not_say_how_to_read_are_refused(job: Job, read: list[str], error: str) -> None:
    # Given arguments planning would never pass / When the job starts / Then argparse refuses them before any work
    outcome = job.run(csv_text(*ROWS), make_spec(), read=read)
    assert outcome.code == 2
    assert error in outcome.stderr
    assert not outcome.out.exists()
