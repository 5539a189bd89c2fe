"""Faults injected into the real state machine in local mode: AWS calls failing transiently or for good, and a
crash at record N inside the Lambda steps, with and without the state machine's retry. Each run must end with a
status that tells the truth, a run.json whose counts match the feature store, and every record stored at most
once (online and offline). `pytest -s` prints the table of outcomes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import ClientError
from moto.core.botocore_stubber import MockRawResponse

from labelflow import ingestion, merging, routing
from labelflow.layout import RunLayout
from labelflow.models.spec import DatasetSpec
from labelflow.s3 import get_json
from labelflow_local.cli import main
from labelflow_local.cloud import LocalCloud, local_cloud
from labelflow_local.demo import DEMO_MODEL, DEMO_SPEC, DEMO_TRUTH, land, run_id_of
from labelflow_local.featurestore import LocalFeatureStore, ServiceError
from labelflow_local.processing import LocalProcessing
from labelflow_local.reingest import start_reingest
from labelflow_local.review import SimulatedWorkers, read_labels
from tests.conftest import EVENTS

SAMPLE = EVENTS / "fixtures/labelflow-demo/raw/reviews/sample.csv"
GROUP = "labelflow-reviews"
RECORD_IDS = frozenset(line.split(",", 1)[0] for line in SAMPLE.read_text().splitlines()[1:] if line[:1] == "r")
# 40 records in checkpoints of 8: crashes land in the first, a middle and the last batch.
BATCH = 8

pytestmark = pytest.mark.e2e


class RetryableAwsError(Exception):
    """Same name as labelflow.errors.RetryableAwsError: the state machine retries it."""


class ServiceUnavailable(ServiceError):
    """Feature Store's answer when it cannot take the write (botocore featurestore-runtime model)."""

    code = "ServiceUnavailable"


class FunctionTimedOut(Exception):
    """A crash no Retry matches, as when a function runs out of time: the run goes to RecordFailure."""


@dataclass
class Outcome:
    fault: str
    status: str
    execution: str
    in_store: int
    reported_ingested: int | None
    reported_failed: int | None
    lost: int
    duplicated: int
    after_reingest: str = ""


OUTCOMES: list[Outcome] = []


@pytest.fixture(scope="module", autouse=True)
def table() -> Iterator[None]:
    yield
    header = f"| {'fault':<66} | {'end status':<10} | {'execution':<9} | lost | duplicated | after reingest |"
    lines = [header, "|" + "|".join("-" * (len(cell) + 2) for cell in header.split("|")[1:-1]) + "|"]
    for o in OUTCOMES:
        lines.append(
            f"| {o.fault:<66} | {o.status:<10} | {o.execution:<9} | {o.lost:>4} | {o.duplicated:>10} "
            f"| {o.after_reingest:<14} |"
        )
    print("\n" + "\n".join(lines))


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingestion, "BATCH_SIZE", BATCH)


# ------------------------------------------------------------------------------------------------ faults
Fault = Callable[[LocalCloud, pytest.MonkeyPatch], None]


def _events(cloud: LocalCloud) -> Any:
    # The functions' clients are created after the fault is set, and copy the session's handlers then.
    return boto3.DEFAULT_SESSION.events  # type: ignore[union-attr]


def _http_error(status: int, body: str) -> AWSResponse:
    return AWSResponse("https://local.fault", status, HTTPHeaders(), MockRawResponse(body.encode()))


def s3_error(method: str, key_part: str, code: str, status: int, times: int) -> Fault:
    """S3 answers `code` to the first `times` matching requests (botocore retries 5xx and throttles)."""

    def install(cloud: LocalCloud, _: pytest.MonkeyPatch) -> None:
        left = [times]

        def hook(request: Any, **__: Any) -> AWSResponse | None:
            if request.method == method and key_part in request.url and left[0] > 0:
                left[0] -= 1
                return _http_error(status, f"<Error><Code>{code}</Code><Message>injected</Message></Error>")
            return None

        _events(cloud).register_first("before-send.s3", hook)

    return install


def json_error(service: str, operation: str, code: str, times: int) -> Fault:
    """A JSON-protocol service (Step Functions, EventBridge) answers `code` to the first `times` calls."""

    def install(cloud: LocalCloud, _: pytest.MonkeyPatch) -> None:
        left = [times]

        def hook(**__: Any) -> AWSResponse | None:
            if left[0] > 0:
                left[0] -= 1
                return _http_error(400, json.dumps({"__type": code, "message": "injected"}))
            return None

        _events(cloud).register_first(f"before-send.{service}.{operation}", hook)

    return install


