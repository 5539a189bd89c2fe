"""Copies straight into and out of moto's store: the same objects as through the app's S3 client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labelflow_local import store
from labelflow_local.store import ClientStore, MotoStore, direct_store, object_store

REGION = "us-east-1"
ACCOUNT = "123456789012"


def _seen(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    """What a reader of the object gets: its body and the headers that describe it."""
    head = s3.head_object(Bucket=bucket, Key=key)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return {
        "body": body,
        **{name: head.get(name) for name in ("ContentType", "ContentLength", "ETag", "Metadata", "ContentEncoding")},
    }


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Bodies longer than a piece: the copies go through their loops more than once.
    monkeypatch.setattr(store, "CHUNK", 7)


@pytest.mark.usefixtures("small_chunks")
def test_an_upload_straight_into_the_store_is_the_same_object_as_through_the_client(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    # Given a file of a few pieces, and an empty one
    source, empty = tmp_path / "part-0.jsonl", tmp_path / "empty.txt"
    source.write_bytes(b'{"record_id": "r1"}\n{"record_id": "r2"}\n' * 3)
    empty.write_bytes(b"")
    moto_store = direct_store(bucket, REGION, ACCOUNT)
    assert isinstance(moto_store, MotoStore)
    for path in (source, empty):
        # When it is uploaded through the client under one key and straight into the store under another
        ClientStore(s3).upload(path, bucket, f"client/{path.name}")
        moto_store.upload(path, bucket, f"store/{path.name}")
        # Then both objects read back the same: body, content type, length, ETag and metadata
        assert _seen(s3, bucket, f"store/{path.name}") == _seen(s3, bucket, f"client/{path.name}")
    assert _seen(s3, bucket, "store/part-0.jsonl")["body"] == source.read_bytes()


@pytest.mark.usefixtures("small_chunks")
def test_a_download_and_a_listing_from_the_store_are_the_same_as_through_the_client(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    # Given objects under a prefix, one of them written twice (a versioned bucket keeps both) and one deleted
    s3.put_object(Bucket=bucket, Key="runs/r1/b.csv", Body=b"old")
    s3.put_object(Bucket=bucket, Key="runs/r1/b.csv", Body=b"id,text\nr1,a longer body than a piece\n")
    s3.put_object(Bucket=bucket, Key="runs/r1/a/x.json", Body=b"{}")
    s3.put_object(Bucket=bucket, Key="runs/r1/gone.txt", Body=b"gone")
    s3.delete_object(Bucket=bucket, Key="runs/r1/gone.txt")
    s3.put_object(Bucket=bucket, Key="runs/r10/other.txt", Body=b"other")
    client, moto_store = ClientStore(s3), direct_store(bucket, REGION, ACCOUNT)
    assert moto_store is not None
    # When the prefix is listed both ways
    # Then the same keys come back in the same order, latest versions only, deleted ones left out
    listed = moto_store.keys(bucket, "runs/r1/")
    assert listed == client.keys(bucket, "runs/r1/") == ["runs/r1/a/x.json", "runs/r1/b.csv"]
    assert moto_store.keys(bucket, "runs/r1") == client.keys(bucket, "runs/r1")
    # And a download either way writes the latest body
    client.download(bucket, "runs/r1/b.csv", tmp_path / "client.csv")
    moto_store.download(bucket, "runs/r1/b.csv", tmp_path / "store.csv")
    assert (tmp_path / "store.csv").read_bytes() == (tmp_path / "client.csv").read_bytes()
    assert (tmp_path / "store.csv").read_bytes() == b"id,text\nr1,a longer body than a piece\n"


def test_only_a_bucket_this_process_holds_is_copied_straight(s3: Any, bucket: str) -> None:
    # Given moto's store in this process, holding `bucket`
    # Then that bucket's copies go straight into it, and any other bucket's through the client
    assert isinstance(object_store(s3, bucket, REGION, ACCOUNT), MotoStore)
    assert isinstance(object_store(s3, "elsewhere", REGION, ACCOUNT), ClientStore)
