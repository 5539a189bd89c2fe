"""Processing scales out: an input frozen as parts and processed by three local instances (the scan, stats and
Process jobs planning derives) gives the features, predictions, rejections and state one instance gives."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from labelflow import planning
from labelflow.formats import ResolvedInput
from labelflow.layout import RunLayout
from labelflow.models.artifacts import ProcessingCode
from labelflow.models.spec import DatasetSpec, InputSpec
from labelflow.models.state import WorkflowState
from labelflow.routing import gather_parts
from labelflow.s3 import S3Location
from labelflow_local.contracts import operation_model, violations
from labelflow_local.processing import LocalProcessing
from labelflow_local.processing_env import ensure_processing_env
from labelflow_local.publish import publish_processing_code
from labelflow_local.template import PROJECT_ROOT
from tests.unit.labelflow.test_planning_shards import settings
from tests.unit.local.test_processing_runner import SCRIPT
from tests.unit.local.test_processing_runner import request as runner_request
from tests.unit.processing.conftest import in_image

DEMO = PROJECT_ROOT / "demo"
JSONL = ResolvedInput(format="jsonl", encoding="utf-8-sig")
# How planning resolves a CSV file whose spec says no value holds a line break (single_line below).
CSV = ResolvedInput(format="csv", encoding="utf-8-sig", delimiter=",", newlines_in_values=False)
ROLE = "arn:aws:iam::123456789012:role/labelflow-SageMakerExecutionRole"


def demo_rows() -> bytes:
    """The demo's reviews as JSON Lines."""
    with (DEMO / "data" / "reviews.csv").open(newline="", encoding="utf-8") as handle:
        return b"".join(json.dumps(row).encode() + b"\n" for row in csv.DictReader(handle))


def repeated_rows() -> bytes:
    """Rows with bad and missing values, and ids repeated across what become different parts."""
    rows = []
    for i in range(2000):
        number: Any = None if i % 11 == 0 else ("n/a" if i % 89 == 3 else i * 0.75 % 41)
        category = None if i % 13 == 0 else ["a", "b", "c"][i % 3]
        rows.append({"id": f"r{i % 1990}", "text": f"t{i}", "num": number, "cat": category})
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


def repeated_spec() -> DatasetSpec:
    return DatasetSpec.model_validate(
        {
            "dataset": "repeats",
            "record_id_column": "id",
            "display_columns": ["text"],
            "features": [
                {"name": "num", "type": "numeric", "impute": "median", "scaling": "standard"},
                {"name": "cat", "type": "categorical", "impute": "most_frequent"},
            ],
            "labels": ["negative", "positive"],
        }
    )


class Runs:
    """Plans and runs processing on moto's S3 with the local instances, as the state machine would."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket
        self.code = publish_processing_code(s3, bucket)
        self.processing = LocalProcessing(s3, "us-east-1", "123456789012", str(ensure_processing_env()))

    def process(self, spec: DatasetSpec, data: bytes, instances: int, resolved: ResolvedInput = JSONL) -> S3Location:
        """Freeze the input for `instances`, run its jobs, gather the outputs; returns the processed prefix."""
        location, failures = self.attempt(spec, data, instances, resolved)
        assert failures == [], failures
        gather_parts(self.s3, location, spec.max_rejected_share)
        return location

    def attempt(
        self, spec: DatasetSpec, data: bytes, instances: int, resolved: ResolvedInput
    ) -> tuple[S3Location, list[str]]:
        """Freeze the input for `instances` and run its jobs; the processed prefix and the failed jobs' reasons."""
        run_id = f"run{instances}{spec.dataset}"
        key = f"raw/{spec.dataset}/data.{resolved.format}"
        version = self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)["VersionId"]
        run = WorkflowState(
            bucket=self.bucket,
            key=key,
            version_id=version,
            size=len(data),
            dataset=spec.dataset,
            run_id=run_id,
            received_at="2026-01-01T00:00:00Z",
        )
        layout = RunLayout(run.dataset, run.run_id)
        self.s3.put_object(Bucket=self.bucket, Key=layout.spec_key, Body=spec.model_dump_json().encode())
        if spec.model is not None:
            body = (DEMO / "model" / "sentiment.joblib").read_bytes()
            self.s3.put_object(Bucket=self.bucket, Key=layout.model_key("sentiment.joblib"), Body=body)
        parts = planning.freeze_input(self.s3, run, layout, instances, resolved)
        processed = f"s3://{self.bucket}/{layout.processed_prefix('0' * 64)}"
        chosen = settings(instances)
        job = planning.processing_job_request(
            run, layout, self.code, spec, processed, "0" * 64, chosen, None, resolved, parts
        )
        jobs = [job]
        if parts > 1:
            names = (f"lf-{spec.dataset}-{run_id}-scan", f"lf-{spec.dataset}-{run_id}-stats")
            jobs = list(planning.shard_passes(job, processed, names))
        failures = []
        for request in jobs:
            request = {**request, "RoleArn": ROLE}
            assert violations(operation_model("sagemaker", "CreateProcessingJob"), request) == []
            described = self.processing.run(request)
            if described["ProcessingJobStatus"] != "Completed":
                failures.append(described.get("FailureReason", ""))
                break
        return S3Location.parse(processed), failures

    def lines(self, location: S3Location, name: str) -> list[dict[str, Any]]:
        body = self.s3.get_object(Bucket=location.bucket, Key=location.key + name)["Body"].read()
        return [json.loads(line) for line in body.decode().splitlines()]

    def document(self, location: S3Location, name: str) -> Any:
        return json.loads(self.s3.get_object(Bucket=location.bucket, Key=location.key + name)["Body"].read())


