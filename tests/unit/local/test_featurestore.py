"""The local Feature Store runtime: online/offline stores, validation, the offline layout, botocore hooks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from labelflow_local.featurestore import RESERVED, FeatureGroup, LocalFeatureStore, ResourceNotFound, ValidationError

REGION = "us-east-1"
ACCOUNT = "123456789012"
GROUP = "labelflow-reviews"
EPOCH = 1_714_557_600


def reviews_group() -> FeatureGroup:
    return FeatureGroup(
        name=GROUP,
        record_id="record_id",
        event_time="event_time",
        features={
            "record_id": "String",
            "event_time": "String",
            "label": "String",
            "helpful_votes": "Integral",
            "verified_purchase": "Integral",
            "price": "Fractional",
            "label_confidence": "Fractional",
        },
        created_epoch=EPOCH,
    )


def record(record_id: str = "r1", event_time: str = "2024-05-01T10:15:00Z", **features: str) -> list[dict[str, str]]:
    values = {"record_id": record_id, "event_time": event_time, "label": "positive", "price": "9.5", **features}
    return [{"FeatureName": name, "ValueAsString": value} for name, value in values.items()]


@pytest.fixture
def store(tmp_path: Path) -> LocalFeatureStore:
    store = LocalFeatureStore(tmp_path, REGION, ACCOUNT)
    store.add_group(reviews_group())
    return store


def offline_dir(root: Path) -> Path:
    return root / f"{ACCOUNT}/sagemaker/{REGION}/offline-store/{GROUP}-{EPOCH}/data"


def offline_rows(root: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted(offline_dir(root).rglob("*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return rows


# ------------------------------------------------------------------------------ online and offline stores
def test_the_online_store_keeps_the_latest_record_and_the_offline_store_keeps_every_write(
    store: LocalFeatureStore, tmp_path: Path
) -> None:
    # Given a record written at 10:15, then a newer version of it at 11:00
    store.put_record(GROUP, record(event_time="2024-05-01T10:15:00Z", label="negative"))
    store.put_record(GROUP, record(event_time="2024-05-01T11:00:00Z", label="positive"))
    # When an older version (09:00) arrives late
    store.put_record(GROUP, record(event_time="2024-05-01T09:00:00Z", label="neutral"))
    # Then the online store still holds the 11:00 version
    online = store.online_records(GROUP)
    assert list(online) == ["r1"]
    assert online["r1"]["event_time"] == "2024-05-01T11:00:00Z" and online["r1"]["label"] == "positive"
    # And the offline store got all three writes, typed, with the reserved columns
    store.flush()
    rows = offline_rows(tmp_path)
    assert sorted((row["event_time"], row["label"]) for row in rows) == [
        ("2024-05-01T09:00:00Z", "neutral"),
        ("2024-05-01T10:15:00Z", "negative"),
        ("2024-05-01T11:00:00Z", "positive"),
    ]
    assert set(RESERVED) == {"api_invocation_time", "write_time", "is_deleted"}
    for row in rows:
        assert set(RESERVED) <= set(row)
        assert row["is_deleted"] is False and row["write_time"] is not None
        assert row["price"] == 9.5 and row["helpful_votes"] is None


def test_a_write_with_the_same_event_time_replaces_the_online_record(store: LocalFeatureStore) -> None:
    # Given a stored record
    store.put_record(GROUP, record(label="negative"))
    # When it is written again with the same event time
    store.put_record(GROUP, record(label="positive"))
    # Then the later write wins, as in Feature Store
    assert store.online_records(GROUP)["r1"]["label"] == "positive"


def test_offline_rows_keep_typed_values(store: LocalFeatureStore, tmp_path: Path) -> None:
    # Given a record with Integral and Fractional features
    store.put_record(GROUP, record(helpful_votes="3", verified_purchase="1", label_confidence="0.25"))
    # When the store is flushed
    store.flush()
    # Then the Parquet columns carry ints and floats, not strings
    (row,) = offline_rows(tmp_path)
    assert row["helpful_votes"] == 3 and row["verified_purchase"] == 1
    assert row["label_confidence"] == 0.25 and row["price"] == 9.5


# ------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("group", "written", "message"),
    [
        ("no-such-group", record(), "can't find a FeatureGroup with name [no-such-group]"),
        (GROUP, record(colour="red"), "features not in labelflow-reviews: colour"),
        (GROUP, record(record_id=""), "record is missing record_id"),
        (GROUP, [item for item in record() if item["FeatureName"] != "record_id"], "record is missing record_id"),
        (GROUP, [item for item in record() if item["FeatureName"] != "event_time"], "record is missing event_time"),
        (GROUP, record(helpful_votes="3.5"), "helpful_votes='3.5' is not Integral"),
        (GROUP, record(verified_purchase="yes"), "verified_purchase='yes' is not Integral"),
        (GROUP, record(price="cheap"), "price='cheap' is not Fractional"),
    ],
    ids=[
        "unknown-group",
        "unknown-feature",
        "empty-id",
        "no-id",
        "no-event-time",
        "float-as-int",
        "text-as-int",
        "text-as-float",
    ],
)
def test_invalid_records_are_refused_with_the_problem_named(
    store: LocalFeatureStore, group: str, written: list[dict[str, str]], message: str
) -> None:
    # Given an invalid PutRecord
    # When it is written
    with pytest.raises(ValidationError) as raised:
        store.put_record(group, written)
    # Then the message names the problem, and nothing was stored
    assert message in str(raised.value)
    assert store.online_records(GROUP) == {}


def test_a_refused_record_is_not_kept_for_the_offline_store(store: LocalFeatureStore, tmp_path: Path) -> None:
    # Given a refused write
    with pytest.raises(ValidationError):
        store.put_record(GROUP, record(price="cheap"))
    # When the store is flushed
    store.flush()
    # Then no offline data was written
    assert not offline_dir(tmp_path).exists()


def test_an_event_time_with_milliseconds_is_accepted(store: LocalFeatureStore) -> None:
    # Given an event time in Feature Store's yyyy-MM-dd'T'HH:mm:ss.SSSZ format
    # When it is written
    store.put_record(GROUP, record(event_time="2024-05-01T10:15:00.123Z"))
    # Then it is stored
    assert "r1" in store.online_records(GROUP)


def test_a_malformed_event_time_is_a_validation_error(store: LocalFeatureStore) -> None:
    # Given an event time that is not a timestamp
    # When it is written
    # Then it is refused as invalid
    with pytest.raises(ValidationError, match="event_time"):
        store.put_record(GROUP, record(event_time="yesterday"))


# ------------------------------------------------------------------------------------------ get_record
def test_get_record_returns_the_feature_store_record_shape_or_none(store: LocalFeatureStore) -> None:
    # Given one stored record
    store.put_record(GROUP, record(helpful_votes="3"))
    # When it and an unknown id are read
    found = store.get_record(GROUP, "r1")
    missing = store.get_record(GROUP, "r2")
    # Then the stored one comes back as FeatureName/ValueAsString pairs, the unknown one as None
    assert found is not None
    assert {item["FeatureName"]: item["ValueAsString"] for item in found} == {
        "record_id": "r1",
        "event_time": "2024-05-01T10:15:00Z",
        "label": "positive",
        "price": "9.5",
        "helpful_votes": "3",
    }
    assert all(set(item) == {"FeatureName", "ValueAsString"} for item in found)
    assert missing is None


def test_get_record_of_an_unknown_group_is_refused(store: LocalFeatureStore) -> None:
    # Given a store without group "other"
    # When a record of it is read
    # Then it is ResourceNotFound naming the group (GetRecord's model lists it)
    with pytest.raises(ResourceNotFound, match=r"FeatureGroup with name \[other\]"):
        store.get_record("other", "r1")


# ------------------------------------------------------------------------------------------ flush layout
def test_flush_writes_one_partition_per_event_time_hour_and_the_online_json(
    store: LocalFeatureStore, tmp_path: Path
) -> None:
    # Given records in two hours of one day and one hour of the next day
    store.put_record(GROUP, record("r1", "2024-05-01T10:15:00Z"))
    store.put_record(GROUP, record("r2", "2024-05-01T10:59:59Z"))
    store.put_record(GROUP, record("r3", "2024-05-01T11:00:00Z"))
    store.put_record(GROUP, record("r4", "2024-05-02T00:30:00Z"))
    # When the store is flushed
    written = store.flush()
    # Then the offline data is hive-partitioned by event-time hour under the offline-store layout
    data = offline_dir(tmp_path)
    parquet = sorted(path for path in written if path.suffix == ".parquet")
    assert parquet and all(path.is_relative_to(data) for path in parquet)
    partitions = sorted(path.parent.relative_to(data).as_posix() for path in parquet)
    assert partitions == [
        "year=2024/month=05/day=01/hour=10",
        "year=2024/month=05/day=01/hour=11",
        "year=2024/month=05/day=02/hour=00",
    ]
    ten_o_clock = pq.read_table(data / "year=2024/month=05/day=01/hour=10").to_pylist()
    assert sorted(row["record_id"] for row in ten_o_clock) == ["r1", "r2"]
    # And the online store is written as JSON, one entry per record id
    online = tmp_path / "online" / f"{GROUP}.json"
    assert online in written
    assert sorted(json.loads(online.read_text())) == ["r1", "r2", "r3", "r4"]


def test_a_second_flush_without_new_rows_writes_no_parquet(store: LocalFeatureStore, tmp_path: Path) -> None:
    # Given a store flushed once
    store.put_record(GROUP, record())
    store.flush()
    before = sorted(offline_dir(tmp_path).rglob("*.parquet"))
    # When it is flushed again with nothing new
    written = store.flush()
    # Then only the online JSON is written, and no Parquet file appears
    assert written == [tmp_path / "online" / f"{GROUP}.json"]
    assert sorted(offline_dir(tmp_path).rglob("*.parquet")) == before and len(before) == 1


def test_rows_written_after_a_flush_go_to_a_new_file(store: LocalFeatureStore, tmp_path: Path) -> None:
    # Given a store flushed once
    store.put_record(GROUP, record("r1"))
    store.flush()
    # When another record of the same hour is written and flushed
    store.put_record(GROUP, record("r2"))
    store.flush()
    # Then both rows are in the offline store, each once
    assert sorted(row["record_id"] for row in offline_rows(tmp_path)) == ["r1", "r2"]


# ------------------------------------------------------------------------------------ botocore integration
@pytest.fixture
def runtime(moto: None, store: LocalFeatureStore) -> Any:
    # The moto fixture installed a fresh default session; clients copy its events when created.
    assert boto3.DEFAULT_SESSION is not None
    store.register(boto3.DEFAULT_SESSION.events)
    return boto3.client("sagemaker-featurestore-runtime", region_name=REGION)


def test_boto3_put_and_get_record_are_answered_by_the_local_store(runtime: Any, store: LocalFeatureStore) -> None:
    # Given a real boto3 Feature Store runtime client, with the local store registered
    # When a record is put through it
    response = runtime.put_record(FeatureGroupName=GROUP, Record=record(helpful_votes="2"))
    # Then the call succeeds and the record lands in the local store
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert store.online_records(GROUP)["r1"]["helpful_votes"] == "2"
    # And GetRecord returns it, while an unknown id has no Record
    found = runtime.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="r1")
    assert {item["FeatureName"]: item["ValueAsString"] for item in found["Record"]}["label"] == "positive"
    assert "Record" not in runtime.get_record(FeatureGroupName=GROUP, RecordIdentifierValueAsString="r9")


def test_boto3_bad_put_is_a_validation_error_client_error(runtime: Any, store: LocalFeatureStore) -> None:
    # Given a real boto3 client
    # When a record with an unknown feature is put
    with pytest.raises(ClientError) as raised:
        runtime.put_record(FeatureGroupName=GROUP, Record=record(colour="red"))
    # Then botocore raises ValidationError with the store's message, and nothing was stored
    error = raised.value.response["Error"]
    assert error["Code"] == "ValidationError"
    assert "colour" in error["Message"]
    assert store.online_records(GROUP) == {}


def test_boto3_operations_not_emulated_are_refused(runtime: Any) -> None:
    # Given a real boto3 client
    # When an operation the local store does not emulate is called
    with pytest.raises(ClientError) as raised:
        runtime.delete_record(
            FeatureGroupName=GROUP, RecordIdentifierValueAsString="r1", EventTime="2024-05-01T10:15:00Z"
        )
    # Then it is a ValidationError saying so
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert "DeleteRecord is not emulated locally" in raised.value.response["Error"]["Message"]


def test_boto3_put_with_a_malformed_event_time_is_a_validation_error_client_error(runtime: Any) -> None:
    # Given a real boto3 client
    # When a record whose event time is not a timestamp is put
    with pytest.raises(ClientError) as raised:
        runtime.put_record(FeatureGroupName=GROUP, Record=record(event_time="yesterday"))
    # Then botocore raises ValidationError, as Feature Store does
    assert raised.value.response["Error"]["Code"] == "ValidationError"


# ------------------------------------------------------------------------------------ the control plane
ROLE = f"arn:aws:iam::{ACCOUNT}:role/labelflow-FeatureStoreRole"


def create_request(name: str = "labelflow-churn", **changes: Any) -> dict[str, Any]:
    return {
        "FeatureGroupName": name,
        "RecordIdentifierFeatureName": "record_id",
        "EventTimeFeatureName": "event_time",
        "FeatureDefinitions": [
            {"FeatureName": "record_id", "FeatureType": "String"},
            {"FeatureName": "event_time", "FeatureType": "String"},
            {"FeatureName": "tenure", "FeatureType": "Fractional"},
        ],
        "OnlineStoreConfig": {"EnableOnlineStore": True},
        "OfflineStoreConfig": {
            "S3StorageConfig": {"S3Uri": "s3://labelflow-demo/feature-store"},
            "TableFormat": "Glue",
        },
        "RoleArn": ROLE,
        "Description": "labelflow dataset churn",
        **changes,
    }


@pytest.fixture
def sagemaker(moto: None, store: LocalFeatureStore) -> Any:
    assert boto3.DEFAULT_SESSION is not None
    store.register(boto3.DEFAULT_SESSION.events)
    return boto3.client("sagemaker", region_name=REGION)


def test_a_created_group_is_described_as_feature_store_describes_it(sagemaker: Any) -> None:
    # Given a group created through a real boto3 SageMaker client
    arn = sagemaker.create_feature_group(**create_request())["FeatureGroupArn"]
    # When it is described
    described = sagemaker.describe_feature_group(FeatureGroupName="labelflow-churn")
    # Then it has the request's definitions and stores, Created, with the offline store's resolved prefix and table
    assert arn == described["FeatureGroupArn"] == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:feature-group/labelflow-churn"
    assert described["FeatureGroupStatus"] == "Created"
    assert described["FeatureDefinitions"] == create_request()["FeatureDefinitions"]
    assert described["OnlineStoreConfig"] == {"EnableOnlineStore": True}
    assert described["Description"] == "labelflow dataset churn" and described["RoleArn"] == ROLE
    offline = described["OfflineStoreConfig"]
    created = int(described["CreationTime"].timestamp())
    assert offline["S3StorageConfig"]["ResolvedOutputS3Uri"] == (
        f"s3://labelflow-demo/feature-store/{ACCOUNT}/sagemaker/{REGION}/offline-store/labelflow-churn-{created}/data"
    )
    assert offline["DataCatalogConfig"]["TableName"] == f"labelflow_churn_{created}"


def test_a_missing_group_is_resource_not_found_and_a_taken_name_resource_in_use(sagemaker: Any) -> None:
    # Given one group
    sagemaker.create_feature_group(**create_request())
    # When a group that does not exist is described, and the existing one is created again
    # Then the errors are SageMaker's, as botocore's modeled exceptions
    with pytest.raises(sagemaker.exceptions.ResourceNotFound):
        sagemaker.describe_feature_group(FeatureGroupName="labelflow-other")
    with pytest.raises(sagemaker.exceptions.ResourceInUse, match="already exists"):
        sagemaker.create_feature_group(**create_request())


def test_a_group_being_created_takes_no_records_until_it_is_created(
    sagemaker: Any, runtime: Any, store: LocalFeatureStore
) -> None:
    # Given groups that stay Creating for two describes
    store.describes_while_creating = 2
    sagemaker.create_feature_group(**create_request())
    churn = [
        {"FeatureName": "record_id", "ValueAsString": "c1"},
        {"FeatureName": "event_time", "ValueAsString": "2024-05-01T10:15:00Z"},
    ]
    # When it is written to at once, then described three times, then written to again
    with pytest.raises(ClientError, match="still Creating"):
        runtime.put_record(FeatureGroupName="labelflow-churn", Record=churn)
    statuses = [
        sagemaker.describe_feature_group(FeatureGroupName="labelflow-churn")["FeatureGroupStatus"] for _ in range(3)
    ]
    runtime.put_record(FeatureGroupName="labelflow-churn", Record=churn)
    # Then it was Creating, Creating, Created, and only the write after that was stored
    assert statuses == ["Creating", "Creating", "Created"]
    assert list(store.online_records("labelflow-churn")) == ["c1"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"FeatureGroupName": "labelflow_churn!"}, "at 'featureGroupName'"),
        ({"RoleArn": "arn:aws:iam::123456789012:user/someone-else"}, "at 'roleArn'"),
        ({"Description": "x" * 129}, "Member must have length less than or equal to 128"),
        (
            {"FeatureDefinitions": [{"FeatureName": "record_id", "FeatureType": "Text"}]},
            "Member must satisfy enum value set: [Integral, Fractional, String]",
        ),
    ],
    ids=["name", "role", "description", "type"],
)
def test_a_request_the_service_model_forbids_is_a_validation_exception(
    sagemaker: Any, store: LocalFeatureStore, changes: dict[str, Any], message: str
) -> None:
    # Given a CreateFeatureGroup request that breaks a pattern, an enum or a length of botocore's sagemaker model
    # When it is sent
    with pytest.raises(ClientError) as raised:
        sagemaker.create_feature_group(**create_request(**changes))
    # Then SageMaker's ValidationException names the member, and no group exists
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert message in raised.value.response["Error"]["Message"]
    with pytest.raises(sagemaker.exceptions.ResourceNotFound):
        sagemaker.describe_feature_group(FeatureGroupName="labelflow-churn")


def test_records_of_a_created_group_are_checked_and_flushed_under_its_offline_prefix(
    sagemaker: Any, runtime: Any, store: LocalFeatureStore, tmp_path: Path
) -> None:
    # Given a group created through SageMaker
    sagemaker.create_feature_group(**create_request())
    described = sagemaker.describe_feature_group(FeatureGroupName="labelflow-churn")
    # When a record with a feature it does not define, then a good one, are put, and the store is flushed
    with pytest.raises(ClientError, match="features not in labelflow-churn: colour"):
        runtime.put_record(
            FeatureGroupName="labelflow-churn",
            Record=[
                {"FeatureName": "record_id", "ValueAsString": "c1"},
                {"FeatureName": "event_time", "ValueAsString": "2024-05-01T10:15:00Z"},
                {"FeatureName": "colour", "ValueAsString": "red"},
            ],
        )
    runtime.put_record(
        FeatureGroupName="labelflow-churn",
        Record=[
            {"FeatureName": "record_id", "ValueAsString": "c1"},
            {"FeatureName": "event_time", "ValueAsString": "2024-05-01T10:15:00Z"},
            {"FeatureName": "tenure", "ValueAsString": "3.5"},
        ],
    )
    store.flush()
    # Then only the good one is stored, its Parquet where the described offline prefix points (under the store root)
    resolved = described["OfflineStoreConfig"]["S3StorageConfig"]["ResolvedOutputS3Uri"]
    data = tmp_path / resolved.removeprefix("s3://labelflow-demo/feature-store/")
    (row,) = [row for path in data.rglob("*.parquet") for row in pq.read_table(path).to_pylist()]
    assert row["record_id"] == "c1" and row["tenure"] == 3.5


def test_a_put_record_the_runtime_model_forbids_is_a_validation_error(runtime: Any) -> None:
    # Given a record whose feature name breaks the runtime model's FeatureName pattern
    # When it is put / Then the runtime's ValidationError names the member
    with pytest.raises(ClientError) as raised:
        runtime.put_record(FeatureGroupName=GROUP, Record=record(**{"bad name": "1"}))
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert "'record.5.member.featureName'" in raised.value.response["Error"]["Message"]


# ------------------------------------------------------------------------------ Feature Store's limits
@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"record_id": "r" * 2049}, "record identifier"),
        ({"label": "x" * (350 * 1024 + 1)}, "value limit"),
        ({"label": "x" * (200 * 1024), "verified_purchase": "1", "record_id": "r1", "helpful_votes": "1"}, None),
        ({"helpful_votes": str(2**63)}, "64-bit signed Integral range"),
        ({"event_time": "2024-05-01T10:15:00.123456789Z"}, None),
    ],
)
def test_records_over_feature_stores_limits_are_refused_naming_the_limit(
    store: LocalFeatureStore, values: dict[str, str], problem: str | None
) -> None:
    # Given a record at or over one of Feature Store's limits (quotas page: 2 KB id, 350 KB value and record)
    given = {"record_id": "r1", "event_time": "2024-05-01T10:15:00Z", "label": "positive", **values}
    put = [{"FeatureName": name, "ValueAsString": value} for name, value in given.items()]
    # When it is put / Then it is refused with the limit named, or kept when within the limits
    if problem is None:
        store.put_record(GROUP, put)
        assert store.online_records(GROUP)[given["record_id"]]["label"] == given["label"]
    else:
        with pytest.raises(ValidationError, match=problem):
            store.put_record(GROUP, put)


def test_a_record_over_350_kb_in_all_is_refused(store: LocalFeatureStore) -> None:
    # Given two values of 200 KB each: each within the value limit, together over the record limit
    big = record(label="x" * (200 * 1024))
    big.append({"FeatureName": "label_confidence", "ValueAsString": "0." + "1" * (200 * 1024)})
    # When it is put / Then the record's size is refused
    with pytest.raises(ValidationError, match="over the 358400-byte limit"):
        store.put_record(GROUP, big)


def test_a_fractional_event_time_outside_years_0000_to_9999_is_refused(tmp_path: Path) -> None:
    # Given a group whose event time is epoch seconds
    store = LocalFeatureStore(tmp_path, REGION, ACCOUNT)
    group = reviews_group()
    store.add_group(
        FeatureGroup(group.name, "record_id", "event_time", {**group.features, "event_time": "Fractional"}, EPOCH)
    )
    # When a record in year 10000 is put / Then it is refused; year 1 is accepted
    with pytest.raises(ValidationError, match="event time range"):
        store.put_record(GROUP, record(event_time="253402300800"))
    store.put_record(GROUP, record(event_time="-62135596800"))


def test_flushed_groups_and_online_records_are_loaded_back(store: LocalFeatureStore, tmp_path: Path) -> None:
    # Given a store with a created group and a record, flushed
    runtime_root = tmp_path / "reload"
    first = LocalFeatureStore(runtime_root, REGION, ACCOUNT)
    first.create_group(
        {
            "FeatureGroupName": "g1",
            "RecordIdentifierFeatureName": "record_id",
            "EventTimeFeatureName": "event_time",
            "FeatureDefinitions": [
                {"FeatureName": "record_id", "FeatureType": "String"},
                {"FeatureName": "event_time", "FeatureType": "String"},
            ],
        }
    )
    first.put_record(
        "g1",
        [
            {"FeatureName": "record_id", "ValueAsString": "a"},
            {"FeatureName": "event_time", "ValueAsString": "2024-05-01T10:15:00Z"},
        ],
    )
    first.flush()
    # When a new store loads the same root / Then it knows the group and its online records
    second = LocalFeatureStore(runtime_root, REGION, ACCOUNT)
    assert second.load() == ["g1"]
    assert set(second.online_records("g1")) == {"a"}
    assert second.describe_group("g1")["FeatureGroupStatus"] == "Created"
