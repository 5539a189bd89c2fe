"""Plug labelflow's local stand-ins into moto's Step Functions interpreter.

moto runs the real ASL, but would send Lambda tasks to Docker and has no `.sync` SageMaker or EMR
Serverless integration. We replace exactly two private hook points (see ../shared/LOCAL-ENGINE.md);
moto is pinned, and tests/integration/test_engine_hooks.py fails loudly if either of them moves.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from typing import Any, Final, Protocol

import boto3
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils, state_task_factory
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
    ResourceCondition,
    ResourceRuntimePart,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
    StateTaskService,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

from labelflow_local import contracts
from labelflow_local.emr import FAILED, LocalEmrServerless
from labelflow_local.functions import FunctionError, FunctionRegistry

_FAILED_STATUSES: Final = frozenset({"Failed", "Stopped"})


class SageMakerJobs(Protocol):
    """Runs a SageMaker job to its end and returns what the matching Describe* call would."""

    def run_processing_job(self, request: dict[str, Any]) -> dict[str, Any]: ...

    def run_labeling_job(self, request: dict[str, Any]) -> dict[str, Any]: ...


class SparkJobs(Protocol):
    """Runs a StartJobRun request (Step Functions-cased) to its end and returns GetJobRun's jobRun, likewise."""

    def run(self, request: dict[str, Any]) -> dict[str, Any]: ...


# SageMaker's model has no ValidationException shape, so the integration reports it as the SDK's generic service
# error: `SageMaker.AmazonSageMakerException` (Step Functions developer guide, "Create and manage Amazon SageMaker AI
# jobs with Step Functions": its examples retry that name). The cause is the SDK for Java's exception text.
_SAGEMAKER_ERROR: Final = "SageMaker.AmazonSageMakerException"
_OPERATIONS: Final = {
    "createprocessingjob": ("CreateProcessingJob", "DescribeProcessingJob", "ProcessingJobName"),
    "createlabelingjob": ("CreateLabelingJob", "DescribeLabelingJob", "LabelingJobName"),
}
_SUPPORTED: Final[dict[str, tuple[set[str], str]]] = {
    # api action → (request fields we accept, Create* output field naming the job ARN)
    "createprocessingjob": (
        {
            "ProcessingJobName", "RoleArn", "AppSpecification", "ProcessingResources", "ProcessingInputs",
            "ProcessingOutputConfig", "Environment", "StoppingCondition", "NetworkConfig", "Tags", "ExperimentConfig",
        },
        "ProcessingJobArn",
    ),
    "createlabelingjob": (
        {
            "LabelingJobName", "LabelAttributeName", "InputConfig", "OutputConfig", "RoleArn",
            "LabelCategoryConfigS3Uri", "StoppingConditions", "LabelingJobAlgorithmsConfig", "HumanTaskConfig", "Tags",
        },
        "LabelingJobArn",
    ),
}  # fmt: skip
# StartJobRun's members as Step Functions' emr-serverless:startJobRun takes them (botocore's emr-serverless model,
# PascalCase). A request the API refuses is reported like the SDK error the integration names EMRServerless.*.
_START_JOB_RUN: Final = {
    "ApplicationId", "ClientToken", "ExecutionRoleArn", "ExecutionIamPolicy", "JobDriver", "ConfigurationOverrides",
    "Tags", "ExecutionTimeoutMinutes", "Name", "Mode", "RetryPolicy",
}  # fmt: skip
_EMR_ERROR: Final = "EMRServerless.ValidationException"
_ENDED_BADLY: Final = frozenset({FAILED, "CANCELLED"})


def api_cased(value: Any) -> Any:
    """Step Functions' PascalCase request members as the API spells them (ApplicationId -> applicationId)."""
    if isinstance(value, dict):
        return {key[:1].lower() + key[1:]: api_cased(item) for key, item in value.items()}
    if isinstance(value, list):
        return [api_cased(item) for item in value]
    return value


class _Runtime:
    """What the hooks dispatch to; set by install() for the process (moto's engine is process-wide)."""

    functions: FunctionRegistry | None = None
    jobs: SageMakerJobs | None = None
    spark: SparkJobs | None = None
    calls: contracts.CallLog | None = None

    def received(
        self, operation: str, request: dict[str, Any], service: str = "sagemaker"
    ) -> list[contracts.Violation]:
        """Keep a request the stand-ins received (API-cased); what in it breaks the API's contract."""
        if self.calls is not None:
            self.calls.record(service, operation, request)
        return contracts.violations(contracts.operation_model(service, operation), request)


_runtime = _Runtime()
# Called by install() once the hooks are in, inside the local cloud: local stand-ins for what a deployment runs
# beside the workflow (e.g. the Label Studio poller's schedule).
_extensions: list[Callable[[FunctionRegistry], None]] = []


