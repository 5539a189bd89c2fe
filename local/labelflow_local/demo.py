"""Run the whole workflow locally on one file: land it, let the trigger start the run, report the outcome."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from labelflow.finalizing import reason_of
from labelflow.layout import RunLayout, dataset_memory_prefixes, feature_group_name
from labelflow.models.reviewers import ReviewerLineage
from labelflow.models.run import RunManifest
from labelflow.models.spec import DatasetSpec
from labelflow.s3 import S3Location, get_json
from labelflow_local.cloud import LocalCloud, local_cloud
from labelflow_local.review import NoReviewers, SimulatedWorkers, WorkerAnswers, read_labels
from labelflow_local.template import LOCAL_STACK, PROJECT_ROOT

DEMO_DATA = PROJECT_ROOT / "demo/data/reviews.csv"
DEMO_SPEC = PROJECT_ROOT / "demo/datasets/reviews.json"
DEMO_MODEL = PROJECT_ROOT / "demo/model/sentiment.joblib"
DEMO_TRUTH = PROJECT_ROOT / "demo/data/reviews.labels.csv"
# Said at the end of every local run, so nobody mistakes the stand-ins for the services.
NOT_EMULATED = (
    "IAM: policies are not enforced",
    "Ground Truth's work team: reviewers are local (simulated, an answers file, you, or a Label Studio)",
    "the processing container: the script runs in a local venv with the image's Python and packages",
    "EMR Serverless: a Spark run uses pyspark in local mode, not the application's image, capacity or logs",
    "a feature group's creation time (usable at once here; on AWS about a minute, which ingestion waits out)",
    "the offline store's delay (about 15 minutes on AWS) and its Glue table",
    "X-Ray traces, CloudWatch metrics and alarms",
)


@dataclass
class RunReport:
    manifest: RunManifest
    execution_status: str
    run_json: str
    exported_to: Path
    seconds: float
    feature_group: str
    calls_dir: Path | None = None
    label_accuracy: dict[str, float] = field(default_factory=dict)
    features: dict[str, dict[str, str]] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    reviewers: ReviewerLineage | None = None


def stage_seconds(history: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds spent in each state, from the execution history's entered/exited events."""
    entered: dict[str, datetime] = {}
    spent: dict[str, float] = {}
    for event in history:
        if event["type"].endswith("StateEntered"):
            details = event["stateEnteredEventDetails"]
            entered[details["name"]] = event["timestamp"]
        elif event["type"].endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            if name in entered:
                spent[name] = round((event["timestamp"] - entered.pop(name)).total_seconds(), 3)
    return spent


