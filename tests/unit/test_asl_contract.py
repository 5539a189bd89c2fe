"""The state machine against what AWS really sends it: error names from state_machines/error-names.json, and
only required members of the SageMaker Describe* responses read by a ResultSelector."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.model import ServiceModel, Shape, StructureShape

from labelflow import errors
from labelflow.models.state import JOB_RUN_FIELDS

ROOT = Path(__file__).resolve().parents[2]
ASL = json.loads((ROOT / "state_machines" / "labeling.asl.json").read_text(encoding="utf-8"))
LISTED = {
    entry["name"]: entry for entry in json.loads((ROOT / "state_machines" / "error-names.json").read_text())["errors"]
}
# The .sync integration answers with the job's Describe* response (Step Functions developer guide, "Run a Job").
DESCRIBE_OF = {
    "arn:aws:states:::sagemaker:createProcessingJob.sync": "DescribeProcessingJob",
    "arn:aws:states:::sagemaker:createLabelingJob.sync": "DescribeLabelingJob",
}
CREATE_OF = {
    "arn:aws:states:::sagemaker:createProcessingJob.sync": "CreateProcessingJob",
    "arn:aws:states:::sagemaker:createLabelingJob.sync": "CreateLabelingJob",
}


def states(node: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in node["States"].items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from states(branch)
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                yield from states(state[key])


def matched_names(state: dict[str, Any]) -> list[str]:
    return [name for rule in state.get("Retry", []) + state.get("Catch", []) for name in rule["ErrorEquals"]]


@pytest.fixture(scope="module")
def sagemaker() -> ServiceModel:
    return botocore.session.get_session().get_service_model("sagemaker")


def test_every_error_name_the_asl_matches_is_listed_with_its_source() -> None:
    # Given every name in every Retry and Catch
    used = {(state_name, name) for state_name, state in states(ASL) for name in matched_names(state)}
    # Then each is in the list, and the list has no name the ASL does not use
    unknown = sorted(f"{state}: {name}" for state, name in used if name not in LISTED)
    assert not unknown, f"error names no integration or function raises: {unknown}"
    assert {name for _, name in used} == set(LISTED)
    assert all(entry["source"] and entry["raised_by"] for entry in LISTED.values())


def test_our_error_names_are_exception_classes_the_functions_raise() -> None:
    # Given the listed names that are neither Step Functions' nor an integration's
    ours = [name for name in LISTED if "." not in name]
    # Then each is a LabelflowError subclass (a Lambda error's errorType is the exception's class name)
    assert ours
    for name in ours:
        assert issubclass(getattr(errors, name), errors.LabelflowError), name


def test_sagemaker_error_names_are_exceptions_the_create_calls_can_raise(sagemaker: ServiceModel) -> None:
    # Given the SageMaker tasks and the modeled errors of their Create* operations (botocore's model)
    for _, state in states(ASL):
        if state.get("Resource") not in CREATE_OF:
            continue
        modeled = {shape.name for shape in sagemaker.operation_model(CREATE_OF[state["Resource"]]).error_shapes}
        for name in matched_names(state):
            if not name.startswith("SageMaker."):
                continue
            exception = name.removeprefix("SageMaker.")
            # Then each is the SDK's catch-all or a modeled error with the SDK's "Exception" suffix
            assert exception == "AmazonSageMakerException" or exception.removesuffix("Exception") in modeled, name
        # And the old names, which no integration raises, are gone
        assert not {"SageMaker.ThrottlingException", "SageMaker.ResourceLimitExceeded"} & set(matched_names(state))


def required_path(shape: Shape, path: list[str]) -> list[str]:
    """The members along `path` that the shape does not always return."""
    optional = []
    for member in path:
        assert isinstance(shape, StructureShape), f"{member} is not below a structure"
        assert member in shape.members, f"{shape.name} has no member {member}"
        if member not in shape.required_members:
            optional.append(f"{shape.name}.{member}")
        shape = shape.members[member]
    return optional


def test_result_selectors_read_only_members_sagemaker_always_returns(sagemaker: ServiceModel) -> None:
    # Given the ResultSelector of each .sync SageMaker task
    checked = 0
    for state_name, state in states(ASL):
        if state.get("Resource") not in DESCRIBE_OF:
            continue
        output = sagemaker.operation_model(DESCRIBE_OF[state["Resource"]]).output_shape
        assert output is not None
        if "ResultSelector" not in state:
            # A job run for its outputs in S3 only: its result is dropped, no member of it is read
            assert state["ResultPath"] is None, state_name
            continue
        for field, path in state["ResultSelector"].items():
            assert field.endswith(".$") and path.startswith("$.")
            # Then every member on the path is required: an absent one fails the state with States.Runtime,
            # which no Catch (not even States.ALL) handles, and the run would end without run.json
            assert required_path(output, path.removeprefix("$.").split(".")) == [], f"{state_name}.{field}"
            checked += 1
    assert checked >= 6


def test_ingestion_fans_out_over_an_inline_map_whose_iterations_catch_their_own_errors() -> None:
    # Given the IngestFeatures state
    ingest = ASL["States"]["IngestFeatures"]
    iteration = ingest["ItemProcessor"]["States"]
    # Then it maps the batches MergeLabels wrote, inline (moto's interpreter rejects ItemReader JSONL and ItemBatcher)
    assert ingest["Type"] == "Map" and ingest["ItemsPath"] == "$.merge.batches"
    assert "ItemReader" not in ingest and "ItemBatcher" not in ingest
    assert ingest["ItemSelector"]["batch.$"] == "$$.Map.Item.Value"
    # And a batch that fails reports its error instead of failing the map (the others go on)
    (catch,) = iteration["IngestBatch"]["Catch"]
    assert catch["ErrorEquals"] == ["States.ALL"] and iteration[catch["Next"]]["Type"] == "Pass"
    assert set(iteration[catch["Next"]]["Parameters"]) == {"index.$", "error.$"}
    # And FinalizeRun gathers them into one report
    assert ingest["ResultPath"] == "$.ingest_batches" and ingest["Next"] == "FinalizeRun"


def test_each_review_job_chooses_its_backend_and_ground_truth_is_unchanged() -> None:
    # Given the HumanLabeling map, and the states between routing and it
    labeling = ASL["States"]["HumanLabeling"]
    iteration = labeling["ItemProcessor"]
    chosen = ASL["States"]["ReviewBackendChosen"]
    # Then the spec's backend (routing's review_backend) wins, else the deployment's parameter fills it in
    assert ASL["States"]["AnythingToReview"]["Choices"][0]["Next"] == "ReviewBackendChosen"
    assert chosen["Choices"][0]["Next"] == "HumanLabeling"
    fallback = ASL["States"][chosen["Default"]]
    assert (fallback["Result"], fallback["ResultPath"]) == ("${ReviewBackend}", "$.routing.review_backend")
    # And each item carries the backend and its job, and its iteration starts with a Choice on the backend
    assert labeling["ItemSelector"]["backend.$"] == "$.routing.review_backend"
    assert labeling["ItemSelector"]["job.$"] == "$$.Map.Item.Value"
    first = iteration["States"][iteration["StartAt"]]
    assert first["Type"] == "Choice" and first["Default"] == "RunLabelingJob"
    assert first["Choices"] == [{"Variable": "$.backend", "StringEquals": "labelstudio", "Next": "ReviewInLabelStudio"}]
    # And Ground Truth's job reads the same fields as before, now under the item's job
    parameters = json.dumps(iteration["States"]["RunLabelingJob"]["Parameters"])
    assert '"$.' not in parameters.replace('"$.job.', "")


def test_label_studio_waits_on_a_task_token_with_a_heartbeat_and_a_timeout() -> None:
    # Given the Label Studio review task
    iteration = ASL["States"]["HumanLabeling"]["ItemProcessor"]["States"]
    review = iteration["ReviewInLabelStudio"]
    # Then it invokes the start function with the token, and waits with both backstops
    assert review["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert review["Parameters"]["FunctionName"] == "${StartLabelStudioReviewFunctionArn}"
    assert review["Parameters"]["Payload"]["task_token.$"] == "$$.Task.Token"
    assert review["TimeoutSecondsPath"] == "$.timeout_seconds" and review["HeartbeatSeconds"] > 0
    timeout = ASL["States"]["HumanLabeling"]["ItemSelector"]["timeout_seconds.$"]
    assert timeout.startswith("States.MathAdd($$.Map.Item.Value.TaskAvailabilityLifetimeInSeconds, ")
    # And a timed-out token ends the job as Stopped with what MergeLabels reads; any other error fails the map
    timed_out, other = review["Catch"]
    assert set(timed_out["ErrorEquals"]) == {"States.Timeout", "States.HeartbeatTimeout"}
    kept = iteration[timed_out["Next"]]
    assert kept["Parameters"]["status"] == "Stopped"
    assert {key.removesuffix(".$") for key in kept["Parameters"]} == {
        "job_name",
        "status",
        "output_path",
        "counters",
        "failure_reason",
        "manifest_uri",
    }
    assert other["ErrorEquals"] == ["States.ALL"] and iteration[other["Next"]]["Type"] == "Fail"


@pytest.fixture(scope="module")
def emr_serverless() -> ServiceModel:
    return botocore.session.get_session().get_service_model("emr-serverless")


def camel(member: str) -> str:
    """Step Functions' PascalCase member name as the API spells it (ApplicationId -> applicationId)."""
    return member[0].lower() + member[1:]


