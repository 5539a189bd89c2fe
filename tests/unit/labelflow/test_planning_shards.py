"""planning.py, input sharding: cuts at line ends found by ranged reads, parts copied server-side, the job's request."""

from __future__ import annotations

import codecs
import json
from typing import Any

import pytest

from labelflow import planning
from labelflow.formats import ResolvedInput, resolve_input
from labelflow.layout import RunLayout
from labelflow.models.artifacts import ProcessingCode
from labelflow.models.settings import PlanSettings
from labelflow.models.spec import DatasetSpec, InputSpec
from labelflow.models.state import WorkflowState
from labelflow_local.contracts import operation_model, violations

JSONL = ResolvedInput(format="jsonl", encoding="utf-8-sig", columns=["id", "text"])
CSV = ResolvedInput(format="csv", encoding="utf-8-sig", delimiter=",", columns=["id", "text"])
SINGLE_LINE_CSV = CSV.model_copy(update={"newlines_in_values": False})
MIB = 1024**2


def reader(data: bytes) -> planning.ByteReader:
    return lambda start, end: data[start:end]


def settings(instances: int = 1, **overrides: Any) -> PlanSettings:
    values = {
        "DATA_BUCKET": "labelflow-demo",
        "PROCESSING_IMAGE_URI": "123.dkr.ecr.us-east-1.amazonaws.com/sklearn:1",
        "PROCESSING_INSTANCE_TYPE": "ml.m5.xlarge",
        "FEATURE_GROUP_PREFIX": "labelflow",
        "FEATURE_STORE_ROLE_ARN": "arn:aws:iam::123456789012:role/labelflow-FeatureStoreRole",
        "OFFLINE_STORE_S3_URI": "s3://labelflow-demo/feature-store",
        "PROCESSING_INSTANCE_COUNT": str(instances),
        **overrides,
    }
    return PlanSettings.model_validate(values)


def jsonl(rows: int, width: int = 40) -> bytes:
    return b"".join(json.dumps({"id": str(i), "text": "x" * (width + i % 7)}).encode() + b"\n" for i in range(rows))


def test_a_cut_inside_a_record_moves_past_its_line_end() -> None:
    # Given a record straddling byte 10
    data = b'{"id":"1"}\n{"id":"straddling"}\n{"id":"3"}\n'
    # When the cut is searched from byte 15
    cut = planning.cut_at(reader(data), 15, len(data))
    # Then it lands just after that record's line feed
    assert data[:cut].endswith(b'"straddling"}\n')
    assert data[cut:] == b'{"id":"3"}\n'


def test_a_cut_right_after_a_line_feed_stays_where_it_is() -> None:
    # Given a target that already starts a record
    data = b'{"id":"1"}\n{"id":"2"}\n'
    # When the cut is searched there
    # Then it does not move
    assert planning.cut_at(reader(data), 11, len(data)) == 11


def test_a_crlf_line_end_is_cut_after_its_line_feed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given CRLF line ends, a target between CR and LF, and windows smaller than a record
    monkeypatch.setattr(planning, "CUT_WINDOW_BYTES", 3)
    data = b'{"id":"1"}\r\n{"id":"2"}\r\n'
    # When the cut is searched between the first CR and LF
    cut = planning.cut_at(reader(data), data.index(b"\n"), len(data))
    # Then the first part keeps its whole CRLF and the second starts with a record
    assert data[:cut] == b'{"id":"1"}\r\n'
    # And a target inside the second record, read 3 bytes at a time, finds its end
    assert planning.cut_at(reader(data), cut + 2, len(data)) == len(data)


def test_a_tail_without_a_line_feed_ends_at_the_end_of_the_object() -> None:
    # Given a last record with no line feed after it
    data = b'{"id":"1"}\n{"id":"last"}'
    # When a cut falls inside it
    # Then the cut is the object's end, so no empty part follows
    assert planning.cut_at(reader(data), 14, len(data)) == len(data)
    assert planning.record_spans(reader(data), len(data), 2) == [(0, len(data))]


