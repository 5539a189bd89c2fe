"""FinalizeRun: write run.json (lineage, counts, outcome, reason) for every run, successful or not, and for each
reingest of a run's failed records."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from labelflow.errors import LabelflowError, ManifestError
from labelflow.ingestion import gather, read_manifest
from labelflow.layout import PROCESSED_STATS, RunLayout
from labelflow.merging import ended_reason
from labelflow.models.artifacts import ProcessingStats
from labelflow.models.reviewers import ReviewerLineage, reviewers_uri
from labelflow.models.run import (
    InputLineage,
    ReingestLineage,
    RunArtifacts,
    RunCounts,
    RunError,
    RunManifest,
    RunStatus,
    TransformStateLineage,
)
from labelflow.models.state import (
    FinalizeInput,
    FinalizeReingestInput,
    IngestOutput,
    LabelingResult,
    ReingestState,
    WorkflowState,
)
from labelflow.observability import logger
from labelflow.s3 import S3Location, copy_version, get_json, put_json

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker_featurestore_runtime import SageMakerFeatureStoreRuntimeClient

# Errors that mean the input itself cannot be processed: its copy goes to quarantine/ with the reason.
QUARANTINED_ERRORS = frozenset({"InvalidInputError"})
EVENT_SOURCE = "labelflow"
EVENT_DETAIL_TYPE = "Labelflow Run Finished"


def read_stats(s3: S3Client, run: WorkflowState) -> ProcessingStats | None:
    if run.plan is None:
        return None
    processed = S3Location.parse(run.plan.processed_uri)
    try:
        return ProcessingStats.model_validate(get_json(s3, processed.bucket, processed.key + PROCESSED_STATS))
    except (ManifestError, ValidationError):
        return None


def counted_status(counts: RunCounts) -> RunStatus:
    """From the counts of a run that went to its end: PARTIAL when a record that passed processing was not
    labeled or not ingested, FAILED when none was ingested. Rejected rows alone do not make a run PARTIAL:
    processing already failed the run when their share passed the spec's max_rejected_share."""
    short = sum(count or 0 for count in (counts.unlabeled, counts.ingest_failed))
    if not short:
        return "SUCCEEDED"
    return "FAILED" if counts.ingested == 0 else "PARTIAL"


def run_status(run: WorkflowState, counts: RunCounts | None = None) -> RunStatus:
    if run.error is not None:
        return "FAILED"
    return counted_status(counts or counts_of(run, None))


def error_message(cause: str) -> str:
    """The message of a failure's cause, on one line: a Lambda error's errorMessage, a processing job's
    FailureReason, a Spark job run's stateDetails (GetJobRun's JobRun; Step Functions' casing of it is not
    documented, so both are read)."""
    try:
        payload = json.loads(cause)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        job_run = payload.get("JobRun") or payload.get("jobRun") or payload
        details = job_run.get("StateDetails") or job_run.get("stateDetails") if isinstance(job_run, dict) else None
        cause = str(payload.get("errorMessage") or payload.get("FailureReason") or details or cause)
    first = cause.strip().splitlines()[0] if cause.strip() else "no cause given"
    return first if len(first) <= 300 else first[:297] + "..."


def reason_of(manifest: RunManifest, group: str | None = None) -> str | None:
    """Why a run did not succeed, in one sentence with what to look at; None when it succeeded."""
    counts = manifest.counts
    if manifest.status == "SUCCEEDED":
        return None
    if manifest.error is not None:
        return f"{manifest.error.error}: {error_message(manifest.error.cause)}"
    group = group or (manifest.feature_group.name if manifest.feature_group else "the dataset's feature group")
    parts = []
    if counts.rejected:
        parts.append(f"{counts.rejected} rows rejected by processing (rejected.jsonl under processed/ says why)")
    if counts.unlabeled and manifest.labeling_ended:
        parts.append(f"{counts.unlabeled} records unlabeled: {manifest.labeling_ended} (unlabeled.jsonl lists them)")
    elif counts.unlabeled:
        parts.append(f"{counts.unlabeled} records got no label from reviewers (answer them: --answers FILE)")
    if counts.ingest_failed:
        parts.append(
            f"{counts.ingest_failed} records not ingested into feature group {group} (ingest-failures.jsonl says why)"
        )
    return "; ".join(parts) or "not every record was accounted for"


def transform_state_of(run: WorkflowState) -> TransformStateLineage | None:
    """The state as routing settled it (what processing used, whether it was published), else as planned."""
    settled = run.routing.transform_state if run.routing else None
    return settled or (run.plan.transform_state if run.plan else None)


def counts_of(run: WorkflowState, stats: ProcessingStats | None) -> RunCounts:
    routing, merged, ingest = run.routing, run.merge, run.ingest
    return RunCounts(
        records_in=stats.records_in if stats else None,
        rejected=stats.rejected if stats else None,
        auto_labeled=routing.auto_labeled if routing else None,
        sent_to_review=routing.to_review if routing else None,
        human_labeled=merged.human if merged else None,
        model_labeled=merged.model if merged else None,
        unlabeled=merged.unlabeled if merged else None,
        ingested=ingest.ingested if ingest else None,
        ingest_failed=ingest.failed if ingest else None,
    )


