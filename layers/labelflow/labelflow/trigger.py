"""The trigger: turn S3 object-created events into exactly one execution per object version."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import TypeAdapter

from labelflow.aws import error_code, raise_if_retryable
from labelflow.layout import RAW_PREFIX, dataset_of, execution_name, run_id_for
from labelflow.models.events import ObjectRef, TriggerEvent
from labelflow.models.state import RunInput, StartedExecution, TriggerResult
from labelflow.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

_TRIGGER_EVENT: TypeAdapter[TriggerEvent] = TypeAdapter(TriggerEvent)


def parse_trigger_event(event: dict[str, Any]) -> list[ObjectRef]:
    """Objects created, from either event shape; deletes and other event names yield nothing."""
    return _TRIGGER_EVENT.validate_python(event).objects()


def ignore_reason(obj: ObjectRef, bucket: str) -> str | None:
    """Why labelflow leaves this object alone, or None when it starts a run."""
    if obj.bucket != bucket:
        return f"bucket {obj.bucket} is not the data bucket"
    if not obj.key.startswith(RAW_PREFIX):
        return "key is outside raw/"
    if obj.key.endswith("/"):
        return "folder marker"
    if dataset_of(obj.key) is None:
        return "key is not raw/<dataset>/<file> with a valid dataset name"
    return None


def run_input_for(obj: ObjectRef, now: datetime | None = None, delivery_id: str | None = None) -> RunInput:
    dataset = dataset_of(obj.key)
    if dataset is None:
        raise ValueError(f"not a dataset key: {obj.key}")
    # Unversioned buckets report no version (or "null"); the etag then identifies the content.
    version = obj.version_id if obj.version_id and obj.version_id != "null" else f"etag:{obj.etag}"
    received = obj.event_time or (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return RunInput(
        bucket=obj.bucket,
        key=obj.key,
        version_id=obj.version_id,
        etag=obj.etag.strip('"'),
        size=obj.size,
        dataset=dataset,
        run_id=run_id_for(obj.bucket, obj.key, version),
        received_at=received,
        delivery_id=delivery_id,
    )


def start_run(sfn: SFNClient, state_machine_arn: str, run: RunInput) -> StartedExecution:
    """Start the run's execution; an execution that already exists for this version is a duplicate event."""
    name = execution_name(run.dataset, run.run_id)
    try:
        response = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=run.model_dump_json())
    except ClientError as exc:
        if error_code(exc) == "ExecutionAlreadyExists":
            logger.info("duplicate event", extra={"execution_name": name, "key": run.key})
            return StartedExecution(key=run.key, version_id=run.version_id, status="duplicate", execution_name=name)
        raise_if_retryable(exc, f"start execution {name}")
        raise
    return StartedExecution(
        key=run.key,
        version_id=run.version_id,
        status="started",
        execution_name=name,
        execution_arn=response["executionArn"],
    )


def handle_objects(
    objects: list[ObjectRef], sfn: SFNClient, bucket: str, state_machine_arn: str, delivery_id: str | None = None
) -> TriggerResult:
    """Start a run per dataset object; `delivery_id` (the Lambda request id) tells deliveries apart."""
    results: list[StartedExecution] = []
    for obj in objects:
        reason = ignore_reason(obj, bucket)
        if reason:
            logger.info("object ignored", extra={"key": obj.key, "reason": reason})
            results.append(StartedExecution(key=obj.key, version_id=obj.version_id, status="ignored", reason=reason))
            continue
        results.append(start_run(sfn, state_machine_arn, run_input_for(obj, delivery_id=delivery_id)))
    return TriggerResult(executions=results)
