"""`labelflow doctor`: check a deployed stack before its first upload, one line per check.

Each check names what it looked at and, when something is wrong, what to do about it. Every call is a read:
DescribeStacks; sagemaker DescribeWorkteam and DescribeFeatureGroup; s3 GetObject, HeadObject, ListObjectsV2,
GetBucketVersioning and GetBucketNotificationConfiguration.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import boto3
from botocore.exceptions import ClientError
from pydantic import ValidationError

from labelflow import aws
from labelflow.datasets import load_dataset_spec
from labelflow.errors import ConfigError, ManifestError, RetryableAwsError
from labelflow.feature_groups import CREATING, UNUSABLE, describe, differences
from labelflow.layout import (
    CONFIG_DATASETS_PREFIX,
    DATASET_NAME_MAX,
    DATASET_NAME_PATTERN,
    PROCESSING_CODE_POINTER,
    feature_group_name,
)
from labelflow.models.artifacts import ProcessingCode
from labelflow.models.labelstudio import LabelStudioSecret
from labelflow.models.spec import DatasetSpec
from labelflow.s3 import S3Location, exists, get_json
from labelflow_local.processing_env import image_pins

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient

# Stack states whose resources are in place (AWS CloudFormation User Guide, "Stack status codes"):
# ROLLBACK_COMPLETE and DELETE_COMPLETE are *_COMPLETE too, but their resources are gone.
USABLE_STATES: Final = frozenset(
    {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE", "IMPORT_ROLLBACK_COMPLETE"}
)
# What template.yaml's Outputs and Parameters give the doctor.
OUTPUTS: Final = ("DataBucketName", "StateMachineArn", "SageMakerExecutionRoleArn", "FeatureGroupPrefix")
PARAMETERS: Final = ("ProcessingImageUri",)
# template.yaml's defaults, for a stack deployed before these parameters existed.
DEFAULT_REVIEW_BACKEND: Final = "groundtruth"
DEFAULT_LABEL_STUDIO_SECRET: Final = "labelflow/labelstudio"
# DescribeStacks answers ValidationError for a stack that does not exist (CloudFormation API Reference).
NO_STACK: Final = "ValidationError"
_ARN = re.compile(r"^arn:(?P<partition>aws[a-z-]*):(?P<service>[a-z]+):(?P<region>[a-z0-9-]*):(?P<account>\d{12}):")
_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?/"
    r"(?P<repository>[a-z0-9._/-]+)(:(?P<tag>[A-Za-z0-9._-]+)|@sha256:[a-f0-9]{64})$"
)
_DATASET = re.compile(DATASET_NAME_PATTERN)
# The accounts AWS publishes the scikit-learn image from, per Region: aws/sagemaker-python-sdk,
# sagemaker-core/src/sagemaker/core/image_uri_config/sklearn.json (commit 4f14efba, 2026-07-09), version
# 1.4-2-py312 (the same registries as every other version there).
SKLEARN_REGISTRIES: Final = {
    "af-south-1": "510948584623",
    "ap-east-1": "651117190479",
    "ap-northeast-1": "354813040037",
    "ap-northeast-2": "366743142698",
    "ap-northeast-3": "867004704886",
    "ap-south-1": "720646828776",
    "ap-south-2": "628508329040",
    "ap-southeast-1": "121021644041",
    "ap-southeast-2": "783357654285",
    "ap-southeast-3": "951798379941",
    "ap-southeast-4": "106583098589",
    "ca-central-1": "341280168497",
    "ca-west-1": "190319476487",
    "cn-north-1": "450853457545",
    "cn-northwest-1": "451049120500",
    "eu-central-1": "492215442770",
    "eu-central-2": "680994064768",
    "eu-north-1": "662702820516",
    "eu-south-1": "978288397137",
    "eu-south-2": "104374241257",
    "eu-west-1": "141502667606",
    "eu-west-2": "764974769150",
    "eu-west-3": "659782779980",
    "il-central-1": "898809789911",
    "me-central-1": "272398656194",
    "me-south-1": "801668240914",
    "sa-east-1": "737474898029",
    "us-east-1": "683313688378",
    "us-east-2": "257758044811",
    "us-gov-east-1": "237065988967",
    "us-gov-west-1": "414596584902",
    "us-west-1": "746614075791",
    "us-west-2": "246618743249",
}


class Check(NamedTuple):
    """One line of the report: what was checked, whether it passed, and what was found (or what to do)."""

    subject: str
    ok: bool
    text: str

    def line(self) -> str:
        return f"{'ok' if self.ok else 'problem'}: {self.subject}: {self.text}"


class Clients(NamedTuple):
    cloudformation: Any
    s3: S3Client
    sagemaker: SageMakerClient
    secretsmanager: Any = None


@dataclass(frozen=True)
class Stack:
    """What DescribeStacks says about the stack: where it is, its state, its Outputs and Parameters."""

    name: str
    region: str
    account: str
    status: str
    outputs: dict[str, str]
    parameters: dict[str, str]

    @classmethod
    def from_described(cls, described: dict[str, Any]) -> Stack:
        arn = _ARN.match(described["StackId"])
        if arn is None:
            raise ValueError(f"unexpected stack id {described['StackId']}")
        return cls(
            name=described["StackName"],
            region=arn["region"],
            account=arn["account"],
            status=described["StackStatus"],
            outputs={o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", []) if "OutputKey" in o},
            parameters={
                p["ParameterKey"]: p.get("ResolvedValue", p.get("ParameterValue", ""))
                for p in described.get("Parameters", [])
                if "ParameterKey" in p
            },
        )


def default_clients(region: str | None = None) -> Clients:
    """The layer's retrying clients, in `region` or the configured one."""
    if region:
        boto3.setup_default_session(region_name=region)
        aws.reset_clients()
    return Clients(aws.cloudformation(), aws.s3(), aws.sagemaker(), aws.secretsmanager())


