"""routing.py: confidence routing and the CreateLabelingJob request."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import TypeAdapter

from labelflow.errors import InvalidInputError
from labelflow.layout import RunLayout
from labelflow.models.records import AutoLabel, Prediction, ProcessedRecord, ReviewItem
from labelflow.models.spec import DatasetSpec
from labelflow.models.state import WorkflowState
from labelflow.review.manifests import LABEL_ATTRIBUTE
from labelflow.routing import (
    RoutedRecord,
    labeling_job_request,
    publish_ui_template,
    refuse_if_processing_did,
    split_by_confidence,
)
from labelflow.s3 import put_json

LABELS = ["negative", "positive"]
ROUTED: TypeAdapter[RoutedRecord] = TypeAdapter(RoutedRecord)


def record(record_id: str, label: str | None = None, confidence: float = 0.0) -> ProcessedRecord:
    return ProcessedRecord(
        record_id=record_id,
        event_time="2026-01-01T00:00:00Z",
        features={"price": 1.0},
        display={"text": f"text {record_id}", "color": "red"},
        prediction=Prediction(label=label, confidence=confidence) if label else None,
    )


def spec(dataset: str = "reviews", **labeling: Any) -> DatasetSpec:
    return DatasetSpec.model_validate(
        {
            "dataset": dataset,
            "record_id_column": "id",
            "display_columns": ["text", "color"],
            "features": [{"name": "price", "type": "numeric"}],
            "labels": LABELS,
            "labeling": labeling,
        }
    )


def state(dataset: str = "reviews", run_id: str = "afbcf3d3f25e2c3dba66") -> WorkflowState:
    return WorkflowState(
        bucket="labelflow-demo",
        key=f"raw/{dataset}/data.csv",
        version_id="v1",
        etag="e",
        size=10,
        dataset=dataset,
        run_id=run_id,
        received_at="2026-01-01T00:00:00Z",
    )


def split(
    records: list[ProcessedRecord], threshold: float, audited: Callable[[str], bool] = lambda _: False
) -> tuple[list[AutoLabel], list[ReviewItem]]:
    """split_by_confidence's two outputs, each line read back through its model."""
    auto: list[dict[str, Any]] = []
    review: list[dict[str, Any]] = []
    routed = [ROUTED.validate_python(record.model_dump()) for record in records]
    split_by_confidence(routed, LABELS, threshold, auto.append, review.append, audited)
    return [AutoLabel.model_validate(line) for line in auto], [ReviewItem.model_validate(line) for line in review]


# ------------------------------------------------------------------ split_by_confidence
def test_confidence_at_the_threshold_is_auto_labeled() -> None:
    # Given predictions just below, exactly at and above the threshold
    records = [record("below", "positive", 0.79), record("at", "negative", 0.8), record("above", "positive", 0.95)]

    # When they are split at 0.8
    auto, review = split(records, 0.8)

    # Then "at" and "above" are auto-labeled with the model's label and confidence; "below" goes to review
    assert auto == [
        AutoLabel(record_id="at", label="negative", confidence=0.8),
        AutoLabel(record_id="above", label="positive", confidence=0.95),
    ]
    assert [item.record_id for item in review] == ["below"]


def test_records_without_prediction_go_to_review() -> None:
    # Given a record the model did not score
    # When records are split, even with a zero threshold
    auto, review = split([record("r1")], 0.0)

    # Then it goes to review, with no model guess attached
    assert auto == []
    assert len(review) == 1
    assert review[0].model_label is None and review[0].model_confidence is None


def test_review_items_carry_text_labels_and_model_guess() -> None:
    # Given a low-confidence prediction
    # When records are split
    _, review = split([record("r1", "positive", 0.51)], 0.8)

    # Then the review item has the display columns (and as plain text, the source), the label choices and the
    # model's guess
    item = review[0]
    assert item.display == {"text": "text r1", "color": "red"}
    assert item.source == "text: text r1\ncolor: red"
    assert item.labels == LABELS
    assert (item.model_label, item.model_confidence) == ("positive", 0.51)


def test_split_keeps_record_order_and_loses_nothing() -> None:
    # Given a mix of records
    records = [record(f"r{i}", "positive", i / 10) for i in range(10)] + [record("none")]

    # When they are split
    auto, review = split(records, 0.5)

    # Then every record is in exactly one list, in input order
    assert [a.record_id for a in auto] == ["r5", "r6", "r7", "r8", "r9"]
    assert [r.record_id for r in review] == ["r0", "r1", "r2", "r3", "r4", "none"]


