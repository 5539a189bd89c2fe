"""merging.py: human labels merged over model labels, every processed record kept once."""

from __future__ import annotations

import json
from typing import Any

import pytest

from labelflow.errors import LabelflowError, ManifestError
from labelflow.merging import MergedRecord, ModelLabel, ended_reason, merge_records, unanswered_reasons
from labelflow.models.state import StepError, ended_job


def processed(record_id: str) -> MergedRecord:
    return {
        "record_id": record_id,
        "event_time": f"2026-01-01T00:00:0{record_id[-1]}Z",
        "features": {"price": 1.5, "verified_purchase": 1},
    }


def model_label(record_id: str, label: str, confidence: float) -> ModelLabel:
    return {"record_id": record_id, "label": label, "confidence": confidence}


def merged(
    records: list[MergedRecord], auto: list[ModelLabel], human: dict[str, tuple[str, float]]
) -> tuple[list[dict[str, Any]], list[str]]:
    labeled: list[dict[str, Any]] = []
    unlabeled: list[str] = []
    merge_records(records, auto, human, "run-1", labeled.append, unlabeled.append)
    return labeled, unlabeled


# ------------------------------------------------------------------------- merge_records
def test_merge_prefers_human_over_model_and_keeps_order() -> None:
    # Given four records: human+model, model only, human only, and neither
    records = [processed("r1"), processed("r2"), processed("r3"), processed("r4")]
    auto = [model_label("r1", "negative", 0.85), model_label("r2", "positive", 0.97)]
    human = {"r1": ("positive", 0.66), "r3": ("negative", 1.0)}

    # When they are merged
    labeled, unlabeled = merged(records, auto, human)

    # Then humans win, the model fills the rest, order is kept, and the unlabeled id is listed
    assert [(r["record_id"], r["label"], r["label_source"], r["label_confidence"]) for r in labeled] == [
        ("r1", "positive", "human", 0.66),
        ("r2", "positive", "model", 0.97),
        ("r3", "negative", "human", 1.0),
    ]
    assert unlabeled == ["r4"]
    # and features, event time and run id come through unchanged
    assert labeled[0]["features"] == {"price": 1.5, "verified_purchase": 1}
    assert labeled[0]["event_time"] == "2026-01-01T00:00:01Z"
    assert {r["run_id"] for r in labeled} == {"run-1"}


def test_merge_ignores_labels_for_unknown_records() -> None:
    # Given labels for a record that was never processed
    # When records are merged / Then no labeled record is invented for it
    labeled, unlabeled = merged([processed("r1")], [], {"ghost": ("positive", 1.0)})
    assert labeled == []
    assert unlabeled == ["r1"]


def test_merge_of_nothing_is_empty() -> None:
    # Given no records
    # When they are merged / Then both lists are empty
    assert merged([], [], {}) == ([], [])


def test_a_model_label_out_of_processing_order_is_refused() -> None:
    # Given model labels that are not in the records' order (or name a record never processed)
    records = [processed("r1"), processed("r2"), processed("r3")]
    auto = [model_label("r3", "positive", 0.9), model_label("r1", "positive", 0.9)]

    # When they are merged / Then merge refuses rather than dropping a label or labeling the wrong record
    with pytest.raises(ManifestError, match="auto-labeled record r1 is not among the processed records"):
        merged(records, auto, {})


def test_audit_labels_are_the_answered_audit_items_with_model_and_human_label() -> None:
    # Given review items, two in the audit sample of which one was answered, and one answered non-audit item
    from labelflow.merging import audit_labels
    from labelflow.models.records import AuditLabel, ReviewItem

    def item(record_id: str, audit: bool) -> ReviewItem:
        return ReviewItem(
            source="t", record_id=record_id, labels=["a", "b"], model_label="a", model_confidence=0.9, audit=audit
        )

    review = [item("r1", True), item("r2", True), item("r3", False)]
    human = {"r1": ("b", 1.0), "r3": ("a", 1.0)}

    # When the audit labels are gathered
    labels = audit_labels(review, human)

    # Then only r1 is one, with the model's prediction beside the human label
    assert labels == [AuditLabel(record_id="r1", model_label="a", model_confidence=0.9, human_label="b")]


def test_a_caught_labeling_error_is_read_as_the_job_that_ended_early() -> None:
    # Given the cause the .sync integration gives when a labeling job ends Failed
    cause = json.dumps(
        {
            "LabelingJobName": "lf-job",
            "LabelingJobStatus": "Failed",
            "FailureReason": "workers left",
            "OutputConfig": {"S3OutputPath": "s3://b/out/"},
            "LabelCounters": {"TotalLabeled": 2},
        }
    )
    # When it is read
    job = ended_job(StepError(error="States.TaskFailed", cause=cause))
    # Then the job, its output and its reason are known
    assert job.ended_early and job.output_manifest_uri.startswith("s3://b/out/lf-job/")
    assert ended_reason(job) == "labeling job lf-job ended Failed: workers left"


@pytest.mark.parametrize(
    "cause",
    ["not json", json.dumps({"LabelingJobName": "j", "LabelingJobStatus": "Completed", "OutputConfig": {}})],
)
def test_a_caught_error_that_is_no_ended_job_is_refused(cause: str) -> None:
    # Given a caught error whose cause is not a job that ended Failed or Stopped
    # When it is read, Then merge refuses it rather than merging nothing
    with pytest.raises(LabelflowError):
        ended_job(StepError(error="SageMaker.SomethingElse", cause=cause))


def test_unanswered_output_lines_give_their_failure_reason() -> None:
    # Given an output manifest with one expired task and one label
    lines = [
        {"record_id": "r1", "label-metadata": {"failure-reason": "task expired"}},
        {"record_id": "r2", "label": "pos", "label-metadata": {"class-name": "pos"}},
    ]
    # Then only the expired one has a reason
    assert unanswered_reasons(lines) == {"r1": "task expired"}
