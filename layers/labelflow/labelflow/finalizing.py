"""FinalizeRun: write run.json (lineage, counts, outcome) for every run, successful or not."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from labelflow.errors import ManifestError
from labelflow.layout import PROCESSED_STATS, RunLayout
from labelflow.models.artifacts import ProcessingStats
from labelflow.models.run import (
    InputLineage,
    RunArtifacts,
    RunCounts,
    RunError,
    RunManifest,
    RunStatus,
    TransformStateLineage,
)
from labelflow.models.state import FinalizeInput, WorkflowState
from labelflow.observability import logger
from labelflow.s3 import S3Location, copy_version, get_json, put_json

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

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


def run_status(run: WorkflowState) -> RunStatus:
    if run.error is not None:
        return "FAILED"
    unlabeled = run.merge.unlabeled if run.merge else 0
    failed = run.ingest.failed if run.ingest else 0
    return "PARTIAL" if unlabeled or failed else "SUCCEEDED"


def error_of(run: WorkflowState) -> RunError | None:
    """The failure, with the cause unwrapped when it is a Lambda error payload."""
    if run.error is None:
        return None
    cause = run.error.cause
    try:
        payload = json.loads(cause)
        if isinstance(payload, dict) and "errorMessage" in payload:
            cause = str(payload["errorMessage"])
    except ValueError:
        pass
    return RunError(error=run.error.error, cause=cause)


def transform_state_of(run: WorkflowState) -> TransformStateLineage | None:
    """The state as routing settled it (what processing used, whether it was published), else as planned."""
    settled = run.routing.transform_state if run.routing else None
    return settled or (run.plan.transform_state if run.plan else None)


def build_manifest(request: FinalizeInput, stats: ProcessingStats | None, now: datetime) -> RunManifest:
    run = request.state
    plan, routing, labeling, merged, ingest = run.plan, run.routing, run.labeling, run.merge, run.ingest
    processing_job = run.processing.job_name if run.processing else None
    if processing_job is None and plan is not None and not plan.cache_hit:
        processing_job = str(plan.processing_job.get("ProcessingJobName"))
    labeling_job = labeling.job_name if labeling else None
    return RunManifest(
        run_id=run.run_id,
        dataset=run.dataset,
        status=run_status(run),
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
        labeling_job=labeling_job,
        feature_group=plan.feature_group if plan else None,
        counts=RunCounts(
            records_in=stats.records_in if stats else None,
            rejected=stats.rejected if stats else None,
            auto_labeled=routing.auto_labeled if routing else None,
            sent_to_review=routing.to_review if routing else None,
            human_labeled=merged.human if merged else None,
            model_labeled=merged.model if merged else None,
            unlabeled=merged.unlabeled if merged else None,
            ingested=ingest.ingested if ingest else None,
            ingest_failed=ingest.failed if ingest else None,
        ),
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
        error=error_of(run),
    )


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


def finalize_run(request: FinalizeInput, s3: S3Client, events: Any, now: datetime | None = None) -> RunManifest:
    """Write run.json (quarantining a rejected input first), then announce the run's end (best effort)."""
    run = request.state
    now = now or datetime.now(UTC)
    manifest = build_manifest(request, read_stats(s3, run), now)
    if manifest.error is not None and manifest.error.error in QUARANTINED_ERRORS:
        manifest.artifacts.quarantine_uri = quarantine(s3, run, manifest.error, now)
    put_json(s3, run.bucket, RunLayout(run.dataset, run.run_id).run_manifest_key, manifest)
    detail = {"run_id": run.run_id, "dataset": run.dataset, "status": manifest.status, "bucket": run.bucket}
    try:
        events.put_events(
            Entries=[{"Source": EVENT_SOURCE, "DetailType": EVENT_DETAIL_TYPE, "Detail": json.dumps(detail)}]
        )
    except ClientError:
        # run.json is the record of truth; a lost notification must not fail a finished run.
        logger.exception("could not publish the run-finished event", extra={"run_id": run.run_id})
    return manifest
