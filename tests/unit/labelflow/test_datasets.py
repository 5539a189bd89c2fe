"""datasets.py: header checks, probing a landed object, and loading dataset specs."""

from __future__ import annotations

import gzip
import json
from typing import Any
from unittest.mock import patch

import pytest

from labelflow.datasets import check_input, load_dataset_spec, probe_input, read_run_spec
from labelflow.errors import ConfigError, InvalidInputError
from labelflow.models.spec import DatasetSpec
from tests.conftest import ROOT

WHERE = "s3://labelflow-demo/raw/reviews/data.csv"
DEMO_SPEC_BYTES = (ROOT / "demo" / "datasets" / "reviews.json").read_bytes()
KEY = "raw/reviews/data.csv"
HEADER = "review_id,review_text,reviewed_at,product_category,helpful_votes,price,verified_purchase"


@pytest.fixture
def spec() -> DatasetSpec:
    return DatasetSpec.model_validate_json(DEMO_SPEC_BYTES)


# ------------------------------------------------------------------------ check_header
def test_header_with_every_column_passes(spec: DatasetSpec) -> None:
    # Given a header with every required column plus an extra one, and a data row
    body = f"{HEADER},extra\nr1,great,2024-01-01,books,1,9.5,yes\n".encode()

    # When it is checked / Then its columns come back in file order
    assert check_input(KEY, body, spec, WHERE).columns == [*HEADER.split(","), "extra"]


def test_utf8_bom_is_ignored(spec: DatasetSpec) -> None:
    # Given a header that starts with a UTF-8 byte order mark (as Excel writes it)
    body = b"\xef\xbb\xbf" + HEADER.encode() + b"\r\n"

    # When it is checked / Then the first column is read without the BOM
    assert (check_input(KEY, body, spec, WHERE).columns or [])[:1] == ["review_id"]


def test_quoted_header_passes(spec: DatasetSpec) -> None:
    # Given a header whose names are all quoted, one holding a comma
    body = ",".join(f'"{name}"' for name in [*HEADER.split(","), "notes, free text"]).encode() + b"\n"

    # When it is checked / Then the quotes are not part of the names, and the quoted comma splits nothing
    assert check_input(KEY, body, spec, WHERE).columns == [*HEADER.split(","), "notes, free text"]


def test_padded_header_names_are_stripped(spec: DatasetSpec) -> None:
    # Given a header whose names are padded with spaces
    body = ", ".join(f" {name} " for name in HEADER.split(",")).encode() + b"\n"

    # When it is checked / Then the padding is not part of the names
    assert check_input(KEY, body, spec, WHERE).columns == HEADER.split(",")


def test_missing_columns_are_listed(spec: DatasetSpec) -> None:
    # Given a header without price and helpful_votes
    body = b"review_id,review_text,reviewed_at,product_category,verified_purchase\n"

    # When it is checked / Then the error names the file and every missing column, in spec order
    with pytest.raises(InvalidInputError) as caught:
        check_input(KEY, body, spec, WHERE)
    assert str(caught.value) == f"{WHERE} is missing required columns: helpful_votes, price"


def test_columns_in_later_lines_do_not_count(spec: DatasetSpec) -> None:
    # Given a header missing price, with "price" only in a data row
    body = HEADER.replace(",price", "").encode() + b"\nprice,price\n"

    # When it is checked / Then only the first line is the header
    with pytest.raises(InvalidInputError, match="missing required columns: price$"):
        check_input(KEY, body, spec, WHERE)


@pytest.mark.parametrize("body", [b"", b"   \n\n", b"\r\n"])
def test_empty_input_is_rejected(spec: DatasetSpec, body: bytes) -> None:
    # Given a body with nothing but whitespace
    # When it is checked / Then it is reported empty
    with pytest.raises(InvalidInputError, match=f"^{WHERE} is empty$"):
        check_input(KEY, body, spec, WHERE)


def test_non_utf8_input_is_rejected(spec: DatasetSpec) -> None:
    # Given a Latin-1 encoded header
    body = "review_id,révision\n".encode("latin-1")

    # When it is checked / Then it is reported as not utf-8, with the offending byte's offset and the fix
    with pytest.raises(InvalidInputError, match=r"is not utf-8 text \(byte 11: .*\): set input.encoding"):
        check_input(KEY, body, spec, WHERE)


