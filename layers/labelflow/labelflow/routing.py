"""RouteByConfidence: auto-label what the model is sure of, send the rest to human review.

Routing streams: records are read in large chunks and each output is uploaded part by part as it is written,
so memory holds a few parts whatever the input size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any, NotRequired, TypedDict

from pydantic import Field, TypeAdapter, ValidationError
from pydantic_core import to_json

from labelflow.certification import certify, is_audited
from labelflow.datasets import read_run_spec
from labelflow.errors import InvalidInputError, ManifestError
from labelflow.layout import (
    CODE_PREFIX,
    PROCESSED_RECORDS,
    PROCESSED_REJECTED,
    PROCESSED_STATS,
    RunLayout,
    audit_prefix,
    job_name,
)
from labelflow.models.artifacts import ProcessingStats
from labelflow.models.records import SOURCE_REF, AuditLabel, display_text
from labelflow.models.run import AuditOutcome, ThresholdChoice
from labelflow.models.spec import DatasetSpec
from labelflow.models.state import RoutingOutput, WorkflowState
from labelflow.review.manifests import LABEL_ATTRIBUTE
from labelflow.review.tasks import image_uri
from labelflow.s3 import (
    PART_SIZE,
    READ_CHUNK,
    S3Location,
    StreamedObject,
    aborted_on_failure,
    exists,
    get_json,
    iter_jsonl,
    open_body,
    put_bytes,
    put_json,
    uri,
)
from labelflow.transform_state import settle_state

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

UI_TEMPLATE = "template.liquid.html"


class _Prediction(TypedDict):
    label: str
    confidence: Annotated[float, Field(ge=0.0, le=1.0)]


class RoutedRecord(TypedDict):
    """The fields of a processed record (a records.jsonl line) that routing reads; the others are skipped."""

    record_id: str
    display: dict[str, str]
    prediction: NotRequired[_Prediction | None]


# Dicts rather than models on the hot path: validating into a TypedDict and dumping a dict cost a fraction of
# building and dumping model instances (bench/scale.py).
_ROUTED: TypeAdapter[RoutedRecord] = TypeAdapter(RoutedRecord)


def split_by_confidence(
    records: Iterable[RoutedRecord],
    labels: list[str],
    threshold: float,
    auto: Callable[[dict[str, Any]], None],
    review: Callable[[dict[str, Any]], None],
    audited: Callable[[str], bool] = lambda _: False,
) -> None:
    """Records whose prediction reaches the threshold go to `auto`; the others (and unpredicted) to `review`.

    Scored records `audited` selects are marked as the audit sample; the confident ones go to review as well.
    Each output is a line of AutoLabel or ReviewItem as a dict, keys in the order the model writes them.
    """
    for record in records:
        record_id = record["record_id"]
        prediction = record.get("prediction")
        confident = prediction is not None and prediction["confidence"] >= threshold
        if prediction is not None and confident:
            auto({"record_id": record_id, "label": prediction["label"], "confidence": prediction["confidence"]})
        audit = prediction is not None and audited(record_id)
        if not confident or audit:
            display = record["display"]
            # An image record is sent by reference (`source-ref`, an extra key: last), a text one inline (`source`).
            image = image_uri(display)
            line: dict[str, Any] = {} if image else {"source": display_text(display)}
            line["record_id"] = record_id
            line["display"] = display
            line["labels"] = labels
            line["model_label"] = prediction["label"] if prediction else None
            line["model_confidence"] = prediction["confidence"] if prediction else None
            line["audit"] = audit
            if image:
                line[SOURCE_REF] = image
            review(line)


def read_records(lines: Iterable[bytes], source: str) -> Iterator[RoutedRecord]:
    """One record per non-empty JSON line, validated only in the fields routing reads."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = _ROUTED.validate_json(line)
        except ValidationError as exc:
            if exc.errors()[0]["type"] == "json_invalid":
                raise ManifestError(f"{source} line {number} is not valid json") from exc
            raise
        yield record


