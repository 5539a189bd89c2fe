"""MergeLabels: one labeled record per processed record, human labels first, model labels otherwise.

Merge streams: the processed records and the auto-labeled file (routing writes it in processing order) are read
side by side in large chunks, and the labeled file is uploaded part by part as it is written, its ingest batches
cut from the byte offsets on the way; memory holds the human labels (as many as the review) and a few parts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_json

from labelflow.certification import audit_accuracy
from labelflow.errors import ManifestError
from labelflow.layout import PROCESSED_RECORDS, RunLayout, audit_key
from labelflow.models.records import AuditLabel, FeatureValue, LabelSource, ReviewItem
from labelflow.models.run import AuditOutcome
from labelflow.models.state import IngestBatch, LabelingResult, MergeOutput, WorkflowState
from labelflow.review.manifests import LABEL_ATTRIBUTE, human_labels
from labelflow.s3 import (
    PART_SIZE,
    READ_CHUNK,
    S3Location,
    StreamedObject,
    aborted_on_failure,
    exists,
    iter_jsonl,
    open_body,
    put_jsonl,
    uri,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Records per ingest batch, one IngestFeatures Lambda each: even at the ~330 records/s measured for 16 threads
# against a 20 ms PutRecord stub on a loaded 2-core machine (bench/scale_ingest.py), 150 s, inside the 900 s timeout.
INGEST_BATCH_RECORDS = 50_000
# Batches written at once: inline Map runs at most 40 iterations concurrently (Step Functions developer guide,
# "Using Map state in Inline mode").
INGEST_CONCURRENCY = 10


class MergedRecord(TypedDict):
    """The fields of a processed record (a records.jsonl line) that merge copies; the others are skipped."""

    record_id: str
    event_time: str
    features: dict[str, FeatureValue]


class ModelLabel(TypedDict):
    """A line of the auto-labeled file (AutoLabel)."""

    record_id: str
    label: str
    confidence: float


# Dicts rather than models on the hot path, as in routing: validated straight from the line's bytes.
RECORDS: TypeAdapter[MergedRecord] = TypeAdapter(MergedRecord)
MODEL_LABELS: TypeAdapter[ModelLabel] = TypeAdapter(ModelLabel)


def read_lines(s3: S3Client, location: S3Location) -> Iterator[bytes]:
    """The object's lines, streamed in chunks of READ_CHUNK."""
    return open_body(s3, *location).iter_lines(READ_CHUNK)


