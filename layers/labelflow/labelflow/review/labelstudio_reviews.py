"""Label Studio reviews in the workflow: the HumanLabeling iteration waits on a task token that these complete.

StartLabelStudioReview puts the job's records in a project and keeps a pending review (under the run prefix) with a
small index object under PENDING_PREFIX; the scheduled poller (and the webhook, as a hint) reads each project and,
when every task has its answers or the deadline passed, writes the output manifest Ground Truth's path writes and
answers the token with the LabelingResult the Ground Truth branch yields, so MergeLabels reads both alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import TransformParameterError
from botocore.exceptions import ClientError

from labelflow.aws import THROTTLING_CODES, error_code
from labelflow.errors import ConfigError, LabelStudioError, RetryableAwsError
from labelflow.layout import labeling_output_manifest_uri
from labelflow.models.labelstudio import LabelStudioSecret, PendingIndex, PendingReview, ReviewStart, Task
from labelflow.models.reviewers import ReviewerLineage, reviewers_uri
from labelflow.models.spec import DatasetSpec
from labelflow.models.state import LabelingResult
from labelflow.review import labelstudio as ls
from labelflow.review.manifests import LABEL_ATTRIBUTE
from labelflow.s3 import S3Location, exists, get_json, iter_jsonl, put_bytes, put_json

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_stepfunctions import SFNClient

PENDING_PREFIX = "labelstudio/pending/"
# SendTask* errors meaning the task no longer waits: the execution ended, timed out or was stopped (botocore
# stepfunctions 2016-11-23 service-2.json, SendTaskSuccess/SendTaskHeartbeat errors).
_TASK_GONE = frozenset({"InvalidToken", "TaskDoesNotExist", "TaskTimedOut"})

Outcome = Literal["waiting", "completed", "expired", "unreachable", "gone"]


@dataclass(frozen=True)
class Polled:
    """What one poll did to one pending review."""

    job_name: str
    project_url: str
    outcome: Outcome
    answered: int
    records: int
    problem: str = ""


@cache
def _secrets(client: Any) -> SecretsProvider:
    return SecretsProvider(boto3_client=client)


def read_secret(client: Any, name: str, max_age: int) -> LabelStudioSecret:
    """The secret's url and token (cached for `max_age` seconds by Powertools); ConfigError naming what is wrong."""
    try:
        value = _secrets(client).get(name, transform="json", max_age=max_age)
    except Exception as exc:  # Powertools wraps every failure (missing secret, denied, not JSON) in its own errors
        raise _unreadable(name, exc) from exc
    try:
        return LabelStudioSecret.model_validate(value)
    except ValueError as exc:
        raise ConfigError(f"secret {name} must be JSON with a url (http or https) and a token") from exc


def _unreadable(name: str, exc: Exception) -> Exception:
    """Why the secret could not be read, from the AWS error Powertools wrapped (its __context__)."""
    cause = exc.__context__
    code = error_code(cause) if isinstance(cause, ClientError) else None
    if code in THROTTLING_CODES or code == "InternalServiceError":
        return RetryableAwsError(f"secret {name} could not be read for now ({code})")
    # GetSecretValue's errors (botocore secretsmanager model), and IAM's denial.
    reasons = {
        "ResourceNotFoundException": f"secret {name} does not exist in this account and region: create it with "
        "the Label Studio url and token (README, 'Reviewing in a self-hosted Label Studio')",
        "AccessDeniedException": f"this function may not read secret {name}: deploy with "
        "LabelStudioSecretName set to its name",
        "DecryptionFailure": f"secret {name} cannot be decrypted: its KMS key must let this function's role decrypt",
    }
    if code in reasons:
        return ConfigError(reasons[code])
    if isinstance(exc, TransformParameterError):
        return ConfigError(f'secret {name} is not JSON: store {{"url": ..., "token": ...}}')
    if code is None:  # no answer from Secrets Manager (a connection error outlived botocore's retries)
        return RetryableAwsError(f"secret {name} could not be read for now ({type(cause or exc).__name__})")
    return ConfigError(f"secret {name} cannot be read: {code}")


def review_key(dataset: str, run_id: str, job_name: str) -> str:
    """The pending review's object, under its run's prefix."""
    return f"runs/{dataset}/{run_id}/labelstudio/{job_name}.json"


