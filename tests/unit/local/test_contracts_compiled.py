"""The compiled validator reports what the generic shape walk reported, and the call log keeps number order.

The expected lists below are what contracts.violations returned at 4e7ecca (the walk over the shape on every call)
for the same requests: path, constraint and whether it is structural, in the same order.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

import pytest

from labelflow_local import contracts
from tests.unit.local.test_contracts import ROLE, processing_request

DROP = object()
NULL = "Member must not be null"

Broken = tuple[str, str, bool]


def longest(limit: int) -> str:
    return f"Member must have length less than or equal to {limit}"


def pattern(java: str) -> str:
    return f"Member must satisfy regular expression pattern: {java}"


def one_of(*values: str) -> str:
    return f"Member must satisfy enum value set: [{', '.join(values)}]"


def expected(type_name: str, got: str) -> str:
    return f"Expected a {type_name}, got {got}"


FEATURE_NAME = pattern("^[a-zA-Z0-9]([-_]*[a-zA-Z0-9]){0,63}")
JOB_NAME = pattern("[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
NOT_BLANK = pattern(r".*\S.*")
CONFIGURATIONS = "configurationOverrides.applicationConfiguration.1.member.configurations"

REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "PutRecord": (
        "sagemaker-featurestore-runtime",
        {
            "FeatureGroupName": "labelflow-reviews",
            "Record": [
                {"FeatureName": "record_id", "ValueAsString": "r1"},
                {"FeatureName": "label", "ValueAsString": "positive"},
            ],
        },
    ),
    "CreateProcessingJob": ("sagemaker", processing_request()),
    "CreateLabelingJob": (
        "sagemaker",
        {
            "LabelingJobName": "lf-reviews-abc123-0",
            "LabelAttributeName": "label",
            "RoleArn": ROLE,
            "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": "s3://labelflow-demo/runs/m.jsonl"}}},
            "OutputConfig": {"S3OutputPath": "s3://labelflow-demo/runs/labels/"},
            "HumanTaskConfig": {
                "WorkteamArn": "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/labelflow",
                "UiConfig": {"UiTemplateS3Uri": "s3://labelflow-demo/templates/text.liquid.html"},
                "PreHumanTaskLambdaArn": "arn:aws:lambda:us-east-1:123456789012:function:labelflow-pre",
                "TaskTitle": "Review sentiment",
                "TaskDescription": "Pick the sentiment",
                "NumberOfHumanWorkersPerDataObject": 1,
                "TaskTimeLimitInSeconds": 300,
                "AnnotationConsolidationConfig": {
                    "AnnotationConsolidationLambdaArn": "arn:aws:lambda:us-east-1:123456789012:function:labelflow-acs"
                },
            },
            "Tags": [{"Key": "dataset", "Value": "reviews"}],
        },
    ),
    "StartJobRun": (
        "emr-serverless",
        {
            "applicationId": "00fabc123",
            "clientToken": "token-1",
            "executionRoleArn": "arn:aws:iam::123456789012:role/labelflow-SparkJobRole",
            "jobDriver": {
                "sparkSubmit": {
                    "entryPoint": "s3://labelflow-demo/code/spark_job.py",
                    "entryPointArguments": ["--input", "s3://labelflow-demo/raw/"],
                }
            },
            "name": "lf-reviews-abc123",
            "tags": {"dataset": "reviews"},
        },
    ),
}

S3_INPUT = {
    "S3Uri": "s3://b/k",
    "LocalPath": "/opt/ml/processing/input/x",
    "S3DataType": "S3Prefix",
    "S3InputMode": "File",
}
PROCESSING_INPUT = ("ProcessingInputs", 0, "S3Input")
CASES: list[tuple[str, str, dict[tuple[Any, ...], Any], list[Broken]]] = [
    (
        "PutRecord",
        "pattern",
        {("Record", 1, "FeatureName"): "bad name"},
        [("record.2.member.featureName", FEATURE_NAME, False)],
    ),
    (
        "PutRecord",
        "length",
        {("FeatureGroupName",): "g" * 151, ("Record", 0, "FeatureName"): ""},
        [
            ("featureGroupName", longest(150), False),
            (
                "featureGroupName",
                pattern(
                    r"(arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:feature-group/)?([a-zA-Z0-9]([-_]*[a-zA-Z0-9]){0,63})"
                ),
                False,
            ),
            ("record.1.member.featureName", "Member must have length greater than or equal to 1", False),
            ("record.1.member.featureName", FEATURE_NAME, False),
        ],
    ),
    (
        "PutRecord",
        "enum",
        {("TargetStores",): ["OnlineStore", "Offline"]},
        [("targetStores.2.member", one_of("OnlineStore", "OfflineStore"), False)],
    ),
    (
        "PutRecord",
        "missing-required",
        {("Record", 0, "FeatureName"): DROP, ("TtlDuration",): {"Unit": "Days"}},
        [("record.1.member.featureName", NULL, False), ("ttlDuration.value", NULL, False)],
    ),
    (
        "PutRecord",
        "wrong-type",
        {("Record", 1, "ValueAsString"): 1, ("TtlDuration",): {"Unit": "Days", "Value": True}},
        [
            ("record.2.member.valueAsString", expected("string", "int"), True),
            ("ttlDuration.value", expected("integer", "bool"), True),
        ],
    ),
    (
        "PutRecord",
        "too-many-items",
        {("TargetStores",): ["OnlineStore", "OfflineStore", "OnlineStore"]},
        [("targetStores", longest(2), False)],
    ),
    (
        "PutRecord",
        "empty-list-and-unknown-member",
        {("Record",): [], ("Records",): []},
        [
            ("records", 'Unknown member "Records"', True),
            ("record", "Member must have length greater than or equal to 1", False),
        ],
    ),
    (
        "CreateProcessingJob",
        "pattern",
        {("ProcessingJobName",): "bad_name", (*PROCESSING_INPUT, "S3Uri"): "http://x"},
        [
            ("processingInputs.1.member.s3Input.s3Uri", pattern("(https|s3)://([^/]+)/?(.*)"), False),
            ("processingJobName", JOB_NAME, False),
        ],
    ),
    (
        "CreateProcessingJob",
        "length",
        {("ProcessingJobName",): "j" * 64, ("Environment",): {"SPEC": "x" * 257}},
        [
            ("processingJobName", longest(63), False),
            ("processingJobName", JOB_NAME, False),
            ("environment", f"Map value must satisfy constraint: [{longest(256)}]", False),
        ],
    ),
    (
        "CreateProcessingJob",
        "enum",
        {(*PROCESSING_INPUT, "S3InputMode"): "Stream", (*PROCESSING_INPUT, "S3DataType"): "Prefix"},
        [
            ("processingInputs.1.member.s3Input.s3DataType", one_of("ManifestFile", "S3Prefix"), False),
            ("processingInputs.1.member.s3Input.s3InputMode", one_of("Pipe", "File"), False),
        ],
    ),
    (
        "CreateProcessingJob",
        "missing-required",
        {("RoleArn",): DROP, (*PROCESSING_INPUT, "LocalPath"): None},
        [("roleArn", NULL, False)],
    ),
    (
        "CreateProcessingJob",
        "wrong-type",
        {
            ("ProcessingResources", "ClusterConfig", "InstanceCount"): "1",
            ("Tags",): {"Key": "a"},
            ("Environment",): {"A": 1},
        },
        [
            ("processingResources.clusterConfig.instanceCount", expected("integer", "str"), True),
            ("environment", f"Map value must satisfy constraint: [{expected('string', 'int')}]", False),
            ("tags", expected("list", "dict"), True),
        ],
    ),
    (
        "CreateProcessingJob",
        "too-many-items",
        {("ProcessingInputs",): [{"InputName": f"in{n}", "S3Input": S3_INPUT} for n in range(11)]},
        [("processingInputs", longest(10), False)],
    ),
    (
        "CreateProcessingJob",
        "out-of-range",
        {
            ("ProcessingResources", "ClusterConfig", "InstanceCount"): 0,
            ("ProcessingResources", "ClusterConfig", "VolumeSizeInGB"): 16385,
        },
        [
            (
                "processingResources.clusterConfig.instanceCount",
                "Member must have value greater than or equal to 1",
                False,
            ),
            (
                "processingResources.clusterConfig.volumeSizeInGB",
                "Member must have value less than or equal to 16384",
                False,
            ),
        ],
    ),
    (
        "CreateLabelingJob",
        "pattern",
        {("LabelAttributeName",): "bad label!", ("HumanTaskConfig", "PreHumanTaskLambdaArn"): "lambda:pre"},
        [
            ("labelAttributeName", pattern("[a-zA-Z0-9](-*[a-zA-Z0-9]){0,126}"), False),
            (
                "humanTaskConfig.preHumanTaskLambdaArn",
                pattern(r"arn:aws[a-z\-]*:lambda:[a-z0-9\-]*:[0-9]{12}:function:.*"),
                False,
            ),
        ],
    ),
    (
        "CreateLabelingJob",
        "length",
        {("LabelingJobName",): "l" * 64, ("HumanTaskConfig", "TaskTitle"): "t" * 129},
        [
            ("labelingJobName", longest(63), False),
            ("labelingJobName", JOB_NAME, False),
            ("humanTaskConfig.taskTitle", longest(128), False),
        ],
    ),
    (
        "CreateLabelingJob",
        "enum",
        {("InputConfig", "DataAttributes"): {"ContentClassifiers": ["FreeOfAdultContent", "FreeOfPII"]}},
        [
            (
                "inputConfig.dataAttributes.contentClassifiers.2.member",
                one_of("FreeOfPersonallyIdentifiableInformation", "FreeOfAdultContent"),
                False,
            )
        ],
    ),
    (
        "CreateLabelingJob",
        "missing-required",
        {("OutputConfig",): {}, ("HumanTaskConfig", "TaskTitle"): DROP},
        [("outputConfig.s3OutputPath", NULL, False), ("humanTaskConfig.taskTitle", NULL, False)],
    ),
    (
        "CreateLabelingJob",
        "wrong-type",
        {("HumanTaskConfig", "NumberOfHumanWorkersPerDataObject"): 1.5, ("Tags", 0): "dataset=reviews"},
        [
            ("humanTaskConfig.numberOfHumanWorkersPerDataObject", expected("integer", "float"), True),
            ("tags.1.member", expected("structure", "str"), True),
        ],
    ),
    (
        "CreateLabelingJob",
        "too-many-items",
        {("Tags",): [{"Key": f"k{n}", "Value": "v"} for n in range(51)]},
        [("tags", longest(50), False)],
    ),
    (
        "StartJobRun",
        "pattern",
        {("applicationId",): "00FABC", ("jobDriver", "sparkSubmit", "entryPoint"): " "},
        [
            ("applicationId", pattern("[0-9a-z]+"), False),
            ("jobDriver.sparkSubmit.entryPoint", NOT_BLANK, False),
        ],
    ),
    (
        "StartJobRun",
        "length",
        {("clientToken",): "t" * 65, ("executionRoleArn",): "arn:aws:iam::1:role/"},
        [
            ("clientToken", longest(64), False),
            (
                "executionRoleArn",
                pattern(
                    r"arn:(aws[a-zA-Z0-9-]*):iam::([0-9]{12}):(role((\u002F)|(\u002F[\u0021-\u007F]+\u002F))[\w+=,.@-]+)"
                ),
                False,
            ),
        ],
    ),
    ("StartJobRun", "enum", {("mode",): "STREAM"}, [("mode", one_of("BATCH", "STREAMING"), False)]),
    (
        "StartJobRun",
        "missing-required",
        {("applicationId",): DROP, ("jobDriver", "sparkSubmit", "entryPoint"): DROP},
        [("applicationId", NULL, False), ("jobDriver.sparkSubmit.entryPoint", NULL, False)],
    ),
    (
        "StartJobRun",
        "wrong-type",
        {
            ("executionTimeoutMinutes",): "60",
            ("tags",): {"dataset": None},
            ("jobDriver", "sparkSubmit", "entryPointArguments"): "--input",
        },
        [
            ("jobDriver.sparkSubmit.entryPointArguments", expected("list", "str"), True),
            ("tags", f"Map value must satisfy constraint: [{expected('string', 'NoneType')}]", False),
            ("executionTimeoutMinutes", expected("long", "str"), True),
        ],
    ),
    (
        "StartJobRun",
        "too-many-items",
        {
            ("tags",): {f"k{n}": "v" for n in range(201)},
            ("jobDriver", "sparkSubmit", "entryPointArguments"): ["a"] * 1025,
        },
        [("jobDriver.sparkSubmit.entryPointArguments", longest(1024), False), ("tags", longest(200), False)],
    ),
    (
        "StartJobRun",
        "recursive-shape",
        {
            ("configurationOverrides",): {
                "applicationConfiguration": [
                    {
                        "classification": "spark-defaults",
                        "configurations": [
                            {"classification": " ", "properties": {"k": "v" * 1025}},
                            {"properties": {}},
                        ],
                    }
                ]
            }
        },
        [
            (f"{CONFIGURATIONS}.1.member.classification", NOT_BLANK, False),
            (f"{CONFIGURATIONS}.1.member.properties", f"Map value must satisfy constraint: [{longest(1024)}]", False),
            (f"{CONFIGURATIONS}.2.member.classification", NULL, False),
        ],
    ),
]


def changed(request: dict[str, Any], changes: dict[tuple[Any, ...], Any]) -> dict[str, Any]:
    """A copy of `request` with each path set to its value (DROP: the member removed)."""
    result = copy.deepcopy(request)
    for path, value in changes.items():
        parent = result
        for part in path[:-1]:
            parent = parent[part]
        if value is DROP:
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
    return result


def check(operation: str, request: dict[str, Any]) -> list[Broken]:
    service, _ = REQUESTS[operation]
    found = contracts.violations(contracts.operation_model(service, operation), request)
    return [(violation.path, violation.constraint, violation.structural) for violation in found]


@pytest.mark.parametrize("operation", list(REQUESTS))
def test_each_conforming_request_has_no_violations(operation: str) -> None:
    # Given a request the service accepts / When it is checked, twice (the second with values remembered)
    _, request = REQUESTS[operation]
    # Then nothing is wrong either time
    assert check(operation, request) == check(operation, request) == []


@pytest.mark.parametrize(
    ("operation", "changes", "broken"),
    [pytest.param(operation, changes, broken, id=f"{operation}-{name}") for operation, name, changes, broken in CASES],
)
def test_the_compiled_validator_flags_what_the_shape_walk_flagged(
    operation: str, changes: dict[tuple[Any, ...], Any], broken: list[Broken]
) -> None:
    # Given a conforming request checked once (its values remembered), then changed to break constraints
    _, request = REQUESTS[operation]
    check(operation, request)
    bad = changed(request, changes)
    # When the changed request is checked / Then the violations are the walk's, in its order, every time
    assert check(operation, bad) == broken
    assert check(operation, bad) == broken


def test_a_remembered_value_does_not_hide_a_refused_one() -> None:
    # Given a feature name checked and accepted many times
    record = [{"FeatureName": "record_id", "ValueAsString": "r1"}]
    for _ in range(3):
        assert check("PutRecord", {"FeatureGroupName": "labelflow-reviews", "Record": record}) == []
    # When a name one character away is checked / Then it is still refused
    refused = [{"FeatureName": "record id", "ValueAsString": "r1"}]
    assert check("PutRecord", {"FeatureGroupName": "labelflow-reviews", "Record": refused}) == [
        ("record.1.member.featureName", FEATURE_NAME, False)
    ]


class _Slow:
    """A value whose JSON text (str, the log's default) is written only once the test lets it go."""

    def __init__(self) -> None:
        self.serialising, self.release = threading.Event(), threading.Event()

    def __str__(self) -> str:
        self.serialising.set()
        self.release.wait(timeout=10)
        return "slow"


def test_a_request_queued_after_a_later_number_is_still_written_in_number_order(tmp_path: Path) -> None:
    # Given a log, and a first request held back in its serialisation, after it took its number
    log = contracts.CallLog(tmp_path)
    slow = _Slow()
    first = threading.Thread(target=log.record, args=("sagemaker", "CreateProcessingJob", {"Slow": slow}))
    first.start()
    assert slow.serialising.wait(timeout=10)
    # When a second request is numbered and queued before the first is queued, and then the first goes on
    log.record("sagemaker", "DescribeProcessingJob", {})
    slow.release.set()
    first.join()
    log.close()
    # Then the file holds the first request, then the second, numbered as they were numbered
    calls = contracts.read_calls(tmp_path)
    assert [(call["n"], call["operation"], call["request"]) for call in calls] == [
        (1, "CreateProcessingJob", {"Slow": "slow"}),
        (2, "DescribeProcessingJob", {}),
    ]