class ReviewManifests:
    """The review manifest and, once the review outgrows one labeling job, a manifest per `per_job` records
    beside it, all written as the items come. A filled job manifest is sealed (sent, not completed) so that none
    appears before close() and abort() leaves none behind."""

    def __init__(self, s3: S3Client, bucket: str, layout: RunLayout, per_job: int, part_size: int = PART_SIZE) -> None:
        self._s3, self._bucket, self._part_size, self._per_job = s3, bucket, part_size, per_job
        self._whole = StreamedObject(s3, bucket, layout.review_manifest_key, part_size)
        self._part_key = layout.review_manifest_key.removesuffix(".manifest") + "-{}.manifest"
        self._sealed: list[StreamedObject] = []
        self._current: StreamedObject | None = None

    def write(self, item: dict[str, Any]) -> None:
        current = self._current
        if current is None or self._whole.lines % self._per_job == 0:
            if current is not None:
                current.seal()
                self._sealed.append(current)
            key = self._part_key.format(len(self._sealed) + 1)
            current = self._current = StreamedObject(self._s3, self._bucket, key, self._part_size)
        line = to_json(item)
        self._whole.write(line)
        current.write(line)

    def close(self) -> tuple[str | None, list[tuple[str, str]]]:
        """The manifest's URI (None when nothing is to review) and each labeling job's (name part, manifest): the
        whole manifest when one job holds it."""
        if self._current is None:
            return None, []
        if not self._sealed:
            self._current.abort()
            manifest = self._whole.close()
            return manifest, [("", manifest)]
        parts = [(str(number), part.close()) for number, part in enumerate([*self._sealed, self._current], start=1)]
        return self._whole.close(), parts

    def abort(self) -> None:
        for output in [self._whole, *self._sealed, *([self._current] if self._current else [])]:
            output.abort()


@dataclass
class RoutingCounts:
    """Lines written to each output, and the audit sample's records (all reviewed) and confident ones among them."""

    auto_labeled: int = 0
    to_review: int = 0
    sampled: int = 0
    confident: int = 0


def route_lines(
    lines: Iterable[bytes],
    source: str,
    labels: list[str],
    threshold: float,
    audited: Callable[[str], bool],
    auto: StreamedObject,
    review: ReviewManifests,
) -> RoutingCounts:
    """Route processed records, written as they are decided; counts of each output and of the audit sample."""
    counts = RoutingCounts()

    def to_auto(label: dict[str, Any]) -> None:
        counts.auto_labeled += 1
        auto.write(to_json(label))

    def to_review(item: dict[str, Any]) -> None:
        counts.to_review += 1
        if item["audit"]:
            counts.sampled += 1
            counts.confident += (item["model_confidence"] or 0.0) >= threshold
        review.write(item)

    split_by_confidence(read_records(lines, source), labels, threshold, to_auto, to_review, audited)
    return counts


def read_audit_labels(s3: S3Client, bucket: str, dataset: str, model_sha256: str) -> Iterator[AuditLabel]:
    """Every audit label gathered for this dataset and model, from every earlier run's file, one at a time."""
    # ListObjectsV2 (s3:ListBucket) pages 1,000 keys at a time (botocore s3 2006-03-01 paginators-1.json).
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=audit_prefix(dataset, model_sha256))
    for page in pages:
        for item in page.get("Contents", []):
            yield from (AuditLabel.model_validate(line) for line in iter_jsonl(s3, bucket, item["Key"]))


def choose_threshold(s3: S3Client, run: WorkflowState, spec: DatasetSpec, default_threshold: float) -> ThresholdChoice:
    """The spec's target accuracy certified from audit labels when it asks for one, else its fixed threshold."""
    fixed = spec.confidence_threshold if spec.confidence_threshold is not None else default_threshold
    model = run.require_plan().model
    if spec.target_accuracy is None:
        return ThresholdChoice(threshold=fixed, method="fixed", reason="the spec sets no target_accuracy")
    if model is None:
        return ThresholdChoice(
            threshold=fixed,
            method="fixed",
            reason="no model scores the records: every record is reviewed",
            target_accuracy=spec.target_accuracy,
            confidence=spec.confidence,
        )
    labels = read_audit_labels(s3, run.bucket, run.dataset, model.sha256)
    return certify(labels, spec.target_accuracy, spec.confidence, len(spec.labels), fixed)


def publish_ui_template(s3: S3Client, bucket: str) -> str:
    """Upload the reviewer UI template content-addressed, once per version of it."""
    body = resources.files("labelflow.review").joinpath(UI_TEMPLATE).read_bytes()
    key = f"{CODE_PREFIX}{hashlib.sha256(body).hexdigest()}/{UI_TEMPLATE}"
    if not exists(s3, bucket, key):
        put_bytes(s3, bucket, key, body, "text/html")
    return uri(bucket, key)