def index_key(project_id: int) -> str:
    """The index object of the review in project `project_id` (a project holds one review job)."""
    return f"{PENDING_PREFIX}{project_id}.json"


def start_review(
    start: ReviewStart,
    client: ls.LabelStudioClient,
    s3: S3Client,
    webhook: tuple[str, str] | None = None,
    now: Callable[[], float] = lambda: datetime.now(UTC).timestamp(),
) -> PendingReview:
    """Put the job's records in its project (created or reused), set the webhook if given (url, shared secret), and
    keep the review pending with its task token; a retried start imports nothing twice and keeps the new token."""
    job = start.job
    name = str(job["LabelingJobName"])
    manifest_uri = str(job["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"])
    spec = DatasetSpec.model_validate(get_json(s3, *S3Location.parse(start.spec_uri)))
    lines = list(iter_jsonl(s3, *S3Location.parse(manifest_uri)))
    project = ls.ensure_project(client, spec, name, ls.is_image_review(lines))
    ls.import_review(client, project, lines, spec)
    if webhook is not None:
        ls.ensure_webhook(client, project.id, *webhook)
    review = PendingReview(
        job_name=name,
        project_id=project.id,
        project_url=f"{client.url}/projects/{project.id}/data",
        task_token=start.task_token,
        deadline=now() + int(job["TaskAvailabilityLifetimeInSeconds"]),
        bucket=start.bucket,
        dataset=start.dataset,
        run_id=start.run_id,
        manifest_uri=manifest_uri,
        output_path=str(job["OutputConfig"]["S3OutputPath"]),
        records=len(lines),
        workers_per_object=int(job.get("NumberOfHumanWorkersPerDataObject", spec.labeling.workers_per_object)),
        labels=spec.labels,
    )
    key = review_key(start.dataset, start.run_id, name)
    put_json(s3, start.bucket, key, review.model_dump(mode="json"))
    put_json(s3, start.bucket, index_key(project.id), PendingIndex(review_key=key).model_dump(mode="json"))
    return review


def pending_reviews(s3: S3Client, bucket: str) -> Iterator[PendingReview]:
    """Every review the index lists, read from its run's prefix."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=PENDING_PREFIX):
        for entry in page.get("Contents", []):
            found = pending_review(s3, bucket, entry["Key"])
            if found is not None:
                yield found


def pending_review(s3: S3Client, bucket: str, key: str) -> PendingReview | None:
    """The review an index object points at; None when it was finished meanwhile."""
    if not exists(s3, bucket, key):
        return None
    index = PendingIndex.model_validate(get_json(s3, bucket, key))
    return PendingReview.model_validate(get_json(s3, bucket, index.review_key))


def deadline_reason(review: PendingReview) -> str:
    when = datetime.fromtimestamp(review.deadline, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"the Label Studio review's deadline ({when}) passed before a reviewer answered"


def review_output(review: PendingReview, tasks: list[Task], expired: bool, s3: S3Client) -> list[dict[str, Any]]:
    """The output-manifest lines for the review's records; after the deadline the unanswered say so."""
    lines = list(iter_jsonl(s3, *S3Location.parse(review.manifest_uri)))
    output = ls.output_lines(lines, ls.answers_by_record(tasks), review.labels, review.job_name)
    if not expired:
        return output
    metadata = f"{LABEL_ATTRIBUTE}-metadata"
    reason = deadline_reason(review)
    return [
        {**line, metadata: {**line[metadata], "failure-reason": reason}}
        if (line.get(metadata) or {}).get("failure-reason")
        else line
        for line in output
    ]


def labeling_result(review: PendingReview, output: list[dict[str, Any]], expired: bool) -> LabelingResult:
    """What the Ground Truth branch yields for a job, for this review: Completed, or Stopped at the deadline."""
    unlabeled = sum(1 for line in output if (line.get(f"{LABEL_ATTRIBUTE}-metadata") or {}).get("failure-reason"))
    labeled = len(output) - unlabeled
    return LabelingResult(
        job_name=review.job_name,
        status="Stopped" if expired and unlabeled else "Completed",
        output_path=review.output_path,
        counters={"TotalLabeled": labeled, "HumanLabeled": labeled, "MachineLabeled": 0, "Unlabeled": unlabeled},
        failure_reason=deadline_reason(review) if expired and unlabeled else None,
        manifest_uri=review.manifest_uri,
    )


