"""review/manifests.py: the review contract's files, written by any backend and read by merge."""

from __future__ import annotations

import json
from typing import Any

import pytest

from labelflow.errors import ManifestError
from labelflow.models.groundtruth import ConsolidationRequestItem
from labelflow.review.consolidation import consolidation_response
from labelflow.review.manifests import consolidation_item, human_label, human_labels, output_line


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


# ------------------------------------------------------------------------- writer → reader round trip
def test_what_a_backend_writes_is_what_merge_reads() -> None:
    # Given a manifest line, three workers' answers and the real consolidation of them
    line = {"source": "great blender", "record_id": "r7", "labels": ["negative", "positive"]}
    item = consolidation_item("0", line, [("w1", "positive"), ("w2", "positive"), ("w3", "negative")])
    request = [ConsolidationRequestItem.model_validate(json.loads(json.dumps(item)))]
    (response,) = consolidation_response(request, ["negative", "positive"], "label", "arn:aws:x:labeling-job/j")
    # When the backend writes the output line and merge reads it back
    written = output_line(line, response["consolidatedAnnotation"]["content"], "j")
    # Then the input keys pass through and the label comes back with its confidence
    assert {k: written[k] for k in line} == line
    label, confidence = human_label(written) or ("", 0.0)
    assert label == "positive" and 0.5 < confidence <= 1.0


def test_an_object_nobody_answered_is_written_as_a_failure_and_read_as_no_label() -> None:
    # Given a line without consolidated content
    written = output_line({"source": "x", "record_id": "r8"}, None, "j")
    # Then it carries Ground Truth's failure reason, and merge sees no human label
    assert written["label-metadata"]["failure-reason"] and human_label(written) is None
    assert human_labels([written]) == {}


def test_an_image_object_is_sent_to_consolidation_by_its_uri() -> None:
    # Given a review manifest line for an image (source-ref) and one for text (source)
    image = {"source-ref": "s3://bucket/images/cat.png", "record_id": "r1", "labels": ["cat", "dog"]}
    text = {"source": "a text", "record_id": "r2", "labels": ["cat", "dog"]}

    # When each becomes an object of a consolidation request / Then dataObject carries s3Uri or content
    assert consolidation_item("0", image, [])["dataObject"] == {"s3Uri": "s3://bucket/images/cat.png"}
    assert consolidation_item("1", text, [])["dataObject"] == {"content": "a text"}
