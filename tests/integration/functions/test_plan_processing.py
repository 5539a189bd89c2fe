import csv
import gzip
import hashlib
import io
import json
import re
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labelflow.feature_groups import feature_definitions
from labelflow.layout import PROCESSED_STATS, transform_state_key
from labelflow.models.spec import DatasetSpec, transform_fingerprint
from labelflow.s3 import S3Location
from labelflow_local.functions import FunctionError
from tests.conftest import EVENTS, load_event

SPEC_KEY = "config/datasets/reviews.json"
MODEL_KEY = "config/models/sentiment.joblib"
EVENTS_SAMPLE = EVENTS / "fixtures/labelflow-demo/raw/reviews/sample.csv"
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
    # And the job is told how to read the input
    assert read_as(plan) == ["--format", "csv", "--encoding", "utf-8-sig", "--delimiter", ","]


def read_as(plan: dict[str, Any]) -> list[str]:
    """The job's reading arguments (the last of its arguments)."""
    arguments: list[str] = plan["processing_job"]["AppSpecification"]["ContainerArguments"]
    return arguments[arguments.index("--format") :]


def sample_rows() -> list[dict[str, str]]:
    with EVENTS_SAMPLE.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def semicolon_csv() -> bytes:
    rows = sample_rows()
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), delimiter=";")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def gzipped_json_lines() -> bytes:
    return gzip.compress("".join(json.dumps(row) + "\n" for row in sample_rows()).encode())


def parquet() -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(sample_rows()), buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("key", "body", "expected"),
    [
        ("raw/reviews/export.csv", semicolon_csv, ["--format", "csv", "--encoding", "utf-8-sig", "--delimiter", ";"]),
        ("raw/reviews/export.jsonl.gz", gzipped_json_lines, ["--format", "jsonl", "--encoding", "utf-8-sig", "--gzip"]),
        ("raw/reviews/export", parquet, ["--format", "parquet", "--encoding", "utf-8-sig"]),
    ],
)
def test_the_job_is_told_how_planning_resolved_the_input(cloud, key: str, body: Any, expected: list[str]) -> None:
    # Given a semicolon CSV, gzipped JSON Lines, or Parquet under a key without an extension
    data = body()
    cloud.s3.put_object(Bucket=cloud.bucket, Key=key, Body=data)
    event = {**load_event("plan_processing.json"), "key": key, "size": len(data)}
    # When PlanProcessing runs
    plan = cloud.invoke("plan_processing", event)
    # Then the job's arguments say the format, compression, encoding and delimiter, so processing detects nothing
    assert read_as(plan) == expected


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
        (b"review_id,review_text\nr1,hello\n", "missing required columns: product_category, reviewed_at"),
        (b"review_id,review_text\nr1,caf\xe9\n", "is not utf-8 text"),
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


# ------------------------------------------------------------------------ the dataset's feature group
GROUP = "labelflow-reviews"


def demo_spec(cloud) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(cloud.s3.get_object(Bucket=cloud.bucket, Key=SPEC_KEY)["Body"].read())
    return spec


def frozen_under(cloud, run_prefix: str) -> list[str]:
    listed = cloud.s3.list_objects_v2(Bucket=cloud.bucket, Prefix=run_prefix.removeprefix(f"s3://{cloud.bucket}/"))
    return [item["Key"] for item in listed.get("Contents", [])]


def test_the_first_run_of_a_dataset_creates_its_feature_group_from_the_spec(cloud) -> None:
    # Given a dataset whose group does not exist yet
    with pytest.raises(cloud.sagemaker.exceptions.ResourceNotFound):
        cloud.sagemaker.describe_feature_group(FeatureGroupName=GROUP)
    # When PlanProcessing runs
    plan = cloud.invoke("plan_processing", load_event("plan_processing.json"))
    # Then it created <stack>-<dataset> from the spec, with both stores and the Feature Store role, and says so
    assert plan["feature_group"] == {"name": GROUP, "created": True}
    described = cloud.sagemaker.describe_feature_group(FeatureGroupName=GROUP)
    spec = DatasetSpec.model_validate(demo_spec(cloud))
    assert [(d["FeatureName"], d["FeatureType"]) for d in described["FeatureDefinitions"]] == feature_definitions(spec)
    assert described["OnlineStoreConfig"] == {"EnableOnlineStore": True}
    assert described["OfflineStoreConfig"]["S3StorageConfig"]["S3Uri"] == f"s3://{cloud.bucket}/feature-store"
    assert described["RoleArn"] == cloud.roles["FeatureStoreRole"]