def test_planning_chooses_the_engine_before_the_processing_job() -> None:
    # Given the states after the cache check
    processed_already = ASL["States"]["ProcessedAlready"]
    choose = ASL["States"]["ChooseEngine"]
    # Then a cache miss chooses the engine: Spark when the plan says so, else on to the Processing job
    assert processed_already["Default"] == "ChooseEngine"
    (spark,) = choose["Choices"]
    assert spark["Next"] == "RunSparkJob"
    assert {"Variable": "$.plan.engine", "StringEquals": "spark"} in spark["And"]
    # (a plan without an engine, as planned before the Spark engine, goes to the Processing job)
    assert {"Variable": "$.plan.engine", "IsPresent": True} in spark["And"]
    after, seen = choose["Default"], set()
    while after != "Process":
        assert after not in seen and after != "RunSparkJob", after
        seen.add(after)
        after = ASL["States"][after].get("Default") or ASL["States"][after]["Next"]


def test_the_spark_job_sends_start_job_run_members_and_reads_what_get_job_run_always_returns(
    emr_serverless: ServiceModel,
) -> None:
    # Given the Spark task
    task = ASL["States"]["RunSparkJob"]
    start = emr_serverless.operation_model("StartJobRun").input_shape
    job_run = emr_serverless.shape_for("JobRun")
    assert isinstance(start, StructureShape) and isinstance(job_run, StructureShape)
    # Then it is the .sync integration, and every parameter is a StartJobRun member, the required ones included
    assert task["Resource"] == "arn:aws:states:::emr-serverless:startJobRun.sync"
    sent = {camel(key.removesuffix(".$")) for key in task["Parameters"]}
    assert sent <= set(start.members) and set(start.required_members) <= sent
    assert task["Parameters"]["ApplicationId"] == "${SparkApplicationId}"
    assert task["Parameters"]["ExecutionRoleArn"] == "${SparkJobRoleArn}"
    # And the job run is kept as returned (AWS documents no .sync output shape): the processing result reads from it
    # what Process keeps, by names GetJobRun's jobRun always has
    assert task["ResultPath"] == "$.processing" and task["Next"] == "RouteByConfidence"
    assert "ResultSelector" not in task
    assert set(JOB_RUN_FIELDS) == {key.removesuffix(".$") for key in ASL["States"]["Process"]["ResultSelector"]}
    for pascal, api in JOB_RUN_FIELDS.values():
        assert api in job_run.required_members and camel(pascal) == api
    # And a failure is recorded in run.json like the Processing job's
    (catch,) = task["Catch"]
    assert catch == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"}


def test_the_spark_job_retries_only_transient_emr_serverless_errors(emr_serverless: ServiceModel) -> None:
    # Given the Spark task's retried errors and StartJobRun's modeled errors
    modeled = {shape.name for shape in emr_serverless.operation_model("StartJobRun").error_shapes}
    retried = [name for rule in ASL["States"]["RunSparkJob"]["Retry"] for name in rule["ErrorEquals"]]
    # Then each is the service's internal error or throttling, prefixed as the integration raises them
    assert retried and all(name.startswith("EMRServerless.") for name in retried)
    for name in retried:
        exception = name.removeprefix("EMRServerless.")
        assert exception == "ThrottlingException" or (exception in modeled and exception == "InternalServerException")
    # And a job run that fails (States.TaskFailed) is never started again by a Retry
    assert "States.TaskFailed" not in retried and "States.ALL" not in retried
