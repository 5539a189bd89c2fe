"""models/events.py: both S3 event shapes become ObjectRefs with keys decoded exactly once."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from labelflow.models.events import EventBridgeObjectCreated, ObjectRef, S3Notification
from tests.conftest import load_event


def eventbridge_with_key(key: str) -> dict[str, Any]:
    event: dict[str, Any] = copy.deepcopy(load_event("on_object_created.json"))
    event["detail"]["object"]["key"] = key
    return event


def test_eventbridge_event_becomes_one_object() -> None:
    # Given the sample EventBridge "Object Created" event
    event = load_event("on_object_created.json")

    # When it is parsed
    objects = EventBridgeObjectCreated.model_validate(event).objects()

    # Then it yields the object with its version, etag, size and the event time
    detail = event["detail"]["object"]
    assert objects == [
        ObjectRef(
            bucket="labelflow-demo",
            key="raw/reviews/sample.csv",
            size=detail["size"],
            etag=detail["etag"],
            version_id=detail["version-id"],
            sequencer=detail["sequencer"],
            event_time=event["time"],
        )
    ]
    assert objects[0].version_id and objects[0].size > 0


def test_s3_notification_keeps_creates_and_drops_deletes() -> None:
    # Given the sample classic notification: one ObjectCreated:Put and one ObjectRemoved:Delete
    event = load_event("on_object_created.s3-notification.json")

    # When it is parsed
    objects = S3Notification.model_validate(event).objects()

    # Then only the created object remains, its key decoded and its fields mapped from the S3 spelling
    assert len(objects) == 1
    created = objects[0]
    assert created.key == "raw/reviews/my reviews+2024.csv"
    assert created.version_id == "096fKKXTRTtl3on89fVO.nfljtsv6qko"
    assert created.etag == "b6fd69b3541ea69c0c5214e8c2601f8d"
    assert created.size == 6416
    assert created.event_time == "2026-11-25T02:21:50.000Z"


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("raw/reviews/my+reviews%2B2024.csv", "raw/reviews/my reviews+2024.csv"),
        ("raw/reviews/100%25.csv", "raw/reviews/100%.csv"),
        # Decoded once only: %252B is a literal "%2B" in the key, never a "+".
        ("raw/reviews/a%252Bb.csv", "raw/reviews/a%2Bb.csv"),
        ("raw/reviews/caf%C3%A9.csv", "raw/reviews/café.csv"),
    ],
)
def test_eventbridge_keys_are_decoded_exactly_once(encoded: str, decoded: str) -> None:
    # Given an EventBridge event whose key is form-encoded
    event = eventbridge_with_key(encoded)

    # When it is parsed / Then '+' is a space, %XX is its character, and nothing is decoded twice
    assert EventBridgeObjectCreated.model_validate(event).objects()[0].key == decoded


def test_s3_notification_keys_are_decoded_exactly_once() -> None:
    # Given a classic notification whose key holds an encoded '%2B' (a literal "%2B" in the real key)
    event: dict[str, Any] = copy.deepcopy(load_event("on_object_created.s3-notification.json"))
    event["Records"][0]["s3"]["object"]["key"] = "raw/reviews/a%252Bb+c.csv"

    # When it is parsed / Then it is decoded once: '%25' → '%', '+' → space
    assert S3Notification.model_validate(event).objects()[0].key == "raw/reviews/a%2Bb c.csv"


def test_unknown_fields_are_ignored() -> None:
    # Given an EventBridge event with a field AWS might add later
    event = eventbridge_with_key("raw/reviews/x.csv")
    event["detail"]["object"]["checksum-algorithm"] = "CRC32"
    event["new-top-level"] = {"a": 1}

    # When it is parsed / Then the extra fields do not fail validation
    assert EventBridgeObjectCreated.model_validate(event).objects()[0].key == "raw/reviews/x.csv"


def test_eventbridge_event_without_version_has_none() -> None:
    # Given an event from an unversioned bucket (no version-id)
    event = eventbridge_with_key("raw/reviews/x.csv")
    del event["detail"]["object"]["version-id"]

    # When it is parsed / Then the version is None
    assert EventBridgeObjectCreated.model_validate(event).objects()[0].version_id is None


def test_other_eventbridge_detail_types_are_rejected() -> None:
    # Given an EventBridge "Object Deleted" event
    event = eventbridge_with_key("raw/reviews/x.csv")
    event["detail-type"] = "Object Deleted"

    # When it is validated as an Object Created event / Then it does not match
    with pytest.raises(ValidationError):
        EventBridgeObjectCreated.model_validate(event)
