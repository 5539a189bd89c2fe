"""Static checks of template.yaml: the deployable contract between the code and AWS."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.model import StringShape

from labelflow.errors import FeatureGroupNotReady
from labelflow.models.settings import PlanSettings
from labelflow.spark_planning import SPARK_PYTHON
from labelflow_local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
ASL = ROOT / "state_machines" / "labeling.asl.json"
SAMCONFIG = ROOT / "samconfig.toml"


# -------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    resources: dict[str, Any] = template["Resources"]
    return resources


def resources_of_type(resources: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in resources.items() if res["Type"] == resource_type}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def iter_statements(node: Any) -> Iterator[dict[str, Any]]:
    """Every IAM-style statement (a mapping with Effect and Action) anywhere below `node`."""
    if isinstance(node, dict):
        if "Effect" in node and ("Action" in node or "NotAction" in node):
            yield node
        for child in node.values():
            yield from iter_statements(child)
    elif isinstance(node, list):
        for child in node:
            yield from iter_statements(child)


def function_env(template: dict[str, Any], name: str) -> dict[str, Any]:
    env = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    env.update(template["Resources"][name]["Properties"].get("Environment", {}).get("Variables", {}))
    return env


# ---------------------------------------------------------------------------- tests
def test_template_is_a_sam_template(template: dict[str, Any]) -> None:
    # Given the template
    # When its transform and function globals are read
    globals_ = template["Globals"]["Function"]
    # Then it is a SAM template for arm64 Python 3.12 functions sharing the labelflow layer
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    assert globals_["Runtime"] == "python3.12"
    assert globals_["Architectures"] == ["arm64"]
    assert globals_["Handler"] == "app.lambda_handler"
    assert globals_["Tracing"] == "Active"
    assert globals_["Layers"] == [{"Ref": "LabelflowLayer"}]
    assert globals_["Environment"]["Variables"]["DATA_BUCKET"] == {"Ref": "DataBucket"}


def test_data_bucket_is_versioned_encrypted_private_and_emits_events(resources: dict[str, Any]) -> None:
    # Given the data bucket
    bucket = resources["DataBucket"]
    props = bucket["Properties"]
    # When its protection settings are read
    encryption = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    public_access = props["PublicAccessBlockConfiguration"]
    # Then it is versioned, encrypted at rest, fully private, owner-enforced, EventBridge-enabled and retained
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    assert encryption and all(
        rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"} for rule in encryption
    )
    assert public_access == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert props["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True
    assert bucket["DeletionPolicy"] == "Retain"
    assert bucket["UpdateReplacePolicy"] == "Retain"


def test_data_bucket_policy_denies_requests_without_tls(resources: dict[str, Any]) -> None:
    # Given the bucket policies of the template
    policies = resources_of_type(resources, "AWS::S3::BucketPolicy")
    # When the one on the data bucket is looked up
    (policy,) = [p for p in policies.values() if p["Properties"]["Bucket"] == {"Ref": "DataBucket"}]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    # Then it denies every S3 action over plain HTTP on the bucket and on its objects
    tls_denials = [
        s
        for s in statements
        if s["Effect"] == "Deny"
        and "s3:*" in as_list(s["Action"])
        and str(s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")).lower() == "false"
    ]
    assert tls_denials, "no statement denies aws:SecureTransport=false"
    covered = [r for s in tls_denials for r in as_list(s["Resource"])]
    assert {"Fn::GetAtt": ["DataBucket", "Arn"]} in covered
    assert {"Fn::Sub": "${DataBucket.Arn}/*"} in covered


def test_every_function_code_folder_exists(resources: dict[str, Any]) -> None:
    # Given every SAM function of the template
    functions = resources_of_type(resources, "AWS::Serverless::Function")
    assert len(functions) == 11
    for name, function in functions.items():
        # When its CodeUri is resolved against the repository
        code_uri = function["Properties"]["CodeUri"]
        folder = ROOT / code_uri
        # Then it is a folder under functions/ holding the app.py the global handler points at
        assert code_uri.startswith("functions/"), name
        assert folder.is_dir(), f"{name}: {code_uri} does not exist"
        assert (folder / "app.py").is_file(), f"{name}: {code_uri}app.py does not exist"


def test_layer_is_built_for_python312_arm64(resources: dict[str, Any]) -> None:
    # Given the labelflow layer
    layer = resources["LabelflowLayer"]
    # When its build settings are read
    props, metadata = layer["Properties"], layer["Metadata"]
    # Then it is built with pip for the same runtime and architecture as the functions
    assert (ROOT / props["ContentUri"]).is_dir()
    assert props["CompatibleRuntimes"] == ["python3.12"]
    assert props["CompatibleArchitectures"] == ["arm64"]
    assert metadata == {"BuildMethod": "python3.12", "BuildArchitecture": "arm64"}


def test_state_machine_substitutions_match_the_definition_placeholders(resources: dict[str, Any]) -> None:
    # Given the state machine definition file
    if not ASL.exists():
        pytest.skip("state_machines/labeling.asl.json is not written yet")
    machine = resources["LabelingStateMachine"]["Properties"]
    assert ROOT / machine["DefinitionUri"] == ASL
    json.loads(ASL.read_text(encoding="utf-8"))
    # When its ${...} placeholders are collected
    placeholders = set(re.findall(r"\$\{([^}]+)\}", ASL.read_text(encoding="utf-8")))
    # Then each has a DefinitionSubstitutions key, and no substitution is unused
    assert placeholders == set(machine["DefinitionSubstitutions"])


def test_state_machine_may_invoke_every_workflow_function(resources: dict[str, Any]) -> None:
    # Given the state machine's substitutions and policies
    machine = resources["LabelingStateMachine"]["Properties"]
    invokable = {
        policy["LambdaInvokePolicy"]["FunctionName"]["Ref"]
        for policy in machine["Policies"]
        if isinstance(policy, dict) and "LambdaInvokePolicy" in policy
    }
    # When the functions it calls as Task resources are listed (Ground Truth, not the workflow, calls the GT ones)
    called = {
        value["Fn::GetAtt"][0]
        for key, value in machine["DefinitionSubstitutions"].items()
        if key.endswith("FunctionArn") and not key.startswith("Gt")
    }
    # Then each of them may be invoked by the state machine
    assert called == {
        "PlanProcessingFunction",
        "RouteByConfidenceFunction",
        "MergeLabelsFunction",
        "IngestFeaturesFunction",
        "FinalizeRunFunction",
        "StartLabelStudioReviewFunction",
    }
    assert called <= invokable


def test_state_machine_passes_each_job_role_only_to_its_service(resources: dict[str, Any]) -> None:
    # Given the state machine's IAM statements
    statements = list(iter_statements(resources["LabelingStateMachine"]["Properties"]["Policies"]))
    # When the iam:PassRole grants are selected
    pass_role = [s for s in statements if "iam:PassRole" in as_list(s["Action"])]
    # Then the SageMaker execution role goes only to SageMaker, the Spark job role only to EMR Serverless
    passed = {
        statement["Resource"]["Fn::GetAtt"][0]: statement["Condition"]["StringEquals"]["iam:PassedToService"]
        for statement in pass_role
    }
    assert len(passed) == len(pass_role)
    assert passed == {
        "SageMakerExecutionRole": "sagemaker.amazonaws.com",
        "SparkJobRole": "emr-serverless.amazonaws.com",
    }


STACK_FEATURE_GROUPS = {
    "Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:feature-group/${AWS::StackName}-*"
}


def function_statements(resources: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return list(iter_statements(resources[name]["Properties"].get("Policies", [])))


def grants(resources: dict[str, Any], name: str, prefix: str) -> dict[str, list[Any]]:
    """A function's Allow grants of one service (`prefix`, e.g. "sagemaker:"): action → resources."""
    granted: dict[str, list[Any]] = {}
    for statement in function_statements(resources, name):
        for action in as_list(statement["Action"]):
            if statement["Effect"] == "Allow" and action.startswith(prefix):
                granted.setdefault(action, []).extend(as_list(statement["Resource"]))
    return granted


