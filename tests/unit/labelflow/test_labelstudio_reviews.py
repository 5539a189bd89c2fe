"""review/labelstudio_reviews.py: a pending review is heartbeaten while work remains, finished like a Ground Truth
job once answered or past its deadline, and its output is what MergeLabels reads from either backend."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from labelflow.errors import ConfigError, RetryableAwsError
from labelflow.layout import labeling_output_manifest_uri
from labelflow.merging import review_results
from labelflow.models.labelstudio import PendingReview
from labelflow.models.state import LabelingResult
from labelflow.review import labelstudio as ls
from labelflow.review import labelstudio_reviews as reviews
from labelflow.s3 import put_json, put_jsonl
from tests.labelstudio.fake_server import LEGACY_TOKEN, FakeLabelStudio, serving

DEADLINE = 1_000_000.0
LABELS = ["negative", "positive"]


@dataclass
class RecordingSfn:
    """Step Functions' SendTask* calls, kept; `gone` answers them as for an execution that ended."""

    gone: bool = False
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def _call(self, name: str, **kwargs: Any) -> dict[str, Any]:
        if self.gone:
            raise ClientError({"Error": {"Code": "TaskTimedOut", "Message": "gone"}}, name)
        self.calls.append((name, kwargs))
        return {}

    def send_task_heartbeat(self, **kwargs: Any) -> dict[str, Any]:
        return self._call("SendTaskHeartbeat", **kwargs)

    def send_task_success(self, **kwargs: Any) -> dict[str, Any]:
        return self._call("SendTaskSuccess", **kwargs)


@pytest.fixture
def fake() -> Iterator[FakeLabelStudio]:
    with serving(FakeLabelStudio()) as server:
        yield server


def pending(s3: Any, bucket: str, fake: FakeLabelStudio, records: list[str]) -> PendingReview:
    """A pending review of `records` in project 1, each a task in the fake, with its manifest and index."""
    fake.projects.append({"id": 1, "title": "labelflow-review 0123456789"})
    manifest = put_jsonl(
        s3, bucket, "runs/reviews/r1/review/manifest.jsonl", [{"source": r, "record_id": r} for r in records]
    )
    fake.handle("POST", "/api/projects/1/import", [{"data": {"record_id": r}} for r in records])
    review = PendingReview(
        job_name="lf-reviews-r1-review",
        project_id=1,
        project_url=f"{fake.url}/projects/1/data",
        task_token="token-1",
        deadline=DEADLINE,
        bucket=bucket,
        dataset="reviews",
        run_id="r1",
        manifest_uri=manifest,
        output_path=f"s3://{bucket}/runs/reviews/r1/labeling/",
        records=len(records),
        workers_per_object=1,
        labels=LABELS,
    )
    key = reviews.review_key("reviews", "r1", review.job_name)
    put_json(s3, bucket, key, review.model_dump(mode="json"))
    put_json(s3, bucket, reviews.index_key(1), {"review_key": key})
    return review


def answer(fake: FakeLabelStudio, record: str, label: str) -> None:
    task = next(task for task in fake.tasks if task["data"]["record_id"] == record)
    fake.annotate(task, label, user=1)


def client(fake: FakeLabelStudio) -> ls.LabelStudioClient:
    return ls.LabelStudioClient(fake.url, LEGACY_TOKEN, backoff_seconds=0.0)


def test_work_remaining_before_the_deadline_sends_a_heartbeat(s3: Any, bucket: str, fake: FakeLabelStudio) -> None:
    # Given a review of two records, one answered, before its deadline
    pending(s3, bucket, fake, ["a", "b"])
    answer(fake, "a", "positive")
    sfn = RecordingSfn()
    # When the poller runs
    (polled,) = reviews.poll_all(s3, sfn, bucket, lambda: client(fake), now=lambda: DEADLINE - 1)  # type: ignore[arg-type]
    # Then the task gets a heartbeat and the review stays pending
    assert (polled.outcome, polled.answered, polled.records) == ("waiting", 1, 2)
    assert sfn.calls == [("SendTaskHeartbeat", {"taskToken": "token-1"})]
    assert [review.job_name for review in reviews.pending_reviews(s3, bucket)] == ["lf-reviews-r1-review"]


def test_every_record_answered_completes_the_token_like_a_ground_truth_job(
    s3: Any, bucket: str, fake: FakeLabelStudio
) -> None:
    # Given a review whose two records are answered
    review = pending(s3, bucket, fake, ["a", "b"])
    answer(fake, "a", "positive")
    answer(fake, "b", "negative")
    sfn = RecordingSfn()
    # When the poller runs
    (polled,) = reviews.poll_all(s3, sfn, bucket, lambda: client(fake), now=lambda: DEADLINE - 1)  # type: ignore[arg-type]
    # Then the token is completed with the Completed job MergeLabels reads, and the review leaves the index
    ((name, sent),) = sfn.calls
    result = LabelingResult.model_validate_json(sent["output"])
    assert (polled.outcome, name, result.status, result.ended_early) == (
        "completed",
        "SendTaskSuccess",
        "Completed",
        False,
    )
    assert result.output_manifest_uri == labeling_output_manifest_uri(review.output_path, review.job_name)
    assert list(reviews.pending_reviews(s3, bucket)) == []
    # And the output manifest gives merge both labels
    human, reasons = review_results(s3, [result])
    assert {record: label for record, (label, _) in human.items()} == {"a": "positive", "b": "negative"}
    assert reasons == {}


