"""MergeLabels: one labeled record per processed record, human labels first, model labels otherwise."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from labelflow.certification import audit_accuracy
from labelflow.layout import PROCESSED_RECORDS, RunLayout, audit_key
from labelflow.models.records import AuditLabel, AutoLabel, LabeledRecord, LabelSource, ProcessedRecord, ReviewItem
from labelflow.models.run import AuditOutcome
from labelflow.models.state import LabelingResult, MergeOutput, WorkflowState
from labelflow.review.manifests import LABEL_ATTRIBUTE, human_labels
from labelflow.s3 import S3Location, exists, iter_jsonl, put_jsonl, uri

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def merge_records(
    records: Iterable[ProcessedRecord],
    auto: dict[str, AutoLabel],
    human: dict[str, tuple[str, float]],
    run_id: str,
) -> tuple[list[LabeledRecord], list[str]]:
    """Labeled records in processing order, and the ids that ended with no label."""
    labeled: list[LabeledRecord] = []
    unlabeled: list[str] = []
    for record in records:
        source: LabelSource
        if record.record_id in human:
            (label, confidence), source = human[record.record_id], "human"
        elif record.record_id in auto:
            decided = auto[record.record_id]
            label, confidence, source = decided.label, decided.confidence, "model"
        else:
            unlabeled.append(record.record_id)
            continue
        labeled.append(
            LabeledRecord(
                record_id=record.record_id,
                event_time=record.event_time,
                features=record.features,
                label=label,
                label_source=source,
                label_confidence=confidence,
                run_id=run_id,
            )
        )
    return labeled, unlabeled


def audit_labels(review: Iterable[ReviewItem], human: dict[str, tuple[str, float]]) -> list[AuditLabel]:
    """The audit sample's records a reviewer answered, each with the model's prediction and the human label."""
    return [
        AuditLabel(
            record_id=item.record_id,
            model_label=item.model_label,
            model_confidence=item.model_confidence,
            human_label=human[item.record_id][0],
        )
        for item in review
        if item.audit and item.record_id in human and item.model_label is not None and item.model_confidence is not None
    ]


def gather_audit(run: WorkflowState, s3: S3Client, human: dict[str, tuple[str, float]]) -> AuditOutcome | None:
    """Write this run's audit labels where later runs certify from (once: a retried merge finds them), and
    measure the accuracy of this run's auto-labels on them."""
    plan, routing = run.require_plan(), run.require_routing()
    if routing.audit is None or plan.model is None or routing.review_manifest_uri is None:
        return routing.audit
    manifest = S3Location.parse(routing.review_manifest_uri)
    labels = audit_labels((ReviewItem.model_validate(line) for line in iter_jsonl(s3, *manifest)), human)
    key = audit_key(run.dataset, plan.model.sha256, run.run_id)
    labels_uri = uri(run.bucket, key) if exists(s3, run.bucket, key) else put_jsonl(s3, run.bucket, key, labels)
    answered, accuracy = audit_accuracy(labels, routing.threshold)
    return routing.audit.model_copy(
        update={
            "answered": len(labels),
            "auto_labeled_answered": answered,
            "auto_label_accuracy": accuracy,
            "labels_uri": labels_uri,
        }
    )


def unanswered_reasons(lines: Iterable[dict[str, Any]], attribute: str = LABEL_ATTRIBUTE) -> dict[str, str]:
    """record id → why an output-manifest line has no label (Ground Truth's `failure-reason`, e.g. an expired task)."""
    reasons: dict[str, str] = {}
    for line in lines:
        metadata = line.get(f"{attribute}-metadata") or {}
        if isinstance(metadata, dict) and metadata.get("failure-reason") and isinstance(line.get("record_id"), str):
            reasons[line["record_id"]] = str(metadata["failure-reason"])
    return reasons


def ended_reason(job: LabelingResult) -> str:
    """Why the records a job that ended early never reached have no label."""
    why = f": {job.failure_reason}" if job.failure_reason else ""
    return f"labeling job {job.job_name} ended {job.status}{why}"


def read_output_manifest(s3: S3Client, job: LabelingResult) -> list[dict[str, Any]]:
    """The job's output manifest lines. Ground Truth writes it as tasks are submitted or expire, and a stopped job's
    results stay in S3 (SageMaker developer guide, "Labeling job output data"; API reference, StopLabelingJob): a job
    that ended early may have one, and has labeled nothing when it has none."""
    output = S3Location.parse(job.output_manifest_uri)
    if job.ended_early and not exists(s3, output.bucket, output.key):
        return []
    return list(iter_jsonl(s3, *output))


def review_results(s3: S3Client, jobs: Iterable[LabelingResult]) -> tuple[dict[str, tuple[str, float]], dict[str, str]]:
    """The human labels of every job, and why the records they did not label have none."""
    human: dict[str, tuple[str, float]] = {}
    reasons: dict[str, str] = {}
    for job in jobs:
        lines = read_output_manifest(s3, job)
        human |= human_labels(lines)
        reasons |= unanswered_reasons(lines)
        if job.ended_early and job.manifest_uri is not None:
            # Records the job never reached have no output line: the job's end is their reason.
            reached = {line.get("record_id") for line in lines}
            for line in iter_jsonl(s3, *S3Location.parse(job.manifest_uri)):
                if line.get("record_id") not in reached:
                    reasons[str(line.get("record_id"))] = ended_reason(job)
    return human, reasons


def merge_labels(run: WorkflowState, s3: S3Client) -> MergeOutput:
    """Labeled and unlabeled records of the run; a labeling job that ended early contributes what it labeled."""
    plan, routing = run.require_plan(), run.require_routing()
    auto_location = S3Location.parse(routing.auto_labeled_uri)
    auto = {
        label.record_id: label for label in (AutoLabel.model_validate(line) for line in iter_jsonl(s3, *auto_location))
    }
    human, reasons = review_results(s3, run.labeling_outcomes())
    processed = S3Location.parse(plan.processed_uri)
    records = (
        ProcessedRecord.model_validate(line)
        for line in iter_jsonl(s3, processed.bucket, processed.key + PROCESSED_RECORDS)
    )
    labeled, unlabeled = merge_records(records, auto, human, run.run_id)

    layout = RunLayout(run.dataset, run.run_id)
    labeled_uri = put_jsonl(s3, run.bucket, layout.labeled_key, labeled)
    unlabeled_uri = None
    if unlabeled:
        rows = [{"record_id": rid, "reason": reasons.get(rid, "no reviewer labeled it")} for rid in unlabeled]
        unlabeled_uri = put_jsonl(s3, run.bucket, layout.unlabeled_key, rows)
    human_count = sum(1 for record in labeled if record.label_source == "human")
    return MergeOutput(
        labeled_uri=labeled_uri,
        labeled=len(labeled),
        model=len(labeled) - human_count,
        human=human_count,
        unlabeled=len(unlabeled),
        unlabeled_uri=unlabeled_uri,
        audit=gather_audit(run, s3, human),
    )