def extend(extension: Callable[[FunctionRegistry], None]) -> Callable[[], None]:
    """Call `extension` with the functions at every install() until the returned callable removes it."""
    _extensions.append(extension)
    return lambda: _extensions.remove(extension)


def _invoke_lambda_function(parameters: dict[str, Any], region: str, state_credentials: Any) -> dict[str, Any]:
    """Replaces moto's Docker-bound Lambda call with the real handler, called in-process."""
    if _runtime.functions is None:
        raise RuntimeError("labelflow local runtime is not installed")
    raw = parameters.get("Payload")
    event = json.loads(raw) if raw else {}
    try:
        payload = _runtime.functions.invoke(parameters["FunctionName"], event)
    except FunctionError as exc:
        return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": exc.payload}
    # Round-trip through JSON as Lambda does, so nothing non-serialisable slips into the state.
    return {"StatusCode": 200, "ExecutedVersion": "$LATEST", "Payload": json.loads(json.dumps(payload))}


class _LocalJobTask(StateTaskServiceCallback):
    """A `.sync` job task run by a local stand-in: its failures raised as Step Functions raises them."""

    # The error a request that reaches the service but breaks its contract raises, and the SDK's service name.
    service_error: str
    service_name: str

    def __init__(self) -> None:
        # WaitForTaskToken must be listed too: the base class always touches the callback endpoint.
        patterns = {ResourceCondition(ResourceCondition.Sync), ResourceCondition(ResourceCondition.WaitForTaskToken)}
        super().__init__(supported_integration_patterns=patterns)

    def _job_failed(self, env: Environment, described: dict[str, Any]) -> FailureEventException:
        """A job that ended badly: States.TaskFailed with the job's description as the cause."""
        return FailureEventException(
            FailureEvent(
                env=env,
                error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(  # type: ignore[typeddict-item]
                    taskFailedEventDetails=TaskFailedEventDetails(
                        error=StatesErrorNameType.StatesTaskFailed.to_name(),
                        cause=json.dumps(described, default=str),
                        resource=self._get_sfn_resource(),
                        resourceType=self._get_sfn_resource_type(),
                    )
                ),
            )
        )

    def _rejected(
        self, env: Environment, found: list[contracts.Violation], parameters: dict[str, Any]
    ) -> FailureEventException:
        """The task failure AWS gives for a request that breaks the API's contract.

        An unknown member or a wrong type never reaches the service: Step Functions cannot build the request and
        ends the execution with States.Runtime (which no Catch catches), as in
        aws/aws-step-functions-data-science-sdk-python#15 ('The field "S3Operations" is not supported by Step
        Functions'). The rest is the service's ValidationException.
        """
        structural = [violation for violation in found if violation.structural]
        if structural:
            problems = ", ".join(map(str, structural))
            error = StatesErrorNameType.StatesRuntime.to_name()
            cause = f"The Parameters '{json.dumps(parameters)}' could not be used to start the Task: [{problems}]"
            error_name: ErrorName = StatesErrorName(typ=StatesErrorNameType.StatesRuntime)
        else:
            error = self.service_error
            cause = (
                f"{contracts.validation_message(found)} (Service: {self.service_name}; Status Code: 400; "
                f"Error Code: ValidationException; Request ID: {secrets.token_hex(16)}; Proxy: null)"
            )
            error_name = ErrorName(error_name=error)
        details = TaskFailedEventDetails(
            error=error, cause=cause, resource=self._get_sfn_resource(), resourceType=self._get_sfn_resource_type()
        )
        return FailureEventException(
            FailureEvent(
                env=env,
                error_name=error_name,
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(taskFailedEventDetails=details),  # type: ignore[typeddict-item]
            )
        )


class LocalSageMakerTask(_LocalJobTask):
    """`arn:aws:states:::sagemaker:create{Processing,Labeling}Job.sync` run by local stand-ins."""

    service_error = _SAGEMAKER_ERROR
    service_name = "AmazonSageMaker"

    def __init__(self) -> None:
        super().__init__()
        self._describe: dict[str, Any] | None = None

    def _get_supported_parameters(self) -> set[str] | None:
        supported = _SUPPORTED.get(self.resource.api_action.lower())
        return supported[0] if supported else None

    def _eval_service_task(
        self,
        env: Environment,
        resource_runtime_part: ResourceRuntimePart,
        normalised_parameters: dict[str, Any],
        state_credentials: Any,
    ) -> None:
        if _runtime.jobs is None:
            raise RuntimeError("labelflow local runtime is not installed")
        action = self.resource.api_action.lower()
        create, _, _ = _OPERATIONS[action]
        if found := _runtime.received(create, normalised_parameters):
            raise self._rejected(env, found, normalised_parameters)
        if action == "createprocessingjob":
            describe = _runtime.jobs.run_processing_job(normalised_parameters)
        else:
            describe = _runtime.jobs.run_labeling_job(normalised_parameters)
        self._describe = describe
        arn_field = _SUPPORTED[action][1]
        env.stack.append({arn_field: describe[arn_field]})

    def _build_sync_resolver(
        self,
        env: Environment,
        resource_runtime_part: ResourceRuntimePart,
        normalised_parameters: dict[str, Any],
        state_credentials: Any,
    ) -> Callable[[], Any]:
        describe = self._describe or {}
        _, describe_operation, name_member = _OPERATIONS[self.resource.api_action.lower()]

        def resolve() -> dict[str, Any]:
            # Step Functions polls Describe*: keep that request too.
            if found := _runtime.received(describe_operation, {name_member: describe[name_member]}):
                raise self._rejected(env, found, normalised_parameters)
            status = describe.get("ProcessingJobStatus") or describe.get("LabelingJobStatus")
            if status in _FAILED_STATUSES:
                raise self._job_failed(env, describe)
            return describe

        return resolve


