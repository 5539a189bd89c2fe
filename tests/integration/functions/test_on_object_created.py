import copy

import pytest

from labelflow_local.functions import FunctionError
from tests.conftest import load_event


def test_eventbridge_event_starts_one_execution_per_object_version(cloud) -> None:
    # Given the sample EventBridge "Object Created" event
    event = load_event("on_object_created.json")
    # When it is delivered twice while the run is going (EventBridge delivers at least once)
    first = cloud.invoke("on_object_created", event)["executions"][0]
    second = cloud.invoke("on_object_created", event)["executions"][0]
    # Then the second delivery is a duplicate, not a second start (its input differs by the invocation's id, so
    # StartExecution refuses it instead of answering with the running execution), and only one execution exists
    assert first["status"] == "started"
    assert second["status"] == "duplicate" and second["execution_name"] == first["execution_name"]
    executions = cloud.sfn.list_executions(stateMachineArn=cloud.state_machine_arn)["executions"]
    assert [e["name"] for e in executions] == [first["execution_name"]]


def test_a_replay_after_the_run_ended_is_a_duplicate_not_an_error(cloud) -> None:
    # Given an event whose run has already finished
    event = load_event("on_object_created.json")
    first = cloud.invoke("on_object_created", event)["executions"][0]
    cloud.wait(first["execution_arn"])
    # When EventBridge delivers it again
    replay = cloud.invoke("on_object_created", event)["executions"][0]
    # Then Step Functions' ExecutionAlreadyExists is reported as a duplicate
    assert replay["status"] == "duplicate" and replay["execution_name"] == first["execution_name"]


def test_a_new_version_of_the_same_key_is_a_new_run(cloud) -> None:
    # Given two events for the same key with different version ids
    event = load_event("on_object_created.json")
    newer = copy.deepcopy(event)
    newer["detail"]["object"]["version-id"] = "another-version"
    # When both are handled
    names = {cloud.invoke("on_object_created", e)["executions"][0]["execution_name"] for e in (event, newer)}
    # Then each version gets its own execution
    assert len(names) == 2


def test_classic_s3_notification_keys_are_decoded_exactly_once(cloud) -> None:
    # Given the classic notification for "raw/reviews/my reviews+2024.csv" (space as '+', '+' as %2B)
    event = load_event("on_object_created.s3-notification.json")
    # When the trigger handles it
    result = cloud.invoke("on_object_created", event)
    # Then the key is decoded once, and deletes in the same batch are ignored
    assert [e["key"] for e in result["executions"]] == ["raw/reviews/my reviews+2024.csv"]
    assert result["executions"][0]["status"] == "started"


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("raw/reviews/", "folder marker"),
        ("processed/reviews/x.csv", "key is outside raw/"),
        ("raw/x.csv", "key is not raw/<dataset>/<file> with a valid dataset name"),
        ("raw/Bad_Name/x.csv", "key is not raw/<dataset>/<file> with a valid dataset name"),
    ],
)
def test_keys_labelflow_does_not_own_are_ignored(cloud, key: str, reason: str) -> None:
    # Given an event for a key that is not a dataset file
    event = load_event("on_object_created.json")
    event["detail"]["object"]["key"] = key
    # When the trigger handles it
    result = cloud.invoke("on_object_created", event)
    # Then nothing starts and the reason is given
    assert result["executions"][0] == {
        "key": key,
        "version_id": event["detail"]["object"]["version-id"],
        "status": "ignored",
        "execution_name": None,
        "execution_arn": None,
        "reason": reason,
    }


def test_an_event_of_another_shape_is_rejected_loudly(cloud) -> None:
    # Given an event that is neither S3 shape
    # When the trigger handles it / Then it fails with a validation error (the DLQ keeps the event)
    with pytest.raises(FunctionError, match="ValidationError"):
        cloud.invoke("on_object_created", {"hello": "world"})