def close(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-12 relative: the merged moments of three parts are grouped differently from one."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12)
    return bool(a == b)


def by_line(row: dict[str, Any]) -> tuple[int, str]:
    return row["line"], row["reason"]


@pytest.fixture
def runs(s3: Any, bucket: str) -> Runs:
    return Runs(s3, bucket)


def single_line(spec: DatasetSpec) -> DatasetSpec:
    """The spec saying no CSV value holds a line break, so a CSV file is cut into parts."""
    return spec.model_copy(update={"input": InputSpec(newlines_in_values=False)})


def demo_spec() -> DatasetSpec:
    return DatasetSpec.model_validate(json.loads((DEMO / "datasets" / "reviews.json").read_text()))


def wine_rows() -> bytes:
    """scikit-learn's wine data as CSV: a text column with commas and quotes, ids repeated across what become
    different parts, a bad number, a row of too many fields and a blank line."""
    # scikit-learn is in the processing image's environment, not the tests'.
    code = (
        "import json; from sklearn.datasets import load_wine; wine = load_wine()\n"
        "print(json.dumps([wine.data.tolist(), wine.target.tolist(), wine.target_names.tolist()]))"
    )
    data, targets, names = in_image(str(ensure_processing_env()), code)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["id", "text", "num", "cat"])
    for repeat in range(12):
        for i, (values, target) in enumerate(zip(data, targets, strict=True)):
            text = f'{names[target]}, alcohol {values[0]:.2f}, "hue" {values[10]:.2f}'
            number = "n/a" if (i + repeat) % 97 == 3 else f"{values[9]:.2f}"
            writer.writerow([f"w{(repeat * 178 + i) % 2100}", text, number, names[target]])
        out.write("\r\n" if repeat == 4 else f"extra{repeat},a,1,b,c\r\n")
    return out.getvalue().encode()


@pytest.mark.parametrize("dataset", ["demo", "repeats", "demo-csv", "wine-csv"])
def test_one_and_three_instances_give_the_same_records(runs: Runs, dataset: str) -> None:
    # Given the demo's reviews (a model scores them) as JSON Lines or as its CSV file, rows with repeated ids and
    # bad values, or scikit-learn's wine data as CSV, the CSV spec saying no value holds a line break
    resolved = JSONL
    if dataset == "demo":
        spec, data = demo_spec(), demo_rows()
    elif dataset == "repeats":
        spec, data = repeated_spec(), repeated_rows()
    elif dataset == "demo-csv":
        spec, data, resolved = single_line(demo_spec()), (DEMO / "data" / "reviews.csv").read_bytes(), CSV
    else:
        spec, data, resolved = single_line(repeated_spec()), wine_rows(), CSV
    # When one instance processes the file, then three process it frozen as three parts
    one = runs.process(spec, data, 1, resolved)
    three = runs.process(spec, data, 3, resolved)
    # Then the features and predictions are the same records, in the same order
    assert runs.lines(three, "records.jsonl") == runs.lines(one, "records.jsonl")
    # And the same rows are rejected, for the same reasons, at the same lines of the whole file
    assert sorted(runs.lines(three, "rejected.jsonl"), key=by_line) == sorted(
        runs.lines(one, "rejected.jsonl"), key=by_line
    )
    # And the fitted state is the same, to the rounding of merged moments
    assert close(runs.document(three, "state.json"), runs.document(one, "state.json"))
    # And the gathered stats.json says what the one instance's does
    many, single = runs.document(three, "stats.json"), runs.document(one, "stats.json")
    for field in ("records_in", "records_out", "rejected", "predicted_labels", "model"):
        assert many[field] == single[field]
    assert close(many["drift"], single["drift"])
    if dataset in ("repeats", "wine-csv"):
        assert any(row["reason"].startswith("duplicate") for row in runs.lines(three, "rejected.jsonl"))


