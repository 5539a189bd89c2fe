"""`labelflow doctor` against a deployment built directly on moto: all good, then one problem at a time.

What moto 5.2.5 cannot answer is filled in the simplest honest way, each response checked against botocore's model:
- CloudFormation: moto's backend imports moto.apigateway, which needs openapi-spec-validator (moto's
  `cloudformation` extra, not installed here), so DescribeStacks comes from botocore's Stubber;
- DescribeWorkteam: moto has no work teams ("describe_workteam action has not been implemented"), so it comes from
  a Stubber on its own client (a Stubber answers every call of its client, so it cannot share moto's);
- DescribeFeatureGroup: moto raises a bare KeyError for a missing group, so feature groups are answered by local
  mode's control plane (labelflow_local.featurestore), as in every local run;
- GetBucketNotificationConfiguration: moto stores EventBridgeConfiguration but leaves it out of its answer, so the
  answer gets it back from moto's stored configuration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from botocore.stub import Stubber
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from labelflow.feature_groups import FeatureStoreConfig, create_request
from labelflow.layout import PROCESSING_CODE_POINTER, feature_group_name
from labelflow.models.spec import DatasetSpec
from labelflow_local import cli, doctor
from labelflow_local.featurestore import LocalFeatureStore
from labelflow_local.publish import publish_processing_code
from tests.conftest import BUCKET, REGION, ROOT

STACK = "labelflow"
WORKTEAM = f"arn:aws:sagemaker:{REGION}:{DEFAULT_ACCOUNT_ID}:workteam/private-crowd/labelflow"
IMAGE = f"683313688378.dkr.ecr.{REGION}.amazonaws.com/sagemaker-scikit-learn:1.4-2-py312-cpu-py3"
REVIEWS_SPEC = ROOT / "demo" / "datasets" / "reviews.json"
MODEL_KEY = "config/models/sentiment.joblib"


def _stack(**changes: Any) -> dict[str, Any]:
    """A DescribeStacks `Stack` as the deployed template reports it."""
    outputs = {
        "DataBucketName": BUCKET,
        "StateMachineArn": f"arn:aws:states:{REGION}:{DEFAULT_ACCOUNT_ID}:stateMachine:LabelingStateMachine-x",
        "SageMakerExecutionRoleArn": f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/labelflow-SageMakerExecutionRole-x",
        "FeatureGroupPrefix": STACK,
    }
    parameters = {"WorkteamArn": WORKTEAM, "ProcessingImageUri": IMAGE}
    stack = {
        "StackId": f"arn:aws:cloudformation:{REGION}:{DEFAULT_ACCOUNT_ID}:stack/{STACK}/6c2b9f00-11f0-a000",
        "StackName": STACK,
        "CreationTime": datetime(2026, 11, 30, tzinfo=UTC),
        "StackStatus": "CREATE_COMPLETE",
        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    }
    return stack | changes


def _workteam(arn: str = WORKTEAM) -> dict[str, Any]:
    """A DescribeWorkteam `Workteam`: a private team of one Cognito user group."""
    return {
        "WorkteamName": arn.rsplit("/", 1)[1],
        "WorkteamArn": arn,
        "Description": "labelflow reviewers",
        "MemberDefinitions": [
            {
                "CognitoMemberDefinition": {
                    "UserPool": f"{REGION}_abcdEFGHI",
                    "UserGroup": "labelflow-reviewers",
                    "ClientId": "1example23456789abcdefghij",
                }
            }
        ],
    }


class _SageMaker:
    """The doctor's SageMaker client: DescribeWorkteam from the stubbed client, every other call from the moto one."""

    def __init__(self, control_plane: Any, workteams: Any) -> None:
        self._control_plane = control_plane
        self._workteams = workteams

    def describe_workteam(self, **kwargs: Any) -> Any:
        return self._workteams.describe_workteam(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._control_plane, name)