def test_no_feature_group_is_declared_each_dataset_creates_its_own(resources: dict[str, Any]) -> None:
    # Given the template's resources
    # When feature groups are looked for / Then there are none: a dataset's first run creates its group from its spec
    assert resources_of_type(resources, "AWS::SageMaker::FeatureGroup") == {}


def test_planning_may_create_and_describe_only_the_stacks_feature_groups(resources: dict[str, Any]) -> None:
    # Given PlanProcessing's grants
    # When its SageMaker and IAM grants are read
    sagemaker = grants(resources, "PlanProcessingFunction", "sagemaker:")
    pass_role = [
        s for s in function_statements(resources, "PlanProcessingFunction") if "iam:PassRole" in as_list(s["Action"])
    ]
    # Then it may create and describe groups named <stack>-*, and pass the Feature Store role to SageMaker only
    assert sagemaker == {
        "sagemaker:CreateFeatureGroup": [STACK_FEATURE_GROUPS],
        "sagemaker:DescribeFeatureGroup": [STACK_FEATURE_GROUPS],
    }
    (statement,) = pass_role
    assert as_list(statement["Resource"]) == [{"Fn::GetAtt": ["FeatureStoreRole", "Arn"]}]
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_ingestion_may_describe_and_write_only_the_stacks_feature_groups(resources: dict[str, Any]) -> None:
    # Given IngestFeatures' grants
    # When its SageMaker grants are read / Then it may wait for, write to and (resuming a batch) read back groups
    # named <stack>-*, nothing else
    assert grants(resources, "IngestFeaturesFunction", "sagemaker:") == {
        "sagemaker:DescribeFeatureGroup": [STACK_FEATURE_GROUPS],
        "sagemaker:GetRecord": [STACK_FEATURE_GROUPS],
        "sagemaker:PutRecord": [STACK_FEATURE_GROUPS],
    }
    assert grants(resources, "IngestFeaturesFunction", "iam:") == {}


