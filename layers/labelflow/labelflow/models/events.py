"""Inbound S3 events: EventBridge "Object Created" and the classic S3 notification.

AWS adds fields to its events over time, so these models ignore unknown keys instead of forbidding them.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field


class _AwsEvent(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True, defer_build=True)


class ObjectRef(_AwsEvent):
    """One landed object, keys already decoded."""

    bucket: str
    key: str
    size: int
    etag: str = ""
    version_id: str | None = None
    sequencer: str | None = None
    event_time: str | None = None


class _EbBucket(_AwsEvent):
    name: str


class _EbObject(_AwsEvent):
    key: str
    size: int = 0
    etag: str = ""
    version_id: str | None = Field(default=None, alias="version-id")
    sequencer: str | None = None


class _EbDetail(_AwsEvent):
    bucket: _EbBucket
    object: _EbObject
    reason: str | None = None


class EventBridgeObjectCreated(_AwsEvent):
    """S3 → EventBridge. The S3 user guide's EventBridge page leaves the key's encoding unsaid; AWS's Powertools
    decodes it as form-encoded, like the classic notification's, and so do we (tests/e2e/test_object_keys.py)."""

    detail_type: Literal["Object Created"] = Field(alias="detail-type")
    source: Literal["aws.s3"]
    time: str | None = None
    detail: _EbDetail

    def objects(self) -> list[ObjectRef]:
        obj = self.detail.object
        return [
            ObjectRef(
                bucket=self.detail.bucket.name,
                key=unquote_plus(obj.key),
                size=obj.size,
                etag=obj.etag,
                version_id=obj.version_id,
                sequencer=obj.sequencer,
                event_time=self.time,
            )
        ]


class _S3Bucket(_AwsEvent):
    name: str


class _S3Object(_AwsEvent):
    key: str
    size: int = 0
    etag: str = Field(default="", alias="eTag")
    version_id: str | None = Field(default=None, alias="versionId")
    sequencer: str | None = None


class _S3Entity(_AwsEvent):
    bucket: _S3Bucket
    object: _S3Object


class S3NotificationRecord(_AwsEvent):
    event_source: str = Field(default="aws:s3", alias="eventSource")
    event_name: str = Field(alias="eventName")
    event_time: str | None = Field(default=None, alias="eventTime")
    s3: _S3Entity


class S3Notification(_AwsEvent):
    """The classic S3 → Lambda notification; keys are URL-encoded with '+' for spaces."""

    records: list[S3NotificationRecord] = Field(alias="Records")

    def objects(self) -> list[ObjectRef]:
        return [
            ObjectRef(
                bucket=record.s3.bucket.name,
                key=unquote_plus(record.s3.object.key),
                size=record.s3.object.size,
                etag=record.s3.object.etag,
                version_id=record.s3.object.version_id,
                sequencer=record.s3.object.sequencer,
                event_time=record.event_time,
            )
            for record in self.records
            if record.event_name.startswith("ObjectCreated:")
        ]


TriggerEvent = EventBridgeObjectCreated | S3Notification
