"""MergeLabels: one labeled record per processed record, human labels first, model labels otherwise."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from labelflow.certification import audit_accuracy
from labelflow.layout import PROCESSED_RECORDS, RunLayout, audit_key
from labelflow.models.records import AuditLabel, AutoLabel, LabeledRecord, LabelSource, ProcessedRecord, ReviewItem
from labelflow.models.run import AuditOutcome
from labelflow.models.state import MergeOutput, WorkflowState
from labelflow.review.manifests import human_labels
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


def merge_labels(run: WorkflowState, s3: S3Client) -> MergeOutput:
    plan, routing = run.require_plan(), run.require_routing()
    auto_location = S3Location.parse(routing.auto_labeled_uri)
    auto = {
        label.record_id: label for label in (AutoLabel.model_validate(line) for line in iter_jsonl(s3, *auto_location))
    }
    human: dict[str, tuple[str, float]] = {}
    if run.labeling is not None:
        output = S3Location.parse(run.labeling.output_manifest_uri)
        human = human_labels(iter_jsonl(s3, *output))
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
        unlabeled_uri = put_jsonl(s3, run.bucket, layout.unlabeled_key, [{"record_id": rid} for rid in unlabeled])
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
