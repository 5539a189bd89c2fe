"""Labeling jobs that end badly, in the real state machine: what was labeled is kept, the run ends PARTIAL."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

from labelflow.layout import RunLayout
from labelflow.models.spec import DatasetSpec
from labelflow.s3 import get_json, iter_jsonl
from labelflow_local.cloud import LocalCloud, local_cloud
from labelflow_local.demo import DEMO_MODEL, DEMO_SPEC, DEMO_TRUTH, land, run_id_of
from labelflow_local.review import EndsAfter, SimulatedWorkers, read_labels
from tests.conftest import EVENTS

SAMPLE = EVENTS / "fixtures/labelflow-demo/raw/reviews/sample.csv"
LABELED_BEFORE_THE_END = 3

pytestmark = pytest.mark.e2e


def run_sample(
    cloud: LocalCloud, tmp_path: Path, objects_per_job: int | None = None
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Land the demo sample; the execution, its run.json and the run's unlabeled.jsonl lines."""
    spec_body = DEMO_SPEC.read_bytes()
    if objects_per_job is not None:
        spec = json.loads(spec_body)
        spec["labeling"] = {**spec.get("labeling", {}), "objects_per_job": objects_per_job}
        spec_body = json.dumps(spec).encode()
    data = tmp_path / "sample.csv"
    data.write_bytes(SAMPLE.read_bytes())
    execution_arn = land(cloud, data, DatasetSpec.model_validate_json(spec_body), spec_body, DEMO_MODEL)
    described = cloud.wait(execution_arn)
    layout = RunLayout("reviews", run_id_of(execution_arn, "reviews"))
    manifest = get_json(cloud.s3, cloud.bucket, layout.run_manifest_key)
    unlabeled = (
        list(iter_jsonl(cloud.s3, cloud.bucket, layout.unlabeled_key)) if manifest["counts"]["unlabeled"] else []
    )
    return described, manifest, unlabeled


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        ("Failed", "the work team's workers left", "ended Failed: the work team's workers left"),
        ("Stopped", None, "ended Stopped"),
    ],
)
def test_a_job_that_ends_early_keeps_its_labels_and_the_run_ends_partial(
    tmp_path: Path, status: Any, reason: str | None, expected: str
) -> None:
    # Given reviewers who answer the first 3 tasks, after which the labeling job ends Failed or Stopped
    workers = EndsAfter(SimulatedWorkers(read_labels(DEMO_TRUTH)), LABELED_BEFORE_THE_END, status, reason)
    with local_cloud(workers, tmp_path / "fs") as cloud:
        # When the run executes
        described, manifest, unlabeled = run_sample(cloud, tmp_path)
        ingested = cloud.feature_store.online_records("labelflow-reviews")
    counts = manifest["counts"]
    # Then the run is PARTIAL with the job's reason, not failed whole
    assert described["status"] == "FAILED" and manifest["status"] == "PARTIAL" and manifest["error"] is None
    assert expected in manifest["reason"] and expected in manifest["labeling_ended"]
    # And the labeled records were merged, the auto-labeled ones ingested, the rest kept unlabeled with the reason
    assert counts["human_labeled"] == LABELED_BEFORE_THE_END
    assert counts["model_labeled"] == counts["auto_labeled"]
    assert counts["unlabeled"] == counts["sent_to_review"] - LABELED_BEFORE_THE_END
    assert counts["ingested"] == counts["human_labeled"] + counts["model_labeled"] == len(ingested)
    assert len(unlabeled) == counts["unlabeled"] and all(expected in row["reason"] for row in unlabeled)
    assert not {row["record_id"] for row in unlabeled} & set(ingested)


