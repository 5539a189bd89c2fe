"""The IAM policy evaluator and the operation-to-action mapping of labelflow_local.iam."""

from __future__ import annotations

import pytest

from labelflow_local.iam import Call, Statement, allowed, matches, operation_actions, unused_grants

REGION, ACCOUNT = "us-east-1", "123456789012"


def statement(effect: str, action: str, resource: str, **condition: dict[str, str]) -> Statement:
    return Statement(
        sid=f"{effect}{action}", effect=effect, actions=(action,), resources=(resource,), condition=condition
    )


def test_wildcards_span_slashes_and_colons_and_question_mark_is_one_character() -> None:
    # Given IAM's two wildcards
    # Then * matches any run (slashes and colons included) and ? exactly one character
    assert matches("arn:aws:s3:::b/runs/*", "arn:aws:s3:::b/runs/x/y/z.json")
    assert matches(
        "arn:aws:logs:*:log-group:/aws/sagemaker/*", "arn:aws:logs:us-east-1:1:log-group:/aws/sagemaker/P:log-stream:s"
    )
    assert matches("s3:Get?bject", "s3:GetObject") and not matches("s3:Get?bject", "s3:GetObjectVersion")
    assert not matches("arn:aws:s3:::b/runs/*", "arn:aws:s3:::b/raw/x")


def test_an_explicit_deny_wins_over_an_allow() -> None:
    # Given an allow on runs/* and a deny on one key under it
    statements = [
        statement("Allow", "s3:*", "arn:aws:s3:::b/runs/*"),
        statement("Deny", "s3:PutObject", "arn:aws:s3:::b/runs/locked"),
    ]
    # Then the denied key is refused, its neighbour allowed, and actions match case-insensitively
    assert not allowed(statements, Call("F", "s3:PutObject", "arn:aws:s3:::b/runs/locked"))
    assert allowed(statements, Call("F", "S3:putobject", "arn:aws:s3:::b/runs/open"))
    assert not allowed(statements, Call("F", "s3:PutObject", "arn:aws:s3:::b/raw/x"))


def test_pass_role_holds_only_when_passed_to_the_named_service() -> None:
    # Given PassRole conditioned on iam:PassedToService
    passed = statement(
        "Allow",
        "iam:PassRole",
        "arn:aws:iam::1:role/r",
        StringEquals={"iam:PassedToService": "sagemaker.amazonaws.com"},
    )
    role = "arn:aws:iam::1:role/r"
    # Then it holds for SageMaker, not for another service, and not when the request carries no such key
    assert allowed(
        [passed], Call("F", "iam:PassRole", role, context=(("iam:PassedToService", "sagemaker.amazonaws.com"),))
    )
    assert not allowed(
        [passed], Call("F", "iam:PassRole", role, context=(("iam:PassedToService", "glue.amazonaws.com"),))
    )
    assert not allowed([passed], Call("F", "iam:PassRole", role))


@pytest.mark.parametrize(
    ("operation", "params", "expected"),
    [
        ("HeadObject", {"Bucket": "b", "Key": "k"}, [("s3:GetObject", "arn:aws:s3:::b/k")]),
        ("GetObject", {"Bucket": "b", "Key": "k", "VersionId": "v"}, [("s3:GetObjectVersion", "arn:aws:s3:::b/k")]),
        ("ListObjectsV2", {"Bucket": "b", "Prefix": "runs/"}, [("s3:ListBucket", "arn:aws:s3:::b")]),
        (
            "CopyObject",
            {"Bucket": "b", "Key": "quarantine/k", "CopySource": {"Bucket": "b", "Key": "raw/k", "VersionId": "v"}},
            [("s3:GetObjectVersion", "arn:aws:s3:::b/raw/k"), ("s3:PutObject", "arn:aws:s3:::b/quarantine/k")],
        ),
        (
            "CopyObject",
            {"Bucket": "b", "Key": "t", "CopySource": "b/raw/a%20b?versionId=v"},
            [("s3:GetObjectVersion", "arn:aws:s3:::b/raw/a b"), ("s3:PutObject", "arn:aws:s3:::b/t")],
        ),
    ],
)
def test_s3_operations_map_to_the_actions_they_are_authorized_as(operation, params, expected) -> None:
    # When an S3 call is mapped
    actions = [
        (action, resource) for action, resource, _ in operation_actions(REGION, ACCOUNT, "s3", operation, params)
    ]
    # Then it needs exactly the Service Authorization Reference's actions on those resources
    assert actions == expected


def test_put_record_is_authorized_on_the_feature_group_in_lower_case() -> None:
    # When the Feature Store runtime's PutRecord is mapped
    actions = operation_actions(
        REGION, ACCOUNT, "sagemaker-featurestore-runtime", "PutRecord", {"FeatureGroupName": "Stack-Reviews"}
    )
    # Then it is sagemaker:PutRecord on the group's ARN
    assert actions == [("sagemaker:PutRecord", f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:feature-group/stack-reviews", ())]


def test_an_unmapped_operation_fails_loudly() -> None:
    with pytest.raises(KeyError, match="no IAM mapping"):
        operation_actions(REGION, ACCOUNT, "s3", "PutBucketPolicy", {"Bucket": "b"})


def test_a_grant_no_call_matched_is_reported_unused() -> None:
    # Given a statement granting two actions, one of them used
    granted = Statement("Rw", "Allow", ("s3:GetObject", "s3:PutObject"), ("arn:aws:s3:::b/runs/*",))
    # Then only the other is unused
    assert unused_grants([granted], [Call("F", "s3:GetObject", "arn:aws:s3:::b/runs/x")]) == [
        ("Rw", "s3:PutObject", "arn:aws:s3:::b/runs/*")
    ]