class LocalEmrServerlessTask(_LocalJobTask):
    """`arn:aws:states:::emr-serverless:startJobRun.sync` run on pyspark in local mode (labelflow_local.emr)."""

    service_error = _EMR_ERROR
    service_name = "EMRServerless"

    def __init__(self) -> None:
        super().__init__()
        self._job_run: dict[str, Any] | None = None

    def _get_supported_parameters(self) -> set[str] | None:
        return _START_JOB_RUN if self.resource.api_action.lower() == "startjobrun" else None

    def _eval_service_task(
        self,
        env: Environment,
        resource_runtime_part: ResourceRuntimePart,
        normalised_parameters: dict[str, Any],
        state_credentials: Any,
    ) -> None:
        if found := _runtime.received("StartJobRun", api_cased(normalised_parameters), "emr-serverless"):
            raise self._rejected(env, found, normalised_parameters)
        if _runtime.spark is None:
            s3 = boto3.client("s3", region_name=resource_runtime_part.region)
            _runtime.spark = LocalEmrServerless(s3, resource_runtime_part.region, resource_runtime_part.account)
        job_run = _runtime.spark.run(normalised_parameters)
        self._job_run = job_run
        env.stack.append({key: job_run[key] for key in ("ApplicationId", "JobRunId", "Arn")})

    def _build_sync_resolver(
        self,
        env: Environment,
        resource_runtime_part: ResourceRuntimePart,
        normalised_parameters: dict[str, Any],
        state_credentials: Any,
    ) -> Callable[[], Any]:
        job_run = self._job_run or {}

        def resolve() -> dict[str, Any]:
            # Step Functions polls GetJobRun: keep that request too.
            polled = {"applicationId": job_run["ApplicationId"], "jobRunId": job_run["JobRunId"]}
            if found := _runtime.received("GetJobRun", polled, "emr-serverless"):
                raise self._rejected(env, found, normalised_parameters)
            if job_run["State"] in _ENDED_BADLY:
                raise self._job_failed(env, job_run)
            return job_run

        return resolve


_original_service_for = state_task_factory.state_task_service_for  # type: ignore[attr-defined]


def _state_task_service_for(service_name: str) -> StateTaskService:
    if service_name == "sagemaker":
        return LocalSageMakerTask()
    if service_name == "emr-serverless":
        return LocalEmrServerlessTask()
    service: StateTaskService = _original_service_for(service_name)
    return service


def install(
    functions: FunctionRegistry,
    jobs: SageMakerJobs,
    calls: contracts.CallLog | None = None,
    spark: SparkJobs | None = None,
) -> None:
    """Route Lambda, SageMaker and EMR Serverless tasks of every execution in this process to the local runtime.

    Job requests are checked against botocore's models before a job runs, and kept in `calls` if given. Without
    `spark`, the first Spark task starts a LocalEmrServerless on the execution's region's S3.
    """
    _runtime.functions = functions
    _runtime.jobs = jobs
    _runtime.spark = spark
    _runtime.calls = calls
    lambda_eval_utils._invoke_lambda_function = _invoke_lambda_function
    state_task_factory.state_task_service_for = _state_task_service_for  # type: ignore[attr-defined]
    # moto logs whole objects at WARNING for unsupported paths we replace; keep the console readable.
    for name in ("moto", "moto.stepfunctions"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for extension in list(_extensions):
        extension(functions)


def hook_points() -> dict[str, bool]:
    """Whether moto still has the private attributes we replace (the smoke test asserts all are True)."""
    return {
        "lambda_eval_utils._invoke_lambda_function": callable(
            getattr(lambda_eval_utils, "_invoke_lambda_function", None)
        ),
        "state_task_factory.state_task_service_for": callable(
            getattr(state_task_factory, "state_task_service_for", None)
        ),
        "StateTaskServiceCallback._build_sync_resolver": hasattr(StateTaskServiceCallback, "_build_sync_resolver"),
        "StateTaskServiceCallback._eval_service_task": hasattr(StateTaskServiceCallback, "_eval_service_task"),
    }