def test_no_other_function_touches_feature_groups(resources: dict[str, Any]) -> None:
    # Given every function but the two that manage and write groups, and FinalizeRun
    others = set(resources_of_type(resources, "AWS::Serverless::Function")) - {
        "PlanProcessingFunction",
        "IngestFeaturesFunction",
        "FinalizeRunFunction",
    }
    # When their SageMaker grants are read / Then none has any
    assert {name: grants(resources, name, "sagemaker:") for name in sorted(others)} == dict.fromkeys(sorted(others), {})
    # And FinalizeRun may only read records back (to settle an ingestion stopped part-way)
    assert grants(resources, "FinalizeRunFunction", "sagemaker:") == {"sagemaker:GetRecord": [STACK_FEATURE_GROUPS]}


def test_routing_may_publish_the_transform_state(resources: dict[str, Any]) -> None:
    # Given RouteByConfidence's S3 grants
    s3 = grants(resources, "RouteByConfidenceFunction", "s3:")
    # When the transform state's prefix is looked for / Then it may write the published state there
    assert {"Fn::Sub": "arn:${AWS::Partition}:s3:::${DataBucket}/artifacts/state/*"} in s3["s3:PutObject"]


def test_the_feature_store_role_may_write_the_offline_store_planning_configures(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    # Given the offline store URI new groups get, and the role Feature Store assumes to write it
    uri = function_env(template, "PlanProcessingFunction")["OFFLINE_STORE_S3_URI"]["Fn::Sub"]
    role = resources["FeatureStoreRole"]["Properties"]
    writes = [
        resource
        for statement in iter_statements(role["Policies"])
        if "s3:PutObject" in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    ]
    # When the URI is turned into the objects under it / Then the role may put them, and SageMaker may assume it
    assert uri == "s3://${DataBucket}/feature-store"
    assert {"Fn::Sub": "arn:${AWS::Partition}:s3:::" + uri.removeprefix("s3://") + "/*"} in writes
    trusted = [s["Principal"]["Service"] for s in role["AssumeRolePolicyDocument"]["Statement"]]
    assert trusted == ["sagemaker.amazonaws.com"]


def test_ingestion_waits_minutes_for_a_group_being_created() -> None:
    # Given the retriers of IngestFeatures' Map iteration (one ingest batch)
    ingest = json.loads(ASL.read_text(encoding="utf-8"))["States"]["IngestFeatures"]
    retriers = ingest["ItemProcessor"]["States"]["IngestBatch"]["Retry"]
    (retry,) = [r for r in retriers if FeatureGroupNotReady.__name__ in r["ErrorEquals"]]
    # When the waits between its attempts are added up (interval × backoff^n, capped by MaxDelaySeconds)
    waits = [
        min(retry["IntervalSeconds"] * retry["BackoffRate"] ** n, retry.get("MaxDelaySeconds", float("inf")))
        for n in range(retry["MaxAttempts"])
    ]
    # Then it waits for minutes (creation usually takes about one) before the run fails, never over a minute at once
    assert sum(waits) >= 5 * 60 and max(waits) <= 60
    assert retry["ErrorEquals"] == ["FeatureGroupNotReady"]


def test_no_statement_allows_every_action(template: dict[str, Any]) -> None:
    # Given every IAM-style statement in the template (roles, SAM policies, resource policies)
    statements = list(iter_statements(template["Resources"]))
    assert statements
    # When the Allow statements are checked for wildcard actions
    too_broad = [s for s in statements if s["Effect"] == "Allow" and {"*", "s3:*"} & set(as_list(s.get("Action", [])))]
    # Then none grants "*" or "s3:*", and none uses NotAction
    assert too_broad == []
    assert not [s for s in statements if s["Effect"] == "Allow" and "NotAction" in s]


def test_sagemaker_role_can_invoke_both_ground_truth_functions(resources: dict[str, Any]) -> None:
    # Given the role that Processing and labeling jobs assume
    role = resources["SageMakerExecutionRole"]["Properties"]
    trusted = [s["Principal"]["Service"] for s in role["AssumeRolePolicyDocument"]["Statement"]]
    # When its lambda:InvokeFunction grants are collected
    invokable = [
        resource
        for statement in iter_statements(role["Policies"])
        if statement["Effect"] == "Allow" and "lambda:InvokeFunction" in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    ]
    # Then SageMaker may assume it and it may invoke the pre- and post-annotation functions
    assert "sagemaker.amazonaws.com" in trusted
    assert {"Fn::GetAtt": ["GtPreAnnotationFunction", "Arn"]} in invokable
    assert {"Fn::GetAtt": ["GtPostAnnotationFunction", "Arn"]} in invokable


def test_trigger_rule_matches_raw_object_created_events_with_retries_and_dead_letters(
    resources: dict[str, Any],
) -> None:
    # Given the trigger function's EventBridge event
    function = resources["OnObjectCreatedFunction"]["Properties"]
    (event,) = function["Events"].values()
    props = event["Properties"]
    # When its pattern and delivery settings are read
    pattern = props["Pattern"]
    # Then it matches S3 "Object Created" events for raw/ keys of the data bucket and dead-letters failures
    assert event["Type"] == "EventBridgeRule"
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "DataBucket"}]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "raw/"}]
    assert props["RetryPolicy"] == {"MaximumRetryAttempts": 8, "MaximumEventAgeInSeconds": 3600}
    assert props["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["TriggerDeadLetterQueue", "Arn"]}}
    on_failure = function["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
    assert on_failure["Destination"] == {"Fn::GetAtt": ["TriggerDeadLetterQueue", "Arn"]}


def test_functions_get_the_environment_their_settings_require(template: dict[str, Any]) -> None:
    # Given the variables each function's settings model reads
    required = {
        "OnObjectCreatedFunction": {"DATA_BUCKET", "STATE_MACHINE_ARN"},
        "PlanProcessingFunction": {
            "DATA_BUCKET",
            "PROCESSING_IMAGE_URI",
            "PROCESSING_INSTANCE_TYPE",
            "PROCESSING_INSTANCE_COUNT",
            "PROCESSING_VOLUME_SIZE_GB",
            "PROCESSING_MAX_RUNTIME_SECONDS",
            "FEATURE_GROUP_PREFIX",
            "FEATURE_STORE_ROLE_ARN",
            "OFFLINE_STORE_S3_URI",
        },
        "RouteByConfidenceFunction": {"DATA_BUCKET", "CONFIDENCE_THRESHOLD"},
        "MergeLabelsFunction": {"DATA_BUCKET", "INGEST_MAX_CONCURRENCY"},
        "IngestFeaturesFunction": {"DATA_BUCKET", "INGEST_MAX_WORKERS"},
    }
    for name, variables in required.items():
        # When the function's effective environment (globals + its own) is computed
        env = function_env(template, name)
        # Then every required variable is set
        assert variables <= set(env), f"{name} lacks {variables - set(env)}"
    assert function_env(template, "OnObjectCreatedFunction")["STATE_MACHINE_ARN"] == {"Ref": "LabelingStateMachine"}
    plan = function_env(template, "PlanProcessingFunction")
    assert plan["FEATURE_GROUP_PREFIX"] == {"Ref": "AWS::StackName"}
    assert plan["FEATURE_STORE_ROLE_ARN"] == {"Fn::GetAtt": ["FeatureStoreRole", "Arn"]}
    assert template["Outputs"]["FeatureGroupPrefix"]["Value"] == {"Ref": "AWS::StackName"}


def test_no_account_id_or_aws_partition_is_hard_coded_outside_parameter_defaults(template: dict[str, Any]) -> None:
    # Given everything in the template except its parameters
    rest = json.dumps({key: value for key, value in template.items() if key != "Parameters"})
    # When it is searched for literal account ids, regions and partitions
    # Then there are none: ARNs are built from AWS::Partition, AWS::Region and AWS::AccountId
    assert not re.search(r"(?<!\d)\d{12}(?!\d)", rest)
    assert "arn:aws:" not in rest
    assert not re.search(r"\b(us|eu|ap|sa|ca|me|af|il|mx)-[a-z]+-\d\b", rest)


def test_alarm_topic_can_receive_cloudwatch_alarms(resources: dict[str, Any]) -> None:
    # Given the alarm topic and its encryption key
    topic = resources["AlarmTopic"]["Properties"]
    key_policy = resources["AlarmTopicKey"]["Properties"]["KeyPolicy"]
    # When the key policy's grants to CloudWatch are collected
    cloudwatch_actions = {
        action
        for statement in iter_statements(key_policy)
        if statement["Effect"] == "Allow"
        and statement.get("Principal", {}).get("Service") == "cloudwatch.amazonaws.com"
        for action in as_list(statement["Action"])
    }
    # Then the topic uses a customer managed key CloudWatch may use (alias/aws/sns would silently drop alarms)
    assert topic["KmsMasterKeyId"] == {"Ref": "AlarmTopicKey"}
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= cloudwatch_actions
    for alarm in resources_of_type(resources, "AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert resources["AlarmEmailSubscription"]["Condition"] == "HasAlarmEmail"


def test_outputs_expose_what_the_cli_and_operators_need(template: dict[str, Any]) -> None:
    # Given the template outputs
    outputs = template["Outputs"]
    # When their names are listed
    # Then the bucket, workflow, layer, SageMaker role, feature group prefix and trigger DLQ are exported
    assert {
        "DataBucketName",
        "StateMachineArn",
        "LayerArn",
        "SageMakerExecutionRoleArn",
        "FeatureGroupPrefix",
        "TriggerDeadLetterQueueUrl",
    } <= set(outputs)


def test_samconfig_deploys_the_labelflow_stack() -> None:
    # Given samconfig.toml
    config = tomllib.loads(SAMCONFIG.read_text(encoding="utf-8"))
    # When the default environment is read
    default = config["default"]
    # Then it names the stack, builds cached and in parallel, lints on validate and confirms changesets
    assert config["version"] == 0.1
    assert default["global"]["parameters"]["stack_name"] == "labelflow"
    assert default["build"]["parameters"] == {"cached": True, "parallel": True}
    assert default["validate"]["parameters"]["lint"] is True
    deploy = default["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["confirm_changeset"] is True
    assert deploy["resolve_s3"] is True


def test_a_ground_truth_deployment_must_name_its_work_team(template: dict[str, Any]) -> None:
    # Given the WorkteamArn parameter and the template's rules
    parameter = template["Parameters"]["WorkteamArn"]
    rule = template["Rules"]["GroundTruthNeedsAWorkTeam"]
    # Then a Label Studio deployment may leave it empty, and any value given is a work team ARN
    assert parameter["Default"] == ""
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.match("arn:aws:sagemaker:eu-west-1:123456789012:workteam/private-crowd/reviewers")
    assert pattern.match("") and not pattern.match("private-crowd/reviewers")
    # And with Ground Truth as the backend CloudFormation refuses the stack before creating anything without one
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "ReviewBackend"}, "groundtruth"]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "WorkteamArn"}, ""]}]}