@dataclass
class Deployment:
    """A deployed stack, all good until a test breaks one thing; `run` answers the stubbed calls and runs doctor."""

    s3: Any
    sagemaker: Any
    stack: dict[str, Any] = field(default_factory=_stack)
    stack_error: str | None = None
    workteam: dict[str, Any] = field(default_factory=_workteam)
    workteam_error: str | None = None

    def parameter(self, key: str, value: str) -> None:
        self.stack["Parameters"] = [p for p in self.stack["Parameters"] if p["ParameterKey"] != key] + [
            {"ParameterKey": key, "ParameterValue": value}
        ]

    def put_spec(self, spec: dict[str, Any]) -> None:
        self.s3.put_object(Bucket=BUCKET, Key=f"config/datasets/{spec['dataset']}.json", Body=json.dumps(spec))

    def run(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
        cloudformation = boto3.client("cloudformation", region_name=REGION)
        stacks = Stubber(cloudformation)
        if self.stack_error:
            stacks.add_client_error("describe_stacks", "ValidationError", self.stack_error)
        else:
            stacks.add_response("describe_stacks", {"Stacks": [self.stack]}, {"StackName": STACK})
        workteams_client = boto3.client("sagemaker", region_name=REGION)
        workteams = Stubber(workteams_client)
        # DescribeWorkteam declares no error shapes; the doctor reports whatever code comes back.
        if self.workteam_error:
            workteams.add_client_error("describe_workteam", "ValidationException", self.workteam_error)
        else:
            workteams.add_response("describe_workteam", {"Workteam": self.workteam})
        secrets = boto3.client("secretsmanager", region_name=REGION)
        clients = doctor.Clients(
            cloudformation, self.s3, cast(Any, _SageMaker(self.sagemaker, workteams_client)), secrets
        )
        monkeypatch.setattr(doctor, "default_clients", lambda region=None: clients)
        with stacks, workteams:
            code = cli.main(["doctor", "--stack", STACK])
        return code, capsys.readouterr().out.splitlines()


def _with_stored_eventbridge(parsed: dict[str, Any], **_: Any) -> None:
    configuration = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_bucket(BUCKET).notification_configuration
    if configuration is not None and configuration.event_bridge is not None:
        parsed["EventBridgeConfiguration"] = {}


@pytest.fixture
def deployment(s3: Any, bucket: str, tmp_path: Path) -> Deployment:
    """What `sam deploy`, `labelflow publish` and the README's uploads leave: two datasets, one with its group."""
    s3.meta.events.register("after-call.s3.GetBucketNotificationConfiguration", _with_stored_eventbridge)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    publish_processing_code(s3, bucket)
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    LocalFeatureStore(tmp_path / "feature-store", REGION, DEFAULT_ACCOUNT_ID).register(sagemaker.meta.events)
    deployed = Deployment(s3, sagemaker)
    reviews = json.loads(REVIEWS_SPEC.read_text())
    deployed.put_spec(reviews)
    s3.put_object(Bucket=bucket, Key=MODEL_KEY, Body=b"model")
    config = FeatureStoreConfig(f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/fs", f"s3://{bucket}/feature-store")
    group = feature_group_name(STACK, "reviews")
    sagemaker.create_feature_group(**create_request(group, DatasetSpec.model_validate(reviews), config))
    deployed.put_spec({key: value for key, value in reviews.items() if key != "model"} | {"dataset": "tickets"})
    return deployed


def _problems(lines: list[str]) -> list[str]:
    return [line for line in lines if not line.startswith("ok: ")]


def test_a_well_deployed_stack_passes_every_check(deployment, monkeypatch, capsys) -> None:
    # Given a deployed stack, published code, two dataset specs (one with its group, one before its first run)
    # When the doctor checks it
    code, lines = deployment.run(monkeypatch, capsys)
    # Then every line is ok and it exits 0
    assert code == 0
    assert _problems(lines) == [], lines
    assert len(lines) == 9  # stack, work team, code, image, versioning, notifications, model, 2 groups
    assert any("feature group labelflow-tickets: does not exist yet" in line for line in lines)
    assert any("feature group labelflow-reviews: matches the spec" in line for line in lines)


def _one_problem(deployment, monkeypatch, capsys) -> str:
    code, lines = deployment.run(monkeypatch, capsys)
    problems = _problems(lines)
    assert code == 1
    assert len(problems) == 1, lines
    return problems[0]


def test_a_missing_stack_is_the_only_line(deployment, monkeypatch, capsys) -> None:
    # Given no stack of that name (DescribeStacks answers ValidationError)
    deployment.stack_error = f"Stack with id {STACK} does not exist"
    # When the doctor runs / Then that is all it can say
    code, lines = deployment.run(monkeypatch, capsys)
    assert code == 1
    assert lines == [f"problem: stack {STACK}: no such stack in {REGION}: pass --stack NAME or --region R"]


@pytest.mark.parametrize(
    ("stack", "expected"),
    [
        (_stack(StackStatus="ROLLBACK_COMPLETE"), "ROLLBACK_COMPLETE in us-east-1"),
        (_stack(StackStatus="UPDATE_IN_PROGRESS"), "UPDATE_IN_PROGRESS in us-east-1, account 123456789012: wait"),
        (_stack(Outputs=[]), "lacks output DataBucketName, output StateMachineArn"),
    ],
)
def test_an_unusable_stack_stops_the_checks(deployment, monkeypatch, capsys, stack, expected) -> None:
    # Given a stack that failed, is mid-update, or was deployed from another template
    deployment.stack = stack
    # When the doctor runs / Then it says so in one line and checks nothing else
    code, lines = deployment.run(monkeypatch, capsys)
    assert code == 1
    assert len(lines) == 1
    assert lines[0].startswith(f"problem: stack {STACK}: ")
    assert expected in lines[0]


def test_an_unreachable_work_team(deployment, monkeypatch, capsys) -> None:
    # Given a WorkteamArn this account cannot describe
    deployment.workteam_error = "Workteam arn not found"
    # When the doctor runs / Then the work team line is the problem
    problem = _one_problem(deployment, monkeypatch, capsys)
    assert problem == (
        f"problem: work team {WORKTEAM}: DescribeWorkteam labelflow: ValidationException: Workteam arn not found"
    )


def test_a_work_team_in_another_region(deployment, monkeypatch, capsys) -> None:
    # Given a work team ARN of another Region (a labeling job needs one of its own Region and account)
    elsewhere = WORKTEAM.replace(REGION, "eu-west-1")
    deployment.parameter("WorkteamArn", elsewhere)
    # When the doctor runs / Then it names both Regions
    problem = _one_problem(deployment, monkeypatch, capsys)
    assert problem.startswith(f"problem: work team {elsewhere}: in eu-west-1, account {DEFAULT_ACCOUNT_ID}, but ")


def _label_studio(deployment: Deployment, secret: str | None) -> None:
    """The stack deployed with ReviewBackend=labelstudio and no work team; `secret` stored under its default name."""
    deployment.parameter("ReviewBackend", "labelstudio")
    deployment.parameter("WorkteamArn", "")
    if secret is not None:
        boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="labelflow/labelstudio", SecretString=secret
        )


def test_a_label_studio_deployment_checks_its_secret_not_a_work_team(deployment, monkeypatch, capsys) -> None:
    # Given a Label Studio deployment with no work team, and its secret stored
    _label_studio(deployment, json.dumps({"url": "https://ls.example.com", "token": "t0ken"}))
    # When the doctor runs
    code, lines = deployment.run(monkeypatch, capsys)
    # Then every check passes, the secret's among them and no work team's
    assert code == 0 and _problems(lines) == []
    assert (
        "ok: Label Studio secret labelflow/labelstudio: names https://ls.example.com, without a webhook secret" in lines
    )
    assert not any(line.startswith("ok: work team") for line in lines)


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        (None, "GetSecretValue: ResourceNotFoundException: create it (aws secretsmanager create-secret"),
        ('{"url": "ls.example.com", "token": "t"}', "url: String should match pattern"),
        ('{"url": "https://ls.example.com"}', "token: Field required"),
    ],
)
def test_a_label_studio_secret_that_cannot_work(deployment, monkeypatch, capsys, secret, expected) -> None:
    # Given a Label Studio deployment whose secret is missing or malformed
    _label_studio(deployment, secret)
    # When the doctor runs / Then the secret's line is the problem, saying what to do
    problem = _one_problem(deployment, monkeypatch, capsys)
    assert problem.startswith("problem: Label Studio secret labelflow/labelstudio: ") and expected in problem


