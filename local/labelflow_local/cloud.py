"""LocalCloud: moto's S3, IAM, SageMaker and Step Functions, plus labelflow's stand-ins, set up from template.yaml.

Feature groups are not in the template: each dataset's first run creates its own, as on AWS.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

from labelflow import aws
from labelflow.feature_groups import FeatureStoreConfig, ensure_feature_group
from labelflow.layout import feature_group_name
from labelflow.models.run import FeatureGroupLineage
from labelflow.models.settings import load_settings
from labelflow.models.spec import DatasetSpec
from labelflow_local import engine
from labelflow_local.contracts import CallLog
from labelflow_local.featurestore import LocalFeatureStore
from labelflow_local.functions import FunctionRegistry
from labelflow_local.processing import LocalProcessing, download_prefix, upload_tree
from labelflow_local.publish import publish_processing_code
from labelflow_local.review import LocalGroundTruth, WorkerAnswers
from labelflow_local.store import ObjectStore, object_store
from labelflow_local.template import (
    LOCAL_BUCKET,
    LOCAL_STACK,
    PROJECT_ROOT,
    Resolver,
    functions,
    load_template,
    snake_case,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
BUCKET = LOCAL_BUCKET
STATE_MACHINE_NAME = "labelflow"
STACK_NAME = LOCAL_STACK
_FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "POWERTOOLS_METRICS_NAMESPACE": "Labelflow",
    "POWERTOOLS_TRACE_DISABLED": "true",
    # EMF blobs are for CloudWatch; locally they would only bury the summary.
    "POWERTOOLS_METRICS_DISABLED": "true",
}
_TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})


class _LocalJobs:
    def __init__(self, processing: LocalProcessing, labeling: LocalGroundTruth) -> None:
        self._processing = processing
        self._labeling = labeling

    def run_processing_job(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._processing.run(request)

    def run_labeling_job(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._labeling.run(request)


class LocalCloud:
    """Everything a run touches, in this process. Use `with local_cloud(...) as cloud:`."""

    def __init__(
        self, workers: WorkerAnswers, store_root: Path, bucket: str = BUCKET, calls_dir: Path | None = None
    ) -> None:
        self.bucket = bucket
        self.region = REGION
        self.account = ACCOUNT
        # Every request the SageMaker and Feature Store stand-ins receive, kept as one JSON file each.
        self.calls = CallLog(calls_dir) if calls_dir is not None else None
        self.feature_store = LocalFeatureStore(store_root, REGION, ACCOUNT, calls=self.calls)
        # Clients copy the session's handlers when they are created: register before any client exists.
        self.feature_store.register(boto3.DEFAULT_SESSION.events)  # type: ignore[union-attr]
        self.s3: Any = boto3.client("s3", region_name=REGION)
        self.sfn: Any = boto3.client("stepfunctions", region_name=REGION)
        self.iam: Any = boto3.client("iam", region_name=REGION)
        self.sagemaker: Any = boto3.client("sagemaker", region_name=REGION)
        self.template = load_template()
        self.state_machine_arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{STATE_MACHINE_NAME}"
        self.roles = {name: self._role(name) for name in self._resources_of("AWS::IAM::Role")}
        self.resolver = Resolver(self.template, refs=self._refs(), attributes=self._attributes())
        self.functions = FunctionRegistry(functions(self.template, self.resolver), REGION, ACCOUNT)
        self.workers = workers

    # set-up -------------------------------------------------------------------------------------

    def _resources_of(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: r for name, r in self.template.get("Resources", {}).items() if r.get("Type") == kind}

    def _function_arn(self, logical_id: str) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FunctionRegistry.function_name(snake_case(logical_id))}"

    def _role(self, name: str) -> str:
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        role = self.iam.create_role(RoleName=f"labelflow-{name}", AssumeRolePolicyDocument=json.dumps(trust))
        return str(role["Role"]["Arn"])

    def _refs(self) -> dict[str, str]:
        refs = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::StackName": STACK_NAME,
            # Deployers must name their own work team (the parameter has no default); local reviewers stand in.
            "WorkteamArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/private-crowd/{STACK_NAME}-local",
        }
        refs.update(dict.fromkeys(self._resources_of("AWS::S3::Bucket"), self.bucket))
        refs.update(dict.fromkeys(self._resources_of("AWS::Serverless::StateMachine"), self.state_machine_arn))
        return refs

    def _attributes(self) -> dict[str, str]:
        attributes = {
            f"{name}.Arn": self._function_arn(name) for name in self._resources_of("AWS::Serverless::Function")
        }
        attributes.update({f"{name}.Arn": arn for name, arn in self.roles.items()})
        return attributes

    def _definition(self) -> str:
        (machine,) = self._resources_of("AWS::Serverless::StateMachine").values()
        properties = machine["Properties"]
        text = (PROJECT_ROOT / properties["DefinitionUri"]).read_text()
        substitutions = {k: self.resolver.resolve(v) for k, v in properties.get("DefinitionSubstitutions", {}).items()}
        missing = sorted(set(re.findall(r"\$\{(\w+)\}", text)) - set(substitutions))
        if missing:
            raise ValueError(f"DefinitionSubstitutions lacks {', '.join(missing)}")
        return re.sub(r"\$\{(\w+)\}", lambda m: substitutions[m.group(1)], text)

    def start(self) -> None:
        # Hooks first: moto parses the definition at creation and picks each task's service then.
        jobs = _LocalJobs(
            LocalProcessing(self.s3, REGION, ACCOUNT),
            LocalGroundTruth(self.s3, self.functions, self.workers, REGION, ACCOUNT),
        )
        engine.install(self.functions, jobs, self.calls)
        self.s3.create_bucket(Bucket=self.bucket)
        self.s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        role = next(iter(self.roles.values()), f"arn:aws:iam::{ACCOUNT}:role/labelflow")
        self.sfn.create_state_machine(name=STATE_MACHINE_NAME, definition=self._definition(), roleArn=role)
        publish_processing_code(self.s3, self.bucket)

    def feature_group_name(self, dataset: str) -> str:
        """The dataset's group in this stack, as PlanProcessing names it."""
        return feature_group_name(
            self.functions.resolve("plan_processing").environment["FEATURE_GROUP_PREFIX"], dataset
        )

    def ensure_feature_group(self, spec: DatasetSpec) -> FeatureGroupLineage:
        """Create (or check) the dataset's group as its first run's PlanProcessing would: for replaying later steps."""
        environment = self.functions.resolve("plan_processing").environment
        config = FeatureStoreConfig(environment["FEATURE_STORE_ROLE_ARN"], environment["OFFLINE_STORE_S3_URI"])
        return ensure_feature_group(self.sagemaker, self.feature_group_name(spec.dataset), spec, config)

    # running ------------------------------------------------------------------------------------

    def invoke(self, function: str, event: Any) -> Any:
        return self.functions.invoke(function, event)

    def wait(self, execution_arn: str, timeout: float = 600.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            described: dict[str, Any] = self.sfn.describe_execution(executionArn=execution_arn)
            if described["status"] in _TERMINAL:
                return described
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_arn} still {described['status']} after {timeout:.0f}s")
            time.sleep(0.02)

    def export(self, prefix: str, destination: Path) -> Path:
        """Copy objects under `prefix` to disk, so a run's files outlive the in-memory cloud.

        Ground Truth's per-object worker-response files are left out: the same answers are in the
        consolidation request beside them, and there is one file per reviewed record.
        """
        target = destination / self.bucket / prefix
        download_prefix(self._copies(), f"s3://{self.bucket}/{prefix}", target, skip="/worker-response/")
        return target

    def restore(self, source: Path, prefix: str) -> int:
        """Upload what `export` wrote under `prefix` back into the bucket; the number of objects."""
        folder = source / self.bucket / prefix
        return upload_tree(self._copies(), folder, f"s3://{self.bucket}/{prefix}") if folder.is_dir() else 0

    def _copies(self) -> ObjectStore:
        """The disk copies are local mode's own, not the app's calls: straight to moto's store (see store.py)."""
        return object_store(self.s3, self.bucket, self.region, self.account)


