"""Least privilege, proven offline: record each principal's AWS calls in local runs, check them against the template.

Calls come from two places:
- recorded: every botocore call a Lambda handler makes (its principal is set by FunctionRegistry.invoke; worker
  threads inherit it), mapped from the API operation to the IAM action and resource ARN it is authorized as
  (the Service Authorization Reference; cfn-lint ships a copy: cfnlint/data/AdditionalSpecs/Policies.json);
- derived: the calls AWS makes with a role on our behalf, which no local code makes: the state machine role's
  (from the execution history), the SageMaker execution role's (from each job request) and the offline store's
  (from the Parquet files the local feature store wrote). JOB_ROLE_CALLS documents that mapping.

Policies come from template.yaml as deployed: samtranslator expands SAM's policy templates, then the intrinsics
are resolved with local-mode names.
"""

from __future__ import annotations

import contextvars
import json
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

import boto3
import botocore.handlers
from botocore.model import OperationModel

from labelflow.s3 import S3Location
from labelflow_local.emr import LOCAL_APPLICATION_ID

_principal: contextvars.ContextVar[str | None] = contextvars.ContextVar("labelflow_iam_principal", default=None)


@contextmanager
def acting_as(principal: str) -> Iterator[None]:
    """AWS calls made in this block (and by worker threads it submits to) are `principal`'s."""
    token = _principal.set(principal)
    try:
        yield
    finally:
        _principal.reset(token)


@dataclass(frozen=True, order=True)
class Call:
    """One authorization: the principal, the IAM action, the resource ARN, and the request context keys it carries."""

    principal: str
    action: str
    resource: str
    origin: str = ""
    context: tuple[tuple[str, str], ...] = ()


# ------------------------------------------------------------------------------------------- operation → action


