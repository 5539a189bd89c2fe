"""review/tasks.py: a review-manifest line becomes the reviewer's task input."""

from __future__ import annotations

from typing import Any

import pytest

from labelflow.errors import ManifestError
from labelflow.review.tasks import image_uri, task_input


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
        "image": None,
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
    with pytest.raises(ManifestError, match="lacks source \\(or source-ref\\), record_id or labels"):
        task_input(line)


def test_a_source_ref_line_is_an_image_task() -> None:
    # Given a Ground Truth line naming its data object with source-ref (no source), as image datasets are sent
    line = manifest_line(model_label=None, model_confidence=None, display={"photo": "s3://bucket/img/r1.png"})
    del line["source"]
    line["source-ref"] = "s3://bucket/img/r1.png"

    # When the task input is built
    task = task_input(line)

    # Then the reviewer is shown that image, with the same choices and record id
    assert task["image"] == "s3://bucket/img/r1.png"
    assert task["labels"] == ["negative", "positive"] and task["record_id"] == "r00042"


@pytest.mark.parametrize(
    ("display", "image"),
    [
        ({"photo": "s3://my-bucket/raw/cats/001.JPG"}, "s3://my-bucket/raw/cats/001.JPG"),
        ({"photo": " s3://my-bucket/a.png "}, "s3://my-bucket/a.png"),
        ({"photo": "s3://my-bucket/a.csv"}, None),
        ({"photo": "https://example.com/a.png"}, None),
        ({"photo": "s3://my-bucket/a.png", "caption": "a cat"}, None),
        ({"text": "see s3://my-bucket/a.png"}, None),
    ],
)
def test_one_display_column_holding_an_s3_image_uri_is_an_image(display: dict[str, str], image: str | None) -> None:
    # Given a record's display columns / Then only one column holding an S3 URI of a supported image is an image
    assert image_uri(display) == image
    # And a `source` line showing it is an image task too (before routing writes source-ref)
    line = manifest_line(display=display, source=next(iter(display.values())))
    assert task_input(line)["image"] == image