def test_processing_instance_types_are_the_ones_sagemaker_accepts(template: dict[str, Any]) -> None:
    # Given the parameter and the ProcessingInstanceType enum of botocore's SageMaker model
    model = botocore.session.get_session().get_service_model("sagemaker")
    instance_types = model.shape_for("ProcessingInstanceType")
    assert isinstance(instance_types, StringShape)
    parameter = template["Parameters"]["ProcessingInstanceType"]
    # Then the allowed values are exactly that list: ml.m7i-flex.large is valid, ml.t2.medium is not
    assert parameter["AllowedValues"] == instance_types.enum
    assert "ml.m7i-flex.large" in parameter["AllowedValues"]
    assert "ml.t2.medium" not in parameter["AllowedValues"]
    assert parameter["Default"] in parameter["AllowedValues"]
    # And PlanProcessing's settings accept every one of them
    pattern = re.compile(PlanSettings.model_fields["processing_instance_type"].metadata[0].pattern)
    assert [value for value in parameter["AllowedValues"] if not pattern.match(value)] == []


def test_sync_rule_grant_covers_only_step_functions_rules_for_sagemaker(resources: dict[str, Any]) -> None:
    # Given the state machine's statement for the .sync integrations' managed rules
    policies = resources["LabelingStateMachine"]["Properties"]["Policies"]
    (statement,) = [s for s in iter_statements(policies) if s.get("Sid") == "SageMakerSyncRules"]
    # Then it names the documented prefix, and nothing broader than the SageMaker family
    (resource,) = as_list(statement["Resource"])
    assert resource["Fn::Sub"].endswith(":rule/StepFunctionsGetEventsForSageMaker*")
    assert sorted(as_list(statement["Action"])) == ["events:DescribeRule", "events:PutRule", "events:PutTargets"]


