import json

import pytest

from labelflow.models.spec import DatasetSpec
from labelflow.s3 import S3Location
from labelflow_local.cloud import LocalCloud
from labelflow_local.functions import FunctionError
from tests.conftest import ROOT, load_event

GROUP = "labelflow-reviews"


def demo_spec(**changes) -> DatasetSpec:
    body = json.loads((ROOT / "demo/datasets/reviews.json").read_text())
    return DatasetSpec.model_validate({**body, **changes})


@pytest.fixture
def group(cloud: LocalCloud) -> str:
    """The demo dataset's group, as the sample run's planning created it."""
    return cloud.ensure_feature_group(demo_spec()).name


def test_merge_prefers_human_labels_and_keeps_every_record(cloud) -> None:
    # Given the state after human labeling of the sample
    event = load_event("merge_labels.json")
    # When MergeLabels runs
    merged = cloud.invoke("merge_labels", event)
    # Then every processed record is labeled once, humans for the reviewed ones
    assert merged["labeled"] == event["routing"]["total"] == 40
    assert merged["human"] == event["routing"]["to_review"] and merged["unlabeled"] == 0
    labeled = S3Location.parse(merged["labeled_uri"])
    lines = cloud.s3.get_object(Bucket=labeled.bucket, Key=labeled.key)["Body"].read().decode().splitlines()
    assert len({json.loads(line)["record_id"] for line in lines}) == 40


def test_ingest_puts_every_labeled_record_into_the_feature_group(cloud, group: str) -> None:
    # Given the merged sample, and the group its planning created
    event = load_event("ingest_features.json")
    # When IngestFeatures runs
    result = cloud.invoke("ingest_features", event)
    # Then all 40 records are in the plan's group of the (local) feature store with their label source
    assert event["feature_group"] == group
    assert result == {"index": 0, "ingested": 40, "failed": 0, "failures_uri": None, "error": None}
    stored = cloud.feature_store.online_records(group)
    assert len(stored) == 40
    assert {v["label_source"] for v in stored.values()} == {"model", "human"}


def test_ingest_reports_records_the_feature_store_rejects(cloud) -> None:
    # Given a feature group created from a spec that lacks one of the records' features
    spec = demo_spec()
    cloud.ensure_feature_group(spec.model_copy(update={"features": [f for f in spec.features if f.name != "price"]}))
    # When IngestFeatures runs
    result = cloud.invoke("ingest_features", load_event("ingest_features.json"))
    # Then nothing is lost silently: every failure is counted and written down
    assert result["ingested"] == 0 and result["failed"] == 40
    report = S3Location.parse(result["failures_uri"])
    lines = cloud.s3.get_object(Bucket=report.bucket, Key=report.key)["Body"].read().decode().splitlines()
    assert len(lines) == 40 and "ValidationError" in json.loads(lines[0])["error"]


def test_ingest_waits_while_the_group_is_being_created(cloud) -> None:
    # Given the plan's group, still being created (its first describe answers Creating)
    cloud.feature_store.describes_while_creating = 1
    cloud.ensure_feature_group(demo_spec())
    event = load_event("ingest_features.json")
    # When IngestFeatures runs, then runs again (as the state machine's Retry does)
    with pytest.raises(FunctionError, match="FeatureGroupNotReady: feature group labelflow-reviews is still being"):
        cloud.invoke("ingest_features", event)
    result = cloud.invoke("ingest_features", event)
    # Then the first attempt wrote nothing, and the retry wrote every record once the group was created
    assert result["ingested"] == 40 and result["failed"] == 0


def test_ingest_into_a_group_that_no_longer_exists_fails_the_run(cloud) -> None:
    # Given a plan naming a group that does not exist (deleted since planning)
    # When IngestFeatures runs / Then it stops with a ConfigError, before any PutRecord
    with pytest.raises(FunctionError, match="ConfigError: feature group labelflow-reviews does not exist"):
        cloud.invoke("ingest_features", load_event("ingest_features.json"))
    assert cloud.feature_store.online_records(GROUP) == {}


def test_finalize_writes_run_json_accounting_for_every_record(cloud) -> None:
    # Given the state at the end of a successful run
    event = load_event("finalize_run.json")
    # When FinalizeRun runs
    manifest = cloud.invoke("finalize_run", event)
    # Then run.json holds lineage and counts that add up
    counts = manifest["counts"]
    assert manifest["status"] == "SUCCEEDED"
    assert manifest["input"]["version_id"] == event["state"]["version_id"]
    assert counts["records_in"] == counts["rejected"] + counts["auto_labeled"] + counts["sent_to_review"]
    assert counts["model_labeled"] + counts["human_labeled"] + counts["unlabeled"] == 40
    assert counts["ingested"] == 40
    # And it names the feature group and the transform state the run used
    assert manifest["feature_group"] == event["state"]["plan"]["feature_group"]
    state = event["state"]
    settled = state["routing"].get("transform_state") or state["plan"]["transform_state"]
    assert manifest["transform_state"] == settled and settled["fingerprint"]
    stored = cloud.s3.get_object(Bucket=cloud.bucket, Key=f"runs/reviews/{event['state']['run_id']}/run.json")
    assert json.loads(stored["Body"].read()) == manifest


def test_finalize_records_a_failure_with_its_reason(cloud) -> None:
    # Given a state caught after a failed step
    event = load_event("finalize_run.failure.json")
    # When FinalizeRun runs
    manifest = cloud.invoke("finalize_run", event)
    # Then the run is FAILED and the Lambda error payload is unwrapped into a readable cause
    assert manifest["status"] == "FAILED"
    assert manifest["error"] == {
        "error": "InvalidInputError",
        "cause": "s3://labelflow-demo/raw/reviews/sample.csv is missing required columns: price",
    }
