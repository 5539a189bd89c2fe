"""Local stand-ins refuse what AWS refuses, the way AWS does, and keep every request they received."""

from __future__ import annotations

import json
import types
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

from labelflow_local import demo
from labelflow_local.cloud import local_cloud
from labelflow_local.contracts import read_calls
from labelflow_local.review import SimulatedWorkers, read_labels
from tests.e2e.test_failures import SAMPLE, run_sample

pytestmark = pytest.mark.e2e


def test_a_run_keeps_each_request_its_stand_ins_received(tmp_path: Path) -> None:
    # Given the sample file run locally as `labelflow run --local --json` runs it
    data = tmp_path / "sample.csv"
    data.write_bytes(SAMPLE.read_bytes())
    report = demo.run_local(data, demo.DEMO_SPEC, demo.DEMO_MODEL, tmp_path / "work", truth=demo.DEMO_TRUTH)
    # When the report names its calls folder
    calls_dir = Path(json.loads(demo.report_json(report))["calls_dir"])
    calls = read_calls(calls_dir)
    operations = [call["operation"] for call in calls]
    # Then every request is there, numbered in order: the group, the two jobs with their polls, one PutRecord a record
    assert operations[0] == "DescribeFeatureGroup" and [call["n"] for call in calls] == list(range(1, len(calls) + 1))
    assert operations.index("CreateFeatureGroup") < operations.index("CreateProcessingJob")
    assert operations.index("CreateProcessingJob") < operations.index("CreateLabelingJob")
    counts = Counter(operations)
    assert counts["PutRecord"] == report.manifest.counts.ingested
    assert {counts[op] for op in ("CreateProcessingJob", "DescribeProcessingJob", "CreateLabelingJob")} == {1}
    created = calls[operations.index("CreateProcessingJob")]
    assert created["service"] == "sagemaker" and created["request"]["ProcessingJobName"].startswith("lf-reviews-")


def drop_image_uri(job: dict[str, Any]) -> None:
    del job["AppSpecification"]["ImageUri"]


def no_instances(job: dict[str, Any]) -> None:
    job["ProcessingResources"]["ClusterConfig"]["InstanceCount"] = 0


@pytest.mark.parametrize(
    ("breaks", "message"),
    [
        (
            drop_image_uri,
            "1 validation error detected: Value null at 'appSpecification.imageUri' failed to satisfy constraint: "
            "Member must not be null",
        ),
        (
            no_instances,
            "1 validation error detected: Value '0' at 'processingResources.clusterConfig.instanceCount' failed to "
            "satisfy constraint: Member must have value greater than or equal to 1",
        ),
    ],
    ids=["missing-required-member", "out-of-range-integer"],
)
def test_a_processing_request_aws_would_refuse_fails_the_step_as_on_aws(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, breaks: Any, message: str
) -> None:
    # Given the planned processing request broken on purpose, and the ASL's retry waits skipped (they really sleep)
    monkeypatch.setattr(retrier_decl, "time", types.SimpleNamespace(sleep=lambda seconds: None))
    with local_cloud(
        SimulatedWorkers(read_labels(demo.DEMO_TRUTH)), tmp_path / "fs", calls_dir=tmp_path / "calls"
    ) as cloud:
        invoke = cloud.functions.invoke

        def planned_then_broken(function: str, event: Any) -> Any:
            payload = invoke(function, event)
            if isinstance(payload, dict) and "processing_job" in payload:
                breaks(payload["processing_job"])
            return payload

        monkeypatch.setattr(cloud.functions, "invoke", planned_then_broken)
        # When the run executes
        described, manifest, history = run_sample(cloud, tmp_path)
    # Then each attempt failed with SageMaker's error as the integration names it, no job ran, and run.json says why
    failures = [e["taskFailedEventDetails"] for e in history if e["type"] == "TaskFailed"]
    assert failures and {failure["error"] for failure in failures} == {"SageMaker.AmazonSageMakerException"}
    assert all(failure["cause"].startswith(message + " (Service: AmazonSageMaker;") for failure in failures)
    assert described["status"] == "FAILED" and manifest["status"] == "FAILED"
    assert manifest["error"]["error"] == "SageMaker.AmazonSageMakerException"
    assert manifest["error"]["cause"].startswith(message)
    kept = [call["operation"] for call in read_calls(tmp_path / "calls")]
    assert "DescribeProcessingJob" not in kept and kept.count("CreateProcessingJob") == len(failures)