def test_ingest_concurrency_is_a_parameter_within_the_inline_map_ceiling(template: dict[str, Any]) -> None:
    # Given the parameter MergeLabels passes on as the Map's MaxConcurrencyPath
    parameter = template["Parameters"]["IngestMaxConcurrency"]
    ingest = json.loads(ASL.read_text(encoding="utf-8"))["States"]["IngestFeatures"]
    # Then it cannot pass the 40 concurrent iterations of an inline Map (Step Functions developer guide)
    assert parameter["MinValue"] == 1 and parameter["MaxValue"] == 40
    assert function_env(template, "MergeLabelsFunction")["INGEST_MAX_CONCURRENCY"] == {"Ref": "IngestMaxConcurrency"}
    assert ingest["MaxConcurrencyPath"] == "$.merge.ingest_concurrency"
    assert ingest["ItemProcessor"]["ProcessorConfig"]["Mode"] == "INLINE"


# bench/RESULTS.md, "A 10M-row file on AWS": records an ingest invocation writes a second at 512 MB, and Feature
# Store's default PutRecord quota an account (SageMaker developer guide, "Quotas, naming rules and data types").
INGEST_RECORDS_PER_SECOND = 520
PUT_RECORD_QUOTA = 10_000


def test_the_defaults_fit_a_10m_row_file_in_30_minutes(template: dict[str, Any]) -> None:
    # Given the streaming steps' functions, the ingest function and the ingest concurrency
    resources = template["Resources"]
    memory = {name: resources[name]["Properties"].get("MemorySize") for name in ("RouteByConfidenceFunction",
              "MergeLabelsFunction", "IngestFeaturesFunction")}  # fmt: skip
    concurrency = template["Parameters"]["IngestMaxConcurrency"]["Default"]
    # Then routing and merging get one full vCPU (1,769 MB, Lambda developer guide), ingestion the global 512 MB
    assert memory == {"RouteByConfidenceFunction": 1769, "MergeLabelsFunction": 1769, "IngestFeaturesFunction": None}
    assert template["Globals"]["Function"]["MemorySize"] == 512
    # And ingestion runs nearly as many batches at once as the account's PutRecord quota takes (a tenth spare for
    # others writing to Feature Store), not more
    assert 0.9 * PUT_RECORD_QUOTA <= concurrency * INGEST_RECORDS_PER_SECOND <= PUT_RECORD_QUOTA