def test_binary_input_is_rejected(spec: DatasetSpec) -> None:
    # Given a body with NUL bytes in its first line (a binary file)
    body = b"PK\x03\x04\x00\x00\x00\x00\n"

    # When it is checked / Then it is not a text file
    with pytest.raises(InvalidInputError, match="is not a text file"):
        check_input(KEY, body, spec, WHERE)


def test_a_stray_nul_in_one_cell_leaves_the_file_text(spec: DatasetSpec) -> None:
    # Given a CSV whose one id holds a NUL byte among many rows
    rows = "".join(f"r{i},fine,2024-01-01,books,1,9.5,yes\n" for i in range(20))
    body = f"{HEADER}\nr\x00x,fine,2024-01-01,books,1,9.5,yes\n{rows}".encode()

    # When it is checked / Then it is still a CSV file (processing rejects that row, not the file)
    assert check_input(KEY, body, spec, WHERE).format == "csv"


def test_multibyte_char_cut_at_the_probe_end_is_accepted(spec: DatasetSpec) -> None:
    # Given a probe that ends in the middle of a multi-byte character (the range read cut it)
    body = (HEADER + "\nr1,caf").encode() + "é".encode()[:1]

    # When it is checked / Then the incomplete tail is not an encoding error
    assert check_input(KEY, body, spec, WHERE).columns == HEADER.split(",")


# ------------------------------------------------------------------------ formats
ROW = "r1,great,2024-01-01,books,1,9.5,yes"


@pytest.mark.parametrize(
    ("key", "body", "expected"),
    [
        ("raw/reviews/data.csv", f"{HEADER}\n{ROW}\n".encode(), ("csv", False, ",")),
        ("raw/reviews/data.csv", f"{HEADER}\n".replace(",", ";").encode(), ("csv", False, ";")),
        ("raw/reviews/data.tsv", f"{HEADER}\n".replace(",", "\t").encode(), ("csv", False, "\t")),
        ("raw/reviews/data.csv.gz", gzip.compress(f"{HEADER}\n{ROW}\n".encode()), ("csv", True, ",")),
        ("raw/reviews/export", gzip.compress(f"{HEADER}\n".replace(",", "|").encode()), ("csv", True, "|")),
        ("raw/reviews/data.jsonl", b'{"review_id": "r1", "review_text": "ok"}\n', ("jsonl", False, None)),
        ("raw/reviews/no-extension", b'\n {"review_id": "r1"}\n', ("jsonl", False, None)),
        ("raw/reviews/data.parquet", b"PAR1\x15\x04", ("parquet", False, None)),
        ("raw/reviews/blob", b"PAR1\x15\x04", ("parquet", False, None)),
        ("raw/reviews/bom-lines", b'\xef\xbb\xbf{"review_id": "r1"}\n', ("jsonl", False, None)),
    ],
)
def test_the_format_comes_from_the_extension_else_the_content(
    spec: DatasetSpec, key: str, body: bytes, expected: tuple[str, bool, str | None]
) -> None:
    # Given a file of some format, under a key with or without an extension
    # When its first bytes are checked
    resolved = check_input(key, body, spec, WHERE)
    # Then its format, compression and delimiter are resolved
    assert (resolved.format, resolved.gzip, resolved.delimiter) == expected


def test_an_ambiguous_delimiter_asks_for_the_spec(spec: DatasetSpec) -> None:
    # Given a header where commas and semicolons are equally common
    body = b"a,b;c\n"
    # When it is checked / Then the error says to set the delimiter
    with pytest.raises(InvalidInputError, match=r"cannot tell the delimiter \(',' and ';'.*set input.delimiter"):
        check_input(KEY, body, spec, WHERE)


def test_the_spec_columns_settle_a_delimiter_the_header_leaves_open(spec: DatasetSpec) -> None:
    # Given a semicolon header whose names hold as many commas as there are semicolons
    names = [*HEADER.split(","), "a,b,c,d,e", "f,g,h,i,j"]
    body = ";".join(names).encode() + b"\n"
    assert body.count(b";") == body.count(b",") == 8
    # When it is checked / Then the delimiter that yields the spec's columns is chosen
    assert check_input(KEY, body, spec, WHERE).delimiter == ";"


