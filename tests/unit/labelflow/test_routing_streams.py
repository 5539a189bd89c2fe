"""routing.py streaming: records read line by line, outputs uploaded part by part, memory bounded by the parts."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic_core import to_json

from labelflow.certification import certify
from labelflow.errors import ManifestError
from labelflow.layout import RunLayout
from labelflow.models.records import AuditLabel, AutoLabel, ReviewItem
from labelflow.routing import ReviewManifests, read_records, route_lines, split_by_confidence
from labelflow.s3 import MIN_PART_SIZE, StreamedObject, aborted_on_failure

LABELS = ["negative", "positive"]
LAYOUT = RunLayout("reviews", "afbcf3d3f25e2c3dba66")


def lines(count: int, text_size: int = 40) -> Iterator[bytes]:
    """Processed records as processing writes them: every other one sure (0.9), the others unsure (0.6)."""
    for number in range(count):
        yield json.dumps(
            {
                "record_id": f"r{number}",
                "event_time": "2026-01-01T00:00:00Z",
                "features": {"price": number * 0.5, "color=red": 1},
                "display": {"text": f"{number:08d}" + "x" * text_size},
                "prediction": {"label": LABELS[number % 2], "confidence": 0.9 if number % 2 else 0.6},
            }
        ).encode()


class DiscardingS3:
    """An S3 client that keeps only the sizes of what is uploaded, so memory measures routing alone."""

    def __init__(self) -> None:
        self.bytes_uploaded = 0
        self.parts = 0

    def put_object(self, Body: bytes, **_: Any) -> dict[str, Any]:  # noqa: N803 (boto3's parameter name)
        self.bytes_uploaded += len(Body)
        return {}

    def create_multipart_upload(self, **_: Any) -> dict[str, Any]:
        return {"UploadId": "u"}

    def upload_part(self, Body: bytes, PartNumber: int, **_: Any) -> dict[str, Any]:  # noqa: N803
        self.bytes_uploaded += len(Body)
        self.parts += 1
        return {"ETag": f'"{PartNumber}"'}

    def complete_multipart_upload(self, **_: Any) -> dict[str, Any]:
        return {}


def body(s3: Any, bucket: str, key: str) -> bytes:
    data: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


# ------------------------------------------------------------------ memory
def test_routing_memory_is_bounded_by_its_parts_not_by_its_input() -> None:
    # Given 10,000 records of 8 KB text, half of them to review (about 160 MB of manifests), and outputs
    # uploaded in parts of the minimum size
    s3 = DiscardingS3()
    auto = StreamedObject(s3, "b", LAYOUT.auto_labeled_key, MIN_PART_SIZE)  # type: ignore[arg-type]
    review = ReviewManifests(s3, "b", LAYOUT, 1000, MIN_PART_SIZE)  # type: ignore[arg-type]

    # When they are routed with tracemalloc on
    tracemalloc.start()
    try:
        counts = route_lines(lines(10_000, 8000), "s3://b/records.jsonl", LABELS, 0.8, lambda _: False, auto, review)
        auto.close()
        review.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Then all of it went out in many parts, while the memory peak stayed within the three open outputs' buffers
    # (and one part's copy being sent): far below what was written
    assert (counts.auto_labeled, counts.to_review) == (5_000, 5_000)
    assert s3.bytes_uploaded > 150 * 2**20 and s3.parts > 30, (s3.bytes_uploaded, s3.parts)
    assert peak < 4 * MIN_PART_SIZE + 4 * 2**20, peak


# ------------------------------------------------------------------ uploads
def test_a_small_output_is_one_put_with_the_same_lines_as_before(s3: Any, bucket: str) -> None:
    # Given a stream of three records
    auto = StreamedObject(s3, bucket, LAYOUT.auto_labeled_key)
    review = ReviewManifests(s3, bucket, LAYOUT, 1000)

    # When they are routed and the outputs closed
    route_lines(lines(3), "s3://b/k", LABELS, 0.8, lambda _: False, auto, review)
    auto_uri = auto.close()
    manifest, jobs = review.close()

    # Then each output is one object of JSON lines ending in a newline, and one job takes the whole manifest
    assert auto_uri == f"s3://{bucket}/{LAYOUT.auto_labeled_key}"
    assert body(s3, bucket, LAYOUT.auto_labeled_key) == b'{"record_id":"r1","label":"positive","confidence":0.9}\n'
    assert [json.loads(line)["record_id"] for line in body(s3, bucket, LAYOUT.review_manifest_key).splitlines()] == [
        "r0",
        "r2",
    ]
    assert jobs == [("", manifest)]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_nothing_to_review_writes_no_manifest_and_an_empty_auto_file(s3: Any, bucket: str) -> None:
    # Given no records at all
    auto = StreamedObject(s3, bucket, LAYOUT.auto_labeled_key)
    review = ReviewManifests(s3, bucket, LAYOUT, 1000)

    # When routing closes its outputs
    route_lines(iter([b"", b"  "]), "s3://b/k", LABELS, 0.8, lambda _: False, auto, review)
    auto.close()

    # Then the auto-labeled file is empty, and no manifest or job exists
    assert review.close() == (None, [])
    assert body(s3, bucket, LAYOUT.auto_labeled_key) == b""
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=LAYOUT.review_manifest_key)


def test_a_large_output_is_a_multipart_upload_of_minimum_size_parts(s3: Any, bucket: str) -> None:
    # Given about 12 MB of lines, more than two parts of the minimum size
    written = [b'{"n":%d,"pad":"%s"}' % (number, b"x" * 1000) for number in range(12_000)]
    output = StreamedObject(s3, bucket, "runs/big.jsonl", MIN_PART_SIZE)

    # When they are written and the object closed
    for line in written:
        output.write(line)
    output.close()

    # Then the object holds every line in order, uploaded in parts of at least 5 MiB but the last
    head = s3.head_object(Bucket=bucket, Key="runs/big.jsonl", PartNumber=1)
    assert head["PartsCount"] == 3 and head["ContentLength"] >= MIN_PART_SIZE
    assert body(s3, bucket, "runs/big.jsonl") == b"\n".join(written) + b"\n"


def test_parts_below_the_s3_minimum_are_refused(s3: Any, bucket: str) -> None:
    # Given / When a part size under 5 MiB / Then the writer refuses it before any upload
    with pytest.raises(ValueError, match="below s3's minimum"):
        StreamedObject(s3, bucket, "runs/x.jsonl", MIN_PART_SIZE - 1)


def test_a_failure_mid_stream_aborts_the_upload_and_leaves_nothing(s3: Any, bucket: str) -> None:
    # Given a record stream that breaks after more than a part of output
    def breaking() -> Iterator[bytes]:
        yield from lines(4000, 2000)
        raise ConnectionError("stream reset")

    auto = StreamedObject(s3, bucket, LAYOUT.auto_labeled_key, MIN_PART_SIZE)
    review = ReviewManifests(s3, bucket, LAYOUT, 1000, MIN_PART_SIZE)

    # When routing fails on it
    with pytest.raises(ConnectionError), aborted_on_failure(auto, review):
        route_lines(breaking(), "s3://b/k", LABELS, 0.8, lambda _: False, auto, review)

    # Then a multipart upload had begun, was aborted, and no object (whole or part manifest) was written
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="runs/")


# ------------------------------------------------------------------ labeling job split
@pytest.mark.parametrize(("records", "jobs"), [(2, 1), (5, 3)])
def test_the_review_is_split_into_job_manifests_only_past_one_job(
    s3: Any, bucket: str, records: int, jobs: int
) -> None:
    # Given 2 records per labeling job and a stream where every record is reviewed
    auto = StreamedObject(s3, bucket, LAYOUT.auto_labeled_key)
    review = ReviewManifests(s3, bucket, LAYOUT, 2)

    # When they are routed at a threshold nobody reaches
    route_lines(lines(records), "s3://b/k", LABELS, 1.0, lambda _: False, auto, review)
    manifest, parts = review.close()

    # Then one job takes the whole manifest when it fits, else each takes 2 records in order, beside the whole
    assert len(parts) == jobs
    assert manifest == f"s3://{bucket}/{LAYOUT.review_manifest_key}"
    keys = [key["Key"] for key in s3.list_objects_v2(Bucket=bucket, Prefix=LAYOUT.labeling_prefix)["Contents"]]
    if jobs == 1:
        assert parts == [("", manifest)] and keys == [LAYOUT.review_manifest_key]
        return
    prefix = f"s3://{bucket}/{LAYOUT.review_manifest_key.removesuffix('.manifest')}"
    assert parts == [(str(n), f"{prefix}-{n}.manifest") for n in (1, 2, 3)]
    ids = [
        [json.loads(line)["record_id"] for line in body(s3, bucket, uri.split("/", 3)[3]).splitlines()]
        for _, uri in parts
    ]
    assert ids == [["r0", "r1"], ["r2", "r3"], ["r4"]]


# ------------------------------------------------------------------ lines as the models write them
@pytest.mark.parametrize(
    ("display", "confidence"),
    [
        ({"text": 'a "quoted" é'}, 0.30000000000000004),
        ({"image": "s3://b/cat.jpg"}, 1e-07),
        ({"a": "1", "b": "2"}, 1.0),
    ],
)
def test_written_lines_are_byte_for_byte_what_the_models_write(display: dict[str, str], confidence: float) -> None:
    # Given a record audited while confident, so that it is written to both outputs
    line = json.dumps({"record_id": "r1", "display": display, "prediction": {"label": "positive", "confidence": 0.0}})
    (record,) = read_records([line.encode()], "s3://b/k")
    record["prediction"] = {"label": "positive", "confidence": confidence}
    auto: list[dict[str, Any]] = []
    review: list[dict[str, Any]] = []

    # When it is split
    split_by_confidence([record], LABELS, 0.0, auto.append, review.append, lambda _: True)

    # Then each line serializes exactly as AutoLabel and ReviewItem do (the format before streaming)
    assert to_json(auto[0]) == AutoLabel.model_validate(auto[0]).model_dump_json().encode()
    assert to_json(review[0]) == ReviewItem.model_validate(review[0]).model_dump_json().encode()


def test_audited_records_are_counted_as_sampled_and_confident() -> None:
    # Given four records, the audit drawing a sure (0.9) and an unsure (0.6) one
    s3 = DiscardingS3()
    auto = StreamedObject(s3, "b", LAYOUT.auto_labeled_key)  # type: ignore[arg-type]
    review = ReviewManifests(s3, "b", LAYOUT, 1000)  # type: ignore[arg-type]

    # When they are routed at 0.8
    counts = route_lines(lines(4), "s3://b/k", LABELS, 0.8, lambda rid: rid in {"r0", "r1"}, auto, review)

    # Then the sure one is auto-labeled and reviewed, both are sampled, one of them confident
    assert (counts.auto_labeled, counts.to_review, counts.sampled, counts.confident) == (2, 3, 2, 1)


# ------------------------------------------------------------------ reading
def test_only_the_fields_routing_reads_are_validated() -> None:
    # Given a record whose features are not what processing would write, but whose routing fields are fine
    line = b'{"record_id": "r1", "display": {"text": "t"}, "features": "anything", "prediction": null}'

    # When it is read / Then it is accepted with what routing needs
    (record,) = read_records([line], "s3://b/k")
    assert record == {"record_id": "r1", "display": {"text": "t"}, "prediction": None}


def test_a_line_that_is_not_json_names_the_object_and_line() -> None:
    # Given a stream whose third line is cut off
    stream = [b'{"record_id": "r1", "display": {}}', b"", b'{"record_id": "r2", "disp']

    # When it is read / Then the error names the object and the line, as before streaming
    with pytest.raises(ManifestError, match=r"^s3://b/k line 3 is not valid json$"):
        list(read_records(stream, "s3://b/k"))


# ------------------------------------------------------------------ certification
def test_certifying_reads_audit_labels_one_at_a_time() -> None:
    # Given 50,000 audit labels arriving one at a time, the model wrong on every 100th
    def audit_labels() -> Iterator[AuditLabel]:
        for number in range(50_000):
            human = "negative" if number % 100 == 0 else "positive"
            yield AuditLabel(record_id=f"r{number}", model_label="positive", model_confidence=0.99, human_label=human)

    # When the threshold is certified from them with tracemalloc on
    tracemalloc.start()
    try:
        choice = certify(audit_labels(), 0.95, 0.95, 2, 0.8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Then every label counted, and memory held none of them (50,000 labels take megabytes)
    assert (choice.method, choice.audit_labels_total, choice.audit_errors) == ("certified", 50_000, 500)
    assert peak < 256 * 2**10
