"""The three Label Studio functions in-process, on the seeded local cloud, against a fake Label Studio."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from labelflow.review.labelstudio import WEBHOOK_SECRET_HEADER
from labelflow.review.labelstudio_reviews import PENDING_PREFIX, index_key
from labelflow.s3 import S3Location
from labelflow_local.cloud import LocalCloud
from tests.conftest import load_event
from tests.labelstudio.fake_server import LEGACY_TOKEN, FakeLabelStudio, serving

WEBHOOK_SECRET = "a-shared-secret-of-some-length"


@pytest.fixture
def fake(cloud: LocalCloud) -> Iterator[FakeLabelStudio]:
    """A fake Label Studio nobody answers in, named by the functions' secret."""
    with serving(FakeLabelStudio()) as server:
        name = cloud.functions.resolve("poll_label_studio_reviews").environment["LABELSTUDIO_SECRET_NAME"]
        secret = {"url": server.url, "token": LEGACY_TOKEN, "webhook_secret": WEBHOOK_SECRET}
        boto3.client("secretsmanager").create_secret(Name=name, SecretString=json.dumps(secret))
        yield server


def start_event(cloud: LocalCloud) -> dict[str, Any]:
    """The sample event: what ReviewInLabelStudio sends for the sample run's one review job."""
    event: dict[str, Any] = load_event("start_label_studio_review.json")
    return event


def webhook_event(body: dict[str, Any], secret: str | None) -> dict[str, Any]:
    """The sample Function URL request with this body and shared secret (none: the header left out)."""
    event: dict[str, Any] = load_event("label_studio_webhook.json")
    headers = {name: value for name, value in event["headers"].items() if name != WEBHOOK_SECRET_HEADER.lower()}
    event["headers"] = headers | ({WEBHOOK_SECRET_HEADER.lower(): secret} if secret else {})
    return event | {"body": json.dumps(body)}


def test_start_imports_the_job_and_keeps_the_review_pending(cloud: LocalCloud, fake: FakeLabelStudio) -> None:
    # Given the sample run's review job
    event = start_event(cloud)
    manifest = S3Location.parse(event["job"]["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"])
    lines = cloud.s3.get_object(Bucket=manifest.bucket, Key=manifest.key)["Body"].read().splitlines()
    # When StartLabelStudioReview runs twice (a retried start)
    cloud.invoke("start_label_studio_review", event)
    started = cloud.invoke("start_label_studio_review", event)
    # Then one project holds one task per review line, each with the model's prediction
    assert len(fake.projects) == 1 and len(fake.tasks) == len(lines)
    # And the index points at the pending review under the run's prefix, with the token and the deadline
    index = json.loads(cloud.s3.get_object(Bucket=cloud.bucket, Key=index_key(started["project_id"]))["Body"].read())
    review = json.loads(cloud.s3.get_object(Bucket=cloud.bucket, Key=index["review_key"])["Body"].read())
    assert index["review_key"].startswith(f"runs/{event['dataset']}/{event['run_id']}/labelstudio/")
    assert review["task_token"] == event["task_token"] and review["records"] == len(lines)


def test_the_poller_heartbeats_nothing_when_the_execution_is_gone(cloud: LocalCloud, fake: FakeLabelStudio) -> None:
    # Given a pending review whose token no execution waits on
    started = cloud.invoke("start_label_studio_review", start_event(cloud))
    # When the schedule runs the poller
    polled = cloud.invoke("poll_label_studio_reviews", load_event("poll_label_studio_reviews.json"))
    # Then Step Functions' InvalidToken makes it drop the review from the index
    assert [review["outcome"] for review in polled["reviews"]] == ["gone"]
    listed = cloud.s3.list_objects_v2(Bucket=cloud.bucket, Prefix=PENDING_PREFIX)
    assert index_key(started["project_id"]) not in [entry["Key"] for entry in listed.get("Contents", [])]


@pytest.mark.parametrize("secret", [None, "wrong-secret-of-some-length"])
def test_the_webhook_refuses_a_request_without_the_shared_secret(
    cloud: LocalCloud, fake: FakeLabelStudio, secret: str | None
) -> None:
    # Given a pending review
    started = cloud.invoke("start_label_studio_review", start_event(cloud))
    # When a webhook arrives without the shared secret, or with another one
    body = {"action": "ANNOTATION_CREATED", "project": {"id": started["project_id"]}}
    answer = cloud.invoke("label_studio_webhook", webhook_event(body, secret))
    # Then it is refused and the review stays pending
    assert answer["statusCode"] == 401
    assert cloud.s3.head_object(Bucket=cloud.bucket, Key=index_key(started["project_id"]))


def test_the_webhook_polls_the_project_it_names(cloud: LocalCloud, fake: FakeLabelStudio) -> None:
    # Given a pending review
    started = cloud.invoke("start_label_studio_review", start_event(cloud))
    # When Label Studio's webhook for that project arrives with the shared secret
    body = {"action": "ANNOTATION_CREATED", "project": {"id": started["project_id"]}}
    answer = cloud.invoke("label_studio_webhook", webhook_event(body, WEBHOOK_SECRET))
    other = cloud.invoke("label_studio_webhook", webhook_event({"action": "PROJECT_UPDATED"}, WEBHOOK_SECRET))
    # Then that review is polled (here its token is gone), and a body naming no project is ignored
    assert answer["statusCode"] == 200 and "gone" in json.loads(answer["body"])["message"]
    assert other["statusCode"] == 200 and "ignored" in json.loads(other["body"])["message"]
