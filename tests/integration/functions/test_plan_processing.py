import hashlib
import json
import re

import pytest

from labelflow.layout import PROCESSED_STATS
from labelflow.s3 import S3Location
from labelflow_local.functions import FunctionError
from tests.conftest import load_event

SPEC_KEY = "config/datasets/reviews.json"
MODEL_KEY = "config/models/sentiment.joblib"
JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def test_plans_a_processing_job_on_a_frozen_copy_of_the_input(cloud) -> None:
    # Given the sample execution input for raw/reviews/sample.csv
    event = load_event("plan_processing.json")
    # When PlanProcessing runs
    plan = cloud.invoke("plan_processing", event)
    # Then it plans a valid job reading an immutable copy under the run prefix
    job = plan["processing_job"]
    assert JOB_NAME.match(job["ProcessingJobName"])
    assert not plan["cache_hit"]
    copy = S3Location.parse(plan["input_uri"])
    raw = cloud.s3.get_object(Bucket=cloud.bucket, Key=event["key"])["Body"].read()
    assert cloud.s3.get_object(Bucket=copy.bucket, Key=copy.key)["Body"].read() == raw
    assert all(i["S3Input"]["LocalPath"].startswith("/opt/ml/processing/") for i in job["ProcessingInputs"])
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in job["ProcessingInputs"]}
    assert set(inputs) == {"data", "spec", "code", "model"}
    # And the model is frozen too: the job reads this version's copy, not the mutable config/ key
    assert inputs["model"].startswith(plan["run_prefix"] + "input/model/")
    frozen = S3Location.parse(inputs["model"] + "sentiment.joblib")
    model = cloud.s3.get_object(Bucket=cloud.bucket, Key=MODEL_KEY)["Body"].read()
    assert cloud.s3.get_object(Bucket=frozen.bucket, Key=frozen.key)["Body"].read() == model
    # And the plan names the model's version, content hash and classes for run.json
    assert plan["model"]["sha256"] == hashlib.sha256(model).hexdigest()
    assert plan["model"]["classes"] == ["negative", "positive"]


def unpin_the_demo_model(cloud) -> None:
    spec = json.loads(cloud.s3.get_object(Bucket=cloud.bucket, Key=SPEC_KEY)["Body"].read())
    spec["model"].pop("sha256")
    cloud.s3.put_object(Bucket=cloud.bucket, Key=SPEC_KEY, Body=json.dumps(spec).encode())


def test_a_new_model_version_is_a_new_cache_key(cloud) -> None:
    # Given a spec that does not pin its model, a plan, then a new model uploaded over the same key
    unpin_the_demo_model(cloud)
    event = load_event("plan_processing.json")
    first = cloud.invoke("plan_processing", event)
    cloud.s3.put_object(Bucket=cloud.bucket, Key=MODEL_KEY, Body=b"retrained")
    # When the same input is planned again / Then the processed outputs would not be reused
    second = cloud.invoke("plan_processing", event)
    assert second["cache_key"] != first["cache_key"]
    assert second["model"]["sha256"] == hashlib.sha256(b"retrained").hexdigest()


def test_a_model_other_than_the_pinned_one_stops_planning(cloud) -> None:
    # Given the demo spec, which pins its model's sha256, and another file uploaded over the model's key
    cloud.s3.put_object(Bucket=cloud.bucket, Key=MODEL_KEY, Body=b"someone else's pickle")
    # When PlanProcessing runs / Then it refuses before anything is copied or processed, saying what to do
    with pytest.raises(FunctionError, match="ConfigError") as failure:
        cloud.invoke("plan_processing", load_event("plan_processing.json"))
    assert "but the spec pins" in failure.value.payload["errorMessage"]


def test_finished_outputs_for_the_same_cache_key_are_reused(cloud) -> None:
    # Given a plan whose processed outputs are already complete
    event = load_event("plan_processing.json")
    first = cloud.invoke("plan_processing", event)
    done = S3Location.parse(first["processed_uri"] + PROCESSED_STATS)
    cloud.s3.put_object(Bucket=done.bucket, Key=done.key, Body=b'{"records_in": 0, "records_out": 0, "rejected": 0}')
    # When the same input is planned again
    second = cloud.invoke("plan_processing", event)
    # Then it is a cache hit on the same key
    assert second["cache_hit"] and second["cache_key"] == first["cache_key"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "is empty"),
        (b"review_id,review_text\nr1,hello\n", "missing required columns: reviewed_at, product_category"),
        (b"\xff\xfe\x00b\x00a\x00d", "is not utf-8 text"),
    ],
)
def test_an_input_that_cannot_be_the_dataset_is_rejected_with_the_reason(cloud, body: bytes, message: str) -> None:
    # Given a landed object that is empty, lacks columns, or is not text
    cloud.s3.put_object(Bucket=cloud.bucket, Key="raw/reviews/bad.csv", Body=body)
    event = {**load_event("plan_processing.json"), "key": "raw/reviews/bad.csv", "size": len(body)}
    # When PlanProcessing runs / Then it fails with InvalidInputError naming the problem
    with pytest.raises(FunctionError, match="InvalidInputError") as failure:
        cloud.invoke("plan_processing", event)
    assert message in failure.value.payload["errorMessage"]


def test_a_dataset_without_a_spec_stops_with_a_config_error(cloud) -> None:
    # Given an object for a dataset that has no spec
    cloud.s3.put_object(Bucket=cloud.bucket, Key="raw/other/a.csv", Body=b"id\n1\n")
    event = {**load_event("plan_processing.json"), "key": "raw/other/a.csv", "dataset": "other"}
    # When PlanProcessing runs / Then the error names where the spec should be
    with pytest.raises(FunctionError, match="config/datasets/other.json"):
        cloud.invoke("plan_processing", event)
