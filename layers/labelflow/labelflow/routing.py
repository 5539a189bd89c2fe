"""RouteByConfidence: auto-label what the model is sure of, send the rest to human review."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from importlib import resources
from typing import TYPE_CHECKING, Any

from labelflow.certification import certify, is_audited
from labelflow.datasets import read_run_spec
from labelflow.errors import InvalidInputError
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
from labelflow.models.records import SOURCE_REF, AuditLabel, AutoLabel, ProcessedRecord, ReviewItem, display_text
from labelflow.models.run import AuditOutcome, ThresholdChoice
from labelflow.models.spec import DatasetSpec
from labelflow.models.state import RoutingOutput, WorkflowState
from labelflow.review.manifests import LABEL_ATTRIBUTE
from labelflow.review.tasks import image_uri
from labelflow.s3 import S3Location, exists, get_json, iter_jsonl, put_bytes, put_json, put_jsonl, uri
from labelflow.transform_state import settle_state

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

UI_TEMPLATE = "template.liquid.html"


def split_by_confidence(
    records: Iterable[ProcessedRecord],
    labels: list[str],
    threshold: float,
    audited: Callable[[str], bool] = lambda _: False,
) -> tuple[list[AutoLabel], list[ReviewItem]]:
    """Records whose prediction reaches the threshold are auto-labeled; the others (and unpredicted) go to review.

    Scored records `audited` selects are marked as the audit sample; the confident ones go to review as well.
    """
    auto: list[AutoLabel] = []
    review: list[ReviewItem] = []
    for record in records:
        prediction = record.prediction
        confident = prediction is not None and prediction.confidence >= threshold
        if prediction is not None and confident:
            auto.append(AutoLabel(record_id=record.record_id, label=prediction.label, confidence=prediction.confidence))
        audit = prediction is not None and audited(record.record_id)
        if not confident or audit:
            # An image record is sent by reference (`source-ref`), a text one inline (`source`).
            image = image_uri(record.display)
            source = {SOURCE_REF: image} if image else {"source": display_text(record.display)}
            review.append(
                ReviewItem.model_validate(
                    {
                        **source,
                        "record_id": record.record_id,
                        "display": record.display,
                        "labels": labels,
                        "model_label": prediction.label if prediction else None,
                        "model_confidence": prediction.confidence if prediction else None,
                        "audit": audit,
                    }
                )
            )
    return auto, review


def read_audit_labels(s3: S3Client, bucket: str, dataset: str, model_sha256: str) -> list[AuditLabel]:
    """Every audit label gathered for this dataset and model, from every earlier run's file."""
    labels: list[AuditLabel] = []
    # ListObjectsV2 (s3:ListBucket) pages 1,000 keys at a time (botocore s3 2006-03-01 paginators-1.json).
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=audit_prefix(dataset, model_sha256))
    for page in pages:
        for item in page.get("Contents", []):
            labels += (AuditLabel.model_validate(line) for line in iter_jsonl(s3, bucket, item["Key"]))
    return labels


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


def split_review(
    s3: S3Client, bucket: str, layout: RunLayout, review: list[ReviewItem], manifest_uri: str, per_job: int
) -> list[tuple[str, str]]:
    """(job name part, input manifest) of each labeling job: the whole manifest when one job holds it, else a
    manifest per `per_job` records beside it."""
    if len(review) <= per_job:
        return [("", manifest_uri)]
    parts = []
    for number, start in enumerate(range(0, len(review), per_job), start=1):
        key = layout.review_manifest_key.removesuffix(".manifest") + f"-{number}.manifest"
        parts.append((str(number), put_jsonl(s3, bucket, key, review[start : start + per_job])))
    return parts


def refuse_if_processing_did(s3: S3Client, processed_uri: str) -> None:
    """InvalidInputError (the run fails, its input is quarantined) when processing refused the file."""
    processed = S3Location.parse(processed_uri)
    stats = ProcessingStats.model_validate(get_json(s3, processed.bucket, processed.key + PROCESSED_STATS))
    if stats.refused:
        raise InvalidInputError(f"{stats.refused} ({processed_uri}{PROCESSED_REJECTED})")


def route_by_confidence(run: WorkflowState, s3: S3Client, default_threshold: float) -> RoutingOutput:
    """Split the processed records by confidence, then publish the transform state processing fitted, if it did."""
    plan = run.require_plan()
    refuse_if_processing_did(s3, plan.processed_uri)
    spec = read_run_spec(s3, plan.spec_uri)
    choice = choose_threshold(s3, run, spec, default_threshold)
    rate = spec.effective_audit_rate
    processed = S3Location.parse(plan.processed_uri)
    # Streamed: only the small routing results are kept, never the records with their features.
    records = (
        ProcessedRecord.model_validate(line)
        for line in iter_jsonl(s3, processed.bucket, processed.key + PROCESSED_RECORDS)
    )
    auto, review = split_by_confidence(
        records, spec.labels, choice.threshold, lambda record_id: is_audited(run.run_id, record_id, rate)
    )
    sampled = sum(1 for item in review if item.audit)
    confident = sum(1 for item in review if item.audit and (item.model_confidence or 0.0) >= choice.threshold)
    transform_state = settle_state(s3, plan.transform_state, plan.processed_uri)

    layout = RunLayout(run.dataset, run.run_id)
    auto_uri = put_jsonl(s3, run.bucket, layout.auto_labeled_key, auto)
    manifest_uri: str | None = None
    jobs: list[dict[str, Any]] = []
    if review:
        manifest_uri = put_jsonl(s3, run.bucket, layout.review_manifest_key, review)
        categories_uri = put_json(
            s3,
            run.bucket,
            layout.label_categories_key,
            {"document-version": "2018-11-28", "labels": [{"label": label} for label in spec.labels]},
        )
        template_uri = publish_ui_template(s3, run.bucket)
        jobs = [
            labeling_job_request(run, layout, spec, part_uri, categories_uri, template_uri, part)
            for part, part_uri in split_review(
                s3, run.bucket, layout, review, manifest_uri, spec.labeling.objects_per_job
            )
        ]
    return RoutingOutput(
        total=len(auto) + len(review) - confident,
        auto_labeled=len(auto) - confident,
        to_review=len(review),
        threshold=choice.threshold,
        threshold_choice=choice,
        audit=AuditOutcome(rate=rate, sampled=sampled, confident=confident) if rate else None,
        auto_labeled_uri=auto_uri,
        review_manifest_uri=manifest_uri,
        labeling_jobs=jobs,
        transform_state=transform_state,
    )
