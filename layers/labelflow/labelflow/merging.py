"""MergeLabels: one labeled record per processed record, human labels first, model labels otherwise."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from labelflow.layout import PROCESSED_RECORDS, RunLayout
from labelflow.models.records import AutoLabel, LabeledRecord, LabelSource, ProcessedRecord
from labelflow.models.state import MergeOutput, WorkflowState
from labelflow.review.manifests import human_labels
from labelflow.s3 import S3Location, iter_jsonl, put_jsonl

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
    )