def sagemaker_throttle(operation: str, times: int) -> Fault:
    """The SageMaker control plane throttles the first `times` calls of `operation` (answered before the stand-in)."""

    def install(cloud: LocalCloud, _: pytest.MonkeyPatch) -> None:
        left = [times]

        def hook(**__: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
            if left[0] > 0:
                left[0] -= 1
                parsed: dict[str, Any] = {
                    "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
                    "ResponseMetadata": {"HTTPStatusCode": 400},
                }
                return AWSResponse("https://local.fault", 400, HTTPHeaders(), None), parsed
            return None

        _events(cloud).register_first(f"before-call.sagemaker.{operation}", hook)

    return install


def processing_job_fails(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    def failed(self: LocalProcessing, request: dict[str, Any]) -> dict[str, Any]:
        name = request["ProcessingJobName"]
        arn = f"arn:aws:sagemaker:us-east-1:123456789012:processing-job/{name}"
        return {**request, "ProcessingJobArn": arn, "ProcessingJobStatus": "Failed", "FailureReason": "injected"}

    monkeypatch.setattr(LocalProcessing, "run", failed)


ACTIVE: dict[str, bool] = {}


def put_record_fails(record_ids: frozenset[str], code: str) -> Fault:
    """PutRecord of these records raises `code` (what botocore raises once its retries are spent) while active."""

    def install(cloud: LocalCloud, _: pytest.MonkeyPatch) -> None:
        ACTIVE["put_record"] = True

        def hook(params: dict[str, Any], **__: Any) -> None:
            values = {item["FeatureName"]: item["ValueAsString"] for item in params["Record"]}
            if ACTIVE["put_record"] and values["record_id"] in record_ids:
                raise ClientError({"Error": {"Code": code, "Message": "injected"}}, "PutRecord")

        _events(cloud).register_first("before-parameter-build.sagemaker-featurestore-runtime.PutRecord", hook)

    return install


def ingest_crash_at(record: int, error: type[Exception]) -> Fault:
    """IngestFeatures dies as it is about to send its `record`-th PutRecord (once); records in flight may land."""

    def install(cloud: LocalCloud, _: pytest.MonkeyPatch) -> None:
        calls = [0]

        def hook(**__: Any) -> None:
            calls[0] += 1
            if calls[0] == record:
                raise error(f"crashed at record {record}")

        _events(cloud).register_first("before-parameter-build.sagemaker-featurestore-runtime.PutRecord", hook)

    return install


def step_crash_at(module: Any, record: int, error: type[Exception], reader: str = "iter_jsonl") -> Fault:
    """The step reading records through `module.<reader>` dies at its `record`-th record (once)."""

    def install(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> None:
        original = getattr(module, reader)
        crashed = [False]

        def crashing(*args: Any, **kwargs: Any) -> Iterator[Any]:
            for number, line in enumerate(original(*args, **kwargs), start=1):
                if number == record and not crashed[0]:
                    crashed[0] = True
                    raise error(f"crashed at record {record}")
                yield line

        monkeypatch.setattr(module, reader, crashing)

    return install


# ------------------------------------------------------------------------------------------------ running
@dataclass
class Run:
    cloud: LocalCloud
    execution: str
    manifest: dict[str, Any] | None
    run_id: str | None
    failures: tuple[str, ...] = ()

    def __str__(self) -> str:
        """What an assertion shows: run.json, and the execution's failure events with their causes."""
        return f"run.json: {self.manifest}\nfailure events: {list(self.failures)}"


def failure_events(cloud: LocalCloud, execution_arn: str) -> tuple[str, ...]:
    history: list[Any] = cloud.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    failed = [event for event in history if event["type"].endswith(("Failed", "TimedOut", "Aborted"))]
    return tuple(
        f"{event['type']}: {json.dumps({k: v for k, v in event.items() if k.endswith('EventDetails')})[:600]}"
        for event in failed
    )


def run_sample(cloud: LocalCloud, tmp_path: Path) -> Run:
    spec_body = DEMO_SPEC.read_bytes()
    data = tmp_path / "sample.csv"
    data.write_bytes(SAMPLE.read_bytes())
    try:
        execution_arn = land(cloud, data, DatasetSpec.model_validate_json(spec_body), spec_body, DEMO_MODEL)
    except Exception:  # the trigger could not start it: Lambda retries, then the dead-letter queue
        return Run(cloud, "NOT STARTED", None, None)
    described = cloud.wait(execution_arn)
    run_id = run_id_of(execution_arn, "reviews")
    manifest = get_json(cloud.s3, cloud.bucket, RunLayout("reviews", run_id).run_manifest_key)
    return Run(cloud, str(described["status"]), manifest, run_id, failure_events(cloud, execution_arn))


def failed_ids(cloud: LocalCloud, manifest: dict[str, Any]) -> set[str]:
    uri = manifest["artifacts"].get("ingest_failures_uri")
    if not uri:
        return set()
    body = cloud.s3.get_object(Bucket=cloud.bucket, Key=uri.split("/", 3)[3])["Body"].read().decode()
    return {json.loads(line)["record_id"] for line in body.splitlines() if line}


def measure(fault: str, run: Run) -> Outcome:
    """Status, counts against the store; lost = neither stored nor reported as not stored; duplicated = extra
    offline rows of this run."""
    online = run.cloud.feature_store.online_records(GROUP)
    offline = [row for row in run.cloud.feature_store.offline_records(GROUP) if row["run_id"] == run.run_id]
    stored = {rid for rid, values in online.items() if values["run_id"] == run.run_id}
    manifest = run.manifest
    if manifest is None:
        reported_missing = set(RECORD_IDS)
        counts: dict[str, Any] = {}
    else:
        counts = manifest["counts"]
        # A run that never counted ingestion says none of its records got in.
        reported_missing = failed_ids(run.cloud, manifest) if counts["ingested"] is not None else set(RECORD_IDS)
    return Outcome(
        fault=fault,
        status=manifest["status"] if manifest else "-",
        execution=run.execution,
        in_store=len(stored),
        reported_ingested=counts.get("ingested"),
        reported_failed=counts.get("ingest_failed"),
        lost=len(RECORD_IDS - stored - reported_missing),
        duplicated=len(offline) - len({row["record_id"] for row in offline}),
    )


def check(outcome: Outcome, run: Run) -> None:
    """What must hold whatever the fault: nothing lost or duplicated, run.json's counts match the store."""
    assert outcome.lost == 0 and outcome.duplicated == 0, str(run)
    if run.manifest is None:
        assert outcome.in_store == 0, str(run)
        return
    if outcome.reported_ingested is None:
        assert outcome.in_store == 0, str(run)
    else:
        assert outcome.reported_ingested == outcome.in_store, str(run)
        assert outcome.reported_ingested + (outcome.reported_failed or 0) == len(RECORD_IDS), str(run)
    assert (run.manifest["status"] == "SUCCEEDED") == (run.execution == "SUCCEEDED"), str(run)
    assert run.manifest["status"] == "SUCCEEDED" or run.manifest["reason"], str(run)


def reingest(run: Run) -> str:
    """Re-send the run's failed records; returns its status, after checking the store holds each record once."""
    assert run.run_id is not None
    ACTIVE["put_record"] = False
    described = run.cloud.wait(start_reingest(run.cloud, "reviews", run.run_id))
    manifest = get_json(run.cloud.s3, run.cloud.bucket, RunLayout("reviews", run.run_id).run_manifest_key)
    after = measure("", Run(run.cloud, str(described["status"]), manifest, run.run_id))
    assert after.in_store == len(RECORD_IDS) == manifest["counts"]["ingested"] and after.duplicated == 0
    assert manifest["counts"]["ingest_failed"] == 0 and len(manifest["reingests"]) == 1
    return f"{manifest['status']} ({described['status']})"


CASES: list[tuple[str, Fault, str, bool]] = [
    # (fault, how it is injected, run status it must end with, reingest afterwards)
    *[
        (f"IngestFeatures crashes at record {n}, retried", ingest_crash_at(n, RetryableAwsError), "SUCCEEDED", False)
        for n in (1, 13, 37)
    ],
    *[
        (f"IngestFeatures crashes at record {n}, not retried", ingest_crash_at(n, FunctionTimedOut), "FAILED", True)
        for n in (1, 13, 37)
    ],
    (
        "MergeLabels crashes at record 5, retried",
        step_crash_at(merging, 5, RetryableAwsError, "read_lines"),
        "SUCCEEDED",
        False,
    ),
    (
        "MergeLabels crashes at record 5, not retried",
        step_crash_at(merging, 5, FunctionTimedOut, "read_lines"),
        "FAILED",
        False,
    ),
    (
        "RouteByConfidence crashes at record 5, retried",
        step_crash_at(routing, 5, RetryableAwsError, "read_records"),
        "SUCCEEDED",
        False,
    ),
    (
        "RouteByConfidence crashes at record 5, not retried",
        step_crash_at(routing, 5, FunctionTimedOut, "read_records"),
        "FAILED",
        False,
    ),
    (
        "Feature Store PutRecord ServiceUnavailable for 3 records (retries spent)",
        put_record_fails(frozenset({"r00002", "r00017", "r00040"}), "ServiceUnavailable"),
        "PARTIAL",
        True,
    ),
    (
        "Feature Store PutRecord ValidationError for every record",
        put_record_fails(RECORD_IDS, "ValidationError"),
        "FAILED",
        True,
    ),
    (
        "S3 PutObject labeled.jsonl SlowDown x2 (transient)",
        s3_error("PUT", "labeled.jsonl", "SlowDown", 503, 2),
        "SUCCEEDED",
        False,
    ),
    (
        "S3 GetObject labeled.jsonl AccessDenied (permanent)",
        s3_error("GET", "labeled.jsonl", "AccessDenied", 403, 99),
        "FAILED",
        False,
    ),
    (
        "SageMaker DescribeFeatureGroup throttled once (transient)",
        sagemaker_throttle("DescribeFeatureGroup", 1),
        "SUCCEEDED",
        False,
    ),
    ("SageMaker processing job Failed (permanent)", processing_job_fails, "FAILED", False),
    (
        "Step Functions StartExecution throttled once (transient)",
        json_error("sfn", "StartExecution", "ThrottlingException", 1),
        "SUCCEEDED",
        False,
    ),
    (
        "Step Functions StartExecution AccessDenied (permanent)",
        json_error("sfn", "StartExecution", "AccessDeniedException", 99),
        "-",
        False,
    ),
    (
        "EventBridge PutEvents AccessDenied (permanent)",
        json_error("eventbridge", "PutEvents", "AccessDeniedException", 99),
        "SUCCEEDED",
        False,
    ),
    (
        "EventBridge PutEvents throttled once (transient)",
        json_error("eventbridge", "PutEvents", "ThrottlingException", 1),
        "SUCCEEDED",
        False,
    ),
]


@pytest.mark.parametrize(("fault", "install", "status", "then_reingest"), CASES, ids=[case[0] for case in CASES])
def test_a_fault_ends_in_a_true_status_with_every_record_stored_once_or_reported(
    fault: str, install: Fault, status: str, then_reingest: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with local_cloud(SimulatedWorkers(read_labels(DEMO_TRUTH)), tmp_path / "fs") as cloud:
        # Given the fault
        install(cloud, monkeypatch)
        # When the sample runs
        run = run_sample(cloud, tmp_path)
        outcome = measure(fault, run)
        OUTCOMES.append(outcome)
        # Then the status is the expected one, and nothing is lost, duplicated or miscounted
        assert outcome.status == status, str(run)
        check(outcome, run)
        # And a reingest of what failed completes the run, each record once
        if then_reingest:
            outcome.after_reingest = reingest(run)
            assert outcome.after_reingest == "SUCCEEDED (SUCCEEDED)"


def test_labelflow_reingest_completes_a_partial_local_run_from_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a local run (CLI) in which the feature store refused three records
    refused = {"r00003", "r00021", "r00039"}
    original = LocalFeatureStore.put_record

    def refusing(self: LocalFeatureStore, group_name: str, record: list[dict[str, str]]) -> None:
        if any(item["ValueAsString"] in refused for item in record if item["FeatureName"] == "record_id"):
            raise ServiceUnavailable("injected")
        original(self, group_name, record)

    monkeypatch.setattr(LocalFeatureStore, "put_record", refusing)
    data = tmp_path / "sample.csv"
    data.write_bytes(SAMPLE.read_bytes())
    workdir = tmp_path / "work"
    argv = ["run", str(data), "--local", "--spec", str(DEMO_SPEC), "--model", str(DEMO_MODEL)]
    assert main([*argv, "--truth", str(DEMO_TRUTH), "--workdir", str(workdir), "--json"]) == 1
    run = json.loads(capsys.readouterr().out)
    assert run["status"] == "PARTIAL" and run["counts"]["ingest_failed"] == 3
    monkeypatch.setattr(LocalFeatureStore, "put_record", original)

    # When `labelflow reingest RUN_ID` runs in a new process's worth of local cloud
    code = main(["reingest", run["run_id"], "--workdir", str(workdir)])

    # Then the run is complete: run.json counts every record ingested, the store holds each once
    out = capsys.readouterr().out
    assert code == 0 and f"run {run['run_id']}: SUCCEEDED" in out and "re-sent         3 (3 ingested" in out
    manifest = json.loads(Path(run["run_json_copy"]).read_text())
    assert manifest["status"] == "SUCCEEDED" and manifest["counts"]["ingested"] == 40
    assert manifest["reingests"][0]["previous_status"] == "PARTIAL"
    online = json.loads((workdir / "feature-store/online" / f"{GROUP}.json").read_text())
    assert set(online) == RECORD_IDS
    offline = [
        row["record_id"]
        for path in (workdir / "feature-store").rglob("*.parquet")
        for row in pq.read_table(path).to_pylist()
    ]
    assert sorted(offline) == sorted(RECORD_IDS)