def test_a_later_run_reuses_the_group_that_matches_its_spec(cloud) -> None:
    # Given a group created by an earlier run of the dataset
    cloud.invoke("plan_processing", load_event("plan_processing.json"))
    # When another run is planned / Then it reuses the group
    assert cloud.invoke("plan_processing", load_event("plan_processing.json"))["feature_group"] == {
        "name": GROUP,
        "created": False,
    }


def test_a_spec_that_no_longer_matches_the_group_stops_planning_before_anything_is_frozen(cloud) -> None:
    # Given a group created by an earlier run, then a feature added to the spec
    first = cloud.invoke("plan_processing", load_event("plan_processing.json"))
    spec = demo_spec(cloud)
    spec["features"].append({"name": "stars", "column": "helpful_votes", "type": "numeric"})
    cloud.s3.put_object(Bucket=cloud.bucket, Key=SPEC_KEY, Body=json.dumps(spec).encode())
    before = frozen_under(cloud, first["run_prefix"])
    # When a new object of the dataset is planned
    cloud.s3.put_object(Bucket=cloud.bucket, Key="raw/reviews/next.csv", Body=(EVENTS_SAMPLE).read_bytes())
    event = {**load_event("plan_processing.json"), "key": "raw/reviews/next.csv", "run_id": "next"}
    with pytest.raises(FunctionError, match="ConfigError") as failure:
        cloud.invoke("plan_processing", event)
    # Then the error names the group, the dataset and the feature, and the run froze nothing
    assert failure.value.payload["errorMessage"].startswith(
        f"feature group {GROUP} does not match the spec of dataset reviews: the group lacks stars (Fractional)"
    )
    assert frozen_under(cloud, first["run_prefix"].replace(first["run_id"], "next")) == []
    assert frozen_under(cloud, first["run_prefix"]) == before


# ------------------------------------------------------------------------ the transform state
def test_without_a_published_state_the_job_fits_one(cloud) -> None:
    # Given a dataset no run has fitted a state for
    # When PlanProcessing runs
    plan = cloud.invoke("plan_processing", load_event("plan_processing.json"))
    # Then the job gets no state input, and the plan says where a fitted state will be published
    job = plan["processing_job"]
    assert "state" not in {i["InputName"] for i in job["ProcessingInputs"]}
    assert "--state-dir" not in job["AppSpecification"]["ContainerArguments"]
    spec = DatasetSpec.model_validate(demo_spec(cloud))
    assert plan["transform_state"] == {
        "uri": f"s3://{cloud.bucket}/{transform_state_key('reviews', transform_fingerprint(spec))}",
        "fingerprint": transform_fingerprint(spec),
        "applied": False,
        "version_id": None,
        "sha256": None,
        "published": None,
    }


def test_a_published_state_is_applied_and_is_part_of_the_cache_key(cloud) -> None:
    # Given a plan made before any state was published, then a state published for the spec's fingerprint
    event = load_event("plan_processing.json")
    before = cloud.invoke("plan_processing", event)
    state = S3Location.parse(before["transform_state"]["uri"])
    put = cloud.s3.put_object(Bucket=state.bucket, Key=state.key, Body=b'{"format": "labelflow.transform-state"}')
    # When the same input is planned again
    plan = cloud.invoke("plan_processing", event)
    # Then the job reads the state's folder and applies it, and the outputs are not those of the fitting plan
    job = plan["processing_job"]
    inputs = {i["InputName"]: i["S3Input"] for i in job["ProcessingInputs"]}
    assert inputs["state"]["S3Uri"] == before["transform_state"]["uri"].removesuffix("state.json")
    assert inputs["state"]["LocalPath"] == "/opt/ml/processing/input/state"
    arguments = job["AppSpecification"]["ContainerArguments"]
    assert arguments[arguments.index("--state-dir") + 1] == "/opt/ml/processing/input/state"
    assert plan["transform_state"]["applied"] is True and plan["transform_state"]["version_id"] == put["VersionId"]
    assert plan["cache_key"] != before["cache_key"]
