"""Reading the input: CSV dialects and encodings, JSON Lines, Parquet, gzip, and formats recognised by content."""

from __future__ import annotations

import csv
import gzip
import io
import json
from typing import Any

import pytest

from tests.unit.processing.conftest import HEADER, Job, csv_text, in_image, make_spec

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
def test_the_delimiter_is_detected_from_the_header(job: Job, delimiter: str) -> None:
    # Given a file separated by something other than commas, with a comma inside a value
    text = csv_text(*ROWS).replace(",", delimiter).replace("first", "first, really")

    # When the job runs without input.delimiter
    outcome = job.run(text, make_spec(), name="input.tsv" if delimiter == "\t" else "input.csv")

    # Then the columns are found and the comma stays inside its value
    assert outcome.code == 0, outcome.message
    assert summary(outcome.records)[0] == ("a", "first, really", 1.0, "x")


def test_an_ambiguous_header_is_fatal_and_says_to_set_the_delimiter(job: Job) -> None:
    # Given a header with both ";" and "," where neither split finds every column
    text = "id;ts,text;num,cat\na;1,t;1,x\n"

    # When the job runs / Then it stops with one line asking for input.delimiter
    outcome = job.run(text, make_spec())
    assert outcome.code == 2
    assert outcome.message == "cannot tell the CSV delimiter from the header (found ',' ';'): set input.delimiter"


def test_a_header_with_two_candidates_takes_the_one_that_finds_the_columns(job: Job) -> None:
    # Given a ";" file whose header holds a "," inside a column that is not required
    text = "id;ts;text;num;cat;note, misc\n" + "a;1767225600;t;1;x;n\n"

    # When the job runs / Then ";" is the only split giving every required column
    outcome = job.run(text, make_spec())
    assert outcome.code == 0, outcome.message
    assert outcome.records[0]["features"] == {"num": 1.0, "cat": "x"}


def test_the_spec_delimiter_wins_over_detection(job: Job) -> None:
    # Given a ";" file and input.delimiter set to "|"
    text = csv_text(*ROWS).replace(",", ";")

    # When the job runs / Then the header is split on "|" only, so no required column is found
    outcome = job.run(text, make_spec(input={"delimiter": "|"}))
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


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252"])
def test_a_configured_encoding_is_honoured(job: Job, encoding: str) -> None:
    # Given a file in a single-byte encoding (with a character cp1252 has at 0x80)
    text = "é€" if encoding == "cp1252" else "é"
    data = csv_text(f"a,1767225600,caf{text},1,x").encode(encoding)

    # When the job runs with input.encoding
    outcome = job.run(data, make_spec(input={"encoding": encoding}))

    # Then the text is decoded with it
    assert outcome.code == 0, outcome.message
    assert outcome.records[0]["display"]["text"] == f"caf{text}"


def test_bytes_that_are_not_utf8_are_fatal_naming_the_offset(job: Job) -> None:
    # Given a file whose undecodable byte comes after many good rows (and a rejected one)
    good = "".join(f"r{i},1767225600,text,{i},x\n" for i in range(20_000))
    head = (HEADER + "\n,1767225600,t,1,x\n" + good).encode()
    data = head + b"z,1767225600,\xe9t\xe9,1,x\n"

    # When the job runs without input.encoding
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


# --- gzip and content detection ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("name", ["input.{kind}.gz", "landed-object-key", "input.{kind}"])
def test_formats_are_recognised_by_extension_or_content_gzipped_or_not(job: Job, kind: str, name: str) -> None:
    # Given the same two rows as CSV, JSON Lines or Parquet, under a name with or without an extension
    records = [
        {"id": "a", "ts": "2026-01-01T00:00:00Z", "text": "first", "num": 1.0, "cat": "x"},
        {"id": "b", "ts": "2026-01-01T00:00:00Z", "text": "second", "num": 2.0, "cat": "y"},
    ]
    if kind == "csv":
        data = csv_text(*ROWS).encode()
    elif kind == "jsonl":
        data = "".join(json.dumps(r) + "\n" for r in records).encode()
    else:
        data = parquet_bytes(job, records)
    # gzipped when the name says so, and also the extension-less key (recognised by its magic bytes)
    gzipped = name.endswith(".gz") or (name == "landed-object-key" and kind != "csv")
    body = gzip.compress(data) if gzipped else data

    # When the job runs
    outcome = job.run(body, make_spec(), name=name.format(kind=kind))

    # Then the rows are read the same way
    assert outcome.code == 0, outcome.message
    assert summary(outcome.records) == EXPECTED
