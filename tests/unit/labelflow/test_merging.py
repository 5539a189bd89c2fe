"""merging.py: human labels from the output manifest, merged over model labels."""

from __future__ import annotations

from typing import Any

import pytest

from labelflow.errors import ManifestError
from labelflow.merging import human_label, human_labels, merge_records
from labelflow.models.records import AutoLabel, ProcessedRecord


def processed(record_id: str) -> ProcessedRecord:
    return ProcessedRecord(
        record_id=record_id,
        event_time=f"2026-01-01T00:00:0{record_id[-1]}Z",
        features={"price": 1.5, "verified_purchase": 1},
        display="text",
    )


# ------------------------------------------------------------------------- human_label
def test_label_from_our_consolidation_output() -> None:
    # Given a line as labelflow's consolidation writes it (label object plus metadata)
    line = {
        "record_id": "r1",
        "label": {"label": "positive", "votes": 3},
        "label-metadata": {"class-name": "positive", "confidence": 0.93, "human-annotated": "yes"},
    }

    # When its human label is read / Then it is the class name with its confidence
    assert human_label(line) == ("positive", 0.93)


def test_class_name_in_metadata_wins_over_a_numeric_label() -> None:
    # Given a line as Ground Truth's built-in classification writes it (label is a class index)
    line = {"label": 1, "label-metadata": {"class-name": "positive", "confidence": 0.8}}

    # When its human label is read / Then the metadata's class name is used
    assert human_label(line) == ("positive", 0.8)


@pytest.mark.parametrize("value", [{"label": "negative"}, "negative"])
def test_label_only_in_the_attribute(value: Any) -> None:
    # Given a line with no class name in its metadata, the label only in the attribute (object or string)
    line = {"label": value, "label-metadata": {"human-annotated": "yes"}}

    # When its human label is read / Then the attribute's label is used, with full confidence
    assert human_label(line) == ("negative", 1.0)


def test_label_without_metadata() -> None:
    # Given a line with a label attribute and no metadata at all
    # When its human label is read / Then the label is found with full confidence
    assert human_label({"label": {"label": "positive"}}) == ("positive", 1.0)


def test_failure_reason_means_no_label() -> None:
    # Given a line Ground Truth could not label, even if a stale label is present
    line = {"label": "positive", "label-metadata": {"failure-reason": "no worker answered"}}

    # When its human label is read / Then there is none
    assert human_label(line) is None


@pytest.mark.parametrize(
    "line",
    [
        {"source": "text"},
        {"label": {"votes": 2}},
        {"label": 3},
        {"label-metadata": {"class-name": 5}},
    ],
)
def test_lines_without_a_string_label_have_none(line: dict[str, Any]) -> None:
    # Given a line with no usable label
    # When its human label is read / Then there is none
    assert human_label(line) is None


def test_non_numeric_confidence_counts_as_full() -> None:
    # Given metadata with a confidence that is not a number
    line = {"label-metadata": {"class-name": "positive", "confidence": "high"}}

    # When its human label is read / Then confidence falls back to 1.0
    assert human_label(line) == ("positive", 1.0)


def test_custom_attribute_name() -> None:
    # Given a line labeled under another attribute
    line = {"sentiment": {"label": "negative"}, "sentiment-metadata": {"confidence": 0.7}}

    # When it is read with that attribute / Then the label is found
    assert human_label(line, attribute="sentiment") == ("negative", 0.7)
    assert human_label(line) is None


# ------------------------------------------------------------------------- human_labels
def test_human_labels_by_record_id_skipping_failures() -> None:
    # Given an output manifest with one labeled and one failed line
    lines = [
        {"record_id": "r1", "label-metadata": {"class-name": "positive", "confidence": 0.9}},
        {"record_id": "r2", "label-metadata": {"failure-reason": "timeout"}},
    ]

    # When the human labels are read / Then only the labeled record has one
    assert human_labels(lines) == {"r1": ("positive", 0.9)}


def test_human_labels_without_record_id_is_a_manifest_error() -> None:
    # Given a manifest whose second line lost its record_id
    lines = [{"record_id": "r1", "label": "positive"}, {"label": "negative"}]

    # When the human labels are read / Then the error names the line
    with pytest.raises(ManifestError, match="line 2 has no record_id"):
        human_labels(lines)


# ------------------------------------------------------------------------- merge_records
def test_merge_prefers_human_over_model_and_keeps_order() -> None:
    # Given four records: human+model, model only, human only, and neither
    records = [processed("r1"), processed("r2"), processed("r3"), processed("r4")]
    auto = {
        "r1": AutoLabel(record_id="r1", label="negative", confidence=0.85),
        "r2": AutoLabel(record_id="r2", label="positive", confidence=0.97),
    }
    human = {"r1": ("positive", 0.66), "r3": ("negative", 1.0)}

    # When they are merged
    labeled, unlabeled = merge_records(records, auto, human, "run-1")

    # Then humans win, the model fills the rest, order is kept, and the unlabeled id is listed
    assert [(r.record_id, r.label, r.label_source, r.label_confidence) for r in labeled] == [
        ("r1", "positive", "human", 0.66),
        ("r2", "positive", "model", 0.97),
        ("r3", "negative", "human", 1.0),
    ]
    assert unlabeled == ["r4"]
    # and features, event time and run id come through unchanged
    assert labeled[0].features == {"price": 1.5, "verified_purchase": 1}
    assert labeled[0].event_time == "2026-01-01T00:00:01Z"
    assert {r.run_id for r in labeled} == {"run-1"}


def test_merge_ignores_labels_for_unknown_records() -> None:
    # Given labels for a record that was never processed
    # When records are merged / Then no labeled record is invented for it
    labeled, unlabeled = merge_records([processed("r1")], {}, {"ghost": ("positive", 1.0)}, "run-1")
    assert labeled == []
    assert unlabeled == ["r1"]


def test_merge_of_nothing_is_empty() -> None:
    # Given no records
    # When they are merged / Then both lists are empty
    assert merge_records([], {}, {}, "run-1") == ([], [])