def _problem_from(subject: str, exc: ClientError) -> Check:
    message = exc.response.get("Error", {}).get("Message", "")
    return Check(subject, False, f"{aws.error_code(exc) or 'error'}: {message}")


def read_stack(cloudformation: Any, name: str) -> Stack | Check:
    """The stack, or the problem line saying why it cannot be read."""
    try:
        described = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as exc:
        if aws.error_code(exc) == NO_STACK:
            region = cloudformation.meta.region_name
            return Check(f"stack {name}", False, f"no such stack in {region}: pass --stack NAME or --region R")
        return _problem_from(f"stack {name}", exc)
    return Stack.from_described(described)


def check_stack(stack: Stack) -> Check:
    subject = f"stack {stack.name}"
    where = f"in {stack.region}, account {stack.account}"
    if stack.status.endswith("_IN_PROGRESS"):
        return Check(subject, False, f"{stack.status} {where}: wait until it is done, then run the doctor again")
    if stack.status not in USABLE_STATES:
        events = f"aws cloudformation describe-stack-events --stack-name {stack.name}"
        return Check(subject, False, f"{stack.status} {where}: see why ({events}), fix it and deploy again")
    missing = [f"output {k}" for k in OUTPUTS if not stack.outputs.get(k)]
    missing += [f"parameter {k}" for k in PARAMETERS if not stack.parameters.get(k)]
    if missing:
        return Check(subject, False, f"lacks {', '.join(missing)}: deploy this checkout's template.yaml (sam deploy)")
    return Check(subject, True, f"{stack.status} {where}")


