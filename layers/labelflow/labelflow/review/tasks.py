"""Pre-annotation: turn one review-manifest line into the task a reviewer sees."""

from __future__ import annotations

import re
from typing import Any

from labelflow.errors import ManifestError
from labelflow.models.records import ReviewItem

CLASSIFIER_NAME = "category"  # the classifier's name attribute in template.liquid.html
# A manifest line names its data object with `source` (text) or `source-ref` (an S3 object): Ground Truth's
# pre-annotation request carries either in `dataObject` (SageMaker developer guide, "Using pre-annotation and
# post-annotation Lambda functions").
# The formats crowd-image-classifier shows: APNG, BMP, GIF, ICO, JPEG, PNG, SVG (SageMaker developer guide,
# "crowd-image-classifier").
IMAGE_SUFFIXES = (".apng", ".bmp", ".gif", ".ico", ".jpeg", ".jpg", ".png", ".svg")
_S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/\S+$")


def image_uri(display: dict[str, str]) -> str | None:
    """The S3 image a record shows reviewers: its one display column, when that holds an S3 URI of an image."""
    if len(display) != 1:
        return None
    value = next(iter(display.values())).strip()
    return value if _S3_URI.match(value) and value.lower().endswith(IMAGE_SUFFIXES) else None


def task_input(data_object: dict[str, Any], header: str = "Pick the label that fits") -> dict[str, Any]:
    """The template's `task.input`: the record as rows of column and value (or the image to classify), the label
    choices, the record id and the model's suggestion (None when the model made none)."""
    try:
        item = ReviewItem.model_validate(data_object)
    except ValueError as exc:
        raise ManifestError("review manifest line lacks source (or source-ref), record_id or labels") from exc
    rows = [{"column": column, "value": value} for column, value in item.display.items()]
    suggestion = None
    if item.model_label is not None:
        confidence = f"{item.model_confidence:.0%}" if item.model_confidence is not None else "unknown"
        suggestion = {"label": item.model_label, "confidence": confidence}
    image = item.source_ref or image_uri(item.display)
    text = item.source or item.source_ref
    return {
        "text": text,
        "rows": rows or [{"column": "record", "value": text}],
        "image": image,
        "labels": item.labels,
        "record_id": item.record_id,
        "header": header,
        "suggestion": suggestion,
    }
