"""Drive a deployed stack: start a run by hand for an object already in the bucket, and read its status."""

from __future__ import annotations

from typing import Any

import boto3

from labelflow.errors import ManifestError
from labelflow.layout import RunLayout, execution_name
from labelflow.models.events import ObjectRef
from labelflow.models.state import RunInput
from labelflow.s3 import S3Location, get_json
from labelflow.trigger import run_input_for


def state_machine_from_stack(stack: str) -> str:
    outputs = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    for output in outputs:
        if output["OutputKey"] == "StateMachineArn":
            return str(output["OutputValue"])
    raise ValueError(f"stack {stack} has no StateMachineArn output")


def start(uri: str, state_machine_arn: str | None, stack: str) -> dict[str, Any]:
    """The same execution input and name the trigger would use for the object's current version."""
    location = S3Location.parse(uri)
    head = boto3.client("s3").head_object(Bucket=location.bucket, Key=location.key)
    obj = ObjectRef(
        bucket=location.bucket,
        key=location.key,
        size=head["ContentLength"],
        etag=head["ETag"].strip('"'),
        version_id=head.get("VersionId"),
    )
    run = run_input_for(obj)
    arn = state_machine_arn or state_machine_from_stack(stack)
    response = boto3.client("stepfunctions").start_execution(
        stateMachineArn=arn, name=execution_name(run.dataset, run.run_id), input=run.model_dump_json()
    )
    return {"execution_arn": response["executionArn"], "run_id": run.run_id, "dataset": run.dataset}


def status(execution_arn: str) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions")
    described = sfn.describe_execution(executionArn=execution_arn)
    result: dict[str, Any] = {"status": described["status"], "started": str(described["startDate"])}
    run = RunInput.model_validate_json(described["input"])
    key = RunLayout(run.dataset, run.run_id).run_manifest_key
    try:
        result["run"] = get_json(boto3.client("s3"), run.bucket, key)
    except ManifestError:
        result["run"] = None  # still running: run.json is written when the run ends
    return result
