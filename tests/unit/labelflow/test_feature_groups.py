"""feature_groups.py: definitions from the spec, the create request, the check against the spec, and the gates."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from labelflow.errors import ConfigError, FeatureGroupNotReady, RetryableAwsError
from labelflow.feature_groups import (
    FeatureStoreConfig,
    create_request,
    differences,
    ensure_feature_group,
    feature_definitions,
    require_usable,
)
from labelflow.ingestion import feature_record
from labelflow.models.records import LabeledRecord
from labelflow.models.run import FeatureGroupLineage
from labelflow.models.spec import DatasetSpec, output_features
from tests.conftest import ROOT

NAME = "labelflow-reviews"
CONFIG = FeatureStoreConfig("arn:aws:iam::123456789012:role/fs", "s3://labelflow-demo/feature-store")


def demo_spec(**changes: Any) -> DatasetSpec:
    body = json.loads((ROOT / "demo/datasets/reviews.json").read_text())
    return DatasetSpec.model_validate({**body, **changes})


def described(spec: DatasetSpec, status: str = "Created", **extra: Any) -> dict[str, Any]:
    """What DescribeFeatureGroup answers for a group created from `spec`."""
    return {**create_request(NAME, spec, CONFIG), "FeatureGroupStatus": status, **extra}


class FakeSageMaker:
    """DescribeFeatureGroup and CreateFeatureGroup over a dict of groups, with the service's error codes."""

    def __init__(self, groups: dict[str, dict[str, Any]] | None = None, taken_by_other: bool = False) -> None:
        self.groups = dict(groups or {})
        self.created: list[dict[str, Any]] = []
        self.taken_by_other = taken_by_other

    def describe_feature_group(self, FeatureGroupName: str) -> dict[str, Any]:  # noqa: N803 - boto3's spelling
        if FeatureGroupName not in self.groups:
            raise ClientError({"Error": {"Code": "ResourceNotFound", "Message": "no"}}, "DescribeFeatureGroup")
        return self.groups[FeatureGroupName]

    def create_feature_group(self, **request: Any) -> dict[str, Any]:
        if self.taken_by_other:
            raise ClientError({"Error": {"Code": "ResourceInUse", "Message": "exists"}}, "CreateFeatureGroup")
        self.created.append(request)
        self.groups[request["FeatureGroupName"]] = {**request, "FeatureGroupStatus": "Creating"}
        return {"FeatureGroupArn": f"arn:aws:sagemaker:us-east-1:123456789012:feature-group/{NAME}"}


def sagemaker_with(groups: dict[str, dict[str, Any]] | None = None, taken_by_other: bool = False) -> Any:
    """A fake in place of boto3's SageMaker client."""
    return FakeSageMaker(groups, taken_by_other)


# ------------------------------------------------------------------------ definitions and request
def test_definitions_are_ids_then_the_spec_features_then_the_label_columns() -> None:
    # Given the demo spec
    # When its feature definitions are derived / Then they are the record id and event time, the processed
    # features in the spec's order, then labelflow's label columns, typed
    assert feature_definitions(demo_spec()) == [
        ("record_id", "String"),
        ("event_time", "String"),
        *output_features(demo_spec()),
        ("label", "String"),
        ("label_source", "String"),
        ("label_confidence", "Fractional"),
        ("run_id", "String"),
    ]


def test_ingestion_writes_exactly_the_features_the_group_defines() -> None:
    # Given a labeled record whose features are the spec's processed features
    spec = demo_spec()
    names = [name for name, _ in feature_definitions(spec)]
    features: dict[str, float | int | str] = dict.fromkeys(names[2:-4], 0)
    record = LabeledRecord(
        record_id="r1",
        event_time="2026-01-01T00:00:00Z",
        features=features,
        label="positive",
        label_source="model",
        label_confidence=0.9,
        run_id="run-1",
    )
    # When it becomes a PutRecord record / Then its feature names are the group's, in the same order
    assert [item["FeatureName"] for item in feature_record(record)] == names


def test_the_create_request_has_both_stores_the_role_and_a_description_naming_the_dataset() -> None:
    # Given the demo spec and the stack's Feature Store settings
    # When the CreateFeatureGroup request is built
    request = create_request(NAME, demo_spec(), CONFIG)
    # Then ids, online store, offline store (Glue table) and role are set, and the description names the dataset
    assert request["RecordIdentifierFeatureName"] == "record_id" and request["EventTimeFeatureName"] == "event_time"
    assert request["OnlineStoreConfig"] == {"EnableOnlineStore": True}
    assert request["OfflineStoreConfig"] == {
        "S3StorageConfig": {"S3Uri": "s3://labelflow-demo/feature-store"},
        "TableFormat": "Glue",
    }
    assert request["RoleArn"] == CONFIG.role_arn
    assert "reviews" in request["Description"] and len(request["Description"]) <= 128


# ------------------------------------------------------------------------ differences
def test_a_group_created_from_the_spec_matches_it() -> None:
    # Given a group created from the demo spec / When it is compared with the spec / Then nothing differs
    assert differences(described(demo_spec()), demo_spec()) is None


