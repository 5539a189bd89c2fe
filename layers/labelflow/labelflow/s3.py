"""Small typed helpers over S3: URIs, JSON and JSON Lines objects."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import ClientError
from pydantic import BaseModel

from labelflow.aws import error_code, raise_if_retryable
from labelflow.errors import ManifestError

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client

_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})


class S3Location(NamedTuple):
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        if not uri.startswith("s3://") or "/" not in uri[5:]:
            raise ValueError(f"not an s3 uri: {uri}")
        bucket, key = uri[5:].split("/", 1)
        if not bucket:
            raise ValueError(f"not an s3 uri: {uri}")
        return cls(bucket, key)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def exists(client: S3Client, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in _NOT_FOUND:
            return False
        raise_if_retryable(exc, f"head s3://{bucket}/{key}")
        raise
    return True


def _open(client: S3Client, bucket: str, key: str, version_id: str | None = None) -> StreamingBody:
    """The object's body stream; ManifestError when it is missing, RetryableAwsError when throttled."""
    extra = {"VersionId": version_id} if version_id else {}
    try:
        return client.get_object(Bucket=bucket, Key=key, **extra)["Body"]  # type: ignore[arg-type]
    except ClientError as exc:
        if error_code(exc) in _NOT_FOUND:
            raise ManifestError(f"missing object s3://{bucket}/{key}") from exc
        raise_if_retryable(exc, f"get s3://{bucket}/{key}")
        raise


def get_bytes(client: S3Client, bucket: str, key: str, version_id: str | None = None) -> bytes:
    return _open(client, bucket, key, version_id).read()


def sha256_of(client: S3Client, bucket: str, key: str, version_id: str | None = None) -> str:
    """The sha256 of an object's content, read as a stream (models can be large)."""
    digest = hashlib.sha256()
    for chunk in _open(client, bucket, key, version_id).iter_chunks(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def get_json(client: S3Client, bucket: str, key: str) -> Any:
    try:
        return json.loads(get_bytes(client, bucket, key))
    except json.JSONDecodeError as exc:
        raise ManifestError(f"s3://{bucket}/{key} is not valid json: {exc.msg} at line {exc.lineno}") from exc


def iter_jsonl(client: S3Client, bucket: str, key: str) -> Iterator[dict[str, Any]]:
    """Yield one parsed object per non-empty line, streaming the body."""
    for number, line in enumerate(_open(client, bucket, key).iter_lines(), start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"s3://{bucket}/{key} line {number} is not valid json") from exc


def copy_version(client: S3Client, source: S3Location, version_id: str | None, target: S3Location) -> None:
    """Copy exactly this version of an object; unversioned buckets report "null" or no version at all."""
    copy_source: dict[str, str] = {"Bucket": source.bucket, "Key": source.key}
    if version_id and version_id != "null":
        copy_source["VersionId"] = version_id
    try:
        client.copy_object(Bucket=target.bucket, Key=target.key, CopySource=copy_source)  # type: ignore[arg-type]
    except ClientError as exc:
        raise_if_retryable(exc, f"copy {source.uri}")
        raise


def put_bytes(client: S3Client, bucket: str, key: str, body: bytes, content_type: str) -> str:
    try:
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    except ClientError as exc:
        raise_if_retryable(exc, f"put s3://{bucket}/{key}")
        raise
    return uri(bucket, key)


def put_json(client: S3Client, bucket: str, key: str, value: Any) -> str:
    if isinstance(value, BaseModel):
        body = value.model_dump_json(indent=2).encode()
    else:
        body = json.dumps(value, indent=2, sort_keys=True).encode()
    return put_bytes(client, bucket, key, body, "application/json")


def put_jsonl(client: S3Client, bucket: str, key: str, rows: Iterable[BaseModel | dict[str, Any]]) -> str:
    lines = [
        row.model_dump_json(exclude_none=False) if isinstance(row, BaseModel) else json.dumps(row, sort_keys=True)
        for row in rows
    ]
    body = ("\n".join(lines) + "\n").encode() if lines else b""
    return put_bytes(client, bucket, key, body, "application/x-ndjson")
