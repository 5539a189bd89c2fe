"""s3.py: S3 URIs and JSON / JSON Lines objects."""

from __future__ import annotations

from typing import Any

import pytest

from labelflow.errors import ManifestError
from labelflow.models.records import AutoLabel
from labelflow.s3 import S3Location, exists, get_json, iter_jsonl, put_json, put_jsonl, uri


# ------------------------------------------------------------------------ S3Location
def test_parse_splits_bucket_and_key() -> None:
    # Given an S3 URI with a nested key
    location = S3Location.parse("s3://labelflow-demo/runs/reviews/r1/run.json")

    # When it is parsed / Then bucket and key are split at the first slash, and it round-trips
    assert location == S3Location("labelflow-demo", "runs/reviews/r1/run.json")
    assert location.uri == "s3://labelflow-demo/runs/reviews/r1/run.json"
    assert uri(*location) == location.uri


def test_parse_keeps_prefixes() -> None:
    # Given a prefix URI
    # When it is parsed / Then the trailing slash stays on the key
    assert S3Location.parse("s3://b/runs/r1/processed/").key == "runs/r1/processed/"


@pytest.mark.parametrize(
    "text", ["s3://bucket-only", "s3://", "https://bucket/key", "bucket/key", "S3://bucket/key", "s3:///key"]
)
def test_parse_rejects_non_s3_uris(text: str) -> None:
    # Given something that is not s3://<bucket>/<key>
    # When it is parsed / Then it is a ValueError naming the text
    with pytest.raises(ValueError, match="not an s3 uri"):
        S3Location.parse(text)


# ------------------------------------------------------------------------ JSON Lines
def test_jsonl_round_trip(s3: Any, bucket: str) -> None:
    # Given rows that are models and plain dicts
    rows: list[Any] = [
        AutoLabel(record_id="r1", label="positive", confidence=0.9),
        {"record_id": "r2", "nested": {"a": [1, 2]}, "text": "café ✓"},
    ]

    # When they are written as JSON Lines and read back
    written = put_jsonl(s3, bucket, "runs/x/rows.jsonl", rows)
    read = list(iter_jsonl(s3, bucket, "runs/x/rows.jsonl"))

    # Then each row comes back as a dict, in order, and the URI points at the object
    assert written == f"s3://{bucket}/runs/x/rows.jsonl"
    assert read == [{"record_id": "r1", "label": "positive", "confidence": 0.9}, rows[1]]
    head = s3.head_object(Bucket=bucket, Key="runs/x/rows.jsonl")
    assert head["ContentType"] == "application/x-ndjson"


def test_empty_jsonl(s3: Any, bucket: str) -> None:
    # Given no rows
    put_jsonl(s3, bucket, "runs/x/empty.jsonl", [])

    # When the file is read / Then it is an empty object with no rows
    assert s3.head_object(Bucket=bucket, Key="runs/x/empty.jsonl")["ContentLength"] == 0
    assert list(iter_jsonl(s3, bucket, "runs/x/empty.jsonl")) == []


def test_blank_lines_are_skipped(s3: Any, bucket: str) -> None:
    # Given a JSON Lines file with blank lines and CRLF endings
    s3.put_object(Bucket=bucket, Key="m.jsonl", Body=b'{"a": 1}\r\n\r\n   \n{"a": 2}\n')

    # When it is read / Then only the objects come back
    assert list(iter_jsonl(s3, bucket, "m.jsonl")) == [{"a": 1}, {"a": 2}]


def test_bad_line_is_a_manifest_error_naming_the_line(s3: Any, bucket: str) -> None:
    # Given a JSON Lines file whose third line (after a blank one) is not JSON
    s3.put_object(Bucket=bucket, Key="m.jsonl", Body=b'{"a": 1}\n\n{"a": \n')

    # When it is read
    rows = iter_jsonl(s3, bucket, "m.jsonl")

    # Then the rows before it are yielded, and the bad line is reported by number
    assert next(rows) == {"a": 1}
    with pytest.raises(ManifestError, match=r"s3://labelflow-demo/m.jsonl line 3 is not valid json"):
        next(rows)


def test_missing_jsonl_is_a_manifest_error(s3: Any, bucket: str) -> None:
    # Given no object at the key
    # When it is read / Then the error names the missing object
    with pytest.raises(ManifestError, match="missing object s3://labelflow-demo/nope.jsonl"):
        list(iter_jsonl(s3, bucket, "nope.jsonl"))


# ------------------------------------------------------------------------ JSON
def test_json_round_trip_and_errors(s3: Any, bucket: str) -> None:
    # Given a JSON document written with put_json, and a corrupt one
    put_json(s3, bucket, "doc.json", {"b": 1, "a": [1, 2]})
    s3.put_object(Bucket=bucket, Key="bad.json", Body=b"{not json")

    # When they are read
    # Then the document round-trips, the corrupt one and a missing one are ManifestErrors
    assert get_json(s3, bucket, "doc.json") == {"a": [1, 2], "b": 1}
    with pytest.raises(ManifestError, match="bad.json is not valid json"):
        get_json(s3, bucket, "bad.json")
    with pytest.raises(ManifestError, match="missing object"):
        get_json(s3, bucket, "missing.json")


def test_exists(s3: Any, bucket: str) -> None:
    # Given one object
    s3.put_object(Bucket=bucket, Key="here.txt", Body=b"x")

    # When existence is checked / Then only that key exists
    assert exists(s3, bucket, "here.txt")
    assert not exists(s3, bucket, "gone.txt")
