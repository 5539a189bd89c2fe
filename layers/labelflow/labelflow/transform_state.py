"""The fitted transform state: the first run of a dataset (per spec fingerprint) publishes it, later runs apply it."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Final, NamedTuple

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labelflow.aws import error_code, raise_if_retryable
from labelflow.errors import ManifestError, RetryableAwsError
from labelflow.layout import PROCESSED_STATS, transform_state_key
from labelflow.models.run import TransformStateLineage
from labelflow.models.spec import DatasetSpec, transform_fingerprint
from labelflow.observability import logger
from labelflow.s3 import S3Location, get_bytes, get_json, sha256_of, uri

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# What processing writes beside records.jsonl, and reads from its --state-dir.
STATE_FILE: Final = "state.json"
# Conditional writes (PutObject IfNoneMatch="*", botocore's s3 model): 412 PreconditionFailed when the key exists,
# 409 ConditionalRequestConflict when a concurrent write is in flight ("on a 409 failure you should retry").
_TAKEN: Final = "PreconditionFailed"
_CONFLICT: Final = "ConditionalRequestConflict"
_NOT_FOUND: Final = frozenset({"NoSuchKey", "404", "NotFound"})


class StateReport(BaseModel):
    """stats.json's `state` section: the state.json processing used, and whether it fitted that state itself."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    fitted: bool


class PublishedState(NamedTuple):
    """The exact object a run applies: its version and etag make a new state a new cache key."""

    location: S3Location
    version_id: str | None
    etag: str


def published_state(
    s3: S3Client, bucket: str, spec: DatasetSpec
) -> tuple[TransformStateLineage, PublishedState | None]:
    """The dataset's state for this spec's fingerprint, and the object itself when one is published."""
    fingerprint = transform_fingerprint(spec)
    location = S3Location(bucket, transform_state_key(spec.dataset, fingerprint))
    try:
        head = s3.head_object(Bucket=bucket, Key=location.key)
    except ClientError as exc:
        if error_code(exc) not in _NOT_FOUND:
            raise_if_retryable(exc, f"head {location.uri}")
            raise
        return TransformStateLineage(uri=location.uri, fingerprint=fingerprint, applied=False), None
    found = PublishedState(location, head.get("VersionId"), head["ETag"].strip('"'))
    lineage = TransformStateLineage(
        uri=location.uri, fingerprint=fingerprint, applied=True, version_id=found.version_id
    )
    return lineage, found


def read_report(s3: S3Client, processed_uri: str) -> StateReport | None:
    """The state section of a finished processing output; None when processing reported no state."""
    processed = S3Location.parse(processed_uri)
    stats = get_json(s3, processed.bucket, processed.key + PROCESSED_STATS)
    section = stats.get("state") if isinstance(stats, dict) else None
    if section is None:
        return None
    try:
        return StateReport.model_validate(section)
    except ValidationError as exc:
        raise ManifestError(f"{uri(processed.bucket, processed.key + PROCESSED_STATS)} has a malformed state") from exc


def publish(s3: S3Client, source: S3Location, target: S3Location, sha256: str) -> bool:
    """Write the fitted state where later runs find it, only if nobody did; True when the published state is ours."""
    body = get_bytes(s3, *source)
    if hashlib.sha256(body).hexdigest() != sha256:
        raise ManifestError(f"{source.uri} does not have the sha256 {sha256} that stats.json reports")
    try:
        s3.put_object(Bucket=target.bucket, Key=target.key, Body=body, ContentType="application/json", IfNoneMatch="*")
    except ClientError as exc:
        if error_code(exc) == _TAKEN:
            # Another run's fit won, or this step is a retry of ours that got as far as writing.
            return sha256_of(s3, *target) == sha256
        if error_code(exc) == _CONFLICT:
            raise RetryableAwsError(f"put {target.uri}: {_CONFLICT}") from exc
        raise_if_retryable(exc, f"put {target.uri}")
        raise
    return True


def settle_state(s3: S3Client, planned: TransformStateLineage, processed_uri: str) -> TransformStateLineage:
    """After processing: record the state it used and, when it fitted one, publish it (the first run wins)."""
    report = read_report(s3, processed_uri)
    if report is None:
        return planned
    if not report.fitted:
        return planned.model_copy(update={"sha256": report.sha256, "applied": True})
    processed = S3Location.parse(processed_uri)
    source = S3Location(processed.bucket, processed.key + STATE_FILE)
    published = publish(s3, source, S3Location.parse(planned.uri), report.sha256)
    if not published:
        # Not an error: this run's features come from its own fit; later runs apply the published one.
        logger.warning("fitted state not published: another run's fit was published first", extra={"uri": planned.uri})
    update = {"sha256": report.sha256, "applied": False, "version_id": None, "published": published}
    return planned.model_copy(update=update)