def test_unpublished_processing_code(deployment, monkeypatch, capsys) -> None:
    # Given no pointer to the processing code
    deployment.s3.delete_object(Bucket=BUCKET, Key=PROCESSING_CODE_POINTER)
    # When the doctor runs / Then it says how to publish it
    problem = _one_problem(deployment, monkeypatch, capsys)
    assert problem == (
        f"problem: processing code s3://{BUCKET}/{PROCESSING_CODE_POINTER}: not published: "
        f"run `labelflow publish --bucket {BUCKET}`"
    )


def test_a_pointer_to_missing_code(deployment, monkeypatch, capsys) -> None:
    # Given a pointer whose entrypoint is gone
    pointer = json.loads(deployment.s3.get_object(Bucket=BUCKET, Key=PROCESSING_CODE_POINTER)["Body"].read())
    prefix = pointer["s3_prefix"].removeprefix(f"s3://{BUCKET}/")
    deployment.s3.delete_object(Bucket=BUCKET, Key=prefix + pointer["entrypoint"])
    # When the doctor runs / Then it names the missing file
    problem = _one_problem(deployment, monkeypatch, capsys)
    assert f"{pointer['s3_prefix']} lacks {pointer['entrypoint']}: run `labelflow publish" in problem


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (IMAGE.replace(".us-east-1.", ".us-west-2."), "its registry is in us-west-2, the stack in us-east-1"),
        (IMAGE.replace("683313688378", "111122223333"), "AWS publishes sagemaker-scikit-learn in us-east-1 from"),
        (IMAGE.replace("1.4-2-py312-cpu-py3", "1.2-1-cpu-py3"), "the processing code runs on 1.4-2-py312-cpu-py3"),
        ("sagemaker-scikit-learn:latest", "not an ECR image URI"),
    ],
)
def test_a_processing_image_that_cannot_work(deployment, monkeypatch, capsys, image, expected) -> None:
    # Given an image of another Region, of an account AWS does not publish it from, with another tag, or no URI
    deployment.parameter("ProcessingImageUri", image)
    # When the doctor runs / Then the image line is the problem, with the URI to use
    problem = _one_problem(deployment, monkeypatch, capsys)
    assert problem.startswith(f"problem: processing image {image}: {expected}")


