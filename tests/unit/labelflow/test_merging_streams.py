"""merging.py streaming: records and model labels read side by side, the labeled file uploaded part by part and cut
into ingest batches as it is written, memory bounded by the parts."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic_core import to_json

from labelflow.errors import ManifestError
from labelflow.layout import PROCESSED_RECORDS, RunLayout
from labelflow.merging import (
    MODEL_LABELS,
    RECORDS,
    LabeledFile,
    merge_labels,
    merge_lines,
    merge_records,
    validated,
)
from labelflow.models.records import LabeledRecord
from labelflow.models.state import WorkflowState
from labelflow.s3 import MIN_PART_SIZE, S3Location, StreamedObject, aborted_on_failure
from tests.conftest import load_event
from tests.unit.labelflow.test_routing_streams import DiscardingS3

LAYOUT = RunLayout("reviews", "afbcf3d3f25e2c3dba66")


def record_lines(count: int, pad: int = 0) -> Iterator[bytes]:
    """records.jsonl as processing writes it, with a `pad`-character text feature to make lines long."""
    for number in range(count):
        yield json.dumps(
            {
                "record_id": f"r{number:07d}",
                "event_time": "2026-01-01T00:00:00Z",
                "features": {"price": number * 0.5, "color=red": 1, "note": "x" * pad},
                "display": {"text": "t"},
                "prediction": {"label": "positive", "confidence": 0.9},
            }
        ).encode()


def auto_lines(count: int, every: int) -> Iterator[bytes]:
    """The auto-labeled file routing writes: every `every`-th record, in processing order."""
    for number in range(0, count, every):
        yield b'{"record_id":"r%07d","label":"positive","confidence":0.9}' % number


def body(s3: Any, bucket: str, key: str, span: str | None = None) -> bytes:
    extra = {"Range": span} if span else {}
    data: bytes = s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
    return data


def run_state(s3: Any, bucket: str, records: list[bytes], auto: list[bytes], output: list[dict[str, Any]]) -> Any:
    """The sample's state after labeling, its records, model labels and (when given) output manifest in S3."""
    state = WorkflowState.model_validate(load_event("merge_labels.json"))
    plan, routing = state.require_plan(), state.require_routing()
    processed = S3Location.parse(plan.processed_uri)
    s3.put_object(Bucket=bucket, Key=processed.key + PROCESSED_RECORDS, Body=b"".join(line + b"\n" for line in records))
    s3.put_object(Bucket=bucket, Key=S3Location.parse(routing.auto_labeled_uri).key, Body=b"\n".join(auto))
    if not output:
        return state.model_copy(update={"labeling": []})
    (job,) = state.labeling_outcomes()
    manifest = S3Location.parse(job.output_manifest_uri)
    s3.put_object(Bucket=bucket, Key=manifest.key, Body="\n".join(json.dumps(line) for line in output).encode())
    return state


# ------------------------------------------------------------------ memory
def test_merge_memory_is_bounded_by_its_parts_not_by_its_input() -> None:
    # Given 24,000 records of about 6 KB, a third with a model label and a tenth with a human one (9,600 labeled:
    # about 60 MB), the others unlabeled, and outputs uploaded in parts of the minimum size
    count = 24_000
    human = {f"r{number:07d}": ("negative", 1.0) for number in range(0, count, 10)}
    s3 = DiscardingS3()
    labeled = LabeledFile(StreamedObject(s3, "b", LAYOUT.labeled_key, MIN_PART_SIZE), 5_000)  # type: ignore[arg-type]
    unlabeled = StreamedObject(s3, "b", LAYOUT.unlabeled_key, MIN_PART_SIZE)  # type: ignore[arg-type]

    # When they are merged with tracemalloc on
    tracemalloc.start()
    try:
        counts = merge_lines(
            validated(record_lines(count, 6000), "s3://b/records.jsonl", RECORDS),
            validated(auto_lines(count, 3), "s3://b/auto-labeled.jsonl", MODEL_LABELS),
            human,
            {},
            "run-1",
            labeled,
            unlabeled,
        )
        _, batches = labeled.close()
        unlabeled.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Then every record is counted once, the labeled file went out in many parts, and the memory peak stayed
    # within the open outputs' buffers (and one part's copy being sent): far below what was written
    assert (counts.human, counts.model) == (2_400, 8_000 - 800)
    assert counts.human + counts.model + counts.unlabeled == count
    assert sum(batch.records for batch in batches) == counts.human + counts.model
    assert s3.bytes_uploaded > 50 * 2**20 and s3.parts > 10, (s3.bytes_uploaded, s3.parts)
    assert peak < 3 * MIN_PART_SIZE + 4 * 2**20, peak


# ------------------------------------------------------------------ lines as the model writes them
@pytest.mark.parametrize(
    ("features", "confidence"),
    [
        ({"price": 0.30000000000000004, "count": 3, "color": 'a "quoted" é'}, 0.9),
        ({"tiny": 1e-07, "big": 12345678901234567890}, 1),
        ({}, 0.5),
    ],
)
def test_labeled_lines_are_byte_for_byte_what_labeled_record_writes(
    features: dict[str, Any], confidence: float
) -> None:
    # Given a processed record read as merge reads it, with a human label
    line = json.dumps({"record_id": "r1", "event_time": "2026-01-01T00:00:00Z", "features": features, "display": {}})
    records = validated([line.encode()], "s3://b/k", RECORDS)
    written: list[dict[str, Any]] = []

    # When it is merged
    merge_records(records, [], {"r1": ("positive", confidence)}, "run-1", written.append, lambda _: None)

    # Then its line serializes exactly as LabeledRecord does (the format before streaming)
    assert to_json(written[0]) == LabeledRecord.model_validate(written[0]).model_dump_json().encode()