def labeling_of(run: WorkflowState) -> list[LabelingResult]:
    """The labeling jobs as they ended; none when a caught error described no job (merge then failed the run)."""
    try:
        return run.labeling_outcomes()
    except LabelflowError:
        return []


def reviewers_of(s3: S3Client, run: WorkflowState) -> ReviewerLineage | None:
    """Who reviewed the run's labeling job: what a local backend recorded beside its output, else Ground Truth's
    work team with the workers asked per record; None when nothing went to review."""
    jobs = labeling_of(run)
    if not jobs:
        return None
    location = S3Location.parse(reviewers_uri(jobs[0].output_path, jobs[0].job_name))
    try:
        return ReviewerLineage.model_validate(get_json(s3, location.bucket, location.key))
    except ManifestError:
        requests = run.routing.labeling_jobs if run.routing else []
        asked = requests[0].get("NumberOfHumanWorkersPerDataObject") if requests else None
        return ReviewerLineage(backend="ground-truth", workers_per_record=asked)


def build_manifest(
    request: FinalizeInput, stats: ProcessingStats | None, now: datetime, reviewers: ReviewerLineage | None = None
) -> RunManifest:
    run = request.state
    plan, routing, jobs, merged, ingest = run.plan, run.routing, labeling_of(run), run.merge, run.ingest
    processing_job = run.processing.job_name if run.processing else None
    if processing_job is None and plan is not None and not plan.cache_hit:
        processing_job = str(plan.processing_job.get("ProcessingJobName"))
    labeling = jobs[0] if jobs else None
    ended = "; ".join(ended_reason(job) for job in jobs if job.ended_early)
    counts = counts_of(run, stats)
    manifest = RunManifest(
        run_id=run.run_id,
        dataset=run.dataset,
        status=run_status(run, counts),
        execution_id=request.execution_id,
        started_at=request.started_at,
        finished_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        input=InputLineage(bucket=run.bucket, key=run.key, version_id=run.version_id, etag=run.etag, size=run.size),
        code_sha256=plan.code_sha256 if plan else None,
        cache_key=plan.cache_key if plan else None,
        cache_hit=plan.cache_hit if plan else None,
        model=plan.model if plan else None,
        transform_state=transform_state_of(run),
        processing_job=processing_job,
        labeling_job=labeling.job_name if labeling else None,
        labeling_jobs=[job.job_name for job in jobs],
        labeling_ended=ended or None,
        feature_group=plan.feature_group if plan else None,
        threshold=routing.threshold_choice if routing else None,
        audit=(merged.audit if merged else None) or (routing.audit if routing else None),
        counts=counts,
        artifacts=RunArtifacts(
            spec_uri=plan.spec_uri if plan else None,
            processed_uri=plan.processed_uri if plan else None,
            auto_labeled_uri=routing.auto_labeled_uri if routing else None,
            review_manifest_uri=routing.review_manifest_uri if routing else None,
            review_output_manifest_uri=labeling.output_manifest_uri if labeling else None,
            labeled_uri=merged.labeled_uri if merged else None,
            unlabeled_uri=merged.unlabeled_uri if merged else None,
            ingest_failures_uri=ingest.failures_uri if ingest else None,
        ),
        reviewers=reviewers,
        error=error_of(run),
    )
    manifest.reason = reason_of(manifest)
    return manifest