# ------------------------------------------------------------------ labeling job request
def test_labeling_job_request_fields() -> None:
    # Given a run and a spec with custom labeling settings
    run = state()
    layout = RunLayout(run.dataset, run.run_id)
    dataset = spec(task_title="Sentiment?", workers_per_object=3, task_time_limit_seconds=120)

    # When the CreateLabelingJob fields are built
    request = labeling_job_request(
        run, layout, dataset, "s3://b/manifest", "s3://b/categories.json", "s3://b/template.liquid.html"
    )

    # Then they name the job after the run and pass the spec's settings through
    assert request["LabelingJobName"] == "lf-reviews-afbcf3d3f25e2c3dba66-review"
    assert request["LabelAttributeName"] == LABEL_ATTRIBUTE == "label"
    assert request["InputConfig"] == {"DataSource": {"S3DataSource": {"ManifestS3Uri": "s3://b/manifest"}}}
    assert request["OutputConfig"] == {
        "S3OutputPath": "s3://labelflow-demo/runs/reviews/afbcf3d3f25e2c3dba66/labeling/output/"
    }
    assert request["LabelCategoryConfigS3Uri"] == "s3://b/categories.json"
    assert request["UiConfig"] == {"UiTemplateS3Uri": "s3://b/template.liquid.html"}
    assert request["TaskTitle"] == "Sentiment?"
    assert request["TaskDescription"] == "Choose the label that fits best"
    assert request["NumberOfHumanWorkersPerDataObject"] == 3
    assert request["TaskTimeLimitInSeconds"] == 120
    assert request["TaskAvailabilityLifetimeInSeconds"] == 86_400
    assert request["MaxConcurrentTaskCount"] == 1000


def test_labeling_job_name_fits_sagemaker_limits_for_long_datasets() -> None:
    # Given two datasets with the longest name a spec allows, differing only in their last character
    names = []
    for dataset in ("long-dataset-" + "x" * 49 + "a", "long-dataset-" + "x" * 49 + "b"):
        run = state(dataset=dataset)
        # When the request is built
        request = labeling_job_request(run, RunLayout(dataset, run.run_id), spec(dataset=dataset), "m", "c", "t")
        names.append(request["LabelingJobName"])

    # Then each job name fits SageMaker's 63 chars of letters, digits and inner hyphens, keeps the run id whole,
    # and the two stay distinct
    for name in names:
        assert len(name) <= 63
        assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*", name)
        assert name.endswith("-afbcf3d3f25e2c3dba66-review")
    assert names[0] != names[1]


def test_ui_template_is_published_content_addressed_once(s3: Any, bucket: str) -> None:
    # Given an empty bucket
    # When the reviewer template is published twice
    first = publish_ui_template(s3, bucket)
    second = publish_ui_template(s3, bucket)

    # Then both calls point at one content-addressed object holding the template
    assert first == second
    assert re.fullmatch(rf"s3://{bucket}/artifacts/code/[0-9a-f]{{64}}/template.liquid.html", first)
    key = first.split("/", 3)[3]
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert b"crowd-classifier" in body
    assert len(s3.list_object_versions(Bucket=bucket, Prefix="artifacts/")["Versions"]) == 1


def test_a_file_processing_refused_fails_the_run_with_processings_sentence(s3: Any, bucket: str) -> None:
    # Given processing's stats.json refusing the file (too many rows rejected)
    processed = f"s3://{bucket}/runs/reviews/r1/processed/abc/"
    sentence = "input.csv: 3 of 5 rows were rejected (60.0%), above the spec's max_rejected_share of 0.5"
    put_json(
        s3,
        bucket,
        "runs/reviews/r1/processed/abc/stats.json",
        {"records_in": 5, "records_out": 0, "rejected": 3, "refused": sentence},
    )

    # When routing starts / Then the run fails as an invalid input (quarantined), naming where the reasons are
    with pytest.raises(InvalidInputError, match=re.escape(f"{sentence} ({processed}rejected.jsonl)")):
        refuse_if_processing_did(s3, processed)


def test_a_file_processing_accepted_goes_on(s3: Any, bucket: str) -> None:
    # Given ordinary stats / When routing checks them / Then nothing is raised
    put_json(s3, bucket, "runs/reviews/r1/processed/abc/stats.json", {"records_in": 5, "records_out": 5, "rejected": 0})
    refuse_if_processing_did(s3, f"s3://{bucket}/runs/reviews/r1/processed/abc/")


def test_audited_confident_records_are_auto_labeled_and_reviewed() -> None:
    # Given a confident and an unsure record, both drawn for the audit, and a confident one not drawn
    records = [record("sure", "positive", 0.97), record("unsure", "negative", 0.6), record("other", "positive", 0.99)]

    # When they are split at 0.8 with the audit drawing "sure" and "unsure"
    auto, review = split(records, 0.8, lambda record_id: record_id in {"sure", "unsure"})

    # Then "sure" is in both lists, marked audit; "unsure" is reviewed and marked; "other" is only auto-labeled
    assert [a.record_id for a in auto] == ["sure", "other"]
    assert [(r.record_id, r.audit) for r in review] == [("sure", True), ("unsure", True)]
