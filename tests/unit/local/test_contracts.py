"""The request validator against real botocore shapes, its Java-pattern translation, and the call log."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from labelflow_local import contracts

ROLE = "arn:aws:iam::123456789012:role/labelflow-SageMakerExecutionRole"


def processing_request(**changes: Any) -> dict[str, Any]:
    """A CreateProcessingJob request SageMaker accepts, with `changes` applied at the top level."""
    request: dict[str, Any] = {
        "ProcessingJobName": "lf-reviews-abc123-e8a89873",
        "RoleArn": ROLE,
        "AppSpecification": {"ImageUri": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2"},
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 30}
        },
        "ProcessingInputs": [
            {
                "InputName": "data",
                "S3Input": {
                    "S3Uri": "s3://labelflow-demo/raw/reviews/reviews.csv",
                    "LocalPath": "/opt/ml/processing/input/data",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
        ],
        "Tags": [{"Key": "dataset", "Value": "reviews"}],
    }
    request.update(changes)
    return request


def check(operation: str, request: dict[str, Any], service: str = "sagemaker") -> list[contracts.Violation]:
    return contracts.violations(contracts.operation_model(service, operation), request)


def test_a_request_that_keeps_the_contract_has_no_violations() -> None:
    # Given a CreateProcessingJob request as labelflow plans it / When it is checked / Then nothing is wrong
    assert check("CreateProcessingJob", processing_request()) == []


def test_an_out_of_range_integer_is_phrased_as_aws_phrases_it() -> None:
    # Given an instance count above the model's maximum of 100
    cluster = {"InstanceCount": 101, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 30}
    # When it is checked
    found = check("CreateProcessingJob", processing_request(ProcessingResources={"ClusterConfig": cluster}))
    # Then the message is AWS's ValidationException text, with the member's lowerCamelCase path
    assert contracts.validation_message(found) == (
        "1 validation error detected: Value '101' at 'processingResources.clusterConfig.instanceCount' failed to "
        "satisfy constraint: Member must have value less than or equal to 100"
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"RoleArn": None},
            "Value null at 'roleArn' failed to satisfy constraint: Member must not be null",
        ),
        (
            {"ProcessingJobName": "j" * 64},
            f"Value '{'j' * 64}' at 'processingJobName' failed to satisfy constraint: "
            "Member must have length less than or equal to 63",
        ),
        (
            {"ProcessingJobName": "bad_name"},
            "Value 'bad_name' at 'processingJobName' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
        ),
        (
            {"Tags": [{"Key": "dataset", "Value": "reviews"}, {"Key": "team", "Value": "a|b"}]},
            "Value 'a|b' at 'tags.2.member.value' failed to satisfy constraint: "
            r"Member must satisfy regular expression pattern: ([\p{L}\p{Z}\p{N}_.:/=+\-@]*)",
        ),
    ],
    ids=["missing-required", "too-long-name", "pattern", "nested-list-path"],
)
def test_each_broken_constraint_names_the_member_path_and_the_constraint(
    changes: dict[str, Any], expected: str
) -> None:
    # Given a request breaking one constraint / When it is checked
    found = check("CreateProcessingJob", processing_request(**changes))
    # Then that violation is reported, worded as AWS words it (a 64-character name also breaks the pattern's {0,62})
    assert expected in [str(violation) for violation in found]


def test_a_bad_enum_lists_the_allowed_values() -> None:
    # Given a feature type the model does not list
    request = {
        "FeatureGroupName": "labelflow-reviews",
        "RecordIdentifierFeatureName": "record_id",
        "EventTimeFeatureName": "event_time",
        "FeatureDefinitions": [{"FeatureName": "record_id", "FeatureType": "Text"}],
    }
    # When it is checked
    (violation,) = check("CreateFeatureGroup", request)
    # Then the enum and its values are named at the list member's path
    assert violation.path == "featureDefinitions.1.member.featureType"
    assert violation.constraint == "Member must satisfy enum value set: [Integral, Fractional, String]"


def test_unknown_members_and_wrong_types_are_structural() -> None:
    # Given a misspelt member and an instance count sent as a string
    cluster = {"InstanceCount": "1", "InstanceType": "ml.m5.large", "VolumeSizeInGB": 30}
    request = processing_request(ProcessingResources={"ClusterConfig": cluster}, Enviroment={"A": "1"})
    # When it is checked
    found = check("CreateProcessingJob", request)
    # Then both are reported as requests that cannot be built, not as constraint violations
    assert {(violation.path, violation.structural) for violation in found} == {
        ("enviroment", True),
        ("processingResources.clusterConfig.instanceCount", True),
    }


def test_scalar_map_values_are_reported_on_the_map() -> None:
    # Given an environment value longer than the model's 256 characters
    found = check("CreateProcessingJob", processing_request(Environment={"SPEC": "x" * 257}))
    # Then the map as a whole carries the constraint on its values
    (violation,) = found
    assert violation.path == "environment"
    assert (
        violation.constraint == "Map value must satisfy constraint: [Member must have length less than or equal to 256]"
    )


def test_put_record_is_checked_against_the_runtime_model() -> None:
    # Given a record whose feature name breaks the runtime model's pattern
    record = [{"FeatureName": "record_id", "ValueAsString": "r1"}, {"FeatureName": "bad name", "ValueAsString": "1"}]
    # When it is checked / Then the second record item is named
    (violation,) = check(
        "PutRecord", {"FeatureGroupName": "labelflow-reviews", "Record": record}, "sagemaker-featurestore-runtime"
    )
    assert violation.path == "record.2.member.featureName"


@pytest.mark.parametrize("service", ["sagemaker", "sagemaker-featurestore-runtime", "emr-serverless", "stepfunctions"])
def test_every_pattern_of_the_emulated_services_translates_to_python(service: str) -> None:
    # Given every pattern in the service's model (Java regexes) / When each is translated / Then it compiles
    model = botocore.session.get_session().get_service_model(service)
    patterns = {pattern for name in model.shape_names if (pattern := model.shape_for(name).metadata.get("pattern"))}
    assert patterns and all(contracts.compiled_pattern(pattern) for pattern in patterns)


@pytest.mark.parametrize(
    ("pattern", "accepted", "refused"),
    [
        (r"([\p{L}\p{Z}\p{N}_.:/=+\-@]*)", "héllo wörld 2", "a|b"),
        (r"arn:[\p{Alnum}\-]+:lambda:.*", "arn:aws:lambda:x", "arn:é:lambda:x"),
        ("[\\u0020-\\uD7FF\\uE000-\\uFFFD\\uD800\\uDC00-\\uDBFF\\uDFFF\\t]*", "ok 😀\t", "bell\x07"),
        (r"([\p{L}\p{Z}\p{N}_.:\/=+\-@]*)${1,128}", "key", "key!"),
        (r"\p{ASCII}*", "Root=1-5759e988-bd862e3fe1be46a994272793", "Root=é"),
    ],
    ids=["unicode-categories", "posix-class", "surrogate-pair-range", "quantified-anchor", "posix-ascii"],
)
def test_java_only_constructs_keep_their_java_meaning(pattern: str, accepted: str, refused: str) -> None:
    # Given a pattern Python's re would not accept / When translated / Then it matches as Java would
    compiled = contracts.compiled_pattern(pattern)
    assert compiled.fullmatch(accepted) and not compiled.fullmatch(refused)


def test_the_call_log_numbers_requests_from_many_threads_once_each(tmp_path: Path) -> None:
    # Given a log over a folder holding the log of an earlier run
    (tmp_path / contracts.CallLog.FILE).write_text('{"n": 1}\n')
    log = contracts.CallLog(tmp_path)

    # When eight threads record 50 requests each and the log is closed
    def put(worker: int) -> None:
        for number in range(50):
            log.record("sagemaker-featurestore-runtime", "PutRecord", {"Record": [worker, number]})

    threads = [threading.Thread(target=put, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    # Then 400 lines are numbered 1..400 in order without gaps, each one request, and the earlier run's are gone
    calls = contracts.read_calls(tmp_path)
    assert [call["n"] for call in calls] == list(range(1, 401))
    assert {tuple(call["request"]["Record"]) for call in calls} == {(w, n) for w in range(8) for n in range(50)}
    assert calls[0]["service"] == "sagemaker-featurestore-runtime" and calls[0]["operation"] == "PutRecord"