LS_FUNCTIONS = ("StartLabelStudioReviewFunction", "PollLabelStudioReviewsFunction", "LabelStudioWebhookFunction")
LS_SECRET = {
    "Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
    "${LabelStudioSecretName}-??????"
}


def test_review_backend_is_a_parameter_substituted_into_the_definition(template: dict[str, Any]) -> None:
    # Given the ReviewBackend parameter and the state machine's substitutions
    parameter = template["Parameters"]["ReviewBackend"]
    machine = template["Resources"]["LabelingStateMachine"]["Properties"]
    # Then Ground Truth stays the default, and the ASL receives the choice
    assert parameter["Default"] == "groundtruth"
    assert parameter["AllowedValues"] == ["groundtruth", "labelstudio"]
    assert machine["DefinitionSubstitutions"]["ReviewBackend"] == {"Ref": "ReviewBackend"}


def test_only_the_label_studio_functions_read_its_secret_and_only_that_one(resources: dict[str, Any]) -> None:
    # Given every function's statements
    for name, function in resources_of_type(resources, "AWS::Serverless::Function").items():
        statements = list(iter_statements(function["Properties"].get("Policies", [])))
        reads = [s for s in statements if "secretsmanager:GetSecretValue" in as_list(s["Action"])]
        # Then the Label Studio functions may read the named secret alone, and no other function any secret
        if name in LS_FUNCTIONS:
            assert [as_list(s["Resource"]) for s in reads] == [[LS_SECRET]]
        else:
            assert reads == []


def test_only_the_poller_and_webhook_answer_task_tokens(resources: dict[str, Any]) -> None:
    # Given the SendTask* grants (no resource types in the Service Authorization Reference: "*" is the only resource)
    for function_name, function in resources_of_type(resources, "AWS::Serverless::Function").items():
        statements = list(iter_statements(function["Properties"].get("Policies", [])))
        answers = [s for s in statements if any(a.startswith("states:SendTask") for a in as_list(s["Action"]))]
        # Then only those two may answer, success and heartbeat alone
        if function_name in ("PollLabelStudioReviewsFunction", "LabelStudioWebhookFunction"):
            assert [as_list(s["Resource"]) for s in answers] == [["*"]]
            assert sorted(a for s in answers for a in as_list(s["Action"])) == [
                "states:SendTaskHeartbeat",
                "states:SendTaskSuccess",
            ]
        else:
            assert answers == []