def labeling_job_request(
    run: WorkflowState,
    layout: RunLayout,
    spec: DatasetSpec,
    manifest_uri: str,
    categories_uri: str,
    template_uri: str,
    part: str = "",
) -> dict[str, Any]:
    """CreateLabelingJob fields the state machine passes through (it adds role, work team and Lambdas); `part`
    names one job of a split review."""
    labeling = spec.labeling
    return {
        "LabelingJobName": job_name("lf", run.dataset, run.run_id, "review", part),
        "LabelAttributeName": LABEL_ATTRIBUTE,
        "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": manifest_uri}}},
        "OutputConfig": {"S3OutputPath": uri(run.bucket, layout.review_output_prefix)},
        "LabelCategoryConfigS3Uri": categories_uri,
        "UiConfig": {"UiTemplateS3Uri": template_uri},
        "TaskTitle": labeling.task_title,
        "TaskDescription": labeling.task_description,
        "NumberOfHumanWorkersPerDataObject": labeling.workers_per_object,
        "TaskTimeLimitInSeconds": labeling.task_time_limit_seconds,
        "TaskAvailabilityLifetimeInSeconds": labeling.task_availability_lifetime_seconds,
        "MaxConcurrentTaskCount": labeling.max_concurrent_task_count,
    }


def refuse_if_processing_did(s3: S3Client, processed_uri: str, max_rejected_share: float = 1.0) -> None:
    """InvalidInputError (the run fails, its input is quarantined) when processing refused the file."""
    processed = S3Location.parse(processed_uri)
    gather_parts(s3, processed, max_rejected_share)
    stats = ProcessingStats.model_validate(get_json(s3, processed.bucket, processed.key + PROCESSED_STATS))
    if stats.refused:
        raise InvalidInputError(f"{stats.refused} ({processed_uri}{PROCESSED_REJECTED})")


# Where the instances of a job over a sharded input write each part's outputs (processing's shards.py).
PROCESSED_PARTS = "parts/"
# UploadPartCopy parts: 5 MiB to 5 GiB, the last of any size (Amazon S3 User Guide, "Amazon S3 multipart upload
# limits").
MIN_COPY_PART_BYTES = 5 * 1024**2
MAX_COPY_PART_BYTES = 5 * 1024**3


def part_outputs(s3: S3Client, processed: S3Location, name: str) -> list[tuple[str, int]]:
    """(key, size) of each part's `name` under processed/parts/, in part order: the input's record order."""
    found: list[tuple[str, int]] = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=processed.bucket, Prefix=processed.key + PROCESSED_PARTS
    )
    for page in pages:
        found += [(item["Key"], item["Size"]) for item in page.get("Contents", []) if item["Key"].endswith("/" + name)]
    return sorted(found)


def gather_parts(s3: S3Client, processed: S3Location, max_rejected_share: float) -> None:
    """Give a sharded job's outputs the one-instance shape its readers expect: records.jsonl and rejected.jsonl
    joined in part order, then stats.json combined (last, so its presence still means complete). A no-op when
    stats.json is there."""
    if exists(s3, processed.bucket, processed.key + PROCESSED_STATS):
        return
    reports = [get_json(s3, processed.bucket, key) for key, _ in part_outputs(s3, processed, PROCESSED_STATS)]
    if not reports:
        return
    for name in (PROCESSED_RECORDS, PROCESSED_REJECTED):
        concatenate(s3, processed.bucket, part_outputs(s3, processed, name), processed.key + name)
    put_json(s3, processed.bucket, processed.key + PROCESSED_STATS, combined_stats(reports, max_rejected_share))


def combined_stats(reports: list[dict[str, Any]], max_rejected_share: float) -> dict[str, Any]:
    """The parts' stats.json as one: counts summed; state, drift and model are the whole input's in every part.

    The rejected share is checked again on the sums: rows a part rejected while writing (a scaled value out of
    range) are known only to that part."""
    predicted: dict[str, int] = {}
    for report in reports:
        for label, count in (report.get("predicted_labels") or {}).items():
            predicted[label] = predicted.get(label, 0) + count
    combined = {
        **{field: sum(report[field] for report in reports) for field in ("records_in", "records_out", "rejected")},
        "state": reports[0]["state"],
        "drift": reports[0]["drift"],
        "predicted_labels": predicted,
        "model": reports[0]["model"],
        "input_files": [name for report in reports for name in report["input_files"]],
    }
    read, rejected = combined["records_in"], combined["rejected"]
    if read and rejected / read > max_rejected_share:
        combined["refused"] = (
            f"{rejected:,} of {read:,} rows were rejected ({rejected / read:.1%}), above the spec's "
            f"max_rejected_share of {max_rejected_share:g}; see rejected.jsonl for the reasons"
        )
    return combined