def check_workteam(sagemaker: SageMakerClient, stack: Stack) -> Check:
    """The work team the labeling step names exists and this account can describe it, in the stack's Region."""
    arn = stack.parameters.get("WorkteamArn", "")
    subject = f"work team {arn or '(none)'}"
    parsed = _ARN.match(arn)
    if parsed is None or parsed["service"] != "sagemaker" or ":workteam/" not in arn:
        return Check(
            subject, False, "not a work team ARN: redeploy with WorkteamArn=arn:aws:sagemaker:...:workteam/..."
        )
    # A labeling job is created in the stack's Region and account; DescribeWorkteam looks the name up there.
    if (parsed["region"], parsed["account"]) != (stack.region, stack.account):
        return Check(
            subject,
            False,
            f"in {parsed['region']}, account {parsed['account']}, but the stack is in {stack.region}, account "
            f"{stack.account}: labelflow's labeling jobs need a private work team of the stack's account and Region "
            "(sam deploy --parameter-overrides WorkteamArn=...)",
        )
    name = arn.rsplit("/", 1)[1]
    try:
        described = sagemaker.describe_workteam(WorkteamName=name)["Workteam"]
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        return Check(subject, False, f"DescribeWorkteam {name}: {aws.error_code(exc)}: {message}")
    if described["WorkteamArn"] != arn:
        return Check(subject, False, f"DescribeWorkteam {name} answers {described['WorkteamArn']}: fix WorkteamArn")
    return Check(subject, True, f"reachable ({len(described['MemberDefinitions'])} member definition(s))")


