"""The services' own S3 traffic in local mode: straight into moto's in-process store, not through botocore.

On AWS, Ground Truth's files, a processing container's inputs and outputs, and the copies local mode keeps on disk
are moved by the services (or by nobody), not by the app's client; locally, a request per object through botocore's
whole request path bounded large runs. Whatever the app's code reads or writes stays on the app's client.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Protocol

from moto.s3.models import FakeKey, S3Backend, s3_backends
from moto.utilities.utils import get_partition

# Files move in pieces this size: never a whole object in memory.
CHUNK = 8 * 1024 * 1024


class ObjectStore(Protocol):
    """The few S3 calls a copy between a prefix and a folder makes."""

    def keys(self, bucket: str, prefix: str) -> list[str]:
        """The keys under `prefix`, in ListObjectsV2's order."""
        ...

    def download(self, bucket: str, key: str, target: Path) -> None: ...

    def upload(self, source: Path, bucket: str, key: str) -> None: ...


class ClientStore:
    """Through the app's S3 client: a request per page of keys and one per object."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    def keys(self, bucket: str, prefix: str) -> list[str]:
        found: list[str] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found += [item["Key"] for item in page.get("Contents", [])]
        return found

    def download(self, bucket: str, key: str, target: Path) -> None:
        # Plain GETs: managed transfers start a thread pool per call, costly for many small files.
        body = self._s3.get_object(Bucket=bucket, Key=key)["Body"]
        with target.open("wb") as handle:
            for chunk in body.iter_chunks(CHUNK):
                handle.write(chunk)

    def upload(self, source: Path, bucket: str, key: str) -> None:
        with source.open("rb") as handle:
            self._s3.put_object(Bucket=bucket, Key=key, Body=handle)


class MotoStore:
    """moto's store for one account and partition, read and written as its own S3 responses would.

    `put_object` takes the client's keyword call, so the layer's put_bytes/put_json write the same keys and bodies.
    """

    def __init__(self, backend: S3Backend) -> None:
        self._backend = backend

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, ContentType: str) -> dict[str, Any]:
        stored: FakeKey = self._backend.put_object(Bucket, Key, Body)
        stored.set_metadata({"Content-Type": ContentType})
        return {"VersionId": stored.version_id}  # no ETag: nothing here reads it, and it hashes the body

    def keys(self, bucket: str, prefix: str) -> list[str]:
        # The latest version of each key, delete markers left out; ListObjectsV2 sorts by UTF-8 bytes, as str does.
        latest = self._backend.get_bucket(bucket).keys
        return sorted(name for name in list(latest) if name.startswith(prefix) and isinstance(latest[name], FakeKey))

    def download(self, bucket: str, key: str, target: Path) -> None:
        stored = self._backend.get_object(bucket, key)
        if stored is None:
            raise KeyError(f"s3://{bucket}/{key}")
        # moto keeps a body in a SpooledTemporaryFile (FakeKey._value_buffer, moto 5.2): copied from it in pieces,
        # under the key's lock as its own `value` reads it; `value` would copy the whole body into memory.
        with stored.lock, target.open("wb") as handle:
            stored._value_buffer.seek(0)
            shutil.copyfileobj(stored._value_buffer, handle, CHUNK)

    def upload(self, source: Path, bucket: str, key: str) -> None:
        # A PutObject's new version, with the content type moto gives a body sent without one; the body then goes
        # into its buffer in pieces (its ETag is hashed from the buffer when first asked for).
        stored: FakeKey = self._backend.put_object(bucket, key, b"")
        with stored.lock, source.open("rb") as handle:
            shutil.copyfileobj(handle, stored._value_buffer, CHUNK)
            stored.contentsize = stored._value_buffer.tell()


def direct_store(bucket: str, region: str, account: str) -> MotoStore | None:
    """moto's store when this process holds `bucket` (local mode's mock_aws), else None (e.g. an endpoint)."""
    backend = s3_backends[account][get_partition(region)]
    return MotoStore(backend) if bucket in backend.buckets else None


def object_store(s3: Any, bucket: str, region: str, account: str) -> ObjectStore:
    """Where a service's copy of `bucket`'s objects goes: moto's store when this process holds it, else `s3`."""
    return direct_store(bucket, region, account) or ClientStore(s3)