class _CurrentStderr:
    """Writes to whatever sys.stderr is when a line is logged (test runners swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def route_function_logs(level: str) -> None:
    """Functions log JSON to stdout, as in Lambda; locally stdout is the user's report, so logs go to stderr."""
    from labelflow.observability import logger

    logger.setLevel(level)
    if isinstance(logger.logger_handler, logging.StreamHandler):
        logger.logger_handler.stream = _CurrentStderr()


@contextmanager
def local_cloud(
    workers: WorkerAnswers,
    store_root: Path,
    bucket: str = BUCKET,
    log_level: str = "WARNING",
    calls_dir: Path | None = None,
) -> Iterator[LocalCloud]:
    """Fake credentials, moto with the ASL interpreter on, template environments set; all undone on exit.

    With `calls_dir`, the stand-ins keep each request they receive there.
    """
    saved = dict(os.environ)
    os.environ.update(_FAKE_CREDENTIALS)
    for variable in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        os.environ.pop(variable, None)
    mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
    mock.start()
    cloud: LocalCloud | None = None
    try:
        boto3.setup_default_session(region_name=REGION)
        aws.reset_clients()
        cloud = LocalCloud(workers, store_root, bucket, calls_dir)
        os.environ.update(cloud.functions.merged_environment())
        # Settings are read once per process (load_settings caches them): each local stack reads its own.
        load_settings.cache_clear()
        os.environ["POWERTOOLS_LOG_LEVEL"] = log_level
        route_function_logs(log_level)
        cloud.start()
        yield cloud
    finally:
        if cloud is not None and cloud.calls is not None:
            cloud.calls.close()
        load_settings.cache_clear()
        mock.stop()
        aws.reset_clients()
        os.environ.clear()
        os.environ.update(saved)