def object_created_event(cloud: LocalCloud, key: str, put: dict[str, Any], size: int) -> dict[str, Any]:
    """The EventBridge event S3 would send for this PutObject (keys arrive form-encoded)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "version": "0",
        "id": f"local-{time.monotonic_ns()}",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": cloud.account,
        "time": now,
        "region": cloud.region,
        "resources": [f"arn:aws:s3:::{cloud.bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": cloud.bucket},
            "object": {
                "key": quote_plus(key, safe="/"),
                "size": size,
                "etag": put["ETag"].strip('"'),
                "version-id": put.get("VersionId"),
                "sequencer": f"{time.monotonic_ns():X}",
            },
            "request-id": "LOCAL",
            "requester": cloud.account,
            "source-ip-address": "127.0.0.1",
            "reason": "PutObject",
        },
    }


def land(cloud: LocalCloud, data: Path, spec: DatasetSpec, spec_body: bytes, model: Path | None) -> str:
    """Upload spec, model and data as a user would; returns the ARN of the execution the trigger started."""
    cloud.s3.put_object(Bucket=cloud.bucket, Key=f"config/datasets/{spec.dataset}.json", Body=spec_body)
    if spec.model is not None:
        if model is None:
            raise ValueError("the spec names a model: pass its file")
        location = S3Location.parse(spec.model.s3_uri)
        if location.bucket != cloud.bucket:
            raise ValueError(f"local mode has one bucket, {cloud.bucket}: the spec's model must live there")
        _put_file(cloud, location.key, model)
    key = f"raw/{spec.dataset}/{data.name}"
    landed = _put_file(cloud, key, data)
    started = cloud.invoke("on_object_created", object_created_event(cloud, key, landed, data.stat().st_size))
    execution = started["executions"][0]
    if execution["status"] != "started":
        raise RuntimeError(f"the trigger did not start a run: {execution}")
    return str(execution["execution_arn"])


def _put_file(cloud: LocalCloud, key: str, path: Path) -> dict[str, Any]:
    """A PutObject of the file, its body streamed from disk by botocore (not read whole first); its answer.

    One PutObject, not a multipart upload: moto 5.2 gives a CopyObject of a multipart object the source's composite
    CRC32, and botocore then refuses the copy's body (FlexibleChecksumError) when the run reads its copy of the file.
    """
    with path.open("rb") as body:
        answer: dict[str, Any] = cloud.s3.put_object(Bucket=cloud.bucket, Key=key, Body=body)
    return answer


def run_local(
    data: Path,
    spec_path: Path,
    model: Path | None,
    workdir: Path,
    truth: Path | None = None,
    worker_accuracy: float = 0.9,
    seed: int = 7,
    workers_per_task: int | None = None,
    reviewers: WorkerAnswers | None = None,
    log_level: str = "WARNING",
) -> RunReport:
    """Run one file through the whole workflow.

    Reviewers default to simulated workers who know `truth` (a labels file), which also measures accuracy;
    without `truth` nobody reviews, and records sent to review stay unlabeled rather than get made-up labels.
    """
    spec_body = spec_path.read_bytes()
    spec = DatasetSpec.model_validate_json(spec_body)
    known = read_labels(truth) if truth else {}
    started = time.perf_counter()
    workers = reviewers or (
        SimulatedWorkers(known, accuracy=worker_accuracy, seed=seed, workers_per_task=workers_per_task)
        if truth
        else NoReviewers()
    )
    calls_dir = workdir / "calls"
    with local_cloud(workers, workdir / "feature-store", log_level=log_level, calls_dir=calls_dir) as cloud:
        # A dataset's fitted states and audit labels outlive a run, as they do in the deployed bucket.
        for prefix in dataset_memory_prefixes(spec.dataset):
            cloud.restore(workdir / "s3", prefix)
        execution_arn = land(cloud, data, spec, spec_body, model)
        # No deadline: a large file, or people reviewing, can take as long as they take (Ctrl-C stops).
        described = cloud.wait(execution_arn, timeout=math.inf)
        history = cloud.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        run_id = run_id_of(execution_arn, spec.dataset)
        layout = RunLayout(spec.dataset, run_id)
        manifest = RunManifest.model_validate(get_json(cloud.s3, cloud.bucket, layout.run_manifest_key))
        exported = cloud.export(layout.prefix, workdir / "s3")
        for prefix in dataset_memory_prefixes(spec.dataset):
            cloud.export(prefix, workdir / "s3")
        cloud.feature_store.flush()
        group = manifest.feature_group.name if manifest.feature_group else feature_group_name(LOCAL_STACK, spec.dataset)
        features = cloud.feature_store.online_records(group)
        seconds = time.perf_counter() - started
        return RunReport(
            manifest=manifest,
            execution_status=described["status"],
            run_json=f"s3://{cloud.bucket}/{layout.run_manifest_key}",
            exported_to=exported,
            seconds=seconds,
            feature_group=group,
            calls_dir=calls_dir,
            label_accuracy=label_accuracy(features, known),
            features=features,
            stage_seconds=stage_seconds(history),
            reviewers=manifest.reviewers,
        )


def describe_reviewers(reviewers: ReviewerLineage | None) -> str:
    """One line: the backend and its workers; for simulated ones their accuracy and seed."""
    if reviewers is None:
        return "none needed"
    if reviewers.backend == "none":
        return "none (pass --truth, --answers or --reviewer terminal)"
    line = (
        f"{reviewers.backend}, {_count(reviewers.workers)} workers, {_count(reviewers.workers_per_record)} per record"
    )
    if reviewers.simulated_accuracy is not None:
        line += f", accuracy {reviewers.simulated_accuracy:.0%}, seed {reviewers.seed}"
    return line


def run_id_of(execution_arn: str, dataset: str) -> str:
    """Executions are named `<dataset>-<run_id>` (labelflow.layout.execution_name)."""
    return execution_arn.rsplit("-", 1)[-1]


def label_accuracy(features: dict[str, dict[str, str]], truth: dict[str, str]) -> dict[str, float]:
    """How often the stored label matches the truth, per label source (only when the truth is known)."""
    hits: dict[str, list[bool]] = {}
    for record_id, values in features.items():
        if record_id in truth:
            hits.setdefault(values["label_source"], []).append(values["label"] == truth[record_id])
    return {source: sum(results) / len(results) for source, results in sorted(hits.items())}


def reason(report: RunReport) -> str | None:
    """Why a run did not succeed, in one sentence with what to look at; None when it succeeded."""
    return reason_of(report.manifest, report.feature_group)


def outcome(report: RunReport) -> str:
    """One line for stderr: the run, its status, why, and where its run.json is."""
    line = f"run {report.manifest.run_id}: {report.manifest.status}"
    why = reason(report)
    return f"{line}: {why}: see {report.exported_to / 'run.json'}" if why else line


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def summary(report: RunReport) -> str:
    counts = report.manifest.counts
    failed = sum(n or 0 for n in (counts.rejected, counts.unlabeled, counts.ingest_failed))
    labeled = (counts.model_labeled or 0) + (counts.human_labeled or 0)
    lines = [
        f"run {report.manifest.run_id}: {report.manifest.status} (execution {report.execution_status})",
        f"  records in      {_count(counts.records_in)}",
        f"  auto-labeled    {_count(counts.auto_labeled)}",
        f"  sent to humans  {_count(counts.sent_to_review)}",
        f"  reviewed by     {describe_reviewers(report.reviewers)}",
        f"  labeled         {labeled} ({_count(counts.model_labeled)} by the model, "
        f"{_count(counts.human_labeled)} by humans)",
        f"  ingested        {_count(counts.ingested)} into feature group {report.feature_group}",
        f"  failed          {failed} (rejected {_count(counts.rejected)}, unlabeled {_count(counts.unlabeled)}, "
        f"ingest failed {_count(counts.ingest_failed)})",
    ]
    for source, accuracy in report.label_accuracy.items():
        lines.append(f"  label accuracy ({source}) {accuracy:.1%}")
    if why := reason(report):
        lines.append(f"  why             {why}")
    lines += [
        f"  run.json        {report.run_json}",
        f"                  (copied to {report.exported_to / 'run.json'})",
        *([f"  calls           {report.calls_dir}"] if report.calls_dir else []),
        f"  took            {report.seconds:.2f}s",
        "",
        "local mode does not emulate:",
        *(f"  - {gap}" for gap in NOT_EMULATED),
    ]
    return "\n".join(lines)


def report_json(report: RunReport) -> str:
    """The run report for scripts: outcome, counts, feature group, artifacts, run.json; `run` is the whole run.json."""
    manifest = report.manifest
    return json.dumps(
        {
            "run_id": manifest.run_id,
            "dataset": manifest.dataset,
            "status": manifest.status,
            "reason": reason(report),
            "counts": manifest.counts.model_dump(mode="json"),
            "feature_group": report.feature_group,
            "artifacts": manifest.artifacts.model_dump(mode="json", exclude_none=True),
            "run_json": report.run_json,
            "run_json_copy": str(report.exported_to / "run.json"),
            "calls_dir": str(report.calls_dir) if report.calls_dir else None,
            "seconds": round(report.seconds, 3),
            "execution_status": report.execution_status,
            "label_accuracy": report.label_accuracy,
            "stage_seconds": report.stage_seconds,
            "reviewers": report.reviewers.model_dump(mode="json") if report.reviewers else None,
            "run": manifest.model_dump(mode="json"),
        },
        indent=2,
    )
