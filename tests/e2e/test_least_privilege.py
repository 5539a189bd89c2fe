"""Least privilege, proven offline: every call each principal makes in a local run is one its policy allows,
and every permission its policy grants is used by some call (or says why a local run cannot use it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelflow.models.spec import DatasetSpec
from labelflow_local.cloud import STATE_MACHINE_NAME, LocalCloud, local_cloud
from labelflow_local.demo import DEMO_MODEL, DEMO_SPEC, DEMO_TRUTH, land
from labelflow_local.iam import (
    CallRecorder,
    Finding,
    Intrinsics,
    Local,
    check,
    markdown,
    offline_store_calls,
    recording,
    role_statements,
    state_machine_calls,
    translate,
)
from labelflow_local.labelstudio import LabelStudioReviews
from labelflow_local.review import SimulatedWorkers, read_labels
from tests.conftest import EVENTS, ROOT
from tests.labelstudio.fake_server import LEGACY_TOKEN, FakeLabelStudio, serving

SAMPLE = EVENTS / "fixtures/labelflow-demo/raw/reviews/sample.csv"
REJECTED = ROOT / "demo/data/bad/missing_column.csv"
PROOF = ROOT / "docs/iam-proof.md"

pytestmark = pytest.mark.e2e

# Grants a local run cannot exercise, each with the reason: (principal, action) → why.
_RUNTIME_LOGS = "written by the Lambda runtime, not by handler code (AWSLambdaBasicExecutionRole)"
_XRAY = "sent by the Lambda runtime and the X-Ray SDK with Tracing: Active; tracing is off locally"
_WEBHOOK = "a Label Studio webhook calls a Function URL; local mode has none"
_ABORT = "Step Functions stops the job when the execution is stopped or times out; no local run is stopped"
_LIST_TAGS = "in the .sync integration's documented policy; its calls beyond create, poll and tag are not observable"
ALLOWLIST: dict[tuple[str, str], str] = {
    **{("*", action): _RUNTIME_LOGS for action in ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents")},
    **{
        ("*", f"xray:{action}"): _XRAY
        for action in (
            "PutTraceSegments",
            "PutTelemetryRecords",
            "GetSamplingRules",
            "GetSamplingTargets",
            "GetSamplingStatisticSummaries",
        )
    },
    ("OnObjectCreatedFunction", "sqs:SendMessage"): (
        "EventInvokeConfig's on-failure destination, used by Lambda after failed asynchronous invocations; "
        "locally the trigger is invoked synchronously"
    ),
    **{
        (function, "s3:ListBucket"): (
            "a missing input answers 404 (ManifestError naming the key) instead of 403 only with it; "
            "no local run loses an input between steps"
        )
        for function in ("MergeLabelsFunction", "FinalizeRunFunction")
    },
    ("RouteByConfidenceFunction", "s3:GetObject"): (
        "artifacts/audit/*: read only for a dataset with target_accuracy (tests/e2e/test_certified_routing.py)"
    ),
    ("MergeLabelsFunction", "s3:GetObject"): (
        "artifacts/audit/*: written only for a dataset with target_accuracy (tests/e2e/test_certified_routing.py)"
    ),
    ("MergeLabelsFunction", "s3:PutObject"): (
        "artifacts/audit/*: written only for a dataset with target_accuracy (tests/e2e/test_certified_routing.py)"
    ),
    ("SageMakerExecutionRole", "s3:GetObject"): (
        "Ground Truth presigns an image dataset's images with the job role when a worker opens a task; local "
        "reviewers never load them"
    ),
    ("IngestFeaturesFunction", "sagemaker:GetRecord"): (
        "probes the batch in flight when a retried step resumes (exercised by tests/e2e/test_faults.py)"
    ),
    ("FinalizeRunFunction", "sagemaker:GetRecord"): (
        "settles an ingestion stopped part-way (exercised by tests/e2e/test_faults.py)"
    ),
    ("LabelingStateMachine", "sagemaker:StopProcessingJob"): _ABORT,
    ("LabelingStateMachine", "sagemaker:StopLabelingJob"): _ABORT,
    ("LabelingStateMachine", "sagemaker:ListTags"): _LIST_TAGS,
    **{
        ("LabelingStateMachine", action): "vended-log delivery, set up by Step Functions when the stack is deployed"
        for action in (
            "logs:CreateLogDelivery",
            "logs:GetLogDelivery",
            "logs:UpdateLogDelivery",
            "logs:DeleteLogDelivery",
            "logs:ListLogDeliveries",
            "logs:PutResourcePolicy",
            "logs:DescribeResourcePolicies",
            "logs:DescribeLogGroups",
        )
    },
    ("SageMakerExecutionRole", "s3:AbortMultipartUpload"): (
        "multipart uploads of large job outputs, aborted on failure; local outputs are uploaded whole"
    ),
    ("SageMakerExecutionRole", "s3:GetBucketLocation"): "SageMaker's check of the bucket's Region, not emulated",
    ("FeatureStoreRole", "glue:GetTable"): "Feature Store maintains the offline store's Glue table, not emulated",
    ("FeatureStoreRole", "glue:UpdateTable"): "Feature Store maintains the offline store's Glue table, not emulated",
    **{
        (
            function,
            "s3:AbortMultipartUpload",
        ): "a streamed output is aborted when the step fails midway; no run here does"
        for function in ("RouteByConfidenceFunction", "MergeLabelsFunction")
    },
    ("PollLabelStudioReviewsFunction", "secretsmanager:GetSecretValue"): (
        "read once and cached by the layer, which the functions share in one local process (not on Lambda)"
    ),
    ("PollLabelStudioReviewsFunction", "states:SendTaskHeartbeat"): (
        "sent while reviewers are still at work; the fake Label Studio's reviewers answer before the first poll"
    ),
    **{
        ("LabelStudioWebhookFunction", action): _WEBHOOK
        for action in (
            "secretsmanager:GetSecretValue",
            "states:SendTaskSuccess",
            "states:SendTaskHeartbeat",
            "s3:GetObject",
            "s3:PutObject",
            "s3:DeleteObject",
            "s3:ListBucket",
        )
    },
}


def local_names(cloud: LocalCloud) -> Local:
    lambdas = {
        definition.logical_id: cloud.functions.arn(definition.name)
        for definition in cloud.functions.definitions.values()
    }
    roles = dict(cloud.roles)
    roles.update(
        {f"{logical_id}Role": f"arn:aws:iam::{cloud.account}:role/labelflow-{logical_id}Role" for logical_id in lambdas}
    )
    return Local(
        account=cloud.account,
        region=cloud.region,
        stack=cloud.functions.resolve("plan_processing").environment["FEATURE_GROUP_PREFIX"],
        bucket=cloud.bucket,
        state_machine_arn=cloud.state_machine_arn,
        function_arns=lambdas,
        role_arns=roles,
    )


def run_file(cloud: LocalCloud, recorder: CallRecorder, local: Local, data: Path, spec_body: bytes) -> str:
    execution_arn = land(cloud, data, DatasetSpec.model_validate_json(spec_body), spec_body, DEMO_MODEL)
    described = cloud.wait(execution_arn)
    history = cloud.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    state_machine_calls(recorder, local, cloud.s3, history)
    return str(described["status"])


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> list[Finding]:
    # Given one local run of the demo sample (success path) and one of a rejected input (failure path)
    tmp = tmp_path_factory.mktemp("iam")
    store = tmp / "fs"
    recorder = CallRecorder("us-east-1", "123456789012")
    spec_body = DEMO_SPEC.read_bytes()
    truth = read_labels(DEMO_TRUTH)
    with recording(recorder), local_cloud(SimulatedWorkers(truth), store) as cloud:
        local = local_names(cloud)
        statuses = [run_file(cloud, recorder, local, path, spec_body) for path in (SAMPLE, REJECTED)]
        offline_uri = cloud.functions.resolve("plan_processing").environment["OFFLINE_STORE_S3_URI"]
        offline_store_calls(recorder, offline_uri, store, cloud.feature_store.flush())
        translated = translate(cloud.template, cloud.region, cloud.account)
        policies = role_statements(translated, Intrinsics(translated, local, STATE_MACHINE_NAME))
    # And one whose dataset is reviewed in (a fake) Label Studio: the start, poller and callback path
    labelstudio_spec = json.dumps(json.loads(spec_body) | {"review": {"backend": "labelstudio"}}).encode()
    with (
        serving(FakeLabelStudio(answer=truth.get, reviewers=3)) as fake,
        LabelStudioReviews(fake.url, LEGACY_TOKEN, say=lambda _: None, interval=0.2),
        recording(recorder),
        local_cloud(SimulatedWorkers(truth), tmp / "fs-labelstudio") as cloud,
    ):
        statuses.append(run_file(cloud, recorder, local_names(cloud), SAMPLE, labelstudio_spec))
    assert statuses == ["SUCCEEDED", "FAILED", "SUCCEEDED"]
    # When each principal's calls are evaluated against its policies
    result = check(policies, recorder, ALLOWLIST)
    report = markdown(result)
    PROOF.write_text(report)
    print(report)
    return result


def test_no_call_is_denied(findings: list[Finding]) -> None:
    # Then no principal made a call its policy would deny
    denied = [
        f"{call.principal}: {call.action} on {call.resource} ({call.origin})" for f in findings for call in f.denied
    ]
    assert denied == []


def test_every_grant_is_used_or_says_why_not(findings: list[Finding]) -> None:
    # Then every permission granted was used by some call, or the allowlist says why a local run cannot use it
    unused = [f"{f.principal}: {action} on {resource} ({sid})" for f in findings for sid, action, resource in f.unused]
    assert unused == []


def test_every_principal_with_its_own_policy_made_calls(findings: list[Finding]) -> None:
    # Then the recorder saw every principal that has grants beyond the allowlist at work (none silently dropped)
    idle = [f.principal for f in findings if not f.calls and len(f.allowlisted) < f.grants]
    assert idle == []