def validated[T](lines: Iterable[bytes], source: str, adapter: TypeAdapter[T]) -> Iterator[T]:
    """One value per non-empty JSON line, validated only in the fields `adapter` reads."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield adapter.validate_json(line)
        except ValidationError as exc:
            if exc.errors()[0]["type"] == "json_invalid":
                raise ManifestError(f"{source} line {number} is not valid json") from exc
            raise


def merge_records(
    records: Iterable[MergedRecord],
    model_labels: Iterable[ModelLabel],
    human: Mapping[str, tuple[str, float]],
    run_id: str,
    labeled: Callable[[dict[str, Any]], None],
    unlabeled: Callable[[str], None],
) -> None:
    """Each record in processing order to `labeled` (a LabeledRecord as a dict: the human label, else the model's),
    or its id to `unlabeled` when it has neither.

    The model labels are a subsequence of the records in the same order, so both are walked at once; a model label
    left over names a record that is not there (or not in that order): ManifestError."""
    pending = iter(model_labels)
    model = next(pending, None)
    for record in records:
        record_id = record["record_id"]
        matched = model if model is not None and model["record_id"] == record_id else None
        if matched is not None:
            model = next(pending, None)
        source: LabelSource
        if record_id in human:
            (label, confidence), source = human[record_id], "human"
        elif matched is not None:
            label, confidence, source = matched["label"], matched["confidence"], "model"
        else:
            unlabeled(record_id)
            continue
        labeled(
            {
                "record_id": record_id,
                "event_time": record["event_time"],
                "features": record["features"],
                "label": label,
                "label_source": source,
                "label_confidence": float(confidence),
                "run_id": run_id,
            }
        )
    if model is not None:
        raise ManifestError(f"auto-labeled record {model['record_id']} is not among the processed records in order")


class LabeledFile:
    """The labeled file written as it comes, cut into ingest batches of `per_batch` whole lines by byte offset."""

    def __init__(self, output: StreamedObject, per_batch: int) -> None:
        self._output, self._per_batch = output, per_batch
        self.batches: list[IngestBatch] = []
        self._written = 0  # bytes
        self._first_byte = 0  # of the batch being filled
        self._lines = 0  # in the batch being filled

    def write(self, line: bytes) -> None:
        """Add one line (without its newline)."""
        self._output.write(line)
        self._written += len(line) + 1
        self._lines += 1
        if self._lines == self._per_batch:
            self._cut()

    def _cut(self) -> None:
        batch = IngestBatch(
            index=len(self.batches), first_byte=self._first_byte, last_byte=self._written - 1, records=self._lines
        )
        self.batches.append(batch)
        self._first_byte, self._lines = self._written, 0

    def close(self) -> tuple[str, list[IngestBatch]]:
        """Complete the file; its URI and its batches."""
        if self._lines:
            self._cut()
        return self._output.close(), self.batches

    def abort(self) -> None:
        self._output.abort()


@dataclass
class MergeCounts:
    """Records labeled by a human, by the model, and left without a label."""

    human: int = 0
    model: int = 0
    unlabeled: int = 0


def merge_lines(
    records: Iterable[MergedRecord],
    model_labels: Iterable[ModelLabel],
    human: Mapping[str, tuple[str, float]],
    reasons: Mapping[str, str],
    run_id: str,
    labeled: LabeledFile,
    unlabeled: StreamedObject,
) -> MergeCounts:
    """Merge the records, each labeled one written to `labeled`, each other to `unlabeled` with its reason."""
    counts = MergeCounts()

    def to_labeled(line: dict[str, Any]) -> None:
        if line["label_source"] == "human":
            counts.human += 1
        else:
            counts.model += 1
        labeled.write(to_json(line))

    def to_unlabeled(record_id: str) -> None:
        counts.unlabeled += 1
        row = {"record_id": record_id, "reason": reasons.get(record_id, "no reviewer labeled it")}
        # Keys sorted, as put_jsonl writes a dict.
        unlabeled.write(json.dumps(row, sort_keys=True).encode())

    merge_records(records, model_labels, human, run_id, to_labeled, to_unlabeled)
    return counts


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


def merge_labels(
    run: WorkflowState,
    s3: S3Client,
    batch_records: int | None = None,
    concurrency: int | None = None,
    part_size: int = PART_SIZE,
) -> MergeOutput:
    """Labeled and unlabeled records of the run; a labeling job that ended early contributes what it labeled.

    The labeled file is split into ingest batches of `batch_records` (default INGEST_BATCH_RECORDS)."""
    plan, routing = run.require_plan(), run.require_routing()
    human, reasons = review_results(s3, run.labeling_outcomes())
    processed = S3Location.parse(plan.processed_uri)
    records = S3Location(processed.bucket, processed.key + PROCESSED_RECORDS)
    model_labels = S3Location.parse(routing.auto_labeled_uri)
    layout = RunLayout(run.dataset, run.run_id)
    labeled = LabeledFile(
        StreamedObject(s3, run.bucket, layout.labeled_key, part_size), batch_records or INGEST_BATCH_RECORDS
    )
    unlabeled = StreamedObject(s3, run.bucket, layout.unlabeled_key, part_size)
    with aborted_on_failure(labeled, unlabeled):
        counts = merge_lines(
            validated(read_lines(s3, records), records.uri, RECORDS),
            validated(read_lines(s3, model_labels), model_labels.uri, MODEL_LABELS),
            human,
            reasons,
            run.run_id,
            labeled,
            unlabeled,
        )
        labeled_uri, batches = labeled.close()
        unlabeled_uri = unlabeled.close() if counts.unlabeled else None
    return MergeOutput(
        labeled_uri=labeled_uri,
        labeled=counts.human + counts.model,
        model=counts.model,
        human=counts.human,
        unlabeled=counts.unlabeled,
        unlabeled_uri=unlabeled_uri,
        audit=gather_audit(run, s3, human),
        batches=batches,
        ingest_concurrency=concurrency or INGEST_CONCURRENCY,
    )