def concatenate(s3: S3Client, bucket: str, sources: list[tuple[str, int]], target: str) -> None:
    """One object of the sources' bytes, in order: copied server-side when each source can be one multipart part,
    else streamed through (then the sources are small: some part is below 5 MiB)."""
    copyable = all(MIN_COPY_PART_BYTES <= size <= MAX_COPY_PART_BYTES for _, size in sources[:-1])
    if len(sources) > 1 and copyable and 0 < sources[-1][1] <= MAX_COPY_PART_BYTES:
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key=target)["UploadId"]
        try:
            parts = []
            for number, (key, _) in enumerate(sources, start=1):
                copied = s3.upload_part_copy(
                    Bucket=bucket,
                    Key=target,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": bucket, "Key": key},
                )
                parts.append({"ETag": copied["CopyPartResult"]["ETag"], "PartNumber": number})
            s3.complete_multipart_upload(
                Bucket=bucket,
                Key=target,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
            )
        except BaseException:
            s3.abort_multipart_upload(Bucket=bucket, Key=target, UploadId=upload_id)
            raise
        return
    joined = StreamedObject(s3, bucket, target)
    with aborted_on_failure(joined):
        for key, _ in sources:
            for line in open_body(s3, bucket, key).iter_lines(READ_CHUNK):
                joined.write(line)
        joined.close()


def route_by_confidence(
    run: WorkflowState, s3: S3Client, default_threshold: float, part_size: int = PART_SIZE
) -> RoutingOutput:
    """Split the processed records by confidence, then publish the transform state processing fitted, if it did."""
    plan = run.require_plan()
    spec = read_run_spec(s3, plan.spec_uri)
    refuse_if_processing_did(s3, plan.processed_uri, spec.max_rejected_share)
    choice = choose_threshold(s3, run, spec, default_threshold)
    rate = spec.effective_audit_rate
    processed = S3Location.parse(plan.processed_uri)
    records = S3Location(processed.bucket, processed.key + PROCESSED_RECORDS)
    layout = RunLayout(run.dataset, run.run_id)
    auto = StreamedObject(s3, run.bucket, layout.auto_labeled_key, part_size)
    review = ReviewManifests(s3, run.bucket, layout, spec.labeling.objects_per_job, part_size)
    audited = (lambda record_id: is_audited(run.run_id, record_id, rate)) if rate else (lambda _: False)
    with aborted_on_failure(auto, review):
        lines = open_body(s3, records.bucket, records.key).iter_lines(READ_CHUNK)
        counts = route_lines(lines, records.uri, spec.labels, choice.threshold, audited, auto, review)
        auto_uri = auto.close()
        manifest_uri, parts = review.close()
    transform_state = settle_state(s3, plan.transform_state, plan.processed_uri)

    jobs: list[dict[str, Any]] = []
    if manifest_uri is not None:
        categories_uri = put_json(
            s3,
            run.bucket,
            layout.label_categories_key,
            {"document-version": "2018-11-28", "labels": [{"label": label} for label in spec.labels]},
        )
        template_uri = publish_ui_template(s3, run.bucket)
        jobs = [
            labeling_job_request(run, layout, spec, part_uri, categories_uri, template_uri, part)
            for part, part_uri in parts
        ]
    confident = counts.confident
    return RoutingOutput(
        total=counts.auto_labeled + counts.to_review - confident,
        auto_labeled=counts.auto_labeled - confident,
        to_review=counts.to_review,
        threshold=choice.threshold,
        threshold_choice=choice,
        audit=AuditOutcome(rate=rate, sampled=counts.sampled, confident=confident) if rate else None,
        auto_labeled_uri=auto_uri,
        review_manifest_uri=manifest_uri,
        labeling_jobs=jobs,
        transform_state=transform_state,
        review_backend=spec.review.backend,
    )
