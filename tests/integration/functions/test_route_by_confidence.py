import hashlib
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
    (job,) = routing["labeling_jobs"]
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
    assert routing["to_review"] == 0 and routing["labeling_jobs"] == [] and routing["review_manifest_uri"] is None


def _lines(cloud, uri: str) -> list[dict]:
    location = S3Location.parse(uri)
    body = cloud.s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines() if line]


# ------------------------------------------------------------------------ publishing the fitted state
def finish_processing_with_state(cloud, event: dict, state: bytes, fitted: bool) -> None:
    """Make the sample's processed output report `state` (fitted by it, or applied), as the engine writes it."""
    processed = S3Location.parse(event["plan"]["processed_uri"])
    stats_key = processed.key + "stats.json"
    stats = json.loads(cloud.s3.get_object(Bucket=processed.bucket, Key=stats_key)["Body"].read())
    stats["state"] = {"sha256": hashlib.sha256(state).hexdigest(), "fitted": fitted}
    cloud.s3.put_object(Bucket=processed.bucket, Key=processed.key + "state.json", Body=state)
    cloud.s3.put_object(Bucket=processed.bucket, Key=stats_key, Body=json.dumps(stats).encode())


def test_a_state_fitted_by_the_run_is_published_for_the_next_runs(cloud) -> None:
    # Given a run whose processing fitted its transform state
    event = load_event("route_by_confidence.json")
    finish_processing_with_state(cloud, event, b'{"fitted": "here"}', fitted=True)
    # When RouteByConfidence runs
    routing = cloud.invoke("route_by_confidence", event)
    # Then the state is published where planning looks for it, and the routing output says so
    published = S3Location.parse(event["plan"]["transform_state"]["uri"])
    assert cloud.s3.get_object(Bucket=published.bucket, Key=published.key)["Body"].read() == b'{"fitted": "here"}'
    assert routing["transform_state"] == {
        **event["plan"]["transform_state"],
        "applied": False,
        "sha256": hashlib.sha256(b'{"fitted": "here"}').hexdigest(),
        "published": True,
    }


def test_a_fit_that_lost_the_race_leaves_the_published_state_alone_and_says_so(cloud) -> None:
    # Given a state another run published while this run fitted its own
    event = load_event("route_by_confidence.json")
    published = S3Location.parse(event["plan"]["transform_state"]["uri"])
    cloud.s3.put_object(Bucket=published.bucket, Key=published.key, Body=b'{"fitted": "first"}')
    finish_processing_with_state(cloud, event, b'{"fitted": "second"}', fitted=True)
    # When RouteByConfidence runs
    routing = cloud.invoke("route_by_confidence", event)
    # Then the first state stays published and this run records that its fit was not
    assert cloud.s3.get_object(Bucket=published.bucket, Key=published.key)["Body"].read() == b'{"fitted": "first"}'
    assert routing["transform_state"]["published"] is False
    assert routing["auto_labeled"] + routing["to_review"] == 40