def quarantine(s3: S3Client, run: WorkflowState, error: RunError, now: datetime) -> str | None:
    """Copy a rejected input (this exact version) to quarantine/ with an error report; the raw object stays."""
    layout = RunLayout(run.dataset, run.run_id)
    target = layout.quarantine_key(run.key.rsplit("/", 1)[-1])
    try:
        copy_version(s3, S3Location(run.bucket, run.key), run.version_id, S3Location(run.bucket, target))
    except ClientError:
        # The input may be gone (deleted since it landed); run.json still records why the run failed.
        logger.exception("could not quarantine the input", extra={"run_id": run.run_id, "key": run.key})
        return None
    report = {
        "run_id": run.run_id,
        "source": {"bucket": run.bucket, "key": run.key, "version_id": run.version_id},
        "error": error.error,
        "cause": error.cause,
        "quarantined_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    put_json(s3, run.bucket, layout.quarantine_report_key, report)
    return f"s3://{run.bucket}/{target}"


def announce(events: Any, manifest: RunManifest, bucket: str) -> None:
    """Put the run-finished event (best effort): the alarm rule notifies FAILED and PARTIAL runs with the reason."""
    layout = RunLayout(manifest.dataset, manifest.run_id)
    detail = {
        "run_id": manifest.run_id,
        "dataset": manifest.dataset,
        "status": manifest.status,
        "bucket": bucket,
        "reason": manifest.reason,
        "run_json": f"s3://{bucket}/{layout.run_manifest_key}",
    }
    try:
        events.put_events(
            Entries=[{"Source": EVENT_SOURCE, "DetailType": EVENT_DETAIL_TYPE, "Detail": json.dumps(detail)}]
        )
    except ClientError:
        # run.json is the record of truth; a lost notification must not fail a finished run.
        logger.exception("could not publish the run-finished event", extra={"run_id": manifest.run_id})


def finalize_reingest(request: FinalizeReingestInput, s3: S3Client, now: datetime) -> RunManifest:
    """run.json after a reingest: counts, failures file and status updated, the reingest added to its history."""
    state = request.state
    target = state.reingest
    layout = RunLayout(target.dataset, target.run_id)
    manifest = read_manifest(s3, target.bucket, layout)
    result, error = state.ingest, error_of(state)
    lineage = ReingestLineage(
        execution_id=request.execution_id,
        started_at=request.started_at,
        finished_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        resent=(result.ingested + result.failed) if result else 0,
        ingested=result.ingested if result else 0,
        failed=result.failed if result else 0,
        previous_status=manifest.status,
        previous_error=manifest.error,
        error=error,
    )
    update: dict[str, Any] = {"reingests": [*manifest.reingests, lineage]}
    if result is not None and error is None:
        counts = manifest.counts.model_copy(
            update={"ingested": (manifest.counts.ingested or 0) + result.ingested, "ingest_failed": result.failed}
        )
        artifacts = manifest.artifacts.model_copy(update={"ingest_failures_uri": result.failures_uri})
        # A run stopped during ingestion is whole once its records are: its error moves to the reingest's lineage.
        update.update(counts=counts, artifacts=artifacts, status=counted_status(counts), error=None)
    updated = manifest.model_copy(update=update)
    updated.reason = reason_of(updated) if error is None else f"reingest {error.error}: {error_message(error.cause)}"
    put_json(s3, target.bucket, layout.run_manifest_key, updated)
    return updated


def error_of(state: WorkflowState | ReingestState) -> RunError | None:
    """The failure, with the cause unwrapped when it is a Lambda error payload."""
    if state.error is None:
        return None
    cause = state.error.cause
    try:
        payload = json.loads(cause)
        if isinstance(payload, dict) and "errorMessage" in payload:
            cause = str(payload["errorMessage"])
    except ValueError:
        pass
    return RunError(error=state.error.error, cause=cause)


def gathered_ingest(
    run: WorkflowState, s3: S3Client, featurestore: SageMakerFeatureStoreRuntimeClient
) -> IngestOutput | None:
    """The run's ingestion over its batches; None when that cannot be told now (run.json then has no ingest counts)."""
    try:
        return gather(run, s3, featurestore)
    except (ClientError, BotoCoreError, LabelflowError):
        logger.exception("could not gather the ingestion", extra={"run_id": run.run_id})
        return None


def with_ingestion(run: WorkflowState, s3: S3Client, featurestore: SageMakerFeatureStoreRuntimeClient) -> WorkflowState:
    """The run with its ingest batches gathered; a run whose every batch stopped failed with the first one's error."""
    stopped = [outcome.error for outcome in run.ingest_batches or [] if outcome.error is not None]
    if run.error is None and stopped and len(stopped) == len(run.ingest_batches or []):
        run = run.model_copy(update={"error": stopped[0]})
    gathered = gathered_ingest(run, s3, featurestore)
    return run.model_copy(update={"ingest": gathered}) if gathered is not None else run


def finalize_run(
    request: FinalizeInput | FinalizeReingestInput,
    s3: S3Client,
    events: Any,
    now: datetime | None = None,
    featurestore: SageMakerFeatureStoreRuntimeClient | None = None,
) -> RunManifest:
    """Write run.json (quarantining a rejected input first), then announce the run's end (best effort).

    The ingest batches are gathered first (with `featurestore`), those that stopped settled from their checkpoints
    and the online store: run.json counts what was written.
    """
    now = now or datetime.now(UTC)
    if isinstance(request, FinalizeReingestInput):
        manifest = finalize_reingest(request, s3, now)
        announce(events, manifest, request.state.reingest.bucket)
        return manifest
    run = request.state
    if featurestore is not None:
        run = with_ingestion(run, s3, featurestore)
        request = request.model_copy(update={"state": run})
    manifest = build_manifest(request, read_stats(s3, run), now, reviewers_of(s3, run))
    if manifest.error is not None and manifest.error.error in QUARANTINED_ERRORS:
        manifest.artifacts.quarantine_uri = quarantine(s3, run, manifest.error, now)
    put_json(s3, run.bucket, RunLayout(run.dataset, run.run_id).run_manifest_key, manifest)
    announce(events, manifest, run.bucket)
    return manifest