def test_every_difference_is_named_in_one_clause() -> None:
    # Given a group that lacks a feature the spec adds, has one the spec dropped, and types another differently
    spec = demo_spec()
    group = described(spec)
    definitions = [d for d in group["FeatureDefinitions"] if d["FeatureName"] != "price"]
    definitions = [{**d, "FeatureType": "Integral"} if d["FeatureName"] == "helpful_votes" else d for d in definitions]
    group["FeatureDefinitions"] = [*definitions, {"FeatureName": "colour", "FeatureType": "String"}]
    # When it is compared with the spec
    problems = differences(group, spec)
    # Then each feature is named with what differs, on one line
    assert problems == (
        "the group lacks price (Fractional); the spec lacks colour; "
        "helpful_votes is Integral in the group, Fractional in the spec"
    )


def test_other_record_id_or_event_time_features_are_a_difference() -> None:
    # Given a group keyed on other features
    group = described(demo_spec(), RecordIdentifierFeatureName="id", EventTimeFeatureName="ts")
    # When it is compared / Then the keys are named
    assert differences(group, demo_spec()) == "record id and event time are id and ts, not record_id and event_time"


# ------------------------------------------------------------------------ ensure_feature_group
def test_a_missing_group_is_created_from_the_spec_without_waiting() -> None:
    # Given no group yet
    sagemaker = sagemaker_with()
    # When planning ensures it
    lineage = ensure_feature_group(sagemaker, NAME, demo_spec(), CONFIG)
    # Then it is created from the spec, and planning goes on while it is still Creating
    assert lineage == FeatureGroupLineage(name=NAME, created=True)
    assert sagemaker.created == [create_request(NAME, demo_spec(), CONFIG)]


@pytest.mark.parametrize("status", ["Created", "Creating"])
def test_an_existing_group_that_matches_is_reused(status: str) -> None:
    # Given a group created from the same spec, done or still being created
    sagemaker = sagemaker_with({NAME: described(demo_spec(), status)})
    # When planning ensures it / Then it is reused, not created again
    assert ensure_feature_group(sagemaker, NAME, demo_spec(), CONFIG) == FeatureGroupLineage(name=NAME, created=False)
    assert sagemaker.created == []


def test_a_group_that_no_longer_matches_the_spec_stops_the_run_naming_the_features() -> None:
    # Given a group created before the spec gained a feature
    before = demo_spec()
    after = demo_spec(features=[*before.model_dump()["features"], {"name": "stars", "type": "numeric"}])
    sagemaker = sagemaker_with({NAME: described(before)})
    # When planning checks it / Then a ConfigError names the group, the dataset and the feature
    with pytest.raises(ConfigError) as raised:
        ensure_feature_group(sagemaker, NAME, after, CONFIG)
    assert str(raised.value).startswith(
        f"feature group {NAME} does not match the spec of dataset reviews: the group lacks stars (Fractional) ("
    )


def test_a_group_created_by_a_concurrent_run_is_described_again_and_checked() -> None:
    # Given another run creating the group between our describe and our create
    sagemaker = sagemaker_with(taken_by_other=True)
    other = described(demo_spec(), "Creating")
    describes = iter([None, other])

    def describe_feature_group(FeatureGroupName: str) -> dict[str, Any]:  # noqa: N803
        found = next(describes)
        if found is None:
            raise ClientError({"Error": {"Code": "ResourceNotFound", "Message": "no"}}, "DescribeFeatureGroup")
        return found

    sagemaker.describe_feature_group = describe_feature_group
    # When planning ensures the group / Then it uses the other run's group, not claiming to have created it
    assert ensure_feature_group(sagemaker, NAME, demo_spec(), CONFIG).created is False


def test_a_concurrently_created_group_not_yet_visible_is_retried() -> None:
    # Given a name taken by another creator whose group does not show up yet
    sagemaker = sagemaker_with(taken_by_other=True)
    # When planning ensures it / Then the step is retried rather than failed
    with pytest.raises(RetryableAwsError, match="created by another run"):
        ensure_feature_group(sagemaker, NAME, demo_spec(), CONFIG)


@pytest.mark.parametrize("status", ["CreateFailed", "Deleting", "DeleteFailed"])
def test_an_unusable_group_stops_the_run_with_its_failure_reason(status: str) -> None:
    # Given a group that failed to be created, or is being deleted
    sagemaker = sagemaker_with({NAME: described(demo_spec(), status, FailureReason="offline store bucket denied")})
    # When planning checks it, and when ingestion would write to it / Then both stop with the status and the reason
    for check in (
        lambda: ensure_feature_group(sagemaker, NAME, demo_spec(), CONFIG),
        lambda: require_usable(sagemaker, NAME),
    ):
        with pytest.raises(ConfigError, match=f"feature group {NAME} is {status}: offline store bucket denied"):
            check()


# ------------------------------------------------------------------------ require_usable
def test_ingestion_waits_for_a_group_being_created() -> None:
    # Given a group still being created / When ingestion checks it / Then it raises the error the ASL retries
    with pytest.raises(FeatureGroupNotReady, match="still being created"):
        require_usable(sagemaker_with({NAME: described(demo_spec(), "Creating")}), NAME)


def test_ingestion_into_a_deleted_group_is_a_config_error() -> None:
    # Given a group deleted after the run was planned / When ingestion checks it / Then it stops, saying so
    with pytest.raises(ConfigError, match="does not exist"):
        require_usable(sagemaker_with(), NAME)