def test_spans_cover_the_object_at_line_ends_and_a_swallowed_part_is_dropped() -> None:
    # Given one long record holding most of the bytes, then short ones
    data = b'{"id":"1","text":"' + b"y" * 200 + b'"}\n' + jsonl(3, width=1)
    # When it is cut into 4 parts
    spans = planning.record_spans(reader(data), len(data), 4)
    # Then the cuts inside the long record collapse into one: fewer parts, none empty
    assert len(spans) < 4
    assert all(end > start for start, end in spans)
    # And the parts, in order, are the object, each ending at a line end
    assert b"".join(data[start:end] for start, end in spans) == data
    assert all(data[end - 1 : end] == b"\n" for _, end in spans)


def test_spans_of_many_records_are_about_equal() -> None:
    # Given 10,000 short records
    data = jsonl(10_000)
    # When cut into 3 parts
    spans = planning.record_spans(reader(data), len(data), 3)
    # Then each part is within one record of a third
    assert len(spans) == 3
    assert all(abs((end - start) - len(data) / 3) < 100 for start, end in spans)


@pytest.mark.parametrize(
    ("resolved", "reason"),
    [
        (ResolvedInput(format="jsonl", gzip=True), "gzip"),
        (ResolvedInput(format="parquet"), "Parquet"),
        (ResolvedInput(format="csv", delimiter=","), "quoted newline"),
        (ResolvedInput(format="jsonl", encoding="utf-16"), "0x0A"),
    ],
)
def test_inputs_that_cannot_be_cut_stay_one_part_and_say_why(resolved: ResolvedInput, reason: str) -> None:
    # Given three instances and a large input read as `resolved`
    # When the part count is chosen
    chosen = settings(3, PROCESSING_SHARD_MIN_BYTES=str(8 * MIB))
    parts, why = planning.part_count(1024 * MIB, resolved, chosen)
    # Then it is one part, with the reason
    assert parts == 1
    assert why is not None and reason in why


def test_a_csv_whose_values_hold_no_newlines_is_cut_above_the_floor() -> None:
    # Given three instances and a CSV input whose spec says no value holds a line break
    chosen = settings(3, PROCESSING_SHARD_MIN_BYTES=str(8 * MIB))
    # When inputs below and above the floor are planned
    small = planning.part_count(8 * MIB - 1, SINGLE_LINE_CSV, chosen)
    large = planning.part_count(8 * MIB, SINGLE_LINE_CSV, chosen)
    # Then only the larger is cut, into one part per instance
    assert small[0] == 1 and small[1] is not None and "floor" in small[1]
    assert large == (3, None)
    # And gzip still keeps it whole, whatever the spec says
    assert planning.part_count(8 * MIB, SINGLE_LINE_CSV.model_copy(update={"gzip": True}), chosen)[0] == 1


def test_a_small_input_stays_one_part() -> None:
    # Given a plan asking for three instances
    chosen = settings(3)
    # When an input below the floor, then one above it, is planned
    small = planning.part_count(chosen.processing_shard_min_bytes - 1, JSONL, chosen)
    large = planning.part_count(chosen.processing_shard_min_bytes, JSONL, chosen)
    # Then only the larger is cut
    assert small[0] == 1 and small[1] is not None and "floor" in small[1]
    assert large == (3, None)


def test_one_instance_never_cuts() -> None:
    # Given the default single instance
    # When any input is planned
    # Then it is one part with nothing to explain
    assert planning.part_count(1024**4, JSONL, settings()) == (1, None)


def run_state(bucket: str, key: str, size: int, version_id: str | None) -> WorkflowState:
    return WorkflowState(
        bucket=bucket,
        key=key,
        version_id=version_id,
        etag="e",
        size=size,
        dataset="reviews",
        run_id="afbcf3d3f25e2c3dba66",
        received_at="2026-01-01T00:00:00Z",
    )