def test_the_poller_runs_on_the_schedule_and_the_webhook_only_when_enabled(resources: dict[str, Any]) -> None:
    # Given the poller's events and the webhook function
    poll = resources["PollLabelStudioReviewsFunction"]["Properties"]["Events"]["Poll"]
    webhook = resources["LabelStudioWebhookFunction"]
    start_env = resources["StartLabelStudioReviewFunction"]["Properties"]["Environment"]["Variables"]
    # Then the schedule is the parameter, and the webhook (a Function URL) exists only with its condition
    assert poll["Type"] == "Schedule" and poll["Properties"]["Schedule"] == {"Ref": "LabelStudioPollSchedule"}
    assert webhook["Condition"] == "LabelStudioWebhookEnabled"
    assert webhook["Properties"]["FunctionUrlConfig"] == {"AuthType": "NONE"}
    assert start_env["LABELSTUDIO_WEBHOOK_URL"] == {
        "Fn::If": ["LabelStudioWebhookEnabled", {"Fn::GetAtt": ["LabelStudioWebhookFunctionUrl", "FunctionUrl"]}, ""]
    }


def test_label_studio_parameters_default_to_values_their_patterns_accept(template: dict[str, Any]) -> None:
    # Given the Label Studio parameters with a pattern
    for name in ("LabelStudioSecretName", "LabelStudioPollSchedule"):
        parameter = template["Parameters"][name]
        # Then the default passes it (a schedule slower than hourly would miss the review's heartbeat)
        assert re.fullmatch(parameter["AllowedPattern"].strip("^$"), parameter["Default"]), name
    schedule = template["Parameters"]["LabelStudioPollSchedule"]["AllowedPattern"]
    assert not re.fullmatch(schedule.strip("^$"), "rate(60 minutes)")
    assert not re.fullmatch(schedule.strip("^$"), "rate(1 minutes)")


# ------------------------------------------------------------------ the Spark engine (EMR Serverless)
SPARK_APPLICATION_ARN = (
    "arn:${AWS::Partition}:emr-serverless:${AWS::Region}:${AWS::AccountId}:/applications/${SparkApplication}"
)


def spark_statements(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The state machine's statements that only exist with the Spark engine (Fn::If on SparkEngineEnabled)."""
    found = {}
    for entry in resources["LabelingStateMachine"]["Properties"]["Policies"]:
        for statement in entry.get("Statement", []) if isinstance(entry, dict) else []:
            if "Fn::If" in statement:
                condition, statement_if, otherwise = statement["Fn::If"]
                assert (condition, otherwise) == ("SparkEngineEnabled", {"Ref": "AWS::NoValue"})
                found[statement_if["Sid"]] = statement_if
    return found


def test_the_spark_application_exists_only_with_an_image_and_stops_when_idle(template: dict[str, Any]) -> None:
    # Given the EMR Serverless application
    (name, application), *others = resources_of_type(template["Resources"], "AWS::EMRServerless::Application").items()
    properties = application["Properties"]
    # Then there is one, deployed only with a Spark image, and it runs that image
    assert not others and application["Condition"] == "SparkEngineEnabled"
    assert template["Conditions"]["SparkEngineEnabled"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "SparkImageUri"}, ""]}]}
    assert properties["Type"] == "SPARK" and properties["ImageConfiguration"] == {"ImageUri": {"Ref": "SparkImageUri"}}
    # And its release is an emr-7 one (Spark 3.5, as pyspark in the tests)
    release = template["Parameters"]["SparkReleaseLabel"]
    assert re.fullmatch(release["AllowedPattern"], release["Default"]) and release["Default"].startswith("emr-7.")
    # And it starts on a job run and stops after a few idle minutes (1 to 10080: botocore's emr-serverless model)
    assert properties["AutoStartConfiguration"] == {"Enabled": True}
    stop = properties["AutoStopConfiguration"]
    assert stop["Enabled"] is True and 1 <= stop["IdleTimeoutMinutes"] <= 15
    # And its capacity is bounded by parameters
    assert properties["MaximumCapacity"] == {
        "Cpu": {"Fn::Sub": "${SparkMaximumVcpu} vCPU"},
        "Memory": {"Fn::Sub": "${SparkMaximumMemoryGB} GB"},
    }
    assert template["Outputs"]["SparkApplicationId"]["Value"] == {"Ref": name}