def test_a_quoted_line_break_the_spec_rules_out_fails_one_or_three_instances_alike(runs: Runs) -> None:
    # Given the demo's CSV file with a line break inside a quoted review in its last third, the spec saying none
    data = (DEMO / "data" / "reviews.csv").read_bytes()
    at = data.index(b"\nr02500,") + 1
    data = data[:at] + data[at:].replace(b'yes,"', b'yes,"A line break:\n', 1)
    line = data[:at].count(b"\n") + 1
    spec = single_line(demo_spec())
    # When one instance processes it, then three
    _, one = runs.attempt(spec, data, 1, CSV)
    _, three = runs.attempt(spec, data, 3, CSV)
    # Then both fail with the same reason, naming the review's line of the whole file
    expected = (
        "the spec says CSV values hold no line breaks (input.newlines_in_values: false) but line "
        f"{line} has one inside quotes; remove the setting"
    )
    assert one == three
    assert len(one) == 1 and expected in one[0]


def test_sharded_objects_are_dealt_round_robin_and_every_instance_uploads(s3: Any, bucket: str) -> None:
    # Given five input objects, the stand-in script, and a job of three instances sharding them by key
    s3.put_object(Bucket=bucket, Key="code/script.py", Body=SCRIPT.encode())
    for index in range(5):
        s3.put_object(Bucket=bucket, Key=f"runs/r1/input/{index}.txt", Body=f"{index}\n".encode())
    job = runner_request(bucket)
    job["ProcessingResources"] = {
        "ClusterConfig": {"InstanceCount": 3, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 1}
    }
    job["ProcessingInputs"][1]["S3Input"]["S3DataDistributionType"] = "ShardedByS3Key"
    # When it runs
    described = LocalProcessing(s3, "us-east-1", "123456789012").run(job)
    # Then it completed, and the last host's upload of the shared output key is the one left, as in S3
    assert described["ProcessingJobStatus"] == "Completed"
    result = json.loads(s3.get_object(Bucket=bucket, Key="runs/r1/output/result.json")["Body"].read())
    assert result["host"] == "algo-3"
    # And algo-3 was dealt the third object in key order (algo-1 the first and fourth), and told of every host
    assert result["inputs"] == ["2.txt"]
    config = json.loads(s3.get_object(Bucket=bucket, Key="runs/r1/output/config/resourceconfig.json")["Body"].read())
    assert config == {"current_host": "algo-3", "hosts": ["algo-1", "algo-2", "algo-3"]}