def test_past_the_deadline_what_was_labeled_is_kept_and_the_rest_says_why(
    s3: Any, bucket: str, fake: FakeLabelStudio
) -> None:
    # Given a review of two records, one answered, whose deadline has passed
    pending(s3, bucket, fake, ["a", "b"])
    answer(fake, "a", "positive")
    sfn = RecordingSfn()
    # When the poller runs
    (polled,) = reviews.poll_all(s3, sfn, bucket, lambda: client(fake), now=lambda: DEADLINE + 1)  # type: ignore[arg-type]
    # Then the job counts as Stopped with the deadline as its reason, as a Ground Truth job that ended early
    result = LabelingResult.model_validate_json(sfn.calls[0][1]["output"])
    assert (polled.outcome, result.status, result.ended_early) == ("expired", "Stopped", True)
    assert result.failure_reason is not None and "deadline" in result.failure_reason
    # And merge keeps the answered record and gives the other the deadline's reason
    human, reasons = review_results(s3, [result])
    assert list(human) == ["a"]
    assert list(reasons) == ["b"] and "deadline" in reasons["b"]


def test_an_unreachable_label_studio_gets_no_heartbeat(s3: Any, bucket: str, fake: FakeLabelStudio) -> None:
    # Given a pending review and a Label Studio that refuses the token
    pending(s3, bucket, fake, ["a"])
    sfn = RecordingSfn()
    refused = ls.LabelStudioClient(fake.url, "f" * 40, backoff_seconds=0.0)
    # When the poller runs
    (polled,) = reviews.poll_all(s3, sfn, bucket, lambda: refused, now=lambda: DEADLINE - 1)  # type: ignore[arg-type]
    # Then no heartbeat is sent (the ASL's HeartbeatSeconds ends a review nobody can read) and it stays pending
    assert polled.outcome == "unreachable" and "refused" in polled.problem
    assert sfn.calls == []
    assert len(list(reviews.pending_reviews(s3, bucket))) == 1


def test_a_token_nobody_waits_on_drops_the_review(s3: Any, bucket: str, fake: FakeLabelStudio) -> None:
    # Given a pending review whose execution ended
    pending(s3, bucket, fake, ["a"])
    # When the poller's heartbeat is answered TaskTimedOut
    (polled,) = reviews.poll_all(s3, RecordingSfn(gone=True), bucket, lambda: client(fake), now=lambda: DEADLINE - 1)  # type: ignore[arg-type]
    # Then the review leaves the index
    assert polled.outcome == "gone"
    assert list(reviews.pending_reviews(s3, bucket)) == []


def test_nothing_pending_reads_no_secret(s3: Any, bucket: str) -> None:
    # Given no pending review
    def connect() -> ls.LabelStudioClient:
        raise AssertionError("the secret was read")

    # When the poller runs
    # Then it makes no client (and reads no secret)
    assert reviews.poll_all(s3, RecordingSfn(), bucket, connect) == []  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", ['{"url": "ftp://x", "token": "t"}', '{"token": "t"}', "not json", '{"url": "http://x", "token": ""}']
)
def test_an_unusable_secret_is_a_config_error(moto: None, value: str) -> None:
    # Given a secret that is not JSON with an http(s) url and a token
    client = boto3.client("secretsmanager")
    name = f"labelflow/bad-{abs(hash(value))}"
    client.create_secret(Name=name, SecretString=value)
    # When it is read
    # Then the error names the secret and what it must hold
    with pytest.raises(ConfigError, match=name):
        reviews.read_secret(client, name, max_age=0)


def test_a_missing_or_forbidden_secret_says_what_to_do(moto: None) -> None:
    # Given no secret by that name
    client = boto3.client("secretsmanager")
    # When it is read
    # Then the error says it does not exist and how to create it
    with pytest.raises(ConfigError, match="labelflow/none does not exist .* create it"):
        reviews.read_secret(client, "labelflow/none", max_age=0)


@pytest.mark.parametrize(
    ("code", "error"),
    [("InternalServiceError", RetryableAwsError), ("ThrottlingException", RetryableAwsError), ("Nope", ConfigError)],
)
def test_a_transient_secrets_manager_error_is_retryable(
    moto: None, monkeypatch: pytest.MonkeyPatch, code: str, error: type[Exception]
) -> None:
    # Given Secrets Manager answering with an error
    client = boto3.client("secretsmanager")

    def fail(**kwargs: Any) -> None:
        raise ClientError({"Error": {"Code": code, "Message": "m"}}, "GetSecretValue")

    monkeypatch.setattr(client, "get_secret_value", fail)
    # When the secret is read
    # Then a throttle or a service error is retryable (the ASL retries it), anything else is a config error
    with pytest.raises(error, match="labelflow/flaky"):
        reviews.read_secret(client, "labelflow/flaky", max_age=0)


def test_the_secret_is_read_as_json(moto: None) -> None:
    # Given the functions' secret
    client = boto3.client("secretsmanager")
    client.create_secret(Name="labelflow/ls", SecretString=json.dumps({"url": "https://ls.example", "token": "t"}))
    # When it is read
    secret = reviews.read_secret(client, "labelflow/ls", max_age=0)
    # Then url and token come back, and no webhook secret
    assert (secret.url, secret.token, secret.webhook_secret) == ("https://ls.example", "t", None)
