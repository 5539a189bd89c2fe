"""Small typed helpers over S3: URIs, JSON and JSON Lines objects, and objects written as streams."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from botocore.exceptions import ClientError
from pydantic import BaseModel

from labelflow.aws import error_code, raise_if_retryable
from labelflow.errors import ManifestError
from labelflow.observability import logger

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
JSON_LINES = "application/x-ndjson"
# S3 refuses to complete a multipart upload whose parts, all but the last, are under 5 MB (EntityTooSmall), and
# numbers parts 1 to 10,000 (botocore s3 2006-03-01 service-2.json: CompleteMultipartUpload, UploadPart).
# 8 MiB parts carry objects up to 78 GiB.
MIN_PART_SIZE = 5 * 2**20
PART_SIZE = 8 * 2**20
# botocore's StreamingBody.iter_lines reads 1 KiB at a time unless told otherwise.
READ_CHUNK = 2**20


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


def open_body(client: S3Client, bucket: str, key: str, version_id: str | None = None) -> StreamingBody:
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
    return open_body(client, bucket, key, version_id).read()


def sha256_of(client: S3Client, bucket: str, key: str, version_id: str | None = None) -> str:
    """The sha256 of an object's content, read as a stream (models can be large)."""
    digest = hashlib.sha256()
    for chunk in open_body(client, bucket, key, version_id).iter_chunks(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def get_json(client: S3Client, bucket: str, key: str) -> Any:
    try:
        return json.loads(get_bytes(client, bucket, key))
    except json.JSONDecodeError as exc:
        raise ManifestError(f"s3://{bucket}/{key} is not valid json: {exc.msg} at line {exc.lineno}") from exc


def iter_jsonl(client: S3Client, bucket: str, key: str) -> Iterator[dict[str, Any]]:
    """Yield one parsed object per non-empty line, streaming the body."""
    for number, line in enumerate(open_body(client, bucket, key).iter_lines(), start=1):
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


class StreamedObject:
    """JSON lines written to one S3 object as they come: a single PutObject when they fit in one part, else a
    multipart upload of `part_size` parts. close() completes it; abort() leaves no object and no parts."""

    def __init__(self, s3: S3Client, bucket: str, key: str, part_size: int = PART_SIZE) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"parts of {part_size} bytes are below s3's minimum of {MIN_PART_SIZE}")
        self._s3, self.bucket, self.key, self._part_size = s3, bucket, key, part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self.lines = 0

    def write(self, line: bytes) -> None:
        """Add one line (without its newline)."""
        self._buffer += line
        self._buffer += b"\n"
        self.lines += 1
        if len(self._buffer) >= self._part_size:
            self._upload_part()

    def _upload_part(self) -> None:
        where = f"s3://{self.bucket}/{self.key}"
        try:
            if self._upload_id is None:
                started = self._s3.create_multipart_upload(Bucket=self.bucket, Key=self.key, ContentType=JSON_LINES)
                self._upload_id = started["UploadId"]
            number = len(self._parts) + 1
            part = self._s3.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=bytes(self._buffer)
            )
        except ClientError as exc:
            raise_if_retryable(exc, f"upload part of {where}")
            raise
        self._parts.append({"ETag": part["ETag"], "PartNumber": number})
        self._buffer.clear()

    def seal(self) -> None:
        """Send what is buffered as the last part: nothing stays in memory, and the object appears at close()."""
        if self._buffer:
            self._upload_part()

    def close(self) -> str:
        """Complete the object and return its URI."""
        if self._upload_id is None:
            location = put_bytes(self._s3, self.bucket, self.key, bytes(self._buffer), JSON_LINES)
            self._buffer.clear()
            return location
        if self._buffer:
            self._upload_part()
        try:
            self._s3.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
            )
        except ClientError as exc:
            raise_if_retryable(exc, f"complete s3://{self.bucket}/{self.key}")
            raise
        self._upload_id = None
        return uri(self.bucket, self.key)

    def abort(self) -> None:
        """Drop what is not yet written; a no-op once closed."""
        self._buffer.clear()
        if self._upload_id is None:
            return
        upload_id, self._upload_id = self._upload_id, None
        try:
            self._s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id)
        except ClientError:
            # The bucket's AbortIncompleteMultipartUploads lifecycle rule removes the parts later (template.yaml).
            logger.warning("multipart upload not aborted", extra={"bucket": self.bucket, "key": self.key})


class Abortable(Protocol):
    def abort(self) -> None:
        """Leave nothing of what is not yet complete."""


@contextmanager
def aborted_on_failure(*outputs: Abortable) -> Iterator[None]:
    """Abort every output not yet closed when the block raises, so a failed run leaves nothing half-written."""
    try:
        yield
    except BaseException:
        for output in outputs:
            output.abort()
        raise
