"""finalizing.py: run status, error unwrapping and the run.json manifest."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pydantic import ValidationError

from labelflow.finalizing import (
    EVENT_DETAIL_TYPE,
    EVENT_SOURCE,
    build_manifest,
    error_message,
    error_of,
    finalize_run,
    run_status,
)
from labelflow.models.artifacts import ProcessingStats
from labelflow.models.run import FeatureGroupLineage, RunError, TransformStateLineage
from labelflow.models.state import (
    FinalizeInput,
    FinalizeReingestInput,
    IngestOutput,
    MergeOutput,
    StepError,
    WorkflowState,
)
from tests.conftest import load_event

NOW = datetime(2026, 11, 25, 2, 30, 0, tzinfo=UTC)


def full_request() -> FinalizeInput:
    return FinalizeInput.model_validate(load_event("finalize_run.json"))


def failed_request() -> FinalizeInput:
    return FinalizeInput.model_validate(load_event("finalize_run.failure.json"))


def with_sections(state: WorkflowState, **sections: Any) -> WorkflowState:
    return state.model_copy(update=sections)


class StubEvents:
    def __init__(self, error: ClientError | None = None) -> None:
        self.error = error
        self.entries: list[dict[str, Any]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - boto3's spelling
        self.entries += Entries
        if self.error is not None:
            raise self.error
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "1"}]}


# ------------------------------------------------------------------------ run_status
def test_complete_run_succeeded() -> None:
    # Given the full sample state: everything labeled and ingested
    # When its status is decided / Then it succeeded
    assert run_status(full_request().state) == "SUCCEEDED"


def test_failed_run_is_failed() -> None:
    # Given a state with a caught error
    # When its status is decided / Then it failed
    assert run_status(failed_request().state) == "FAILED"


def test_unlabeled_records_make_a_partial_run() -> None:
    # Given a finished run that left one record unlabeled
    state = full_request().state
    merge = MergeOutput(labeled_uri="s3://b/l", labeled=39, model=27, human=12, unlabeled=1, unlabeled_uri="s3://b/u")

    # When its status is decided / Then it is partial
    assert run_status(with_sections(state, merge=merge)) == "PARTIAL"


def test_ingest_failures_make_a_partial_run() -> None:
    # Given a finished run where one PutRecord failed
    state = full_request().state
    ingest = IngestOutput(feature_group="fg", ingested=39, failed=1, failures_uri="s3://b/f")

    # When its status is decided / Then it is partial
    assert run_status(with_sections(state, ingest=ingest)) == "PARTIAL"


def test_error_wins_over_partial() -> None:
    # Given a run with unlabeled records that then failed
    state = full_request().state
    merge = MergeOutput(labeled_uri="s3://b/l", labeled=39, model=27, human=12, unlabeled=1)

    # When its status is decided / Then it failed
    assert run_status(with_sections(state, merge=merge, error=StepError(error="States.Timeout"))) == "FAILED"


# ------------------------------------------------------------------------ error_of
def test_error_of_unwraps_a_lambda_error_payload() -> None:
    # Given a caught Lambda error whose cause is the Lambda's JSON error payload
    # When the error is read / Then the cause is the error message alone
    assert error_of(failed_request().state) == RunError(
        error="InvalidInputError",
        cause="s3://labelflow-demo/raw/reviews/sample.csv is missing required columns: price",
    )


def test_error_of_keeps_a_plain_cause() -> None:
    # Given a caught error whose cause is plain text (e.g. a SageMaker job failure)
    state = with_sections(
        full_request().state, error=StepError(error="States.TaskFailed", cause="job lf-x failed: OOM")
    )

    # When the error is read / Then the cause is kept as is
    assert error_of(state) == RunError(error="States.TaskFailed", cause="job lf-x failed: OOM")


def test_error_of_keeps_json_without_an_error_message() -> None:
    # Given a cause that is JSON but not a Lambda error payload
    cause = json.dumps({"status": "FAILED"})
    state = with_sections(full_request().state, error=StepError(error="States.TaskFailed", cause=cause))

    # When the error is read / Then the cause is kept verbatim
    assert error_of(state) == RunError(error="States.TaskFailed", cause=cause)


def test_error_of_without_error_is_none() -> None:
    # Given a run with no error
    # When the error is read / Then there is none
    assert error_of(full_request().state) is None


# ------------------------------------------------------------------------ build_manifest
def test_manifest_of_a_run_that_failed_at_plan() -> None:
    # Given a run that failed before its plan existed, and no processing stats
    request = failed_request()

    # When run.json is built
    manifest = build_manifest(request, None, NOW)

    # Then lineage, ids and the unwrapped error are recorded, and every count and artifact is unknown
    assert manifest.status == "FAILED"
    assert manifest.run_id == "afbcf3d3f25e2c3dba66"
    assert manifest.dataset == "reviews"
    assert manifest.execution_id == request.execution_id
    assert manifest.started_at == "2026-11-25T02:21:50.123Z"
    assert manifest.finished_at == "2026-11-25T02:30:00Z"
    assert manifest.input.model_dump() == {
        "bucket": "labelflow-demo",
        "key": "raw/reviews/sample.csv",
        "version_id": "51114e40-ef85-4d37-80a3-6760fd49c981",
        "etag": "b6fd69b3541ea69c0c5214e8c2601f8d",
        "size": 6416,
    }
    assert manifest.code_sha256 is None and manifest.cache_key is None and manifest.cache_hit is None
    assert manifest.processing_job is None and manifest.labeling_job is None and manifest.feature_group is None
    assert manifest.transform_state is None
    assert all(value is None for value in manifest.counts.model_dump().values())
    assert all(value is None for value in manifest.artifacts.model_dump().values())
    assert manifest.error is not None and manifest.error.cause.endswith("missing required columns: price")


def test_manifest_of_a_complete_run() -> None:
    # Given the full sample state and the processing step's stats
    request = full_request()
    stats = ProcessingStats(records_in=42, records_out=40, rejected=2)

    # When run.json is built
    manifest = build_manifest(request, stats, NOW)

    # Then every count comes from its step, and every artifact and job is recorded; rows rejected by processing
    # (under the spec's max_rejected_share, or processing would have failed the run) leave it SUCCEEDED
    assert manifest.status == "SUCCEEDED"
    assert manifest.error is None
    assert manifest.reason is None
    state = request.state
    plan, routing, merged = state.require_plan(), state.require_routing(), state.require_merge()
    assert state.processing is not None and state.labeling is not None and state.ingest is not None
    assert manifest.counts.model_dump() == {
        "records_in": 42,
        "rejected": 2,
        "auto_labeled": routing.auto_labeled,
        "sent_to_review": routing.to_review,
        "human_labeled": merged.human,
        "model_labeled": merged.model,
        "unlabeled": 0,
        "ingested": state.ingest.ingested,
        "ingest_failed": 0,
    }
    assert manifest.code_sha256 == plan.code_sha256 and len(plan.code_sha256) == 64
    assert manifest.cache_hit is False
    assert manifest.processing_job == state.processing.job_name == plan.processing_job["ProcessingJobName"]
    (job,) = state.labeling_outcomes()
    assert manifest.labeling_job == job.job_name == f"lf-reviews-{state.run_id}-review"
    assert manifest.labeling_jobs == [job.job_name] and manifest.labeling_ended is None
    assert manifest.feature_group == plan.feature_group == FeatureGroupLineage(name="labelflow-reviews", created=True)
    # And the transform state as routing settled it: the sample's first run fitted it and published it
    assert manifest.transform_state == routing.transform_state
    assert manifest.transform_state is not None and manifest.transform_state.published is True
    assert manifest.transform_state.uri == plan.transform_state.uri and manifest.transform_state.sha256
    artifacts = manifest.artifacts
    run_prefix = f"s3://labelflow-demo/runs/reviews/{state.run_id}/"
    assert artifacts.spec_uri == run_prefix + "input/spec/spec.json"
    assert artifacts.processed_uri == run_prefix + f"processed/{plan.cache_key[:16]}/"
    assert artifacts.auto_labeled_uri == run_prefix + "labeling/auto-labeled.jsonl"
    assert artifacts.review_manifest_uri == run_prefix + "labeling/review.manifest"
    assert artifacts.review_output_manifest_uri is not None
    assert artifacts.review_output_manifest_uri.endswith("/manifests/output/output.manifest")
    assert artifacts.labeled_uri == run_prefix + "labeled/labeled.jsonl"
    assert artifacts.unlabeled_uri is None and artifacts.ingest_failures_uri is None


def test_processing_job_comes_from_the_plan_when_the_job_step_did_not_report() -> None:
    # Given a run that failed while its processing job ran (plan present, no processing section)
    full = full_request()
    state = with_sections(full.state, processing=None, routing=None, labeling=None, merge=None, ingest=None)
    state = with_sections(state, error=StepError(error="States.TaskFailed", cause="boom"))

    # When run.json is built / Then the planned job name is recorded, with no later counts
    manifest = build_manifest(full.model_copy(update={"state": state}), None, NOW)
    assert manifest.processing_job == full.state.require_plan().processing_job["ProcessingJobName"]
    assert manifest.counts.auto_labeled is None and manifest.counts.ingested is None


SPARK_RUN_ID = "00fbd2jf8iuoth09"
SPARK_ARN = f"arn:aws:emr-serverless:us-east-1:123456789012:/applications/00fbd2h2n0d1ui09/jobruns/{SPARK_RUN_ID}"


@pytest.mark.parametrize(
    ("returned", "status"),
    [
        ({"ApplicationId": "00fbd2h2n0d1ui09", "JobRunId": SPARK_RUN_ID, "Arn": SPARK_ARN}, "SUCCESS"),
        ({"JobRunId": SPARK_RUN_ID, "Arn": SPARK_ARN, "State": "SUCCESS", "Name": "x", "JobDriver": {}}, "SUCCESS"),
        ({"applicationId": "00fbd2h2n0d1ui09", "jobRunId": SPARK_RUN_ID, "arn": SPARK_ARN}, "SUCCESS"),
        ({"JobRun": {"JobRunId": SPARK_RUN_ID, "Arn": SPARK_ARN, "State": "SUCCESS"}}, "SUCCESS"),
        ({"jobRun": {"jobRunId": SPARK_RUN_ID, "arn": SPARK_ARN, "state": "SUCCESS"}}, "SUCCESS"),
    ],
    ids=["start-response", "job-run", "api-cased", "get-job-run", "get-job-run-api-cased"],
)
def test_a_spark_job_run_is_read_whichever_shape_step_functions_returns(returned: dict[str, Any], status: str) -> None:
    # Given RunSparkJob's result stored whole (AWS documents no output shape for startJobRun.sync)
    full = full_request()
    state = WorkflowState.model_validate({**full.state.model_dump(mode="json"), "processing": returned})

    # When run.json is built / Then it names the job run, its ARN and its state
    assert state.processing is not None
    assert (state.processing.job_arn, state.processing.status) == (SPARK_ARN, status)
    manifest = build_manifest(full.model_copy(update={"state": state}), None, NOW)
    assert manifest.processing_job == SPARK_RUN_ID


def test_a_spark_result_without_a_job_run_id_is_refused() -> None:
    full = full_request()
    with pytest.raises(ValidationError, match="job_name"):
        WorkflowState.model_validate({**full.state.model_dump(mode="json"), "processing": {"Arn": SPARK_ARN}})


def test_cache_hit_has_no_processing_job() -> None:
    # Given a run whose plan reused cached outputs, so no job ran
    full = full_request()
    plan = full.state.require_plan().model_copy(update={"cache_hit": True})
    state = with_sections(full.state, plan=plan, processing=None)

    # When run.json is built / Then no processing job is recorded
    manifest = build_manifest(full.model_copy(update={"state": state}), None, NOW)
    assert manifest.cache_hit is True
    assert manifest.processing_job is None


def test_run_json_names_the_state_as_routing_settled_it() -> None:
    # Given a run that fitted its transform state and lost the race to publish it
    full = full_request()
    planned = full.state.require_plan().transform_state
    settled = planned.model_copy(update={"sha256": "a" * 64, "published": False})
    routing = full.state.require_routing().model_copy(update={"transform_state": settled})
    state = with_sections(full.state, routing=routing)

    # When run.json is built
    manifest = build_manifest(full.model_copy(update={"state": state}), None, NOW)

    # Then it records the state processing used and that another run's fit was published
    assert manifest.transform_state == TransformStateLineage(
        uri=planned.uri, fingerprint=planned.fingerprint, applied=False, sha256="a" * 64, published=False
    )


def test_a_run_that_failed_before_routing_names_the_planned_state_and_group() -> None:
    # Given a run whose processing job failed after planning
    full = full_request()
    state = with_sections(full.state, processing=None, routing=None, labeling=None, merge=None, ingest=None)
    state = with_sections(state, error=StepError(error="States.TaskFailed", cause="boom"))

    # When run.json is built / Then the group planning readied and the state it planned with are named
    manifest = build_manifest(full.model_copy(update={"state": state}), None, NOW)
    assert manifest.feature_group == full.state.require_plan().feature_group
    assert manifest.transform_state == full.state.require_plan().transform_state


# ------------------------------------------------------------------------ finalize_run
def test_finalize_run_writes_run_json_even_when_the_event_fails(s3: Any, bucket: str) -> None:
    # Given a failed run and an event bus that refuses the run-finished event
    request = failed_request()
    events = StubEvents(ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "PutEvents"))

    # When the run is finalized
    manifest = finalize_run(request, s3, events, now=NOW)

    # Then run.json is written under the run prefix, and the event was attempted with the outcome
    body = s3.get_object(Bucket=bucket, Key="runs/reviews/afbcf3d3f25e2c3dba66/run.json")["Body"].read()
    assert json.loads(body)["status"] == "FAILED"
    assert manifest.status == "FAILED"
    [entry] = events.entries
    assert (entry["Source"], entry["DetailType"]) == (EVENT_SOURCE, EVENT_DETAIL_TYPE)
    assert json.loads(entry["Detail"]) == {
        "run_id": "afbcf3d3f25e2c3dba66",
        "dataset": "reviews",
        "status": "FAILED",
        "bucket": "labelflow-demo",
        "reason": "InvalidInputError: s3://labelflow-demo/raw/reviews/sample.csv is missing required columns: price",
        "run_json": "s3://labelflow-demo/runs/reviews/afbcf3d3f25e2c3dba66/run.json",
    }


def test_finalize_run_reads_processing_stats(s3: Any, bucket: str) -> None:
    # Given a complete run whose processing output includes stats.json
    request = full_request()
    processed = request.state.require_plan().processed_uri.removeprefix(f"s3://{bucket}/")
    stats_key = processed + "stats.json"
    s3.put_object(Bucket=bucket, Key=stats_key, Body=json.dumps({"records_in": 41, "records_out": 40, "rejected": 1}))

    # When the run is finalized / Then the counts include the processing step's
    manifest = finalize_run(request, s3, StubEvents(), now=NOW)
    assert (manifest.counts.records_in, manifest.counts.rejected) == (41, 1)


def test_a_rejected_input_is_quarantined_with_its_error_report(s3: Any, bucket: str) -> None:
    # Given a run rejected at planning, whose input version is in the bucket (and a newer version after it)
    request = failed_request()
    first = s3.put_object(Bucket=bucket, Key=request.state.key, Body=b"the rejected bytes")
    s3.put_object(Bucket=bucket, Key=request.state.key, Body=b"a later upload")
    state = request.state.model_copy(update={"version_id": first["VersionId"]})
    # When the run is finalized
    manifest = finalize_run(request.model_copy(update={"state": state}), s3, StubEvents(), now=NOW)
    # Then that exact version is copied to quarantine/, the reason beside it, and run.json points there
    prefix = f"quarantine/reviews/{state.run_id}/"
    assert manifest.artifacts.quarantine_uri == f"s3://{bucket}/{prefix}sample.csv"
    assert s3.get_object(Bucket=bucket, Key=prefix + "sample.csv")["Body"].read() == b"the rejected bytes"
    report = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "error.json")["Body"].read())
    assert report["error"] == "InvalidInputError" and report["cause"].endswith("missing required columns: price")
    assert report["source"]["version_id"] == first["VersionId"]


def test_an_input_gone_before_quarantine_still_gets_its_run_json(s3: Any, bucket: str) -> None:
    # Given a rejected run whose input no longer exists
    request = failed_request()
    # When the run is finalized / Then run.json is written without a quarantine copy
    manifest = finalize_run(request, s3, StubEvents(), now=NOW)
    assert manifest.status == "FAILED" and manifest.artifacts.quarantine_uri is None
    assert s3.get_object(Bucket=bucket, Key=f"runs/reviews/{request.state.run_id}/run.json")


# ------------------------------------------------------------------------ reingest
def test_a_reingest_that_sent_every_failed_record_makes_the_run_succeed(s3: Any, bucket: str) -> None:
    # Given a PARTIAL run.json: 3 records not ingested
    full = full_request()
    state = with_sections(
        full.state, ingest=IngestOutput(feature_group="g", ingested=37, failed=3, failures_uri="s3://x")
    )
    partial = finalize_run(full.model_copy(update={"state": state}), s3, StubEvents(), now=NOW)
    assert partial.status == "PARTIAL" and partial.reason and "3 records not ingested" in partial.reason
    # When a reingest ingested all three
    events = StubEvents()
    request = FinalizeReingestInput.model_validate(
        {
            "state": {
                "reingest": {"bucket": bucket, "dataset": "reviews", "run_id": state.run_id},
                "ingest": {"feature_group": "g", "ingested": 3, "failed": 0},
            },
            "execution_id": "arn:aws:states:us-east-1:123456789012:execution:labelflow:reviews-x-reingest-1",
            "started_at": "2026-11-25T03:00:00Z",
        }
    )
    manifest = finalize_run(request, s3, events, now=NOW)
    # Then run.json counts them, the run SUCCEEDED, and the reingest is in its history
    assert manifest.status == "SUCCEEDED" and manifest.reason is None
    assert (manifest.counts.ingested, manifest.counts.ingest_failed) == (40, 0)
    assert manifest.artifacts.ingest_failures_uri is None
    [reingest] = manifest.reingests
    assert (reingest.resent, reingest.previous_status) == (3, "PARTIAL")
    stored = json.loads(s3.get_object(Bucket=bucket, Key=f"runs/reviews/{state.run_id}/run.json")["Body"].read())
    assert stored["status"] == "SUCCEEDED" and json.loads(events.entries[0]["Detail"])["status"] == "SUCCEEDED"


@pytest.mark.parametrize(
    "cause",
    [
        {"ProcessingJobStatus": "Failed", "FailureReason": "the input is gone"},
        {"JobRun": {"State": "FAILED", "StateDetails": "the input is gone"}},
        {"jobRun": {"state": "FAILED", "stateDetails": "the input is gone"}},
    ],
)
def test_error_message_reads_a_failed_jobs_reason(cause: dict[str, object]) -> None:
    # Given a processing job's or a Spark job run's failure as Step Functions passes it on
    # When its message is read
    # Then it is the job's own one-line reason
    assert error_message(json.dumps(cause)) == "the input is gone"
