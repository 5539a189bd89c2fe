"""trigger.py: one execution per object version; duplicates, ignored keys and throttles."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from labelflow.errors import RetryableAwsError
from labelflow.layout import execution_name
from labelflow.models.events import ObjectRef
from labelflow.models.state import RunInput
from labelflow.trigger import handle_objects, ignore_reason, parse_trigger_event, run_input_for, start_run
from tests.conftest import load_event

BUCKET = "labelflow-demo"
STATE_MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:labelflow"


def client_error(code: str, operation: str = "StartExecution") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"}}, operation)


class StubSfn:
    """Records StartExecution calls; raises `error` instead of answering when set."""

    def __init__(self, error: ClientError | None = None) -> None:
        self.error = error
        self.calls: list[dict[str, Any]] = []

    def start_execution(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        return {"executionArn": f"arn:aws:states:us-east-1:123456789012:execution:labelflow:{kwargs['name']}"}


def obj(key: str = "raw/reviews/data.csv", version_id: str | None = "v1", etag: str = "abc", **extra: Any) -> ObjectRef:
    return ObjectRef(bucket=extra.pop("bucket", BUCKET), key=key, size=10, etag=etag, version_id=version_id, **extra)


# ------------------------------------------------------------------------ event parsing
def test_parse_eventbridge_event() -> None:
    # Given the sample EventBridge event
    event = load_event("on_object_created.json")

    # When it is parsed without saying which shape it is
    objects = parse_trigger_event(event)

    # Then the one created object is found
    assert [(o.bucket, o.key, o.version_id) for o in objects] == [
        ("labelflow-demo", "raw/reviews/sample.csv", event["detail"]["object"]["version-id"])
    ]


def test_parse_s3_notification_decodes_keys_and_drops_deletes() -> None:
    # Given the sample classic notification with a create (encoded key) and a delete
    event = load_event("on_object_created.s3-notification.json")

    # When it is parsed
    objects = parse_trigger_event(event)

    # Then only the create remains, its key decoded once ('+' → space, '%2B' → '+')
    assert [o.key for o in objects] == ["raw/reviews/my reviews+2024.csv"]


def test_parse_s3_notification_with_only_deletes_yields_nothing() -> None:
    # Given a notification holding only a delete
    event: dict[str, Any] = copy.deepcopy(load_event("on_object_created.s3-notification.json"))
    event["Records"] = event["Records"][1:]

    # When it is parsed / Then there is nothing to start
    assert parse_trigger_event(event) == []


# ------------------------------------------------------------------------ ignore_reason
@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        (obj(bucket="someone-else"), "bucket someone-else is not the data bucket"),
        (obj(key="config/datasets/reviews.json"), "key is outside raw/"),
        (obj(key="raw/reviews/"), "folder marker"),
        (obj(key="raw/data.csv"), "key is not raw/<dataset>/<file> with a valid dataset name"),
        (obj(key="raw/Bad_Name/data.csv"), "key is not raw/<dataset>/<file> with a valid dataset name"),
        (obj(key="rawdata/reviews/data.csv"), "key is outside raw/"),
    ],
)
def test_ignore_reason(ref: ObjectRef, reason: str) -> None:
    # Given an object labelflow should leave alone
    # When it is checked / Then the reason says why
    assert ignore_reason(ref, BUCKET) == reason


@pytest.mark.parametrize("key", ["raw/reviews/data.csv", "raw/reviews/2024/01/data.csv", "raw/reviews/my reviews+.csv"])
def test_dataset_keys_are_not_ignored(key: str) -> None:
    # Given an object under raw/<dataset>/ in the data bucket
    # When it is checked / Then there is no reason to ignore it
    assert ignore_reason(obj(key=key), BUCKET) is None


# ------------------------------------------------------------------------ run_input_for
def test_run_input_for_maps_the_object() -> None:
    # Given a versioned object with a quoted etag and an event time
    ref = obj(etag='"abc"', event_time="2026-01-02T03:04:05Z")

    # When its run input is built
    run = run_input_for(ref)

    # Then it carries the object's lineage, its dataset, a 20-hex run id and the event time
    assert (run.bucket, run.key, run.version_id, run.etag, run.size) == (
        BUCKET,
        "raw/reviews/data.csv",
        "v1",
        "abc",
        10,
    )
    assert run.dataset == "reviews"
    assert len(run.run_id) == 20 and all(c in "0123456789abcdef" for c in run.run_id)
    assert run.received_at == "2026-01-02T03:04:05Z"


def test_run_input_without_event_time_uses_now() -> None:
    # Given an object without an event time
    # When its run input is built at a fixed time
    run = run_input_for(obj(), now=datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC))

    # Then the receive time is that time
    assert run.received_at == "2026-05-06T07:08:09Z"


def test_same_version_gives_the_same_run_id() -> None:
    # Given the same object version delivered twice, at different times
    first = run_input_for(obj(event_time="2026-01-01T00:00:00Z"))
    replay = run_input_for(obj(event_time="2026-01-02T00:00:00Z"))

    # When their run ids are compared / Then they match, so the replay maps to the same execution
    assert first.run_id == replay.run_id


def test_different_versions_give_different_run_ids() -> None:
    # Given two versions of the same key with the same content
    # When their run ids are compared / Then they differ
    assert run_input_for(obj(version_id="v1")).run_id != run_input_for(obj(version_id="v2")).run_id


@pytest.mark.parametrize("version_id", [None, "null"])
def test_unversioned_objects_are_identified_by_etag(version_id: str | None) -> None:
    # Given objects from an unversioned bucket (no version, or S3's "null" version)
    same = run_input_for(obj(version_id=version_id, etag="e1"))
    same_again = run_input_for(obj(version_id=version_id, etag="e1"))
    changed = run_input_for(obj(version_id=version_id, etag="e2"))

    # When their run ids are compared
    # Then the etag decides: same content → same run, new content → new run
    assert same.run_id == same_again.run_id
    assert same.run_id != changed.run_id


def test_null_and_missing_versions_agree() -> None:
    # Given the same content reported once with version "null" and once without a version
    # When their run ids are compared / Then they are the same run
    assert run_input_for(obj(version_id="null")).run_id == run_input_for(obj(version_id=None)).run_id


def test_run_input_for_a_non_dataset_key_fails() -> None:
    # Given a key that is not raw/<dataset>/<file>
    # When a run input is built / Then it refuses
    with pytest.raises(ValueError, match="not a dataset key"):
        run_input_for(obj(key="raw/data.csv"))


# ------------------------------------------------------------------------ start_run
def make_run() -> RunInput:
    return run_input_for(obj(event_time="2026-01-01T00:00:00Z"))


def test_start_run_starts_a_named_execution() -> None:
    # Given a run and a Step Functions client that accepts it
    run, sfn = make_run(), StubSfn()

    # When the run is started
    result = start_run(sfn, STATE_MACHINE, run)  # type: ignore[arg-type]

    # Then the execution is named after the dataset and run id, with the run input as its input
    name = execution_name("reviews", run.run_id)
    assert sfn.calls == [{"stateMachineArn": STATE_MACHINE, "name": name, "input": run.model_dump_json()}]
    assert json.loads(sfn.calls[0]["input"])["run_id"] == run.run_id
    assert result.status == "started"
    assert result.execution_name == name
    assert result.execution_arn is not None and result.execution_arn.endswith(name)


def test_existing_execution_is_a_duplicate() -> None:
    # Given Step Functions already has an execution with this name
    sfn = StubSfn(client_error("ExecutionAlreadyExists"))

    # When the run is started
    result = start_run(sfn, STATE_MACHINE, make_run())  # type: ignore[arg-type]

    # Then it is reported as a duplicate, not an error
    assert result.status == "duplicate"
    assert result.execution_arn is None
    assert result.execution_name == execution_name("reviews", make_run().run_id)


@pytest.mark.parametrize("code", ["ThrottlingException", "ServiceUnavailable"])
def test_throttling_becomes_retryable(code: str) -> None:
    # Given Step Functions throttles after botocore's own retries
    sfn = StubSfn(client_error(code))

    # When the run is started / Then the error is retryable for the Lambda's caller
    with pytest.raises(RetryableAwsError, match=code):
        start_run(sfn, STATE_MACHINE, make_run())  # type: ignore[arg-type]


def test_other_client_errors_are_reraised() -> None:
    # Given Step Functions refuses the request for a non-transient reason
    error = client_error("StateMachineDoesNotExist")
    sfn = StubSfn(error)

    # When the run is started / Then the very same error propagates
    with pytest.raises(ClientError) as caught:
        start_run(sfn, STATE_MACHINE, make_run())  # type: ignore[arg-type]
    assert caught.value is error


# ------------------------------------------------------------------------ handle_objects
def test_handle_objects_starts_runs_and_reports_ignored() -> None:
    # Given one dataset object and one object outside raw/
    objects = [obj(), obj(key="tmp/x.csv", version_id="v9")]
    sfn = StubSfn()

    # When the trigger handles them
    result = handle_objects(objects, sfn, BUCKET, STATE_MACHINE)  # type: ignore[arg-type]

    # Then only the dataset object starts an execution, and both are reported in order
    assert [e.status for e in result.executions] == ["started", "ignored"]
    assert result.executions[1].reason == "key is outside raw/"
    assert result.executions[1].version_id == "v9"
    assert len(sfn.calls) == 1