def test_the_shard_passes_read_what_the_passes_before_them_wrote() -> None:
    # Given the Process job of a three-part input
    spec = repeated_spec()
    run = WorkflowState(
        bucket="labelflow-demo", key="raw/repeats/data.jsonl", size=1, dataset="repeats", run_id="r1",
        received_at="2026-01-01T00:00:00Z",
    )  # fmt: skip
    layout = RunLayout(run.dataset, run.run_id)
    code = publish_code_pointer()
    job = planning.processing_job_request(
        run, layout, code, spec, "s3://labelflow-demo/p/", "0" * 64, settings(3), None, JSONL, 3
    )
    # When the passes are derived
    passes = planning.shard_passes(job, "s3://labelflow-demo/p/", ("lf-repeats-r1-scan", "lf-repeats-r1-stats"))

    # Then the stats pass reads the scan's outputs and the Process job reads both, every instance all of them
    def inputs(request: dict[str, Any]) -> dict[str, tuple[str, str]]:
        return {
            i["InputName"]: (i["S3Input"]["S3Uri"], i["S3Input"]["S3DataDistributionType"])
            for i in request["ProcessingInputs"]
        }

    assert "scan" not in inputs(passes.scan_job)
    assert inputs(passes.stats_job)["scan"] == ("s3://labelflow-demo/p/scan/", "FullyReplicated")
    assert inputs(passes.processing_job)["stats"] == ("s3://labelflow-demo/p/stats/", "FullyReplicated")
    assert inputs(passes.processing_job)["data"][1] == "ShardedByS3Key"
    # And each writes under its own prefix, the Process job under the processed prefix itself
    outputs = [r["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] for r in passes]
    assert outputs == ["s3://labelflow-demo/p/scan/", "s3://labelflow-demo/p/stats/", "s3://labelflow-demo/p/"]
    for request in passes:
        assert violations(operation_model("sagemaker", "CreateProcessingJob"), {**request, "RoleArn": ROLE}) == []


def publish_code_pointer() -> ProcessingCode:
    return ProcessingCode(sha256="0" * 64, s3_prefix=f"s3://labelflow-demo/artifacts/code/{'0' * 64}/")


def test_a_job_fails_when_any_instance_does(s3: Any, bucket: str, tmp_path: Path) -> None:
    # Given a script that fails on algo-2 only
    script = SCRIPT.replace(
        'if args.mode == "message":', 'if json.loads(args.resources.read_text())["current_host"] == "algo-2":'
    )
    s3.put_object(Bucket=bucket, Key="code/script.py", Body=script.encode())
    s3.put_object(Bucket=bucket, Key="runs/r1/input/a.txt", Body=b"1\n")
    job = runner_request(bucket)
    job["ProcessingResources"] = {
        "ClusterConfig": {"InstanceCount": 3, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 1}
    }
    # When it runs
    described = LocalProcessing(s3, "us-east-1", "123456789012").run(job)
    # Then the job failed with that instance's message, and nothing was uploaded
    assert described["ProcessingJobStatus"] == "Failed"
    assert "column 'text' is missing" in described["FailureReason"]
    assert not s3.list_objects_v2(Bucket=bucket, Prefix="runs/r1/output/").get("Contents")


def test_large_parts_are_joined_server_side_and_their_stats_combined(s3: Any, bucket: str) -> None:
    # Given two parts' outputs, the first above S3's 5 MiB part minimum, and rejections above the spec's share
    prefix = "runs/big/r1/processed/abc/"
    first, second = b'{"record_id":"1"}\n' * 400_000, b'{"record_id":"2"}\n'
    for index, (records, rejected) in enumerate([(first, 1), (second, 9)]):
        folder = f"{prefix}parts/{index:03d}/data.jsonl/"
        s3.put_object(Bucket=bucket, Key=folder + "records.jsonl", Body=records)
        s3.put_object(Bucket=bucket, Key=folder + "rejected.jsonl", Body=b"")
        stats = {
            "records_in": 10, "records_out": 10 - rejected, "rejected": rejected,
            "state": {"sha256": "s", "fitted": True}, "drift": {}, "predicted_labels": {"positive": index + 1},
            "model": None, "input_files": [f"{index:03d}/data.jsonl"],
        }  # fmt: skip
        s3.put_object(Bucket=bucket, Key=folder + "stats.json", Body=json.dumps(stats).encode())
    # When routing gathers them
    gather_parts(s3, S3Location(bucket, prefix), max_rejected_share=0.25)
    # Then records.jsonl is both parts in order, copied as two multipart parts (a multipart ETag ends in -<parts>)
    assert s3.head_object(Bucket=bucket, Key=prefix + "records.jsonl")["ETag"].strip('"').endswith("-2")
    assert s3.get_object(Bucket=bucket, Key=prefix + "records.jsonl")["Body"].read() == first + second
    # And stats.json sums the counts and refuses the file: 10 of 20 rows rejected is above 25%
    combined = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "stats.json")["Body"].read())
    assert (combined["records_in"], combined["rejected"], combined["predicted_labels"]) == (20, 10, {"positive": 3})
    assert "max_rejected_share of 0.25" in combined["refused"]
