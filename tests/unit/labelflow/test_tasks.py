"""review/tasks.py: a review-manifest line becomes the reviewer's task input."""

from __future__ import annotations

from typing import Any

import pytest

from labelflow.errors import ManifestError
from labelflow.review.tasks import task_input


def manifest_line(**overrides: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "source": "The blender broke after a week.",
        "record_id": "r00042",
        "labels": ["negative", "positive"],
        "display": {"review_text": "The blender broke after a week.", "product_category": "home"},
        "model_label": "positive",
        "model_confidence": 0.55,
    }
    line.update(overrides)
    return line


def test_task_input_fields() -> None:
    # Given a review-manifest line with two display columns and the model's guess
    # When the task input is built
    task = task_input(manifest_line())

    # Then the reviewer sees each display column as a row, the choices, the record id, the header and the
    # model's suggestion with its confidence
    assert task == {
        "text": "The blender broke after a week.",
        "rows": [
            {"column": "review_text", "value": "The blender broke after a week."},
            {"column": "product_category", "value": "home"},
        ],
        "labels": ["negative", "positive"],
        "record_id": "r00042",
        "header": "Pick the label that fits",
        "suggestion": {"label": "positive", "confidence": "55%"},
    }


def test_task_input_without_model_or_display() -> None:
    # Given a line the model did not score, written without display columns
    line = manifest_line(model_label=None, model_confidence=None)
    del line["display"]

    # When the task input is built
    task = task_input(line)

    # Then the source is the one row and there is no suggestion
    assert task["rows"] == [{"column": "record", "value": "The blender broke after a week."}]
    assert task["suggestion"] is None


def test_task_input_custom_header() -> None:
    # Given a custom header
    # When the task input is built / Then it is passed through
    assert task_input(manifest_line(), header="Is it positive?")["header"] == "Is it positive?"


def test_extra_ground_truth_keys_are_tolerated() -> None:
    # Given a line with keys Ground Truth or an earlier job added
    line = manifest_line(**{"label": {"label": "negative"}, "label-metadata": {"class-name": "negative"}})

    # When the task input is built / Then they do not get in the way
    assert task_input(line)["record_id"] == "r00042"


@pytest.mark.parametrize(
    "line",
    [
        {"record_id": "r1", "labels": ["a", "b"]},
        {"source": "text", "labels": ["a", "b"]},
        {"source": "text", "record_id": "r1"},
        {"source": "text", "record_id": "r1", "labels": "a,b"},
        {},
    ],
)
def test_bad_manifest_line_is_a_manifest_error(line: dict[str, Any]) -> None:
    # Given a line missing source, record_id or a label list
    # When the task input is built / Then it is a ManifestError, not a validation traceback
    with pytest.raises(ManifestError, match="lacks source, record_id or labels"):
        task_input(line)