def _s3_object(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def _s3_actions(operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """S3 operations and the actions they are authorized as (Service Authorization Reference, Amazon S3)."""
    bucket = str(params.get("Bucket", ""))
    key = str(params.get("Key", ""))
    versioned = "VersionId" in params
    if operation in ("GetObject", "HeadObject"):
        return [("s3:GetObjectVersion" if versioned else "s3:GetObject", _s3_object(bucket, key))]
    if operation in ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"):
        return [("s3:PutObject", _s3_object(bucket, key))]
    if operation == "AbortMultipartUpload":
        return [("s3:AbortMultipartUpload", _s3_object(bucket, key))]
    if operation in ("ListObjectsV2", "ListObjects"):
        return [("s3:ListBucket", f"arn:aws:s3:::{bucket}")]
    if operation == "ListObjectVersions":
        return [("s3:ListBucketVersions", f"arn:aws:s3:::{bucket}")]
    if operation in ("DeleteObject",):
        return [("s3:DeleteObjectVersion" if versioned else "s3:DeleteObject", _s3_object(bucket, key))]
    if operation in ("CopyObject", "UploadPartCopy"):
        # UploadPartCopy reads the source and writes a part of the destination, like CopyObject (botocore's s3
        # model, UploadPartCopy "Permissions").
        source = params["CopySource"]
        if isinstance(source, str):
            path, _, query = unquote(source).lstrip("/").partition("?versionId=")
            source_bucket, _, source_key = path.partition("/")
            source_versioned = bool(query)
        else:
            source_bucket, source_key = source["Bucket"], source["Key"]
            source_versioned = "VersionId" in source
        read = "s3:GetObjectVersion" if source_versioned else "s3:GetObject"
        return [(read, _s3_object(source_bucket, source_key)), ("s3:PutObject", _s3_object(bucket, key))]
    raise KeyError(f"no IAM mapping for S3 {operation}: add it to labelflow_local.iam")


def _feature_group(region: str, account: str, name: str) -> str:
    # SageMaker resource ARNs carry the resource name in lower case.
    return f"arn:aws:sagemaker:{region}:{account}:feature-group/{name.lower()}"


@dataclass(frozen=True)
class Local:
    """The local names a deployment would have: account, Region and the ARNs of the template's resources."""

    account: str
    region: str
    stack: str
    bucket: str
    state_machine_arn: str
    function_arns: dict[str, str]  # logical id → ARN
    role_arns: dict[str, str]  # logical id → ARN (the template's roles and SAM's <Function>Role)


def operation_actions(
    region: str, account: str, service: str, operation: str, params: dict[str, Any]
) -> list[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """(action, resource, context) for each authorization one API call needs."""
    if service == "s3":
        return [(action, resource, ()) for action, resource in _s3_actions(operation, params)]
    if service == "sfn" and operation == "StartExecution":
        return [("states:StartExecution", str(params["stateMachineArn"]), ())]
    if service == "sfn" and operation in ("SendTaskSuccess", "SendTaskHeartbeat", "SendTaskFailure"):
        # No resource types (Service Authorization Reference, AWS Step Functions): authorized on "*" alone.
        return [(f"states:{operation}", "*", ())]
    if service == "secrets-manager" and operation == "GetSecretValue":
        # A secret's ARN is its name, a hyphen and six random characters (Secrets Manager user guide, "Secret ARN").
        secret = str(params["SecretId"])
        arn = (
            secret if secret.startswith("arn:") else f"arn:aws:secretsmanager:{region}:{account}:secret:{secret}-Ab12Cd"
        )
        return [("secretsmanager:GetSecretValue", arn, ())]
    if service == "eventbridge" and operation == "PutEvents":
        buses = {str(entry.get("EventBusName", "default")) for entry in params.get("Entries", [])}
        return [
            (
                "events:PutEvents",
                bus if bus.startswith("arn:") else f"arn:aws:events:{region}:{account}:event-bus/{bus}",
                (),
            )
            for bus in sorted(buses)
        ]
    if service in ("sagemaker", "sagemaker-featurestore-runtime") and "FeatureGroupName" in params:
        # Feature Store runtime calls are authorized as sagemaker:<Operation> on the feature group.
        group = _feature_group(region, account, params["FeatureGroupName"])
        calls: list[tuple[str, str, tuple[tuple[str, str], ...]]] = [(f"sagemaker:{operation}", group, ())]
        if operation == "CreateFeatureGroup" and "RoleArn" in params:
            calls.append(
                ("iam:PassRole", str(params["RoleArn"]), (("iam:PassedToService", "sagemaker.amazonaws.com"),))
            )
        return calls
    raise KeyError(f"no IAM mapping for {service} {operation}: add it to labelflow_local.iam")


# ------------------------------------------------------------------------------------------------- recorder


class CallRecorder:
    """Collects the calls each principal makes while `recording()` is active."""

    def __init__(self, region: str, account: str) -> None:
        self.region = region
        self.account = account
        self.calls: set[Call] = set()
        self._lock = threading.Lock()

    def add(self, call: Call) -> None:
        with self._lock:
            self.calls.add(call)

    def _before_parameter_build(self, params: dict[str, Any], model: OperationModel, **_: Any) -> None:
        principal = _principal.get()
        if principal is None:
            return  # the local runtime's own calls (stand-ins, the CLI): not a deployed principal's
        service = model.service_model.service_id.hyphenize()
        origin = f"{model.service_model.service_id}.{model.name}"
        for action, resource, context in operation_actions(self.region, self.account, service, model.name, params):
            self.add(Call(principal, action, resource, origin, context))

    def _after_call(self, http_response: Any, model: OperationModel, params: dict[str, Any], **_: Any) -> None:
        # A GET or HEAD of a missing key answers 404 only with s3:ListBucket on the bucket, 403 without it
        # (Amazon S3 API reference, HeadObject and GetObject "Permissions").
        principal = _principal.get()
        missing = getattr(http_response, "status_code", None) == 404
        if principal and missing and model.service_model.service_id == "S3" and "Key" in params:
            self.add(Call(principal, "s3:ListBucket", f"arn:aws:s3:::{params['Bucket']}", f"S3.{model.name} (404)"))

    def _remember(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["labelflow_iam_params"] = dict(params)

    def for_principal(self, principal: str) -> list[Call]:
        return sorted(call for call in self.calls if call.principal == principal)


def _with_params(handler: Callable[..., None]) -> Callable[..., None]:
    """after-call carries no request parameters: read the ones before-parameter-build left in the context."""

    def wrapped(context: dict[str, Any], **kwargs: Any) -> None:
        handler(params=context.get("labelflow_iam_params", {}), **kwargs)

    return wrapped


@contextmanager
def recording(recorder: CallRecorder) -> Iterator[CallRecorder]:
    """Record every botocore call made by a client created inside this block, attributed to its principal.

    The hook joins botocore's built-in handlers, which every new session registers (moto's mock_aws hooks in
    the same way); pool threads run in the submitter's context, so a handler's worker threads keep its principal.
    """
    handlers = [
        ("before-parameter-build", recorder._before_parameter_build),
        ("before-parameter-build.s3", recorder._remember),
        ("after-call.s3", _with_params(recorder._after_call)),
    ]
    submit = ThreadPoolExecutor.submit

    def submit_in_context(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return submit(self, contextvars.copy_context().run, fn, *args, **kwargs)

    botocore.handlers.BUILTIN_HANDLERS.extend(handlers)
    ThreadPoolExecutor.submit = submit_in_context  # type: ignore[method-assign, assignment]
    try:
        yield recorder
    finally:
        ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]
        for handler in handlers:
            botocore.handlers.BUILTIN_HANDLERS.remove(handler)


# --------------------------------------------------------------------------------------- derived job calls

STATE_MACHINE: Final = "LabelingStateMachine"
SAGEMAKER_ROLE: Final = "SageMakerExecutionRole"
SPARK_ROLE: Final = "SparkJobRole"
FEATURE_STORE_ROLE: Final = "FeatureStoreRole"

# How a request member becomes the calls AWS makes with a role on our behalf (documented mapping):
JOB_ROLE_CALLS: Final = {
    "Task state, Lambda function ARN": "state machine role: lambda:InvokeFunction on the function ARN",
    "Task createProcessingJob.sync / createLabelingJob.sync": (
        "state machine role: sagemaker:Create*Job and, polling, sagemaker:Describe*Job on the job ARN; "
        "sagemaker:AddTags (the .sync integration tags the job it starts, aws-cdk#26012); iam:PassRole of RoleArn "
        "(iam:PassedToService sagemaker.amazonaws.com); events:PutTargets/PutRule/DescribeRule on the managed rule "
        "StepFunctionsGetEventsForSageMaker<Processing|Labeling>JobsRule (Step Functions developer guide, IAM "
        "policies for SageMaker AI)"
    ),
    "ProcessingInputs[].S3Input.S3Uri": "job role: s3:ListBucket on the bucket, s3:GetObject on each object under it",
    "ProcessingOutputConfig.Outputs[].S3Output.S3Uri": "job role: s3:PutObject on each object written under it",
    "AppSpecification.ImageUri": (
        "job role: ecr:GetAuthorizationToken (*), ecr:BatchCheckLayerAvailability, ecr:GetDownloadUrlForLayer, "
        "ecr:BatchGetImage on the image's repository"
    ),
    "ProcessingJobName / LabelingJobName": (
        "job role: logs:CreateLogGroup, logs:DescribeLogStreams, logs:CreateLogStream, logs:PutLogEvents on "
        "/aws/sagemaker/<ProcessingJobs|LabelingJobs>; "
        "cloudwatch:PutMetricData (*) (SageMaker developer guide, CreateProcessingJob/CreateLabelingJob execution "
        "role permissions)"
    ),
    "InputConfig...ManifestS3Uri, LabelCategoryConfigS3Uri, HumanTaskConfig.UiConfig.UiTemplateS3Uri": (
        "job role: s3:GetObject on each"
    ),
    "OutputConfig.S3OutputPath": "job role: s3:PutObject on each object written under <path>/<job name>/",
    "HumanTaskConfig.PreHumanTaskLambdaArn, ...AnnotationConsolidationLambdaArn": (
        "job role: lambda:InvokeFunction on each"
    ),
    "Task emr-serverless:startJobRun.sync": (
        "state machine role: emr-serverless:StartJobRun on the application, emr-serverless:GetJobRun (polling) on "
        "the job run; iam:PassRole of ExecutionRoleArn (iam:PassedToService emr-serverless.amazonaws.com); "
        "events:PutTargets/PutRule/DescribeRule on StepFunctionsGetEventsForEMRServerlessJobRule (Step Functions "
        "developer guide, IAM policies for Amazon EMR Serverless)"
    ),
    "JobDriver.SparkSubmit (EntryPoint, spark.submit.pyFiles, s3: EntryPointArguments)": (
        "Spark job role: s3:GetObject on the entry point, the py-files and each object under an input argument, "
        "s3:ListBucket on their buckets; under --output s3:PutObject on each object written and, for the files "
        "Spark writes as part folders (records.jsonl, rejected.jsonl), s3:PutObject, s3:GetObject and "
        "s3:DeleteObject on <file>.parts/part-00000 (labelflow_processing.spark.files.write_text)"
    ),
    "ConfigurationOverrides.MonitoringConfiguration.S3MonitoringConfiguration.LogUri": (
        "Spark job role: s3:PutObject under <log URI>/applications/<application>/jobs/<job run>/ (EMR Serverless "
        "user guide, 'Storing logs')"
    ),
    "CreateFeatureGroup OfflineStoreConfig + PutRecord": (
        "feature store role: s3:GetBucketAcl on the bucket, s3:PutObject and s3:PutObjectAcl on each offline-store "
        "file (the AmazonSageMakerFeatureStoreAccess managed policy lists these)"
    ),
}


def _list_keys(s3: Any, uri: str) -> list[str]:
    location = S3Location.parse(uri)
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=location.key):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def _s3_uri_arn(uri: str) -> str:
    location = S3Location.parse(uri)
    return _s3_object(location.bucket, location.key)


def _job_common(local: Local, kind: str, name: str) -> list[tuple[str, str]]:
    group = f"arn:aws:logs:{local.region}:{local.account}:log-group:/aws/sagemaker/{kind}"
    return [
        ("logs:CreateLogGroup", group),
        ("logs:DescribeLogStreams", group),
        ("logs:CreateLogStream", f"{group}:log-stream:{name}/algo-1"),
        ("logs:PutLogEvents", f"{group}:log-stream:{name}/algo-1"),
        ("cloudwatch:PutMetricData", "*"),
    ]


def processing_job_calls(local: Local, s3: Any, request: dict[str, Any]) -> list[tuple[str, str]]:
    """The calls a Processing job makes with its role, from its CreateProcessingJob request."""
    calls: list[tuple[str, str]] = []
    for item in request.get("ProcessingInputs", []):
        if "S3Input" in item:
            uri = item["S3Input"]["S3Uri"]
            bucket = S3Location.parse(uri).bucket
            calls.append(("s3:ListBucket", f"arn:aws:s3:::{bucket}"))
            calls += [("s3:GetObject", _s3_object(bucket, key)) for key in _list_keys(s3, uri)]
    for output in request.get("ProcessingOutputConfig", {}).get("Outputs", []):
        uri = output["S3Output"]["S3Uri"]
        bucket = S3Location.parse(uri).bucket
        calls += [("s3:PutObject", _s3_object(bucket, key)) for key in _list_keys(s3, uri)]
    image = request["AppSpecification"]["ImageUri"]
    registry, _, repository = image.partition("/")
    image_account, _, _, image_region = registry.split(".")[:4]
    repository_arn = f"arn:aws:ecr:{image_region}:{image_account}:repository/{re.split('[:@]', repository)[0]}"
    calls.append(("ecr:GetAuthorizationToken", "*"))
    calls += [
        (action, repository_arn)
        for action in ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage")
    ]
    return calls + _job_common(local, "ProcessingJobs", request["ProcessingJobName"])


def labeling_job_calls(local: Local, s3: Any, request: dict[str, Any]) -> list[tuple[str, str]]:
    """The calls a Ground Truth labeling job makes with its role, from its CreateLabelingJob request."""
    task = request["HumanTaskConfig"]
    reads = [
        request["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"],
        request["LabelCategoryConfigS3Uri"],
        task["UiConfig"]["UiTemplateS3Uri"],
    ]
    calls = [("s3:GetObject", _s3_uri_arn(uri)) for uri in reads]
    output = request["OutputConfig"]["S3OutputPath"].rstrip("/") + f"/{request['LabelingJobName']}/"
    bucket = S3Location.parse(output).bucket
    calls += [("s3:PutObject", _s3_object(bucket, key)) for key in _list_keys(s3, output)]
    lambdas = [task["PreHumanTaskLambdaArn"], task["AnnotationConsolidationConfig"]["AnnotationConsolidationLambdaArn"]]
    calls += [("lambda:InvokeFunction", arn) for arn in lambdas]
    return calls + _job_common(local, "LabelingJobs", request["LabelingJobName"])


_SYNC_JOBS: Final = {
    "createProcessingJob.sync": ("ProcessingJob", "processing-job", "ProcessingJobName"),
    "createLabelingJob.sync": ("LabelingJob", "labeling-job", "LabelingJobName"),
}


_SPARK_PART_FOLDERS: Final = ("records.jsonl", "rejected.jsonl")


def _spark_arguments(arguments: list[str]) -> tuple[list[str], str | None]:
    """(the s3: URIs the job reads, the --output URI) of spark_job.py's arguments."""
    reads, output = [], None
    for index, argument in enumerate(arguments):
        if argument.startswith("s3://"):
            if index and arguments[index - 1] == "--output":
                output = argument
            else:
                reads.append(argument)
    return reads, output


def spark_job_calls(s3: Any, request: dict[str, Any], run_id: str) -> list[tuple[str, str]]:
    """The calls a Spark job run makes with its runtime role, from its StartJobRun request (Step Functions-cased)."""
    submit = request["JobDriver"]["SparkSubmit"]
    reads, output = _spark_arguments(submit.get("EntryPointArguments", []))
    py_files = re.findall(r"spark\.submit\.pyFiles=(\S+)", submit.get("SparkSubmitParameters", ""))
    objects = [submit["EntryPoint"], *(uri for files in py_files for uri in files.split(","))]
    calls: list[tuple[str, str]] = []
    for uri in reads:
        keys = _list_keys(s3, uri) if uri.endswith("/") else [S3Location.parse(uri).key]
        bucket = S3Location.parse(uri).bucket
        calls.append(("s3:ListBucket", f"arn:aws:s3:::{bucket}"))
        calls += [("s3:GetObject", _s3_object(bucket, key)) for key in keys]
    calls += [("s3:GetObject", _s3_uri_arn(uri)) for uri in objects]
    if output is not None:
        bucket = S3Location.parse(output).bucket
        written = _list_keys(s3, output)
        calls += [("s3:PutObject", _s3_object(bucket, key)) for key in written]
        for name in _SPARK_PART_FOLDERS:
            part = _s3_uri_arn(f"{output.rstrip('/')}/{name}.parts/part-00000")
            # Written as a part folder, read back to be merged into one file, then deleted.
            calls += [("s3:PutObject", part), ("s3:GetObject", part), ("s3:DeleteObject", part)]
    logs = request.get("ConfigurationOverrides", {}).get("MonitoringConfiguration", {})
    if log_uri := logs.get("S3MonitoringConfiguration", {}).get("LogUri"):
        job = f"applications/{request['ApplicationId']}/jobs/{run_id}"
        calls.append(("s3:PutObject", _s3_uri_arn(f"{log_uri.rstrip('/')}/{job}/SPARK_DRIVER/stdout.gz")))
    return calls


def _spark_task_calls(recorder: CallRecorder, local: Local, s3: Any, request: dict[str, Any], run_id: str) -> None:
    origin = "Task emr-serverless:startJobRun.sync"
    application = f"arn:aws:emr-serverless:{local.region}:{local.account}:/applications/{request['ApplicationId']}"
    recorder.add(Call(STATE_MACHINE, "emr-serverless:StartJobRun", application, origin))
    recorder.add(Call(STATE_MACHINE, "emr-serverless:GetJobRun", f"{application}/jobruns/{run_id}", origin))
    passed = (("iam:PassedToService", "emr-serverless.amazonaws.com"),)
    recorder.add(Call(STATE_MACHINE, "iam:PassRole", request["ExecutionRoleArn"], origin, passed))
    rule = f"arn:aws:events:{local.region}:{local.account}:rule/StepFunctionsGetEventsForEMRServerlessJobRule"
    for action in ("events:PutTargets", "events:PutRule", "events:DescribeRule"):
        recorder.add(Call(STATE_MACHINE, action, rule, origin))
    for action, resource in spark_job_calls(s3, request, run_id):
        recorder.add(Call(SPARK_ROLE, action, resource, "StartJobRun request"))


def state_machine_calls(recorder: CallRecorder, local: Local, s3: Any, history: list[dict[str, Any]]) -> None:
    """Derive the state machine role's calls, and its jobs' role calls, from an execution's history."""
    spark_request: dict[str, Any] | None = None
    for event in history:
        scheduled = event.get("taskScheduledEventDetails") or {}
        if scheduled.get("resourceType") == "emr-serverless" and scheduled.get("resource") == "startJobRun.sync":
            spark_request = json.loads(scheduled["parameters"])
        submitted = event.get("taskSubmittedEventDetails") or {}
        if spark_request is not None and submitted.get("resourceType") == "emr-serverless":
            run_id = json.loads(submitted["output"])["JobRunId"]
            _spark_task_calls(recorder, local, s3, spark_request, run_id)
            spark_request = None
        if details := event.get("lambdaFunctionScheduledEventDetails"):
            recorder.add(Call(STATE_MACHINE, "lambda:InvokeFunction", details["resource"], "Task (Lambda)"))
        details = event.get("taskScheduledEventDetails")
        if details and details.get("resourceType") == "lambda":
            # lambda:invoke (.waitForTaskToken too) names the function in its parameters.
            function = json.loads(details["parameters"])["FunctionName"]
            recorder.add(Call(STATE_MACHINE, "lambda:InvokeFunction", function, f"Task lambda:{details['resource']}"))
            continue
        if not details or details.get("resourceType") != "sagemaker" or details["resource"] not in _SYNC_JOBS:
            continue
        job, resource_type, name_member = _SYNC_JOBS[details["resource"]]
        request = json.loads(details["parameters"])
        job_arn = f"arn:aws:sagemaker:{local.region}:{local.account}:{resource_type}/{request[name_member].lower()}"
        origin = f"Task {details['resource']}"
        for action in (f"sagemaker:Create{job}", f"sagemaker:Describe{job}", "sagemaker:AddTags"):
            recorder.add(Call(STATE_MACHINE, action, job_arn, origin))
        passed = (("iam:PassedToService", "sagemaker.amazonaws.com"),)
        recorder.add(Call(STATE_MACHINE, "iam:PassRole", request["RoleArn"], origin, passed))
        rule = f"arn:aws:events:{local.region}:{local.account}:rule/StepFunctionsGetEventsForSageMaker{job}sRule"
        for action in ("events:PutTargets", "events:PutRule", "events:DescribeRule"):
            recorder.add(Call(STATE_MACHINE, action, rule, origin))
        derive = processing_job_calls if job == "ProcessingJob" else labeling_job_calls
        for action, resource in derive(local, s3, request):
            recorder.add(Call(SAGEMAKER_ROLE, action, resource, f"{job} request"))


def offline_store_calls(recorder: CallRecorder, offline_uri: str, store_root: Path, files: list[Path]) -> None:
    """The offline store's writes with the feature store role: one per Parquet file the local store wrote."""
    location = S3Location.parse(offline_uri)
    recorder.add(Call(FEATURE_STORE_ROLE, "s3:GetBucketAcl", f"arn:aws:s3:::{location.bucket}", "offline store"))
    for path in files:
        if path.suffix != ".parquet":
            continue
        key = f"{location.key.rstrip('/')}/{path.relative_to(store_root).as_posix()}"
        for action in ("s3:PutObject", "s3:PutObjectAcl"):
            recorder.add(Call(FEATURE_STORE_ROLE, action, _s3_object(location.bucket, key), "offline store"))


# ----------------------------------------------------------------------------------------------- policies


@dataclass(frozen=True)
class Statement:
    sid: str
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    condition: dict[str, dict[str, Any]] = field(default_factory=dict)

    def grants(self) -> list[tuple[str, str]]:
        return [(action, resource) for action in self.actions for resource in self.resources]


def _wildcard(pattern: str, case_sensitive: bool = True) -> re.Pattern[str]:
    """IAM's `*` (any run of characters, `:` and `/` included) and `?` (one character)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, 0 if case_sensitive else re.IGNORECASE)


def matches(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    return _wildcard(pattern, case_sensitive).fullmatch(value) is not None


_CONDITION_OPERATORS: Final[dict[str, Callable[[str, str], bool]]] = {
    "StringEquals": lambda expected, actual: expected == actual,
    "StringLike": lambda expected, actual: matches(expected, actual),
    "ArnEquals": lambda expected, actual: expected == actual,
    "ArnLike": lambda expected, actual: matches(expected, actual),
}


def condition_holds(condition: dict[str, dict[str, Any]], context: dict[str, str]) -> bool:
    """Every operator and key must hold; a key missing from the request context fails it, as in IAM."""
    for operator, keys in condition.items():
        test = _CONDITION_OPERATORS.get(operator)
        if test is None:
            raise ValueError(f"condition operator {operator} is not evaluated locally: add it")
        for key, expected in keys.items():
            values = expected if isinstance(expected, list) else [expected]
            if key not in context or not any(test(str(value), context[key]) for value in values):
                return False
    return True


def applies(statement: Statement, call: Call) -> bool:
    action_hit = any(matches(pattern, call.action, case_sensitive=False) for pattern in statement.actions)
    resource_hit = any(matches(pattern, call.resource) for pattern in statement.resources)
    return action_hit and resource_hit and condition_holds(statement.condition, dict(call.context))


def allowed(statements: list[Statement], call: Call) -> bool:
    """An explicit Deny wins; otherwise some Allow must apply (identity policies only: no boundaries here)."""
    hits = [statement for statement in statements if applies(statement, call)]
    return any(s.effect == "Allow" for s in hits) and not any(s.effect == "Deny" for s in hits)


def _as_tuple(value: Any) -> tuple[str, ...]:
    return tuple(str(item) for item in (value if isinstance(value, list) else [value]))


def statements_of(document: dict[str, Any], name: str) -> list[Statement]:
    raw = document["Statement"]
    return [
        Statement(
            sid=str(item.get("Sid") or f"{name}[{index}]"),
            effect=item["Effect"],
            actions=_as_tuple(item["Action"]),
            resources=_as_tuple(item["Resource"]),
            condition=item.get("Condition", {}),
        )
        for index, item in enumerate(raw if isinstance(raw, list) else [raw])
    ]


# The two AWS managed policies SAM attaches (AWS Managed Policy reference: AWSLambdaBasicExecutionRole,
# AWSXrayWriteOnlyAccess): the Lambda runtime and the X-Ray SDK use them, no handler code does.
MANAGED_POLICIES: Final[dict[str, dict[str, Any]]] = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": "*",
            }
        ]
    },
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                    "xray:GetSamplingRules",
                    "xray:GetSamplingTargets",
                    "xray:GetSamplingStatisticSummaries",
                ],
                "Resource": "*",
            }
        ]
    },
}


# ------------------------------------------------------------------------------------ template → CloudFormation


def translate(template: dict[str, Any], region: str, account: str) -> dict[str, Any]:
    """The template as CloudFormation sees it after the SAM transform (policy templates expanded)."""
    # samtranslator ships with aws-sam-cli (the dev extra) and has no type information.
    from samtranslator.parser.parser import Parser  # type: ignore[import-untyped]
    from samtranslator.translator.translator import Translator  # type: ignore[import-untyped]

    packaged = json.loads(json.dumps(template))
    for resource in packaged.get("Resources", {}).values():
        for member in ("CodeUri", "DefinitionUri", "ContentUri"):
            if member in resource.get("Properties", {}):
                # As `sam package` leaves them; the artifacts' location changes no policy.
                resource["Properties"][member] = f"s3://packaged/{member}.zip"
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    translated: dict[str, Any] = translator.translate(
        packaged,
        parameter_values={"AWS::AccountId": account},
        get_managed_policy_map=lambda: {Path(arn).name: arn for arn in MANAGED_POLICIES},
    )
    return translated


_NO_VALUE: Final = object()


class Intrinsics:
    """Resolves Ref, Fn::GetAtt, Fn::Sub, Fn::Select, Fn::Split, Fn::Join and Fn::If with local values.

    Conditions are evaluated on the parameters' defaults, or on `parameters` where given (local mode's overrides).
    """

    def __init__(
        self,
        template: dict[str, Any],
        local: Local,
        state_machine_name: str,
        parameters: dict[str, str] | None = None,
    ) -> None:
        resources = template["Resources"]
        self._conditions: dict[str, Any] = template.get("Conditions", {})
        self._refs: dict[str, str] = {
            "AWS::Region": local.region,
            "AWS::AccountId": local.account,
            "AWS::Partition": "aws",
            "AWS::StackName": local.stack,
            "AWS::URLSuffix": "amazonaws.com",
        }
        self._refs.update(
            {name: str(p["Default"]) for name, p in template.get("Parameters", {}).items() if "Default" in p}
        )
        self._refs.update(parameters or {})
        self._attributes: dict[str, str] = {}
        for name, resource in resources.items():
            kind = resource["Type"]
            if kind == "AWS::S3::Bucket":
                self._refs[name] = local.bucket
                self._attributes[f"{name}.Arn"] = f"arn:aws:s3:::{local.bucket}"
            elif kind == "AWS::Lambda::Function" and name in local.function_arns:
                self._refs[name] = local.function_arns[name].rsplit(":", 1)[-1]
                self._attributes[f"{name}.Arn"] = local.function_arns[name]
            elif kind == "AWS::IAM::Role":
                self._attributes[f"{name}.Arn"] = local.role_arns.get(
                    name, f"arn:aws:iam::{local.account}:role/{local.stack}-{name}"
                )
            elif kind == "AWS::StepFunctions::StateMachine":
                self._refs[name] = local.state_machine_arn
                self._attributes[f"{name}.Name"] = state_machine_name
            elif kind == "AWS::SQS::Queue":
                self._attributes[f"{name}.Arn"] = f"arn:aws:sqs:{local.region}:{local.account}:{local.stack}-{name}"
            elif kind == "AWS::Events::Rule":
                self._attributes[f"{name}.Arn"] = f"arn:aws:events:{local.region}:{local.account}:rule/{name}"
            elif kind == "AWS::EMRServerless::Application":
                # Ref is the ApplicationId (the resource schema's primaryIdentifier).
                self._refs[name] = LOCAL_APPLICATION_ID
                self._attributes[f"{name}.Arn"] = (
                    f"arn:aws:emr-serverless:{local.region}:{local.account}:/applications/{LOCAL_APPLICATION_ID}"
                )
        for name, resource in resources.items():
            # Log group names refer to the other resources (/aws/lambda/${Function}): resolved once they are known.
            if resource["Type"] == "AWS::Logs::LogGroup":
                group = self.resolve(resource["Properties"].get("LogGroupName", name))
                self._attributes[f"{name}.Arn"] = f"arn:aws:logs:{local.region}:{local.account}:log-group:{group}:*"

    def holds(self, condition: Any) -> bool:
        """A template condition (by name, or Fn::Equals / Fn::Not / Fn::And / Fn::Or) on the local values."""
        if isinstance(condition, str):
            return self.holds(self._conditions[condition])
        ((kind, argument),) = condition.items()
        if kind == "Condition":
            return self.holds(argument)
        if kind == "Fn::Equals":
            left, right = (self.resolve(side) for side in argument)
            return bool(left == right)
        if kind == "Fn::Not":
            return not self.holds(argument[0])
        if kind in ("Fn::And", "Fn::Or"):
            results = [self.holds(item) for item in argument]
            return all(results) if kind == "Fn::And" else any(results)
        raise ValueError(f"cannot evaluate condition {kind} locally")

    def resolve(self, value: Any, variables: dict[str, str] | None = None) -> Any:
        if isinstance(value, list):
            return [item for item in (self.resolve(item, variables) for item in value) if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) != 1 or not (next(iter(value)) == "Ref" or next(iter(value)).startswith("Fn::")):
            resolved = {key: self.resolve(item, variables) for key, item in value.items()}
            return {key: item for key, item in resolved.items() if item is not _NO_VALUE}
        ((kind, argument),) = value.items()
        if kind == "Ref" and argument == "AWS::NoValue":
            return _NO_VALUE
        if kind == "Ref":
            return self._lookup(self._refs, argument)
        if kind == "Fn::If":
            name, when_true, when_false = argument
            return self.resolve(when_true if self.holds(name) else when_false, variables)
        if kind == "Fn::GetAtt":
            resource, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self._lookup(self._attributes, f"{resource}.{attribute}")
        if kind == "Fn::Sub":
            text, extra = (argument, {}) if isinstance(argument, str) else argument
            scope = {name: str(self.resolve(item)) for name, item in extra.items()}
            return re.sub(r"\$\{(!?)([^}]+)\}", lambda m: self._sub(m.group(1), m.group(2), scope), text)
        if kind == "Fn::Select":
            index, items = argument
            return self.resolve(items)[int(index)]
        if kind == "Fn::Split":
            separator, text = argument
            return str(self.resolve(text)).split(separator)
        if kind == "Fn::Join":
            separator, items = argument
            return separator.join(str(item) for item in self.resolve(items))
        raise ValueError(f"cannot resolve {kind} locally")

    def _sub(self, literal: str, name: str, scope: dict[str, str]) -> str:
        if literal:
            return "${" + name + "}"
        if name in scope:
            return scope[name]
        return self._lookup(self._attributes, name) if "." in name else self._lookup(self._refs, name)

    @staticmethod
    def _lookup(table: dict[str, str], name: str) -> str:
        if name not in table:
            raise ValueError(f"no local value for {name}")
        return table[name]


def role_statements(
    translated: dict[str, Any], intrinsics: Intrinsics, managed: bool = True
) -> dict[str, list[Statement]]:
    """Each principal's statements (AWS managed policies' too, unless `managed` is False), by logical id."""
    resources = translated["Resources"]
    role_of = {
        name: role["Fn::GetAtt"][0]
        for name, r in resources.items()
        if r["Type"] in ("AWS::Lambda::Function", "AWS::StepFunctions::StateMachine")
        and isinstance(role := r["Properties"].get("Role", r["Properties"].get("RoleArn")), dict)
    }
    roles = {
        name: r
        for name, r in resources.items()
        if r["Type"] == "AWS::IAM::Role" and ("Condition" not in r or intrinsics.holds(r["Condition"]))
    }
    by_principal: dict[str, list[Statement]] = {}
    for role_name, role in roles.items():
        principal = next((owner for owner, owned in role_of.items() if owned == role_name), role_name)
        properties = intrinsics.resolve(role["Properties"])
        statements: list[Statement] = []
        for policy in properties.get("Policies", []):
            statements += statements_of(policy["PolicyDocument"], policy["PolicyName"])
        for arn in properties.get("ManagedPolicyArns", []) if managed else []:
            statements += statements_of(MANAGED_POLICIES[arn], Path(arn).name)
        by_principal[principal] = statements
    return by_principal


# ------------------------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Finding:
    principal: str
    denied: list[Call]
    unused: list[tuple[str, str, str]]  # (sid, action, resource pattern) no call used
    allowlisted: list[tuple[str, str, str, str]]  # ... plus why a local run cannot use it
    calls: list[Call]
    grants: int


def unused_grants(statements: list[Statement], calls: list[Call]) -> list[tuple[str, str, str]]:
    """Allow (action, resource) pairs no call matched (condition aside: a grant is used if its pair is)."""
    unused = []
    for statement in statements:
        if statement.effect != "Allow":
            continue
        for action, resource in statement.grants():
            if not any(
                matches(action, call.action, case_sensitive=False) and matches(resource, call.resource)
                for call in calls
            ):
                unused.append((statement.sid, action, resource))
    return unused


def check(
    policies: dict[str, list[Statement]], recorder: CallRecorder, allowlist: dict[tuple[str, str], str]
) -> list[Finding]:
    """Per principal: the calls its policies deny, and the grants no call used (minus the allowlist).

    `allowlist` is keyed by (principal or "*", action pattern) with the reason a local run cannot exercise it.
    """
    findings = []
    for principal, statements in sorted(policies.items()):
        calls = recorder.for_principal(principal)
        denied = [call for call in calls if not allowed(statements, call)]
        unused, listed = [], []
        for sid, action, resource in unused_grants(statements, calls):
            why = allowlist.get((principal, action)) or allowlist.get(("*", action))
            if why is None:
                unused.append((sid, action, resource))
            else:
                listed.append((sid, action, resource, why))
        grants = sum(len(s.grants()) for s in statements if s.effect == "Allow")
        findings.append(Finding(principal, denied, unused, listed, calls, grants))
    strays = sorted({call.principal for call in recorder.calls} - set(policies))
    if strays:
        raise ValueError(f"calls recorded for principals with no role in the template: {', '.join(strays)}")
    return findings


def markdown(findings: list[Finding]) -> str:
    """The calls-versus-policy table per principal, and each principal's calls and allowlisted grants."""
    lines = [
        "# Least privilege, proven offline",
        "",
        "Generated by `tests/e2e/test_least_privilege.py` from a local run of the demo (success path) and of a",
        "rejected input (failure path): every AWS call each principal made or would make, evaluated against its",
        "policies in template.yaml as deployed (SAM transform by samtranslator). Do not edit by hand.",
        "",
        "| principal | calls made | permissions granted | denied | unused | allowlisted (not exercisable locally) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for f in findings:
        lines.append(
            f"| {f.principal} | {len(f.calls)} | {f.grants} | {len(f.denied)} | {len(f.unused)} "
            f"| {len(f.allowlisted)} |"
        )
    for f in findings:
        lines += ["", f"## {f.principal}", ""]
        distinct = sorted({(call.action, _shape(call.resource)) for call in f.calls})
        lines += ["Calls (resource keys folded to their prefix):", ""]
        lines += [f"- `{action}` on `{resource}`" for action, resource in distinct] or ["- none"]
        if f.allowlisted:
            lines += ["", "Granted but not exercisable locally:", ""]
            lines += [f"- `{action}` on `{resource}` ({sid}): {why}" for sid, action, resource, why in f.allowlisted]
        if f.unused:
            lines += ["", "Unused grants:", ""]
            lines += [f"- `{action}` on `{resource}` ({sid})" for sid, action, resource in f.unused]
        if f.denied:
            lines += ["", "Denied calls:", ""]
            lines += [f"- `{call.action}` on `{call.resource}` ({call.origin})" for call in f.denied]
    return "\n".join(lines) + "\n"


def _shape(resource: str) -> str:
    """Fold run-specific parts of an object ARN (run ids, hashes, file names) so the table stays readable."""
    if resource.startswith("arn:aws:s3:::") and "/" in resource:
        bucket, _, key = resource.removeprefix("arn:aws:s3:::").partition("/")
        parts = key.split("/")
        return f"arn:aws:s3:::{bucket}/{'/'.join(parts[:2])}/..." if len(parts) > 2 else resource
    return resource


# ------------------------------------------------------------------------------------------------ linting


def conventional_local(template: dict[str, Any], region: str, account: str) -> Local:
    """Local mode's names for the template's resources, without starting the local cloud (for the linters)."""
    from labelflow_local.functions import FunctionRegistry
    from labelflow_local.template import LOCAL_BUCKET, LOCAL_STACK, snake_case

    functions = [name for name, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"]
    prefix = f"arn:aws:lambda:{region}:{account}:function:"
    return Local(
        account=account,
        region=region,
        stack=LOCAL_STACK,
        bucket=LOCAL_BUCKET,
        state_machine_arn=f"arn:aws:states:{region}:{account}:stateMachine:{LOCAL_STACK}",
        function_arns={name: prefix + FunctionRegistry.function_name(snake_case(name)) for name in functions},
        role_arns={},
    )


def write_lint_inputs(
    template: dict[str, Any], out: Path, region: str = "us-east-1", account: str = "123456789012"
) -> None:
    """The CloudFormation template (for checkov) and each principal's resolved policy (for parliament)."""
    translated = translate(template, region, account)
    local = conventional_local(template, region, account)
    # AWS managed policies are AWS's documents, not ours: parliament lints what the template writes.
    policies = role_statements(translated, Intrinsics(translated, local, local.stack), managed=False)
    (out / "policies").mkdir(parents=True, exist_ok=True)
    (out / "template.json").write_text(json.dumps(translated, indent=1))
    for principal, statements in policies.items():
        document = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": re.sub(r"[^A-Za-z0-9]", "", s.sid),
                    "Effect": s.effect,
                    "Action": list(s.actions),
                    "Resource": list(s.resources),
                    **({"Condition": s.condition} if s.condition else {}),
                }
                for s in statements
            ],
        }
        (out / "policies" / f"{principal}.json").write_text(json.dumps(document, indent=1))


if __name__ == "__main__":
    import sys

    from labelflow_local.template import load_template

    write_lint_inputs(load_template(), Path(sys.argv[1]))
