import re

import pytest

from labelflow.layout import PROCESSED_STATS
from labelflow.s3 import S3Location
from labelflow_local.functions import FunctionError
from tests.conftest import load_event

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
    frozen = S3Location.parse(inputs["model"] + "sentiment.json")
    model = cloud.s3.get_object(Bucket=cloud.bucket, Key="config/models/sentiment.json")["Body"].read()
    assert cloud.s3.get_object(Bucket=frozen.bucket, Key=frozen.key)["Body"].read() == model


def test_a_new_model_version_is_a_new_cache_key(cloud) -> None:
    # Given a plan, then a new model uploaded over the same key
    event = load_event("plan_processing.json")
    first = cloud.invoke("plan_processing", event)
    cloud.s3.put_object(Bucket=cloud.bucket, Key="config/models/sentiment.json", Body=b'{"retrained": true}')
    # When the same input is planned again / Then the processed outputs would not be reused
    assert cloud.invoke("plan_processing", event)["cache_key"] != first["cache_key"]


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