def test_a_custom_image_is_checked_for_form_and_region_only(deployment, monkeypatch, capsys) -> None:
    # Given the deployer's own image in the stack's Region
    deployment.parameter("ProcessingImageUri", f"{DEFAULT_ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/mine:1")
    # When the doctor runs / Then it passes, saying what was not checked
    code, lines = deployment.run(monkeypatch, capsys)
    assert code == 0
    assert any(line.endswith("a custom image in us-east-1: checked its form and Region only") for line in lines)


def test_a_feature_group_that_differs_from_its_spec(deployment, monkeypatch, capsys) -> None:
    # Given the tickets group created from a spec with one feature less than its spec now has
    tickets = json.loads(deployment.s3.get_object(Bucket=BUCKET, Key="config/datasets/tickets.json")["Body"].read())
    older = DatasetSpec.model_validate(tickets | {"features": tickets["features"][:-1]})
    config = FeatureStoreConfig(f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/fs", f"s3://{BUCKET}/feature-store")
    deployment.sagemaker.create_feature_group(**create_request(feature_group_name(STACK, "tickets"), older, config))
    # When the doctor runs / Then it names the feature the group lacks
    problem = _one_problem(deployment, monkeypatch, capsys)
    assert problem.startswith("problem: dataset tickets feature group labelflow-tickets: does not match the spec: ")
    assert "the group lacks verified_purchase" in problem


def test_a_missing_model(deployment, monkeypatch, capsys) -> None:
    # Given a spec naming a model that was never uploaded
    deployment.s3.delete_object(Bucket=BUCKET, Key=MODEL_KEY)
    # When the doctor runs / Then it says where to upload it
    problem = _one_problem(deployment, monkeypatch, capsys)
    assert problem == (
        f"problem: dataset reviews model s3://{BUCKET}/{MODEL_KEY}: missing: aws s3 cp MODEL_FILE s3://{BUCKET}/{MODEL_KEY}"
    )


def test_an_invalid_spec(deployment, monkeypatch, capsys) -> None:
    # Given a spec without labels
    tickets = json.loads(deployment.s3.get_object(Bucket=BUCKET, Key="config/datasets/tickets.json")["Body"].read())
    deployment.put_spec({key: value for key, value in tickets.items() if key != "labels"})
    # When the doctor runs / Then the spec's line names the field
    problem = _one_problem(deployment, monkeypatch, capsys)
    assert problem.startswith(f"problem: dataset spec s3://{BUCKET}/config/datasets/tickets.json: invalid dataset spec")
    assert "labels" in problem


def test_no_dataset_spec_at_all(deployment, monkeypatch, capsys) -> None:
    # Given a bucket without any spec
    for dataset in ("reviews", "tickets"):
        deployment.s3.delete_object(Bucket=BUCKET, Key=f"config/datasets/{dataset}.json")
    # When the doctor runs / Then it says to upload one first
    problem = _one_problem(deployment, monkeypatch, capsys)
    assert problem.startswith(f"problem: dataset specs s3://{BUCKET}/config/datasets/: none: upload ")


def test_eventbridge_delivery_off(deployment, monkeypatch, capsys) -> None:
    # Given a bucket that no longer sends its events to EventBridge
    deployment.s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={})
    # When the doctor runs / Then the notifications line is the problem
    problem = _one_problem(deployment, monkeypatch, capsys)
    assert problem.startswith(f"problem: bucket {BUCKET} notifications: EventBridge delivery is off")


def test_versioning_suspended(deployment, monkeypatch, capsys) -> None:
    # Given a bucket whose versioning was suspended
    deployment.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"})
    # When the doctor runs / Then the versioning line is the problem, with the command that fixes it
    problem = _one_problem(deployment, monkeypatch, capsys)
    assert problem.startswith(f"problem: bucket {BUCKET} versioning: Suspended: aws s3api put-bucket-versioning")
