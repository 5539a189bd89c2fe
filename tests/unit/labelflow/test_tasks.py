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
        "model_label": "positive",
        "model_confidence": 0.55,
    }
    line.update(overrides)
    return line


def test_task_input_fields() -> None:
    # Given a review-manifest line with the model's guess
    # When the task input is built
    task = task_input(manifest_line())

    # Then the reviewer sees the text, the choices, the record id and the default header, not the model's guess
    assert task == {
        "text": "The blender broke after a week.",
        "labels": ["negative", "positive"],
        "record_id": "r00042",
        "header": "Pick the label that fits",
    }


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
