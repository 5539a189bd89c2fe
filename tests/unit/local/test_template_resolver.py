"""labelflow_local.template: the CloudFormation YAML loader, the intrinsic-function resolver, functions()."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from labelflow_local.template import (
    PROJECT_ROOT,
    TEMPLATE_PATH,
    Resolver,
    _CfnLoader,
    functions,
    load_template,
    parameter_problem,
    snake_case,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "labelflow-demo"
STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:labelflow"
FOLDERS = {
    "on_object_created",
    "plan_processing",
    "route_by_confidence",
    "gt_pre_annotation",
    "gt_post_annotation",
    "merge_labels",
    "ingest_features",
    "finalize_run",
    "start_label_studio_review",
    "poll_label_studio_reviews",
    "label_studio_webhook",
}

SMALL_TEMPLATE: dict[str, Any] = {
    "Parameters": {
        "Stage": {"Type": "String", "Default": "dev"},
        "Threshold": {"Type": "Number", "Default": 0.8},
        "Workers": {"Type": "Number", "Default": 8},
        "Email": {"Type": "String", "Default": ""},
    }
}


def cfn(text: str) -> Any:
    return yaml.load(textwrap.dedent(text), Loader=_CfnLoader)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture
def resolver() -> Resolver:
    return Resolver(
        SMALL_TEMPLATE,
        refs={"Bucket": BUCKET, "Stage": "prod", "AWS::Region": REGION},
        attributes={"Fn.Arn": "arn:aws:lambda:us-east-1:123456789012:function:fn", "Role.Arn": "arn:role"},
    )


# ------------------------------------------------------------------------------------------- the loader
def test_the_loader_turns_short_tags_into_long_form() -> None:
    # Given CloudFormation short-form tags
    text = """\
        ref: !Ref DataBucket
        getatt_scalar: !GetAtt PlanProcessingFunction.Arn
        getatt_nested: !GetAtt Queue.Attributes.Arn
        getatt_list: !GetAtt [Role, Arn]
        sub: !Sub arn:${AWS::Partition}:s3:::${DataBucket}/*
        sub_list: !Sub [ "${A}-x", { A: !Ref Stage } ]
        condition: !Condition HasAlarmEmail
        nested: !Not [!Equals [!Ref AlarmEmail, ""]]
        select: !Select [0, !Split [".", !Ref Image]]
        plain: [1, two]
    """
    # When it is loaded
    loaded = cfn(text)
    # Then each tag becomes its long form: Ref/Condition as is, the others as Fn::<Name>
    assert loaded["ref"] == {"Ref": "DataBucket"}
    assert loaded["getatt_scalar"] == {"Fn::GetAtt": ["PlanProcessingFunction", "Arn"]}
    assert loaded["getatt_nested"] == {"Fn::GetAtt": ["Queue", "Attributes.Arn"]}
    assert loaded["getatt_list"] == {"Fn::GetAtt": ["Role", "Arn"]}
    assert loaded["sub"] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::${DataBucket}/*"}
    assert loaded["sub_list"] == {"Fn::Sub": ["${A}-x", {"A": {"Ref": "Stage"}}]}
    assert loaded["condition"] == {"Condition": "HasAlarmEmail"}
    assert loaded["nested"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}
    assert loaded["select"] == {"Fn::Select": [0, {"Fn::Split": [".", {"Ref": "Image"}]}]}
    assert loaded["plain"] == [1, "two"]


def test_the_loader_takes_mapping_tags_and_stays_safe() -> None:
    # Given a tag on a mapping, and a Python object tag
    # When they are loaded
    loaded = cfn("value: !Transform {Name: AWS::Include, Parameters: {Location: s3://x}}\n")
    # Then the mapping becomes Fn::<Name> of a dict
    assert loaded == {"value": {"Fn::Transform": {"Name": "AWS::Include", "Parameters": {"Location": "s3://x"}}}}
    # And a python/object tag is refused, as by SafeLoader: no arbitrary objects
    with pytest.raises(yaml.constructor.ConstructorError, match="python/object"):
        cfn("x: !!python/object/apply:os.system [ls]\n")


def test_load_template_reads_the_real_template_in_long_form(template: dict[str, Any]) -> None:
    # Given the project's template.yaml
    # When load_template reads it (the module-scoped `template` fixture)
    # Then short tags are long form in it
    assert TEMPLATE_PATH == PROJECT_ROOT / "template.yaml"
    assert template["Globals"]["Function"]["Environment"]["Variables"]["DATA_BUCKET"] == {"Ref": "DataBucket"}
    assert template["Resources"]["AlarmEmailSubscription"]["Condition"] == "HasAlarmEmail"
    assert template["Conditions"]["HasAlarmEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}


# ----------------------------------------------------------------------------------------- the resolver
def test_ref_uses_given_values_then_parameter_defaults(resolver: Resolver) -> None:
    # Given refs for Bucket and Stage, and parameters with defaults
    # When refs are resolved
    # Then given values win over defaults, and defaults fill the rest, as strings
    assert resolver.resolve({"Ref": "Bucket"}) == BUCKET
    assert resolver.resolve({"Ref": "Stage"}) == "prod"
    assert resolver.resolve({"Ref": "Threshold"}) == "0.8"
    assert resolver.resolve({"Ref": "Workers"}) == "8"
    assert resolver.resolve({"Ref": "Email"}) == ""


def test_scalars_resolve_to_strings(resolver: Resolver) -> None:
    # Given plain scalars
    # When they are resolved
    # Then they come back as strings
    assert resolver.resolve("text") == "text"
    assert resolver.resolve(3) == "3"
    assert resolver.resolve(0.5) == "0.5"


def test_getatt_in_list_or_dotted_form(resolver: Resolver) -> None:
    # Given known attributes
    # When GetAtt is resolved in list and dotted string form
    # Then both give the attribute's value
    assert resolver.resolve({"Fn::GetAtt": ["Role", "Arn"]}) == "arn:role"
    assert resolver.resolve({"Fn::GetAtt": "Role.Arn"}) == "arn:role"
    assert resolver.resolve(cfn("x: !GetAtt Fn.Arn\n")["x"]) == "arn:aws:lambda:us-east-1:123456789012:function:fn"


def test_sub_replaces_refs_and_attributes(resolver: Resolver) -> None:
    # Given a Sub with a pseudo parameter, a ref, a defaulted parameter and an attribute
    value = {"Fn::Sub": "s3://${Bucket}/${Stage}/${Workers}/${AWS::Region}/${Role.Arn}"}
    # When it is resolved
    # Then every ${...} is replaced
    assert resolver.resolve(value) == "s3://labelflow-demo/prod/8/us-east-1/arn:role"
    assert resolver.resolve({"Fn::Sub": "no placeholders"}) == "no placeholders"


def test_sub_escaped_literal_is_rendered_without_the_bang(resolver: Resolver) -> None:
    # Given a Sub with CloudFormation's escape for a literal ${...}
    # When it is resolved
    # Then the literal is kept, without the exclamation mark
    assert resolver.resolve({"Fn::Sub": "${Bucket}/${!Literal}"}) == "labelflow-demo/${Literal}"


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ({"Ref": "Missing"}, "Missing"),
        ({"Fn::GetAtt": ["Missing", "Arn"]}, "Missing.Arn"),
        ({"Fn::GetAtt": "Fn.Name"}, "Fn.Name"),
        ({"Fn::Sub": "${Bucket}/${Nowhere}"}, "Nowhere"),
        ({"Fn::Sub": "${Role.Name}"}, "Role.Name"),
    ],
)
def test_unknown_references_are_errors_naming_them(resolver: Resolver, value: Any, named: str) -> None:
    # Given a reference the resolver has no value for
    # When it is resolved
    # Then ValueError names it
    with pytest.raises(ValueError, match=f"no value for {named} "):
        resolver.resolve(value)


@pytest.mark.parametrize(
    "value",
    [
        {"Fn::Join": ["-", ["a", "b"]]},
        {"Fn::Sub": ["${A}", {"A": "x"}]},
        {"Ref": "Bucket", "Extra": 1},
        ["a"],
        None,
    ],
)
def test_unsupported_intrinsics_are_errors(resolver: Resolver, value: Any) -> None:
    # Given something other than a scalar, Ref, GetAtt or string Sub
    # When it is resolved
    # Then ValueError says local mode cannot resolve it
    with pytest.raises(ValueError, match="local mode cannot resolve"):
        resolver.resolve(value)


def test_resolve_deep_walks_lists_and_mappings(resolver: Resolver) -> None:
    # Given intrinsics nested in lists and mappings, next to plain values
    value = {
        "S3StorageConfig": {"S3Uri": {"Fn::Sub": "s3://${Bucket}/feature-store"}},
        "TableFormat": "Glue",
        "Targets": [{"Ref": "Stage"}, {"Arn": {"Fn::GetAtt": ["Fn", "Arn"]}}, 5, None],
        "Condition": "HasX",
    }
    # When it is resolved deeply
    resolved = resolver.resolve_deep(value)
    # Then the intrinsics are replaced and everything else is kept as is
    assert resolved == {
        "S3StorageConfig": {"S3Uri": "s3://labelflow-demo/feature-store"},
        "TableFormat": "Glue",
        "Targets": ["prod", {"Arn": "arn:aws:lambda:us-east-1:123456789012:function:fn"}, 5, None],
        "Condition": "HasX",
    }
    assert resolver.resolve_deep({"Ref": "Bucket"}) == BUCKET
    assert resolver.resolve_deep("plain") == "plain"


# -------------------------------------------------------------------------------------------- functions()
def test_snake_case_gives_the_function_folder() -> None:
    # Given logical ids
    # When they are snake-cased
    # Then the Function suffix goes and words are joined by underscores
    assert snake_case("PlanProcessingFunction") == "plan_processing"
    assert snake_case("GtPreAnnotationFunction") == "gt_pre_annotation"
    assert snake_case("DataBucket") == "data_bucket"


@pytest.fixture
def template_resolver(template: dict[str, Any]) -> Resolver:
    """What local mode gives the template (as LocalCloud builds it): pseudo parameters, bucket, ARNs."""
    resources = template["Resources"]

    def of_type(kind: str) -> list[str]:
        return [name for name, resource in resources.items() if resource["Type"] == kind]

    refs = {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws", "AWS::StackName": "labelflow"}
    refs["WorkteamArn"] = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/private-crowd/labelflow-local"
    refs |= dict.fromkeys(of_type("AWS::S3::Bucket"), BUCKET)
    refs |= dict.fromkeys(of_type("AWS::Serverless::StateMachine"), STATE_MACHINE_ARN)
    attributes = {
        f"{name}.Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:labelflow-{snake_case(name).replace('_', '-')}"
        for name in of_type("AWS::Serverless::Function")
    }
    attributes |= {f"{name}.Arn": f"arn:aws:iam::{ACCOUNT}:role/labelflow-{name}" for name in of_type("AWS::IAM::Role")}
    return Resolver(template, refs=refs, attributes=attributes)


def test_functions_of_the_real_template_with_globals_merged(
    template: dict[str, Any], template_resolver: Resolver
) -> None:
    # Given the real template and local values for its references
    # When its functions are read
    found = functions(template, template_resolver)
    # Then all eleven are there, keyed by folder name, each with its code folder and the global handler
    assert set(found) == FOLDERS
    for name, definition in found.items():
        assert definition.name == name
        assert definition.code_dir == PROJECT_ROOT / "functions" / name
        assert (definition.code_dir / "app.py").is_file()
        assert definition.logical_id == "".join(part.title() for part in name.split("_")) + "Function"
        assert definition.handler == "app.lambda_handler"
        # And the global variables are on every function, resolved
        assert definition.environment["DATA_BUCKET"] == BUCKET
        assert definition.environment["POWERTOOLS_SERVICE_NAME"] == "labelflow"
        assert definition.environment["POWERTOOLS_LOG_LEVEL"] == "INFO"
    # And a function's own variables only on it
    with_image = {name for name, definition in found.items() if "PROCESSING_IMAGE_URI" in definition.environment}
    assert with_image == {"plan_processing"}
    plan = found["plan_processing"].environment
    assert plan["PROCESSING_IMAGE_URI"].endswith("sagemaker-scikit-learn:1.4-2-py312-cpu-py3")
    assert plan["PROCESSING_INSTANCE_COUNT"] == "1" and plan["PROCESSING_MAX_RUNTIME_SECONDS"] == "3600"
    assert found["on_object_created"].environment["STATE_MACHINE_ARN"] == STATE_MACHINE_ARN
    assert found["route_by_confidence"].environment["CONFIDENCE_THRESHOLD"] == "0.8"
    assert found["ingest_features"].environment["INGEST_MAX_WORKERS"] == "16"
    assert "CONFIDENCE_THRESHOLD" not in found["merge_labels"].environment


def test_a_function_variable_overrides_a_global_one(tmp_path: Path) -> None:
    # Given a template whose function redefines a global variable and sets its own handler
    template = cfn(
        """\
        Globals:
          Function:
            Handler: app.lambda_handler
            Environment:
              Variables: {LEVEL: INFO, BUCKET: !Ref Data}
        Resources:
          Data: {Type: AWS::S3::Bucket}
          OneFunction:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: functions/one/
              Handler: main.handle
              Environment:
                Variables: {LEVEL: DEBUG}
          TwoFunction:
            Type: AWS::Serverless::Function
            Properties: {CodeUri: functions/two/}
        """
    )
    resolver = Resolver(template, refs={"Data": BUCKET}, attributes={})
    # When its functions are read
    found = functions(template, resolver)
    # Then the function's value wins, the globals fill the rest, and handlers fall back to the global one
    assert found["one"].environment == {"LEVEL": "DEBUG", "BUCKET": BUCKET}
    assert found["two"].environment == {"LEVEL": "INFO", "BUCKET": BUCKET}
    assert (found["one"].handler, found["two"].handler) == ("main.handle", "app.lambda_handler")


def test_the_template_values_local_mode_resolves(template: dict[str, Any], template_resolver: Resolver) -> None:
    # Given the same local values
    resources = template["Resources"]
    # When the state machine's substitutions and PlanProcessing's Feature Store settings are resolved
    substitutions = {
        key: template_resolver.resolve(value)
        for key, value in resources["LabelingStateMachine"]["Properties"]["DefinitionSubstitutions"].items()
    }
    plan = functions(template, template_resolver)["plan_processing"].environment
    # Then every value resolves: groups are named after the local stack, and their offline store is in the bucket
    assert substitutions["PlanProcessingFunctionArn"].endswith(":function:labelflow-plan-processing")
    assert substitutions["SageMakerExecutionRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/labelflow-SageMakerExecutionRole"
    assert substitutions["WorkteamArn"].startswith("arn:aws:sagemaker:")
    assert plan["FEATURE_GROUP_PREFIX"] == "labelflow"
    assert plan["FEATURE_STORE_ROLE_ARN"] == f"arn:aws:iam::{ACCOUNT}:role/labelflow-FeatureStoreRole"
    assert plan["OFFLINE_STORE_S3_URI"] == f"s3://{BUCKET}/feature-store"


# --- parameters a local run takes (labelflow run --parameter) ----------------------------------------------
@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("ProcessingInstanceCount", "3", None),
        ("ProcessingInstanceCount", "0", "outside 1..100"),
        ("ProcessingInstanceCount", "101", "outside 1..100"),
        ("ProcessingInstanceCount", "three", "is a Number"),
        ("ProcessingShardMinBytes", "8388607", "outside 8388608..inf"),
        ("ConfidenceThreshold", "0.95", None),
        ("ProcessingInstanceType", "ml.m5.huge", "not one of its allowed values (ml.t3.medium"),
        ("LabelStudioPollSchedule", "rate(10 minutes)", None),
        ("LabelStudioPollSchedule", "rate(10 minutes) ", "must be rate(1 minute)"),
        ("LabelStudioPollSchedule", "xrate(10 minutes)", "must be rate(1 minute)"),
        ("AlarmEmail", "", None),
        ("Nope", "1", "template.yaml has no parameter Nope"),
        ("ReviewBackend", "labelstudio", "set by local mode itself: use --reviewer"),
    ],
)
def test_a_parameter_value_is_refused_where_cloudformation_refuses_it(
    name: str, value: str, problem: str | None
) -> None:
    # Given the template's parameters and their constraints
    # When a value is checked / Then it is refused, with the constraint it breaks, exactly when a deploy would be
    found = parameter_problem(load_template(), name, value)
    assert found is None if problem is None else (found is not None and problem in found), found
