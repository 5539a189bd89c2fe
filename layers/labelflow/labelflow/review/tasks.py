"""Pre-annotation: turn one review-manifest line into the task a reviewer sees."""

from __future__ import annotations

from typing import Any

from labelflow.errors import ManifestError
from labelflow.models.records import ReviewItem

CLASSIFIER_NAME = "category"  # the crowd-classifier's name attribute in template.liquid.html


def task_input(data_object: dict[str, Any], header: str = "Pick the label that fits") -> dict[str, Any]:
    """The template's `task.input`: the text, the label choices and the record id, nothing the model said."""
    try:
        item = ReviewItem.model_validate(data_object)
    except ValueError as exc:
        raise ManifestError("review manifest line lacks source, record_id or labels") from exc
    return {"text": item.source, "labels": item.labels, "record_id": item.record_id, "header": header}
