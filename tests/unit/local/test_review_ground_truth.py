"""The local Ground Truth's own files: written straight into moto's store, the same as through the app's client."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from labelflow.s3 import put_json
from labelflow_local import review, store
from labelflow_local.cloud import ACCOUNT, REGION, LocalCloud, local_cloud
from labelflow_local.review import LocalGroundTruth, SimulatedWorkers
from labelflow_local.store import MotoStore, direct_store

LABELS = ["negative", "positive"]
TRUTH = {"r1": "negative", "r2": "positive", "r3": "positive"}  # r4 has no truth: its task gets no answer
JOB = "lf-reviews-0123456789abcdef0123-review-1"
INPUT = "runs/reviews/0123456789abcdef0123/labeling"
OUTPUT = f"{INPUT}/output"


class _FrozenClock(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> _FrozenClock:
        return cls(2026, 12, 2, 9, 45, 0, tzinfo=UTC)


def _manifest_line(record_id: str) -> dict[str, Any]:
    text = f"review {record_id}"
    return {
        "source": f"review_text: {text}",
        "record_id": record_id,
        "display": {"review_text": text},
        "labels": LABELS,
        "model_label": "positive",
        "model_confidence": 0.61,
        "audit": False,
    }


def _request(cloud: LocalCloud) -> dict[str, Any]:
    """A CreateLabelingJob request as RunLabelingJob sends it, over a four-line manifest."""
    manifest = "\n".join(json.dumps(_manifest_line(f"r{n}")) for n in range(1, 5)) + "\n"
    cloud.s3.put_object(Bucket=cloud.bucket, Key=f"{INPUT}/review-1.manifest", Body=manifest.encode())
    put_json(cloud.s3, cloud.bucket, f"{INPUT}/label-categories.json", {"labels": [{"label": x} for x in LABELS]})
    return {
        "LabelingJobName": JOB,
        "LabelAttributeName": "sentiment",
        "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/labelflow-sagemaker",
        "InputConfig": {
            "DataSource": {"S3DataSource": {"ManifestS3Uri": f"s3://{cloud.bucket}/{INPUT}/review-1.manifest"}}
        },
        "OutputConfig": {"S3OutputPath": f"s3://{cloud.bucket}/{OUTPUT}/"},
        "LabelCategoryConfigS3Uri": f"s3://{cloud.bucket}/{INPUT}/label-categories.json",
        "HumanTaskConfig": {
            "NumberOfHumanWorkersPerDataObject": 3,
            "PreHumanTaskLambdaArn": cloud.functions.arn("gt_pre_annotation"),
            "AnnotationConsolidationConfig": {
                "AnnotationConsolidationLambdaArn": cloud.functions.arn("gt_post_annotation")
            },
        },
    }


def _run_job(tmp_path: Path) -> tuple[dict[str, Any], dict[str, tuple[bytes, str]]]:
    """One small job on a fresh local cloud: its Describe output, and every object under its output (body, type)."""
    with local_cloud(SimulatedWorkers(TRUTH), tmp_path) as cloud:
        job = LocalGroundTruth(cloud.s3, cloud.functions, cloud.workers, REGION, ACCOUNT)
        described = job.run(_request(cloud))
        listed = cloud.s3.list_objects_v2(Bucket=cloud.bucket, Prefix=f"{OUTPUT}/")["Contents"]
        objects = {}
        for item in listed:
            got = cloud.s3.get_object(Bucket=cloud.bucket, Key=item["Key"])
            objects[item["Key"]] = (got["Body"].read(), got["ContentType"])
    return described, objects


def _unstamped(body: bytes) -> bytes:
    return re.sub(rb'"creation-date": "[^"]*"', b'"creation-date": ""', body)


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(review, "datetime", _FrozenClock)


@pytest.mark.usefixtures("frozen_clock")
def test_ground_truths_files_are_the_same_straight_in_the_store_as_through_the_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a small job run once with every file written through the app's S3 client (one PutObject each)
    with monkeypatch.context() as through_client:
        through_client.setattr(store, "direct_store", lambda *_: None)
        described_before, before = _run_job(tmp_path / "client")
    # When the same job runs with Ground Truth's files written straight into moto's store
    described_after, after = _run_job(tmp_path / "store")
    # Then the same objects are written, with the same content types
    assert {key: kind for key, (_, kind) in after.items()} == {key: kind for key, (_, kind) in before.items()}
    # And the worker responses, the consolidation request and reviewers.json are byte for byte the same
    responses = sorted(key for key in after if "/annotations/worker-response/iteration-1/" in key)
    assert responses == [
        f"{OUTPUT}/{JOB}/annotations/worker-response/iteration-1/{index}/2026-12-02_09-45-00.json" for index in range(4)
    ]
    ours = [*responses, f"{OUTPUT}/{JOB}/annotations/consolidation-request/iteration-1/2026-12-02_09-45-00.json"]
    assert all(after[key] == before[key] for key in [*ours, f"{OUTPUT}/{JOB}/reviewers.json"])
    # And the post-annotation Lambda's output differs only in the time it stamped on each label
    assert {key: _unstamped(body) for key, (body, _) in after.items()} == {
        key: _unstamped(body) for key, (body, _) in before.items()
    }
    # And the job says the same: three labeled, the record without truth not
    assert described_after == described_before
    assert described_after["LabelCounters"]["HumanLabeled"] == 3
    assert json.loads(after[responses[3]][0]) == {"answers": []}


def test_the_store_is_written_directly_only_when_this_process_holds_the_bucket(tmp_path: Path) -> None:
    # Given local mode's cloud in this process, with its bucket
    with local_cloud(SimulatedWorkers(TRUTH), tmp_path) as cloud:
        # Then its bucket is written straight into moto's store, and any other bucket through the client
        assert isinstance(direct_store(cloud.bucket, REGION, ACCOUNT), MotoStore)
        assert direct_store("elsewhere", REGION, ACCOUNT) is None
