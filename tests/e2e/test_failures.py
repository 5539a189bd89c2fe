"""Failures in the real state machine: transient ones are retried, the others end the run with their reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labelflow.layout import RunLayout
from labelflow.models.spec import DatasetSpec
from labelflow.s3 import get_json
from labelflow_local.cloud import LocalCloud, local_cloud
from labelflow_local.demo import DEMO_MODEL, DEMO_SPEC, DEMO_TRUTH, land, run_id_of
from labelflow_local.functions import FunctionError, error_payload
from labelflow_local.review import SimulatedWorkers, read_labels
from labelflow_local.template import FunctionDef
from tests.conftest import EVENTS

SAMPLE = EVENTS / "fixtures/labelflow-demo/raw/reviews/sample.csv"

pytestmark = pytest.mark.e2e


def fail(cloud: LocalCloud, function: str, error: Exception, times: int) -> list[int]:
    """Make `function` raise `error` on its first `times` calls; returns the call counter."""
    calls = [0]

    def failing(called: FunctionDef, event: Any) -> None:
        if called.name == function:
            calls[0] += 1
            if calls[0] <= times:
                raise FunctionError(error_payload(error))

    cloud.functions.intercept(failing)
    return calls


def run_sample(cloud: LocalCloud, tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    spec_body = DEMO_SPEC.read_bytes()
    data = tmp_path / "sample.csv"
    data.write_bytes(SAMPLE.read_bytes())
    execution_arn = land(cloud, data, DatasetSpec.model_validate_json(spec_body), spec_body, DEMO_MODEL)
    described = cloud.wait(execution_arn)
    history = cloud.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    manifest = get_json(
        cloud.s3, cloud.bucket, RunLayout("reviews", run_id_of(execution_arn, "reviews")).run_manifest_key
    )
    return described, manifest, history


class RetryableAwsError(Exception):
    """Same name as labelflow.errors.RetryableAwsError: the ASL matches on the error name."""


def test_a_transient_aws_error_is_retried_and_the_run_succeeds(tmp_path: Path) -> None:
    # Given MergeLabels hitting a throttle that outlives botocore's retries, once
    with local_cloud(SimulatedWorkers(read_labels(DEMO_TRUTH)), tmp_path / "fs") as cloud:
        calls = fail(cloud, "merge_labels", RetryableAwsError("put s3://b/k: SlowDown after retries"), times=1)
        # When the run executes
        described, manifest, history = run_sample(cloud, tmp_path)
    # Then the state machine retried the step and the run completed with every record
    assert calls[0] == 2
    assert sum(1 for e in history if e["type"] == "LambdaFunctionFailed") == 1
    assert described["status"] == "SUCCEEDED" and manifest["status"] == "SUCCEEDED"
    assert manifest["counts"]["ingested"] == manifest["counts"]["records_in"] - manifest["counts"]["rejected"]


def test_a_failed_labeling_job_leaves_a_partial_run_with_the_reason(tmp_path: Path) -> None:
    # Given an annotation-consolidation Lambda that fails, so the labeling job ends Failed
    with local_cloud(SimulatedWorkers(read_labels(DEMO_TRUTH)), tmp_path / "fs") as cloud:
        fail(cloud, "gt_post_annotation", ValueError("consolidation broke"), times=99)
        # When the run executes
        described, manifest, history = run_sample(cloud, tmp_path)
        ingested = cloud.feature_store.online_records("labelflow-reviews")
    # Then the run goes on without the job's labels: merged, auto-labels ingested, the rest unlabeled with the
    # job's reason, and the run PARTIAL (its execution fails, so the alarm sees it)
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if e["type"] == "TaskStateEntered"]
    assert "MergeLabels" in entered and "RecordFailure" not in entered
    assert described["status"] == "FAILED"
    assert manifest["status"] == "PARTIAL" and manifest["error"] is None
    assert "ended Failed: lambda failed: ValueError: consolidation broke" in manifest["reason"]
    counts = manifest["counts"]
    assert counts["sent_to_review"] > 0 and counts["unlabeled"] == counts["sent_to_review"]
    assert counts["ingested"] == counts["auto_labeled"] == len(ingested)


def test_a_bad_file_fails_alone_while_other_runs_go_on(tmp_path: Path) -> None:
    # Given a good file and a bad one landing together
    spec_body = DEMO_SPEC.read_bytes()
    spec = DatasetSpec.model_validate_json(spec_body)
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_bytes(SAMPLE.read_bytes())
    bad.write_bytes(b"review_id,review_text\nr1,no other columns\n")
    with local_cloud(SimulatedWorkers(read_labels(DEMO_TRUTH)), tmp_path / "fs") as cloud:
        # When both runs execute at the same time
        arns = {path.name: land(cloud, path, spec, spec_body, DEMO_MODEL) for path in (bad, good)}
        outcomes = {name: cloud.wait(arn)["status"] for name, arn in arns.items()}
        stored = cloud.feature_store.online_records("labelflow-reviews")
    # Then only the bad one failed, and the good one's records all arrived
    assert outcomes == {"bad.csv": "FAILED", "good.csv": "SUCCEEDED"}
    assert len(stored) == 40
