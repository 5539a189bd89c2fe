"""`labelflow start` / `labelflow status` against a (moto) deployment: the same run the trigger would start."""

from __future__ import annotations

import json

import boto3

from labelflow.layout import RunLayout, execution_name
from labelflow.models.events import ObjectRef
from labelflow.trigger import run_input_for
from labelflow_local.remote import start, status

ASL = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})


def test_manual_start_uses_the_triggers_name_and_input_and_status_reads_run_json(s3, bucket) -> None:
    # Given an object already in the bucket and a deployed state machine
    put = s3.put_object(Bucket=bucket, Key="raw/reviews/manual.csv", Body=b"review_id\nr1\n")
    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(name="labelflow", definition=ASL, roleArn="arn:aws:iam::123456789012:role/sfn")[
        "stateMachineArn"
    ]
    # When a run is started by hand
    started = start(f"s3://{bucket}/raw/reviews/manual.csv", arn, stack="unused")
    # Then the execution carries the trigger's deterministic name and input for this version
    described = sfn.describe_execution(executionArn=started["execution_arn"])
    assert described["name"] == execution_name("reviews", started["run_id"])
    assert json.loads(described["input"])["version_id"] == put["VersionId"]
    # And status reports no run.json until the run writes it, then the run.json
    assert status(started["execution_arn"])["run"] is None
    key = RunLayout("reviews", started["run_id"]).run_manifest_key
    s3.put_object(Bucket=bucket, Key=key, Body=b'{"status": "SUCCEEDED"}')
    assert status(started["execution_arn"])["run"] == {"status": "SUCCEEDED"}


def test_manual_start_and_the_trigger_agree_on_the_run_id(s3, bucket) -> None:
    # Given the same object version seen by the trigger and by `labelflow start`
    put = s3.put_object(Bucket=bucket, Key="raw/reviews/same.csv", Body=b"x")
    trigger_run = run_input_for(
        ObjectRef(bucket=bucket, key="raw/reviews/same.csv", size=1, etag=put["ETag"], version_id=put["VersionId"])
    )
    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(name="m", definition=ASL, roleArn="arn:aws:iam::123456789012:role/sfn")[
        "stateMachineArn"
    ]
    # When started by hand / Then it is the same run
    assert start(f"s3://{bucket}/raw/reviews/same.csv", arn, stack="unused")["run_id"] == trigger_run.run_id