def test_the_frozen_parts_are_the_exact_version_cut_at_line_ends(s3: Any, bucket: str) -> None:
    # Given a 12 MiB JSON Lines object, overwritten after the version the run reads
    data = jsonl(250_000)
    assert len(data) > 12 * MIB
    version = s3.put_object(Bucket=bucket, Key="raw/reviews/big.jsonl", Body=data)["VersionId"]
    s3.put_object(Bucket=bucket, Key="raw/reviews/big.jsonl", Body=b"{}\n")
    run = run_state(bucket, "raw/reviews/big.jsonl", len(data), version)
    layout = RunLayout(run.dataset, run.run_id)
    # When it is frozen as 3 parts
    count = planning.freeze_input(s3, run, layout, 3, JSONL)
    # Then 3 objects, in key order, hold the version's bytes, each ending at a line end
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=layout.input_key(""))["Contents"]
    keys = sorted(item["Key"] for item in listed)
    assert count == 3
    assert keys == [planning.part_key(layout, index, "big.jsonl") for index in range(3)]
    parts = [s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys]
    assert b"".join(parts) == data
    assert all(part.endswith(b"\n") for part in parts)
    # And no multipart upload is left open
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_one_part_is_a_plain_copy(s3: Any, bucket: str) -> None:
    # Given a small object
    version = s3.put_object(Bucket=bucket, Key="raw/reviews/small.jsonl", Body=b'{"id":"1"}\n')["VersionId"]
    run = run_state(bucket, "raw/reviews/small.jsonl", 11, version)
    layout = RunLayout(run.dataset, run.run_id)
    # When it is frozen as one part
    assert planning.freeze_input(s3, run, layout, 1, JSONL) == 1
    # Then it is copied under its own name, as before sharding
    assert s3.get_object(Bucket=bucket, Key=layout.input_key("small.jsonl"))["Body"].read() == b'{"id":"1"}\n'


def csv_rows(rows: int, line_end: bytes = b"\n") -> bytes:
    """A header and rows whose text holds commas and doubled quotes, each line ending in `line_end`."""
    lines = [b"id,text,label"] + [f'{i},"row {i}, a ""quoted"" {"x" * (i % 23)}",pos'.encode() for i in range(rows)]
    return b"".join(line + line_end for line in lines)


def frozen_parts(s3: Any, bucket: str, data: bytes, parts: int, resolved: ResolvedInput) -> list[bytes]:
    """`data` landed, frozen as `parts` parts read as `resolved`; the parts' bodies in key order."""
    version = s3.put_object(Bucket=bucket, Key="raw/reviews/big.csv", Body=data)["VersionId"]
    run = run_state(bucket, "raw/reviews/big.csv", len(data), version)
    layout = RunLayout(run.dataset, run.run_id)
    count = planning.freeze_input(s3, run, layout, parts, resolved)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=layout.input_key(""))["Contents"]
    keys = sorted(item["Key"] for item in listed)
    assert len(keys) == count
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    return [s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys]


@pytest.mark.parametrize(("bom", "line_end"), [(b"", b"\n"), (codecs.BOM_UTF8, b"\r\n")])
def test_every_part_of_a_csv_is_a_csv_with_the_header(s3: Any, bucket: str, bom: bytes, line_end: bytes) -> None:
    # Given a small CSV file, with or without a byte order mark, with LF or CRLF line ends
    data = bom + csv_rows(3000, line_end)
    header = b"id,text,label" + line_end
    # When it is frozen as 3 parts (each below S3's 5 MiB part minimum: read and put whole)
    parts = frozen_parts(s3, bucket, data, 3, CSV)
    # Then the first part starts as the file does and every later one with the header line, without the BOM
    assert len(parts) == 3
    assert parts[0].startswith(bom + header)
    assert all(part.startswith(header) and len(part) > len(header) for part in parts[1:])
    # And the parts less their repeated headers are the file's bytes, each ending at a line end
    assert parts[0] + b"".join(part[len(header) :] for part in parts[1:]) == data
    assert all(part.endswith(line_end) for part in parts)


def test_a_csv_span_above_the_part_minimum_is_uploaded_then_copied(s3: Any, bucket: str) -> None:
    # Given a 13 MiB CSV file, every ranged GET recorded
    data = csv_rows(300_000)
    assert len(data) > 13 * MIB
    ranges: list[int] = []
    get_object = s3.get_object

    def recorded(**kwargs: Any) -> Any:
        if "Range" in kwargs:
            first, last = kwargs["Range"].removeprefix("bytes=").split("-")
            ranges.append(int(last) - int(first) + 1)
        return get_object(**kwargs)

    s3.get_object = recorded
    # When it is frozen as 2 parts (moto refuses a part below 5 MiB that is not the last)
    parts = frozen_parts(s3, bucket, data, 2, CSV)
    s3.get_object = get_object
    # Then the second part is the header and its span, byte for byte
    header = b"id,text,label\n"
    assert parts[1].startswith(header)
    assert parts[0] + parts[1][len(header) :] == data
    # And no read held more than the 5 MiB that go with the header into the upload's first part
    assert max(ranges) == planning.MIN_PART_BYTES