def test_a_job_that_ends_before_any_task_leaves_only_the_auto_labels(tmp_path: Path) -> None:
    # Given a labeling job that fails before its first task: it writes no output manifest
    workers = EndsAfter(SimulatedWorkers(read_labels(DEMO_TRUTH)), 0)
    with local_cloud(workers, tmp_path / "fs") as cloud:
        # When the run executes
        _, manifest, unlabeled = run_sample(cloud, tmp_path)
    # Then nothing counts as human-labeled, auto-labels are ingested and every reviewed record is unlabeled
    counts = manifest["counts"]
    assert manifest["status"] == "PARTIAL" and counts["human_labeled"] == 0
    assert counts["ingested"] == counts["auto_labeled"] > 0
    assert len(unlabeled) == counts["sent_to_review"]


def test_a_large_review_is_split_over_several_jobs_and_merged_whole(tmp_path: Path) -> None:
    # Given a spec that puts at most 8 records in one labeling job, and reviewers who know every label
    with local_cloud(SimulatedWorkers(read_labels(DEMO_TRUTH)), tmp_path / "fs") as cloud:
        # When the run executes
        described, manifest, unlabeled = run_sample(cloud, tmp_path, objects_per_job=8)
    counts = manifest["counts"]
    # Then the review ran as one job per 8 records, and every reviewed record got its human label
    jobs = -(-counts["sent_to_review"] // 8)
    assert jobs >= 2 and len(manifest["labeling_jobs"]) == len(set(manifest["labeling_jobs"])) == jobs
    assert described["status"] == "SUCCEEDED" and manifest["status"] == "SUCCEEDED" and not unlabeled
    assert counts["human_labeled"] == counts["sent_to_review"]


def test_one_job_of_a_split_review_ending_early_leaves_the_others_labels(tmp_path: Path) -> None:
    # Given a review split over several jobs, each of which ends Failed after 3 tasks
    workers = EndsAfter(SimulatedWorkers(read_labels(DEMO_TRUTH)), LABELED_BEFORE_THE_END)
    with local_cloud(workers, tmp_path / "fs") as cloud:
        # When the run executes
        _, manifest, unlabeled = run_sample(cloud, tmp_path, objects_per_job=8)
    counts = manifest["counts"]
    jobs = len(manifest["labeling_jobs"])
    # Then every job's first 3 records were merged and the run is PARTIAL with each job's reason
    assert jobs >= 2 and manifest["status"] == "PARTIAL"
    assert counts["human_labeled"] == LABELED_BEFORE_THE_END * jobs
    assert counts["unlabeled"] == len(unlabeled) == counts["sent_to_review"] - counts["human_labeled"]
    assert manifest["labeling_ended"].count("ended Failed") == jobs
    assert {row["reason"].split(" ended")[0] for row in unlabeled} <= {
        f"labeling job {j}" for j in manifest["labeling_jobs"]
    }


def test_a_labeling_request_sagemaker_refuses_fails_the_run_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given routing's labeling request broken on purpose (no worker per object), and the retry waits skipped
    monkeypatch.setattr(retrier_decl, "time", types.SimpleNamespace(sleep=lambda seconds: None))
    with local_cloud(SimulatedWorkers(read_labels(DEMO_TRUTH)), tmp_path / "fs") as cloud:
        invoke = cloud.functions.invoke

        def routed_then_broken(function: str, event: Any) -> Any:
            payload = invoke(function, event)
            for job in payload.get("labeling_jobs", []) if isinstance(payload, dict) else []:
                job["NumberOfHumanWorkersPerDataObject"] = 0
            return payload

        monkeypatch.setattr(cloud.functions, "invoke", routed_then_broken)
        # When the run executes
        described, manifest, _ = run_sample(cloud, tmp_path)
    # Then the run failed with SageMaker's error, not as a job that ended early
    assert described["status"] == "FAILED" and manifest["status"] == "FAILED"
    assert manifest["error"]["error"] == "SageMaker.AmazonSageMakerException"
    assert "numberOfHumanWorkersPerDataObject" in manifest["error"]["cause"] and manifest["labeling_ended"] is None