# ------------------------------------------------------------------ batches
def test_the_labeled_file_is_cut_into_batches_of_whole_lines(s3: Any, bucket: str) -> None:
    # Given seven records, every other one auto-labeled, one of the others answered by a reviewer
    records = list(record_lines(7))
    output = [{"record_id": "r0000001", "label": "negative", "label-metadata": {"class-name": "negative"}}]
    state = run_state(s3, bucket, records, list(auto_lines(7, 2)), output)

    # When they are merged in ingest batches of 2
    merged = merge_labels(state, s3, batch_records=2)

    # Then the five labeled records are batches of 2, 2 and 1, and each byte range holds exactly its lines
    labeled = S3Location.parse(merged.labeled_uri)
    assert [batch.records for batch in merged.batches] == [2, 2, 1]
    ranges = [
        body(s3, bucket, labeled.key, f"bytes={batch.first_byte}-{batch.last_byte}").splitlines()
        for batch in merged.batches
    ]
    assert [[json.loads(line)["record_id"] for line in lines] for lines in ranges] == [
        ["r0000000", "r0000001"],
        ["r0000002", "r0000004"],
        ["r0000006"],
    ]
    assert merged.batches[-1].last_byte + 1 == len(body(s3, bucket, labeled.key))
    assert (merged.labeled, merged.model, merged.human, merged.unlabeled) == (5, 4, 1, 2)


def test_a_large_labeled_file_is_a_multipart_upload_with_batches_across_parts(s3: Any, bucket: str) -> None:
    # Given about 12 MB of auto-labeled records, more than two parts of the minimum size
    count = 4_000
    state = run_state(s3, bucket, list(record_lines(count, 3000)), list(auto_lines(count, 1)), [])

    # When they are merged in batches of 1,500 records with minimum-size parts
    merged = merge_labels(state, s3, batch_records=1_500, part_size=MIN_PART_SIZE)

    # Then the file is one object of three parts, and each batch's range is whole lines wherever parts end
    key = S3Location.parse(merged.labeled_uri).key
    assert s3.head_object(Bucket=bucket, Key=key, PartNumber=1)["PartsCount"] == 3
    for batch in merged.batches:
        lines = body(s3, bucket, key, f"bytes={batch.first_byte}-{batch.last_byte}").split(b"\n")
        assert lines[-1] == b"" and len(lines) - 1 == batch.records
        assert all(LabeledRecord.model_validate_json(line).label_source == "model" for line in lines[:-1])
    assert [batch.records for batch in merged.batches] == [1_500, 1_500, 1_000] and merged.unlabeled_uri is None
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# ------------------------------------------------------------------ unlabeled
def test_unlabeled_records_are_written_with_their_reason(s3: Any, bucket: str) -> None:
    # Given three records, none auto-labeled, one expired in review and one answered
    output = [
        {"record_id": "r0000000", "label-metadata": {"failure-reason": "task expired"}},
        {"record_id": "r0000001", "label": "negative", "label-metadata": {"class-name": "negative"}},
    ]
    state = run_state(s3, bucket, list(record_lines(3)), [], output)

    # When they are merged
    merged = merge_labels(state, s3)

    # Then the two without a label are listed with why, in processing order, as put_jsonl wrote them before
    assert merged.unlabeled_uri is not None and merged.unlabeled == 2
    assert body(s3, bucket, S3Location.parse(merged.unlabeled_uri).key) == (
        b'{"reason": "task expired", "record_id": "r0000000"}\n'
        b'{"reason": "no reviewer labeled it", "record_id": "r0000002"}\n'
    )


# ------------------------------------------------------------------ failures
def test_a_failure_mid_stream_aborts_the_upload_and_leaves_nothing(s3: Any, bucket: str) -> None:
    # Given a record stream that breaks after more than a part of output
    def breaking() -> Iterator[bytes]:
        yield from record_lines(3_000, 3000)
        raise ConnectionError("stream reset")

    labeled = LabeledFile(StreamedObject(s3, bucket, LAYOUT.labeled_key, MIN_PART_SIZE), 1_000)
    unlabeled = StreamedObject(s3, bucket, LAYOUT.unlabeled_key, MIN_PART_SIZE)

    # When merge fails on it
    with pytest.raises(ConnectionError), aborted_on_failure(labeled, unlabeled):
        records = validated(breaking(), "s3://b/k", RECORDS)
        merge_lines(records, [], {}, {}, "run-1", labeled, unlabeled)

    # Then a multipart upload had begun, was aborted, and no labeled or unlabeled file was written
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=LAYOUT.prefix)


def test_a_records_line_that_is_not_json_names_the_object_and_line() -> None:
    # Given a stream whose third line is cut off
    stream = [b'{"record_id": "r1", "event_time": "t", "features": {}}', b"", b'{"record_id": "r2", "ev']

    # When it is read / Then the error names the object and the line
    with pytest.raises(ManifestError, match=r"^s3://b/records.jsonl line 3 is not valid json$"):
        list(validated(stream, "s3://b/records.jsonl", RECORDS))