def test_the_spark_job_role_reads_run_inputs_and_code_and_writes_only_processed_and_logs(
    resources: dict[str, Any],
) -> None:
    # Given the Spark job's runtime role
    role = resources["SparkJobRole"]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    # When its grants are collected (action -> resources)
    granted: dict[str, set[str]] = {}
    for statement in iter_statements(role["Properties"]["Policies"]):
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            for resource in as_list(statement["Resource"]):
                granted.setdefault(action, set()).add(json.dumps(resource))
    # Then only EMR Serverless assumes it
    assert (
        trust["Principal"] == {"Service": "emr-serverless.amazonaws.com"} and role["Condition"] == "SparkEngineEnabled"
    )
    # And it writes only the processed prefixes and the job logs, and deletes only Spark's parts under processed/
    bucket = "arn:${AWS::Partition}:s3:::${DataBucket}/"
    assert granted["s3:PutObject"] == {
        json.dumps({"Fn::Sub": bucket + p}) for p in ("runs/*/processed/*", "runs/*/spark-logs/*")
    }
    assert granted["s3:DeleteObject"] == {json.dumps({"Fn::Sub": bucket + "runs/*/processed/*"})}
    # And it reads the run's inputs, the code and the published states, and nothing else of the bucket
    assert granted["s3:GetObject"] == {
        json.dumps({"Fn::Sub": bucket + p}) for p in ("runs/*/input/*", "artifacts/*", "runs/*/processed/*")
    }
    assert set(granted) == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListBucket",
    }


def test_the_state_machine_may_run_spark_jobs_as_the_step_functions_guide_lists(resources: dict[str, Any]) -> None:
    # Given the statements the Spark engine adds to the state machine's role
    statements = spark_statements(resources)
    # Then StartJobRun is on the application, GetJobRun and CancelJobRun on its job runs
    assert statements["RunSparkJobs"]["Action"] == "emr-serverless:StartJobRun"
    assert statements["RunSparkJobs"]["Resource"] == {"Fn::Sub": SPARK_APPLICATION_ARN}
    watch = statements["WatchSparkJobs"]
    assert sorted(watch["Action"]) == ["emr-serverless:CancelJobRun", "emr-serverless:GetJobRun"]
    assert watch["Resource"] == {"Fn::Sub": SPARK_APPLICATION_ARN + "/jobruns/*"}
    # And the .sync pattern's managed rule is the EMR Serverless job one, by its exact name
    rule = statements["EmrServerlessSyncRule"]
    assert rule["Resource"]["Fn::Sub"].endswith(":rule/StepFunctionsGetEventsForEMRServerlessJobRule")
    assert sorted(rule["Action"]) == ["events:DescribeRule", "events:PutRule", "events:PutTargets"]
    # And the job role is passed, to EMR Serverless only
    assert statements["PassSparkJobRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "emr-serverless.amazonaws.com"}
    }


def test_planning_and_the_definition_get_the_spark_engine_only_when_deployed(template: dict[str, Any]) -> None:
    # Given planning's environment and the definition's substitutions
    env = function_env(template, "PlanProcessingFunction")
    substitutions = template["Resources"]["LabelingStateMachine"]["Properties"]["DefinitionSubstitutions"]
    # Then the application and role are named when the engine is deployed, empty otherwise
    application = {"Fn::If": ["SparkEngineEnabled", {"Ref": "SparkApplication"}, ""]}
    assert env["EMR_APPLICATION_ID"] == application == substitutions["SparkApplicationId"]
    assert substitutions["SparkJobRoleArn"] == {
        "Fn::If": ["SparkEngineEnabled", {"Fn::GetAtt": ["SparkJobRole", "Arn"]}, ""]
    }
    # And the size from which auto picks Spark is a parameter
    assert env["SPARK_ABOVE_BYTES"] == {"Ref": "SparkAboveBytes"}
    assert template["Parameters"]["SparkAboveBytes"]["MinValue"] == 0
    # And the image parameter accepts empty (no engine) and ECR URIs only
    image = template["Parameters"]["SparkImageUri"]
    assert image["Default"] == "" and re.fullmatch(image["AllowedPattern"], "")
    assert re.fullmatch(image["AllowedPattern"], "123456789012.dkr.ecr.eu-west-1.amazonaws.com/labelflow-spark:1")
    assert not re.fullmatch(image["AllowedPattern"], "public.ecr.aws/emr-serverless/spark/emr-7.5.0:latest")


def test_the_spark_image_is_built_on_the_applications_release_with_the_python_the_job_names(
    template: dict[str, Any],
) -> None:
    # Given the Spark image's Dockerfile
    dockerfile = (ROOT / "processing/labelflow_processing/spark/Dockerfile").read_text()
    # Then its default release is the application's, and it installs the interpreter the job runs on
    assert f"ARG RELEASE={template['Parameters']['SparkReleaseLabel']['Default']}\n" in dockerfile
    assert "FROM public.ecr.aws/emr-serverless/spark/${RELEASE}:latest" in dockerfile
    assert SPARK_PYTHON == "/usr/bin/python3.12" and "dnf install -y python3.12 " in dockerfile
    # And the processing image's pins, read from processing/image.json, and it runs as hadoop
    assert "COPY processing/image.json" in dockerfile and dockerfile.rstrip().endswith("USER hadoop:hadoop")
