"""Object keys with characters S3 encodes in its events, from upload to run.json, in local mode.

How the key arrives: the classic S3 notification form-encodes it (S3 user guide, "Event message structure": "red
flower.jpg" becomes "red+flower.jpg"). The EventBridge page ("EventBridge event message structure") does not say;
AWS's own Powertools for Lambda decodes the EventBridge key the same way (S3EventBridgeNotificationObject.key uses
unquote_plus), so labelflow does too, and local mode sends the key form-encoded (demo.object_created_event).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labelflow.layout import RunLayout
from labelflow.models.spec import DatasetSpec
from labelflow.s3 import get_json
from labelflow_local.cloud import local_cloud
from labelflow_local.demo import DEMO_MODEL, DEMO_SPEC, DEMO_TRUTH, land, run_id_of
from labelflow_local.review import SimulatedWorkers, read_labels
from tests.conftest import EVENTS

SAMPLE = EVENTS / "fixtures/labelflow-demo/raw/reviews/sample.csv"

pytestmark = pytest.mark.e2e


def test_a_key_with_plus_percent_spaces_and_accents_is_processed_under_its_real_name(tmp_path: Path) -> None:
    # Given a file whose name holds every character the encoding could confuse: '+', '%', spaces, non-ASCII
    name = "week 1+2 100% café – naïve.csv"
    data = tmp_path / name
    data.write_bytes(SAMPLE.read_bytes())
    spec_body = DEMO_SPEC.read_bytes()
    with local_cloud(SimulatedWorkers(read_labels(DEMO_TRUTH)), tmp_path / "fs") as cloud:
        # When it lands and its run executes
        execution_arn = land(cloud, data, DatasetSpec.model_validate_json(spec_body), spec_body, DEMO_MODEL)
        described = cloud.wait(execution_arn)
        run = RunLayout("reviews", run_id_of(execution_arn, "reviews"))
        manifest = get_json(cloud.s3, cloud.bucket, run.run_manifest_key)
    # Then the run read the object under its real key, not a decoded-twice or never-decoded one
    assert described["status"] == "SUCCEEDED", manifest.get("error")
    assert manifest["input"]["key"] == f"raw/reviews/{name}"
    assert manifest["counts"]["ingested"] == manifest["counts"]["records_in"] > 0