def check_label_studio_secret(secretsmanager: Any, stack: Stack) -> Check:
    """The secret the Label Studio functions read exists and holds {url, token[, webhook_secret]}."""
    name = stack.parameters.get("LabelStudioSecretName") or DEFAULT_LABEL_STUDIO_SECRET
    subject = f"Label Studio secret {name}"
    try:
        value = secretsmanager.get_secret_value(SecretId=name)["SecretString"]
    except ClientError as exc:
        create = f'aws secretsmanager create-secret --name {name} --secret-string \'{{"url": ..., "token": ...}}\''
        return Check(subject, False, f"GetSecretValue: {aws.error_code(exc)}: create it ({create})")
    try:
        secret = LabelStudioSecret.model_validate_json(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "the value"
        return Check(subject, False, f"{where}: {error['msg']}; it must be JSON {{url, token[, webhook_secret]}}")
    webhook = "with" if secret.webhook_secret else "without"
    return Check(subject, True, f"names {secret.url}, {webhook} a webhook secret")


def check_processing_code(s3: S3Client, bucket: str) -> Check:
    """The pointer PlanProcessing reads exists, parses, points into this bucket, and every file it lists exists."""
    subject = f"processing code s3://{bucket}/{PROCESSING_CODE_POINTER}"
    publish = f"run `labelflow publish --bucket {bucket}`"
    try:
        code = ProcessingCode.model_validate(get_json(s3, bucket, PROCESSING_CODE_POINTER))
    except ManifestError:
        return Check(subject, False, f"not published: {publish}")
    except ValidationError as exc:
        return Check(subject, False, f"malformed ({exc.error_count()} errors): {publish}")
    prefix = S3Location.parse(code.s3_prefix)
    if prefix.bucket != bucket:
        return Check(subject, False, f"points at {code.s3_prefix}, outside the data bucket: {publish}")
    missing = [name for name in sorted({code.entrypoint, *code.files}) if not exists(s3, bucket, prefix.key + name)]
    if missing:
        return Check(subject, False, f"{code.s3_prefix} lacks {', '.join(missing)}: {publish}")
    return Check(subject, True, f"sha256 {code.sha256[:12]}, {len(code.files)} file(s) under {code.s3_prefix}")


def check_image(uri: str, region: str) -> Check:
    """The image's registry is in the stack's Region; for AWS's scikit-learn image, its account and pinned tag."""
    subject = f"processing image {uri}"
    image = _IMAGE.match(uri)
    if image is None:
        return Check(subject, False, "not an ECR image URI <account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>")
    pins = image_pins()
    wanted = (
        f"{SKLEARN_REGISTRIES.get(region, '<account>')}.dkr.ecr.{region}.amazonaws.com/{pins.repository}:{pins.tag}"
    )
    if image["region"] != region:
        return Check(subject, False, f"its registry is in {image['region']}, the stack in {region}: use {wanted}")
    if image["repository"] != pins.repository:
        return Check(subject, True, f"a custom image in {region}: checked its form and Region only")
    if region not in SKLEARN_REGISTRIES:
        return Check(subject, True, f"no known scikit-learn registry for {region}: checked its form and Region only")
    if image["account"] != SKLEARN_REGISTRIES[region]:
        return Check(subject, False, f"AWS publishes {pins.repository} in {region} from another account: use {wanted}")
    if image["tag"] != pins.tag:
        return Check(subject, False, f"the processing code runs on {pins.tag} (processing/image.json): use {wanted}")
    return Check(subject, True, f"AWS's {pins.repository} image for {region}")


def check_versioning(s3: S3Client, bucket: str) -> Check:
    """Runs read exact object versions, and the run id is derived from the version."""
    status = s3.get_bucket_versioning(Bucket=bucket).get("Status", "never enabled")
    if status != "Enabled":
        return Check(
            f"bucket {bucket} versioning",
            False,
            f"{status}: aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled",
        )
    return Check(f"bucket {bucket} versioning", True, "Enabled")


def check_notifications(s3: S3Client, bucket: str) -> Check:
    """The trigger is an EventBridge rule: the bucket must send its events to EventBridge.

    GetBucketNotificationConfiguration returns the (memberless) EventBridgeConfiguration only when delivery to
    EventBridge is on (botocore's s3 model, NotificationConfiguration).
    """
    config = s3.get_bucket_notification_configuration(Bucket=bucket)
    if "EventBridgeConfiguration" not in config:
        return Check(
            f"bucket {bucket} notifications",
            False,
            "EventBridge delivery is off, so uploads start no run: redeploy the stack (the template turns it on) or "
            "turn on Amazon EventBridge in the bucket's event notification properties",
        )
    return Check(f"bucket {bucket} notifications", True, "EventBridge delivery on")


def dataset_names(s3: S3Client, bucket: str) -> list[str]:
    """Datasets with a spec under config/datasets/ (`<dataset>.json`, as planning reads them)."""
    names = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=CONFIG_DATASETS_PREFIX):
        for item in page.get("Contents", []):
            name = item["Key"][len(CONFIG_DATASETS_PREFIX) :]
            if name.endswith(".json") and "/" not in name:
                names.append(name.removesuffix(".json"))
    return sorted(names)


def check_feature_group(sagemaker: SageMakerClient, group: str, spec: DatasetSpec) -> Check:
    """The dataset's group does not exist yet (its first run creates it), or it is usable and matches the spec."""
    subject = f"dataset {spec.dataset} feature group {group}"
    described = describe(sagemaker, group)
    if described is None:
        return Check(subject, True, "does not exist yet: the dataset's first run creates it from the spec")
    status = described.get("FeatureGroupStatus")
    if status in UNUSABLE:
        reason = described.get("FailureReason") or "no reason given"
        return Check(subject, False, f"{status} ({reason}): delete it so that the next run creates it again")
    problems = differences(described, spec)
    if problems:
        return Check(subject, False, f"does not match the spec: {problems} (restore the spec, or delete the group)")
    return Check(subject, True, "being created, matches the spec" if status == CREATING else "matches the spec")


def check_model(s3: S3Client, spec: DatasetSpec) -> Check | None:
    """The model a spec names is where it says (planning refuses to run otherwise)."""
    if spec.model is None:
        return None
    subject = f"dataset {spec.dataset} model {spec.model.s3_uri}"
    location = S3Location.parse(spec.model.s3_uri)
    if not exists(s3, location.bucket, location.key):
        return Check(subject, False, f"missing: aws s3 cp MODEL_FILE {spec.model.s3_uri}")
    return Check(subject, True, "present")


