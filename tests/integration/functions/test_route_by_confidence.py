import json

from labelflow.s3 import S3Location
from tests.conftest import load_event


def test_splits_records_by_confidence_and_writes_the_review_manifest(cloud) -> None:
    # Given the state after processing the 40-row sample
    event = load_event("route_by_confidence.json")
    # When RouteByConfidence runs
    routing = cloud.invoke("route_by_confidence", event)
    # Then every record is either auto-labeled or in the manifest, never both
    assert routing["total"] == 40 and routing["auto_labeled"] + routing["to_review"] == 40
    auto = _lines(cloud, routing["auto_labeled_uri"])
    review = _lines(cloud, routing["review_manifest_uri"])
    assert len(auto) == routing["auto_labeled"] and len(review) == routing["to_review"] > 0
    assert not {a["record_id"] for a in auto} & {r["record_id"] for r in review}
    assert all(a["confidence"] >= routing["threshold"] for a in auto)
    assert all(set(r) >= {"source", "record_id", "labels"} for r in review)
    # And the labeling job has what Ground Truth needs, the UI template published beside the code
    job = routing["labeling_job"]
    template = S3Location.parse(job["UiConfig"]["UiTemplateS3Uri"])
    assert b"crowd-classifier" in cloud.s3.get_object(Bucket=template.bucket, Key=template.key)["Body"].read()
    assert job["NumberOfHumanWorkersPerDataObject"] == 3


def test_nothing_to_review_writes_no_manifest(cloud) -> None:
    # Given a threshold nobody misses
    event = load_event("route_by_confidence.json")
    spec = S3Location.parse(event["plan"]["spec_uri"])
    body = json.loads(cloud.s3.get_object(Bucket=spec.bucket, Key=spec.key)["Body"].read())
    cloud.s3.put_object(Bucket=spec.bucket, Key=spec.key, Body=json.dumps({**body, "confidence_threshold": 0.0}))
    # When RouteByConfidence runs
    routing = cloud.invoke("route_by_confidence", event)
    # Then everything is auto-labeled and no labeling job is planned
    assert routing["to_review"] == 0 and routing["labeling_job"] is None and routing["review_manifest_uri"] is None


def _lines(cloud, uri: str) -> list[dict]:
    location = S3Location.parse(uri)
    body = cloud.s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines() if line]