def test_the_spec_can_name_the_encoding_and_delimiter() -> None:
    # Given a latin-1, semicolon-separated file and a spec that says so
    raw = json.loads(DEMO_SPEC_BYTES)
    raw["input"] = {"encoding": "latin-1", "delimiter": ";"}
    spec = DatasetSpec.model_validate(raw)
    body = (HEADER.replace(",", ";") + ";remarque\nr1;très bien\n").encode("latin-1")
    # When it is checked / Then it is read with them
    resolved = check_input(KEY, body, spec, WHERE)
    assert resolved.columns is not None and resolved.columns[-1] == "remarque"
    assert resolved.container_arguments() == ["--format", "csv", "--encoding", "latin-1", "--delimiter", ";"]


@pytest.mark.parametrize(
    ("key", "body", "message"),
    [
        ("raw/reviews/data.csv.gz", b"not gzip", "ends in .gz but is not gzip data"),
        ("raw/reviews/data.jsonl", b"[1, 2]\n", "one object per line"),
        ("raw/reviews/data.jsonl", b"{oops\n", "the first line is not JSON"),
        ("raw/reviews/data.parquet", b"id,text\n", "not a Parquet file"),
        ("raw/reviews/export", b'[{"review_id": "r1"}]', "is a JSON array: labelflow reads JSON Lines"),
        ("raw/reviews/data.csv", b"\n" + HEADER.encode() + b"\n", "the first line is blank"),
        ("raw/reviews/data.csv", HEADER.encode("utf-16"), "UTF-16 text .*set input.encoding to utf-16"),
    ],
)
def test_a_file_that_is_not_what_it_claims_is_rejected(spec: DatasetSpec, key: str, body: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        check_input(key, body, spec, WHERE)


# ------------------------------------------------------------------------ probe_input
LIMIT = 400_000


def test_probe_input_returns_the_size(s3: Any, bucket: str, spec: DatasetSpec) -> None:
    # Given a valid CSV object version
    body = f"{HEADER}\nr1,great,2024-01-01,books,1,9.5,yes\n".encode()
    version = s3.put_object(Bucket=bucket, Key="raw/reviews/data.csv", Body=body)["VersionId"]

    # When it is probed / Then it is a comma-separated csv with the header's columns
    resolved = probe_input(s3, bucket, "raw/reviews/data.csv", version, spec, LIMIT)
    assert (resolved.format, resolved.delimiter, resolved.gzip) == ("csv", ",", False)
    assert resolved.columns == HEADER.split(",")


def test_probe_input_reads_the_given_version(s3: Any, bucket: str, spec: DatasetSpec) -> None:
    # Given a valid first version overwritten by an invalid second one
    good = s3.put_object(Bucket=bucket, Key="raw/reviews/data.csv", Body=f"{HEADER}\n".encode())["VersionId"]
    s3.put_object(Bucket=bucket, Key="raw/reviews/data.csv", Body=b"nope\n")

    # When the first version is probed / Then it is the one checked, not the latest
    assert probe_input(s3, bucket, "raw/reviews/data.csv", good, spec, LIMIT).columns == HEADER.split(",")
    # and the latest is rejected when no version is given
    with pytest.raises(InvalidInputError, match="missing required columns"):
        probe_input(s3, bucket, "raw/reviews/data.csv", None, spec, LIMIT)


def test_probe_input_rejects_an_empty_object(s3: Any, bucket: str, spec: DatasetSpec) -> None:
    # Given an empty object
    version = s3.put_object(Bucket=bucket, Key="raw/reviews/empty.csv", Body=b"")["VersionId"]

    # When it is probed / Then it is reported empty
    with pytest.raises(InvalidInputError, match="raw/reviews/empty.csv is empty"):
        probe_input(s3, bucket, "raw/reviews/empty.csv", version, spec, LIMIT)


def test_probe_input_rejects_a_missing_version(s3: Any, bucket: str, spec: DatasetSpec) -> None:
    # Given a key whose event names a version that no longer exists
    s3.put_object(Bucket=bucket, Key="raw/reviews/data.csv", Body=f"{HEADER}\n".encode())

    # When it is probed / Then the input is invalid, naming the version
    with pytest.raises(InvalidInputError, match="version 00000000-0000-0000-0000-000000000000. no longer exists"):
        probe_input(s3, bucket, "raw/reviews/data.csv", "00000000-0000-0000-0000-000000000000", spec, LIMIT)


def test_probe_input_rejects_a_missing_key(s3: Any, bucket: str, spec: DatasetSpec) -> None:
    # Given a key that was deleted before the run started
    # When it is probed / Then the input is invalid
    with pytest.raises(InvalidInputError, match="no longer exists"):
        probe_input(s3, bucket, "raw/reviews/gone.csv", None, spec, LIMIT)


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_file_with_more_rows_than_a_run_can_ingest_is_refused_naming_the_limit(
    s3: Any, bucket: str, spec: DatasetSpec, gzipped: bool
) -> None:
    # Given a 3,000-row file (gzipped or not) and a limit of 1,000 rows per run
    rows = "".join(f"r{i},fine,2024-01-01,books,{i % 7},9.5,yes\n" for i in range(3000))
    body = f"{HEADER}\n{rows}".encode()
    key = "raw/reviews/big.csv" + (".gz" if gzipped else "")
    body = gzip.compress(body) if gzipped else body
    version = s3.put_object(Bucket=bucket, Key=key, Body=body)["VersionId"]

    # When it is probed with a probe smaller than the file / Then it is refused with the estimate and the limit
    with (
        patch("labelflow.datasets.HEADER_PROBE_BYTES", 8 * 1024),
        pytest.raises(InvalidInputError, match=r"holds about [23],\d{3} rows .* at most 1,000 .*split it"),
    ):
        probe_input(s3, bucket, key, version, spec, 1000)
    # And it passes under a limit it fits in
    assert probe_input(s3, bucket, key, version, spec, 5000).format == "csv"


# ------------------------------------------------------------------------ spec loading
def test_load_dataset_spec(s3: Any, bucket: str) -> None:
    # Given the demo spec under config/datasets/
    s3.put_object(Bucket=bucket, Key="config/datasets/reviews.json", Body=DEMO_SPEC_BYTES)

    # When the dataset's spec is loaded
    spec, uri = load_dataset_spec(s3, bucket, "reviews")

    # Then it is parsed and its URI returned
    assert spec.dataset == "reviews"
    assert uri == f"s3://{bucket}/config/datasets/reviews.json"
    assert read_run_spec(s3, uri) == spec


def test_missing_spec_is_a_config_error(s3: Any, bucket: str) -> None:
    # Given no spec for the dataset
    # When it is loaded / Then the error says where the spec was expected
    with pytest.raises(
        ConfigError, match="no dataset spec for 'reviews' at s3://labelflow-demo/config/datasets/reviews.json"
    ):
        load_dataset_spec(s3, bucket, "reviews")


def test_spec_for_another_dataset_is_a_config_error(s3: Any, bucket: str) -> None:
    # Given a spec file whose dataset field names another dataset
    s3.put_object(Bucket=bucket, Key="config/datasets/tickets.json", Body=DEMO_SPEC_BYTES)

    # When it is loaded for "tickets" / Then the mismatch is reported
    with pytest.raises(ConfigError, match="declares dataset 'reviews', expected 'tickets'"):
        load_dataset_spec(s3, bucket, "tickets")


def test_invalid_spec_error_names_the_field(s3: Any, bucket: str) -> None:
    # Given a spec with an invalid threshold
    raw = json.loads(DEMO_SPEC_BYTES)
    raw["confidence_threshold"] = 1.5
    s3.put_object(Bucket=bucket, Key="config/datasets/reviews.json", Body=json.dumps(raw).encode())

    # When it is loaded / Then the error names the file and the field
    with pytest.raises(ConfigError, match=r"invalid dataset spec s3://.*/reviews.json: confidence_threshold: "):
        load_dataset_spec(s3, bucket, "reviews")