def test_the_second_part_is_two_multipart_parts(s3: Any, bucket: str) -> None:
    # Given a 13 MiB CSV file
    data = csv_rows(300_000)
    version = s3.put_object(Bucket=bucket, Key="raw/reviews/big.csv", Body=data)["VersionId"]
    run = run_state(bucket, "raw/reviews/big.csv", len(data), version)
    layout = RunLayout(run.dataset, run.run_id)
    # When it is frozen as 2 parts
    planning.freeze_input(s3, run, layout, 2, CSV)
    # Then the second is a multipart object of two parts (its ETag ends in -2): header and 5 MiB, then the copy
    etag = s3.head_object(Bucket=bucket, Key=planning.part_key(layout, 1, "big.csv"))["ETag"]
    assert etag.strip('"').endswith("-2")


def test_a_csv_without_a_line_end_in_its_first_window_stays_one_part(s3: Any, bucket: str) -> None:
    # Given a CSV file whose header runs past the first window
    data = b"a" * (planning.CUT_WINDOW_BYTES + 10) + b"\n1\n2\n"
    # When it is frozen as 3 parts
    parts = frozen_parts(s3, bucket, data, 3, CSV)
    # Then it is one plain copy
    assert parts == [data]


def test_both_engines_are_told_when_each_csv_line_is_a_record() -> None:
    # Given a CSV whose spec says no value holds a line break, one whose spec does not say, and a JSON Lines file
    head = b"id,text\nr1,hello\n"
    single = resolve_input("raw/reviews/a.csv", head, InputSpec(newlines_in_values=False), "a.csv")
    spanning = resolve_input("raw/reviews/a.csv", head, InputSpec(), "a.csv")
    jsonl = resolve_input("raw/reviews/a.jsonl", b'{"id": "r1"}\n', InputSpec(newlines_in_values=False), "a.jsonl")
    # When the read arguments are built (the Processing job and the Spark job take the same ones)
    # Then only the first says each line is a record
    assert single.container_arguments()[-1] == "--no-newlines-in-values"
    assert "--no-newlines-in-values" not in spanning.container_arguments()
    assert "--no-newlines-in-values" not in jsonl.container_arguments()


def job_request(parts: int) -> dict[str, Any]:
    run = run_state("labelflow-demo", "raw/reviews/big.jsonl", 10 * MIB, "v1")
    spec = DatasetSpec.model_validate(
        {
            "dataset": "reviews",
            "record_id_column": "id",
            "display_columns": ["text"],
            "features": [{"name": "price", "type": "numeric"}],
            "labels": ["negative", "positive"],
        }
    )
    code = ProcessingCode(sha256="0" * 64, s3_prefix=f"s3://labelflow-demo/artifacts/code/{'0' * 64}/")
    layout = RunLayout(run.dataset, run.run_id)
    request = planning.processing_job_request(
        run, layout, code, spec, "s3://labelflow-demo/p/", "f" * 64, settings(), None, JSONL, parts
    )
    return {**request, "RoleArn": "arn:aws:iam::123456789012:role/labelflow-SageMakerRole"}


def test_several_parts_are_sharded_across_instances_and_the_rest_replicated() -> None:
    # Given a plan of 3 parts
    # When the job request is built
    request = job_request(3)
    # Then the data input is sharded by key and every other input goes to every instance
    distribution = {i["InputName"]: i["S3Input"]["S3DataDistributionType"] for i in request["ProcessingInputs"]}
    assert distribution == {"data": "ShardedByS3Key", "spec": "FullyReplicated", "code": "FullyReplicated"}
    # And the request is valid for botocore's CreateProcessingJob model
    assert violations(operation_model("sagemaker", "CreateProcessingJob"), request) == []


def test_one_part_is_replicated_as_before() -> None:
    # Given a plan of one part
    # When the job request is built
    request = job_request(1)
    # Then nothing is sharded
    assert {i["S3Input"]["S3DataDistributionType"] for i in request["ProcessingInputs"]} == {"FullyReplicated"}
    assert violations(operation_model("sagemaker", "CreateProcessingJob"), request) == []
