import json

from labelflow.s3 import S3Location
from tests.conftest import load_event


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


def test_ingest_puts_every_labeled_record_into_the_feature_group(cloud) -> None:
    # Given the merged sample
    event = load_event("ingest_features.json")
    # When IngestFeatures runs
    result = cloud.invoke("ingest_features", event)
    # Then all 40 records are in the (local) feature store with their label source
    assert result == {"feature_group": "labelflow-reviews", "ingested": 40, "failed": 0, "failures_uri": None}
    stored = cloud.feature_store.online_records("labelflow-reviews")
    assert len(stored) == 40
    assert {v["label_source"] for v in stored.values()} == {"model", "human"}


def test_ingest_reports_records_the_feature_store_rejects(cloud) -> None:
    # Given a feature group that lacks one of the record's features
    group = cloud.feature_store._groups["labelflow-reviews"]
    features = dict(group.features)
    features.pop("price")
    cloud.feature_store.add_group(group.__class__(**{**group.__dict__, "features": features}))
    # When IngestFeatures runs
    result = cloud.invoke("ingest_features", load_event("ingest_features.json"))
    # Then nothing is lost silently: every failure is counted and written down
    assert result["ingested"] == 0 and result["failed"] == 40
    report = S3Location.parse(result["failures_uri"])
    lines = cloud.s3.get_object(Bucket=report.bucket, Key=report.key)["Body"].read().decode().splitlines()
    assert len(lines) == 40 and "ValidationError" in json.loads(lines[0])["error"]


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