def _dataset_checks(clients: Clients, bucket: str, prefix: str, name: str) -> list[Check]:
    """The lines of one dataset: its spec, its model (if it names one) and its feature group."""
    subject = f"dataset spec s3://{bucket}/{CONFIG_DATASETS_PREFIX}{name}.json"
    if len(name) > DATASET_NAME_MAX or not _DATASET.match(name):
        return [Check(subject, False, "not a dataset name: lowercase letters, digits, single hyphens, at most 63")]
    try:
        spec, _ = load_dataset_spec(clients.s3, bucket, name)
    except ConfigError as exc:
        return [Check(subject, False, f"{exc}: fix it (labelflow validate SPEC)")]
    model = check_model(clients.s3, spec)
    group = check_feature_group(clients.sagemaker, feature_group_name(prefix, name), spec)
    return [group] if model is None else [model, group]


def check_datasets(clients: Clients, bucket: str, prefix: str) -> list[Check]:
    """One line per dataset spec (and its model); a problem when there is no spec at all."""
    names = dataset_names(clients.s3, bucket)
    if not names:
        return [
            Check(
                f"dataset specs s3://{bucket}/{CONFIG_DATASETS_PREFIX}",
                False,
                f"none: upload {CONFIG_DATASETS_PREFIX}<dataset>.json before the dataset's first file",
            )
        ]
    checks: list[Check] = []
    for name in names:
        checks += _guarded(f"dataset {name}", partial(_dataset_checks, clients, bucket, prefix, name))
    return checks


def _guarded(subject: str, check: Callable[[], Check | list[Check]]) -> list[Check]:
    """A check whose AWS call failed (access denied, throttled after retries) is a problem line, not a crash."""
    try:
        result = check()
    except ClientError as exc:
        return [_problem_from(subject, exc)]
    except RetryableAwsError as exc:
        return [Check(subject, False, f"{exc}: try again later")]
    return result if isinstance(result, list) else [result]


def diagnose(stack_name: str, clients: Clients) -> list[Check]:
    """Every check, in order; only the stack's line when the stack cannot be used."""
    stack = read_stack(clients.cloudformation, stack_name)
    if isinstance(stack, Check):
        return [stack]
    checks = [check_stack(stack)]
    if not checks[0].ok:
        return checks
    bucket = stack.outputs["DataBucketName"]
    prefix = stack.outputs["FeatureGroupPrefix"]
    # Ground Truth needs its work team; a Label Studio deployment may still name one for datasets choosing it.
    review: list[tuple[str, Callable[[], Check | list[Check]]]] = []
    if stack.parameters.get("WorkteamArn") or stack.parameters.get("ReviewBackend", "") in ("", DEFAULT_REVIEW_BACKEND):
        review.append(("work team", partial(check_workteam, clients.sagemaker, stack)))
    if stack.parameters.get("ReviewBackend") == "labelstudio":
        review.append(("Label Studio secret", partial(check_label_studio_secret, clients.secretsmanager, stack)))
    steps: list[tuple[str, Callable[[], Check | list[Check]]]] = [
        *review,
        ("processing code", partial(check_processing_code, clients.s3, bucket)),
        ("processing image", partial(check_image, stack.parameters["ProcessingImageUri"], stack.region)),
        (f"bucket {bucket} versioning", partial(check_versioning, clients.s3, bucket)),
        (f"bucket {bucket} notifications", partial(check_notifications, clients.s3, bucket)),
        (f"dataset specs s3://{bucket}/{CONFIG_DATASETS_PREFIX}", partial(check_datasets, clients, bucket, prefix)),
    ]
    for subject, check in steps:
        checks += _guarded(subject, check)
    return checks


def report(checks: list[Check]) -> str:
    return "\n".join(check.line() for check in checks)
