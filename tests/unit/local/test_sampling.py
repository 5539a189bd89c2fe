"""Reading a bounded sample of a data file: CSV, JSON Lines, Parquet, each maybe gzipped, resolved as planning does."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labelflow.datasets import HEADER_PROBE_BYTES
from labelflow.models.spec import InputSpec
from labelflow_local.sampling import SampleError, read_sample

# A gzipped CSV cut short: its stream ends before the sample does.
TRUNCATED_GZIP = gzip.compress(("id\n" + "".join(f"{i}\n" for i in range(2_000))).encode())[:1_000]
ROWS = [{"id": "a1", "price": "9.5", "note": "fine"}, {"id": "a2", "price": "", "note": "two\nlines"}]


def write_csv(path: Path, delimiter: str = ",", encoding: str = "utf-8") -> Path:
    lines = [delimiter.join(ROWS[0])]
    for row in ROWS:
        lines.append(delimiter.join(f'"{value}"' if "\n" in value else value for value in row.values()))
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def gzipped(path: Path) -> Path:
    target = path.with_name(path.name + ".gz")
    target.write_bytes(gzip.compress(path.read_bytes()))
    return target


def test_csv_with_a_quoted_newline_reads_as_rows_with_blanks_as_none(tmp_path: Path) -> None:
    # Given a CSV whose second row has an empty cell and a quoted cell spanning two lines
    # When it is sampled
    sample = read_sample(write_csv(tmp_path / "data.csv"))
    # Then both rows are read whole, the blank cell is None, and the sample knows it saw everything
    assert sample.resolved.format == "csv" and sample.resolved.delimiter == "," and sample.complete
    assert sample.rows[1] == {"id": "a2", "price": None, "note": "two\nlines"}


@pytest.mark.parametrize(("delimiter", "name"), [(";", "semicolon"), ("\t", "tab"), ("|", "pipe")])
def test_the_delimiter_is_detected_from_the_header_line(tmp_path: Path, delimiter: str, name: str) -> None:
    # Given a CSV separated by something other than commas
    # When it is sampled
    sample = read_sample(write_csv(tmp_path / f"{name}.csv", delimiter))
    # Then the delimiter is the header's and the columns split on it
    assert sample.resolved.delimiter == delimiter and sample.columns == ["id", "price", "note"]


def test_a_blank_first_line_is_refused_as_planning_refuses_it(tmp_path: Path) -> None:
    # Given a one-column file whose header follows blank lines
    path = tmp_path / "ids.csv"
    path.write_text("\n\nid\nr1\n\nr2\n")
    # When it is sampled / Then it is refused: the header must be the first line, as processing reads it
    with pytest.raises(SampleError, match="the first line is blank"):
        read_sample(path)


def test_a_utf8_bom_is_dropped_and_windows_text_is_recognised_when_no_spec_names_the_encoding(
    tmp_path: Path,
) -> None:
    # Given a UTF-8 file with a byte order mark and a cp1252 file with an accented value
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfid,city\nr1,Paris\n")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("id,city\nr1,Orléans\n".encode("cp1252"))
    # When both are sampled without a spec (init)
    # Then the BOM is not part of the first column, and the cp1252 file is read with the input section naming it
    assert read_sample(bom).columns == ["id", "city"] and read_sample(bom).options == InputSpec()
    sample = read_sample(latin)
    assert sample.options == InputSpec(encoding="cp1252") and sample.rows[0]["city"] == "Orléans"


def test_a_spec_without_the_encoding_refuses_windows_text_as_planning_does(tmp_path: Path) -> None:
    # Given a cp1252 file, one non-UTF-8 byte in its header and one far past the bytes planning probes
    header = tmp_path / "header.csv"
    header.write_bytes("id,città\nr1,x\n".encode("cp1252"))
    late = tmp_path / "late.csv"
    late.write_bytes(b"id,city\n" + b"r0,Paris\n" * (HEADER_PROBE_BYTES // 8) + "r1,Orléans\n".encode("cp1252"))
    # When they are sampled with a spec whose input section names no encoding (validate)
    # Then each is refused in one line that says to set input.encoding
    for path in (header, late):
        with pytest.raises(SampleError, match=r"is not utf-8 text .*set input.encoding") as caught:
            read_sample(path, InputSpec())
        assert "\n" not in str(caught.value)
    # And without a spec (init), the late one is read as cp1252 too
    assert read_sample(late, limit=100_000).rows[-1]["city"] == "Orléans"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"id,x\n1,\x81\x90\n", r"^bad.csv is not utf-8 text \(byte 7: invalid start byte\): set input.encoding"),
        ("id,id\nOrléans,1\n".encode("cp1252"), r"^bad.csv: repeated column .* \(read as cp1252: not utf-8 text\)$"),
    ],
)
def test_when_windows_text_is_no_table_either_the_error_says_both(tmp_path: Path, body: bytes, message: str) -> None:
    # Given a file that is not UTF-8, and not cp1252 either or not a table as cp1252
    path = tmp_path / "bad.csv"
    path.write_bytes(body)
    # When it is sampled without a spec / Then the one-line error says what failed in each encoding
    with pytest.raises(SampleError, match=message):
        read_sample(path)


def test_jsonl_values_read_as_processing_reads_them_and_the_keys_are_unioned(tmp_path: Path) -> None:
    # Given JSON Lines of numbers, booleans and an object, where the second line has keys the first lacks
    path = tmp_path / "data.jsonl"
    first, second = {"id": "a", "n": 3.0, "k": 2}, {"id": "b", "n": 1.5e-7, "flag": True, "meta": {"x": 1}}
    path.write_text(json.dumps(first) + "\n\n" + json.dumps(second) + "\n")
    # When it is sampled
    sample = read_sample(path)
    # Then scalars are text as Arrow renders them, objects stay, and every key is a column
    assert sample.resolved.format == "jsonl" and sample.columns == ["id", "n", "k", "flag", "meta"]
    assert sample.rows == [
        {"id": "a", "n": "3", "k": "2"},
        {"id": "b", "n": "1.5e-7", "flag": "true", "meta": {"x": 1}},
    ]


def test_parquet_columns_read_as_text_except_nested_ones(tmp_path: Path) -> None:
    # Given a Parquet file with a float, a boolean, a timestamp and a list column
    from datetime import datetime

    table = pa.Table.from_pylist([{"x": 2.0, "ok": False, "at": datetime(2024, 5, 1, 10, 0), "tags": ["a"]}])
    pq.write_table(table, tmp_path / "t.parquet")
    # When it is sampled / Then the scalars are text and the list stays a list
    (row,) = read_sample(tmp_path / "t.parquet").rows
    assert row == {"x": "2", "ok": "false", "at": "2024-05-01 10:00:00.000000", "tags": ["a"]}


def test_gzipped_files_and_files_without_extension_are_recognised(tmp_path: Path) -> None:
    # Given a gzipped CSV, a gzipped Parquet file, and Parquet and JSON Lines without an extension
    table = pa.Table.from_pylist(ROWS)
    pq.write_table(table, tmp_path / "data.parquet")
    bare_parquet = tmp_path / "bare-parquet"
    bare_parquet.write_bytes((tmp_path / "data.parquet").read_bytes())
    bare_jsonl = tmp_path / "bare-jsonl"
    bare_jsonl.write_text(json.dumps(ROWS[0]) + "\n")
    files = {
        "csv": gzipped(write_csv(tmp_path / "data.csv")),
        "parquet": gzipped(tmp_path / "data.parquet"),
        "bare parquet": bare_parquet,
        "bare jsonl": bare_jsonl,
    }
    # When each is sampled
    samples = {name: read_sample(path) for name, path in files.items()}
    # Then each is read in its format, with the same first row
    assert {name: s.resolved.format for name, s in samples.items()} == {
        "csv": "csv",
        "parquet": "parquet",
        "bare parquet": "parquet",
        "bare jsonl": "jsonl",
    }
    assert samples["csv"].resolved.gzip and samples["parquet"].resolved.gzip
    assert all(s.rows[0]["id"] == "a1" for s in samples.values())
    assert not samples["bare parquet"].extension_says_format and samples["csv"].extension_says_format


def test_the_sample_is_bounded(tmp_path: Path) -> None:
    # Given a file of 50 rows in three formats, x a number in JSON Lines and Parquet
    rows = [{"id": f"r{i}", "x": i} for i in range(50)]
    csv_path = tmp_path / "many.csv"
    csv_path.write_text("id,x\n" + "".join(f"{r['id']},{r['x']}\n" for r in rows))
    jsonl_path = tmp_path / "many.jsonl"
    jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "many.parquet")
    # When each is sampled with a limit of 10 rows
    samples = [read_sample(p, limit=10) for p in (csv_path, jsonl_path, tmp_path / "many.parquet")]
    # Then each sample holds the first 10 rows, as text, and knows there is more
    assert [(len(s.rows), s.complete, s.rows[-1]) for s in samples] == [(10, False, {"id": "r9", "x": "9"})] * 3


def test_the_spec_input_section_overrides_detection(tmp_path: Path) -> None:
    # Given a semicolon file whose header holds more commas than semicolons
    path = tmp_path / "data.txt"
    path.write_text("a,b;c\n1;2\n")
    # When it is read with the spec's delimiter and format
    sample = read_sample(path, InputSpec(format="csv", delimiter=";"))
    # Then the spec wins
    assert sample.columns == ["a,b", "c"] and sample.rows == [{"a,b": "1", "c": "2"}]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.csv", b"\n \n", "bad.csv is empty"),
        ("bad.csv", b"id,id\n1,2\n", "repeated column names in the header: id"),
        ("bad.csv", b"id,\n1,2\n", "column 2 of the header has no name"),
        ("bad.csv", b"a,b;c\n1,2;3\n", r"cannot tell the delimiter \(',' and ';'"),
        ("bad.json", b'[{"id": 1}]', "JSON Lines need one object per line"),
        ("bad.csv.gz", b"id\n1\n", "ends in .gz but is not gzip data"),
        ("bad.csv.gz", TRUNCATED_GZIP, "bad.csv.gz: cannot be read"),
        ("bad", b"id,x\x00\n", "not a text file"),
        ("bad.parquet", b"PAR1 but no footer", "bad.parquet: not a Parquet file"),
    ],
)
def test_unreadable_files_fail_with_one_line(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    # Given a file that is no table
    path = tmp_path / name
    path.write_bytes(content)
    # When it is sampled / Then the error names the file and says why in one line
    with pytest.raises(SampleError, match=message) as caught:
        read_sample(path)
    assert "\n" not in str(caught.value)


def test_a_jsonl_line_that_is_not_an_object_is_named(tmp_path: Path) -> None:
    # Given JSON Lines whose second line is a list
    path = tmp_path / "data.jsonl"
    path.write_text('{"id": 1}\n[1, 2]\n')
    # When it is sampled / Then the error names the line
    with pytest.raises(SampleError, match="line 2 is not a JSON object"):
        read_sample(path)


@pytest.mark.parametrize(("encoding", "message"), [("utf-8", "is not utf-8 text"), ("nope", "unknown text encoding")])
def test_an_encoding_that_does_not_decode_the_file_is_refused(tmp_path: Path, encoding: str, message: str) -> None:
    # Given a cp1252 file read as the spec says, in another or an unknown encoding
    path = tmp_path / "data.csv"
    path.write_bytes("id,city\nr1,Orléans\n".encode("cp1252"))
    # When it is sampled / Then the error names the encoding, with no fallback
    with pytest.raises(SampleError, match=message):
        read_sample(path, InputSpec(encoding=encoding))


def test_the_spec_encoding_is_used(tmp_path: Path) -> None:
    # Given a latin-1 JSON Lines file and a spec that names its encoding
    path = tmp_path / "data.jsonl"
    path.write_bytes('{"id": "r1", "city": "Orléans"}\n'.encode("latin-1"))
    # When it is sampled / Then the text is decoded as the spec says
    assert read_sample(path, InputSpec(encoding="latin-1")).rows == [{"id": "r1", "city": "Orléans"}]