def finish(review: PendingReview, tasks: list[Task], expired: bool, s3: S3Client, sfn: SFNClient) -> bool:
    """Write the output manifest and complete the token; False when the task no longer waited."""
    output = review_output(review, tasks, expired, s3)
    location = S3Location.parse(labeling_output_manifest_uri(review.output_path, review.job_name))
    body = "".join(json.dumps(line) + "\n" for line in output).encode()
    put_bytes(s3, location.bucket, location.key, body, "application/jsonl")
    workers = {worker for answers in ls.answers_by_record(tasks).values() for worker, _ in answers}
    reviewers = ReviewerLineage(
        backend="label-studio", workers_per_record=review.workers_per_object, workers=len(workers)
    )
    put_json(s3, *S3Location.parse(reviewers_uri(review.output_path, review.job_name)), reviewers.model_dump())
    result = labeling_result(review, output, expired)
    return _send(lambda: sfn.send_task_success(taskToken=review.task_token, output=result.model_dump_json()))


def _send(call: Callable[[], object]) -> bool:
    try:
        call()
    except ClientError as exc:
        if error_code(exc) in _TASK_GONE:
            return False
        raise
    return True


def poll_review(
    review: PendingReview, client: ls.LabelStudioClient, s3: S3Client, sfn: SFNClient, now: float
) -> Polled:
    """Read the project; heartbeat while work remains, else finish; drop the index once the token is answered."""
    try:
        tasks = list(ls.iter_tasks(client, review.project_id))
    except LabelStudioError as exc:
        # No heartbeat: a project unreadable for HeartbeatSeconds ends the review through the ASL's Catch.
        return Polled(review.job_name, review.project_url, "unreachable", 0, review.records, str(exc))
    answered = sum(1 for task in tasks if task.annotations)
    expired = now >= review.deadline
    done = len(tasks) >= review.records and ls.finished(tasks, review.workers_per_object)
    if not done and not expired:
        alive = _send(lambda: sfn.send_task_heartbeat(taskToken=review.task_token))
        if alive:
            return Polled(review.job_name, review.project_url, "waiting", answered, review.records)
        drop(review, s3)
        return Polled(review.job_name, review.project_url, "gone", answered, review.records)
    delivered = finish(review, tasks, expired and not done, s3, sfn)
    drop(review, s3)
    outcome: Outcome = "gone" if not delivered else ("completed" if done else "expired")
    return Polled(review.job_name, review.project_url, outcome, answered, review.records)


def drop(review: PendingReview, s3: S3Client) -> None:
    """Remove the review's index object: the poller stops looking at it (the review itself stays with the run)."""
    s3.delete_object(Bucket=review.bucket, Key=index_key(review.project_id))


def poll_all(
    s3: S3Client,
    sfn: SFNClient,
    bucket: str,
    connect: Callable[[], ls.LabelStudioClient],
    now: Callable[[], float] = lambda: datetime.now(UTC).timestamp(),
) -> list[Polled]:
    """Poll every pending review; the client is made once, and only when something is pending."""
    reviews = list(pending_reviews(s3, bucket))
    if not reviews:
        return []
    client = connect()
    return [poll_review(review, client, s3, sfn, now()) for review in reviews]


def webhook_response(status: int, message: str) -> dict[str, Any]:
    """A Function URL response (payload format 2.0)."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"message": message}),
    }


def on_webhook(
    headers: Mapping[str, str],
    body: bytes | str,
    secret: LabelStudioSecret,
    s3: S3Client,
    sfn: SFNClient,
    bucket: str,
    now: Callable[[], float] = lambda: datetime.now(UTC).timestamp(),
) -> dict[str, Any]:
    """A webhook request: refused without the shared secret, else a hint to poll the project it names at once."""
    if secret.webhook_secret is None or not ls.secret_matches(headers, secret.webhook_secret):
        return webhook_response(401, "missing or wrong shared secret")
    event = ls.webhook_event(body)
    if event is None or event.project is None:
        return webhook_response(200, "ignored: no project in the body")
    review = pending_review(s3, bucket, index_key(event.project.id))
    if review is None:
        return webhook_response(200, "ignored: no review pending in that project")
    polled = poll_review(review, ls.LabelStudioClient(secret.url, secret.token), s3, sfn, now())
    return webhook_response(200, f"review {polled.job_name}: {polled.outcome}")
