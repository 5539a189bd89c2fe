"""Pre-annotation: turn one review-manifest line into the task a reviewer sees."""

from __future__ import annotations

from typing import Any

from labelflow.errors import ManifestError
from labelflow.models.records import ReviewItem

CLASSIFIER_NAME = "category"  # the crowd-classifier's name attribute in template.liquid.html


def task_input(data_object: dict[str, Any], header: str = "Pick the label that fits") -> dict[str, Any]:
    """The template's `task.input`: the record as rows of column and value, the label choices, the record id and
    the model's suggestion (None when the model made none)."""
    try:
        item = ReviewItem.model_validate(data_object)
    except ValueError as exc:
        raise ManifestError("review manifest line lacks source, record_id or labels") from exc
    rows = [{"column": column, "value": value} for column, value in item.display.items()]
    suggestion = None
    if item.model_label is not None:
        confidence = f"{item.model_confidence:.0%}" if item.model_confidence is not None else "unknown"
        suggestion = {"label": item.model_label, "confidence": confidence}
    return {
        "text": item.source,
        "rows": rows or [{"column": "record", "value": item.source}],
        "labels": item.labels,
        "record_id": item.record_id,
        "header": header,
        "suggestion": suggestion,
    }
