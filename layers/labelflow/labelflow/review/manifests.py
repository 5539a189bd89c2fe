"""The files of the human-review contract, written and read in one place.

In: the review manifest (routing writes one `ReviewItem` per line). Out: the output manifest, each
input line plus `<attribute>` and `<attribute>-metadata` as Ground Truth writes them. Between them,
the consolidation request a backend hands the post-annotation Lambda. Every backend (Ground Truth,
the local ones, a future Label Studio bridge) writes these shapes; merge only reads them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from labelflow.errors import ManifestError
from labelflow.models.records import SOURCE_REF
from labelflow.review.tasks import CLASSIFIER_NAME

LABEL_ATTRIBUTE = "label"


def answer_content(label: str) -> dict[str, Any]:
    """One worker's answer as the template's crowd-classifier or crowd-image-classifier submits it.

    Both elements output `{"<name>": {"label": "<category>"}}` (SageMaker developer guide, the "Output" section of
    each element's page), and both are named CLASSIFIER_NAME in template.liquid.html.
    """
    return {CLASSIFIER_NAME: {"label": label}}


def consolidation_item(dataset_object_id: str, line: dict[str, Any], answers: list[tuple[str, str]]) -> dict[str, Any]:
    """One object of a consolidation request: its data and each (worker id, label) answer."""
    return {
        "datasetObjectId": dataset_object_id,
        # Ground Truth sends a `source-ref` object by its URI and a `source` one inline.
        "dataObject": {"s3Uri": line[SOURCE_REF]} if SOURCE_REF in line else {"content": line.get("source", "")},
        "annotations": [
            {"workerId": worker, "annotationData": {"content": json.dumps(answer_content(label))}}
            for worker, label in answers
        ],
    }


def output_line(
    line: dict[str, Any], content: dict[str, Any] | None, job_name: str, attribute: str = LABEL_ATTRIBUTE
) -> dict[str, Any]:
    """The output-manifest line for one input line: the consolidated content, or why there is none."""
    if content is None:
        return {**line, f"{attribute}-metadata": {"failure-reason": "no worker answered", "job-name": job_name}}
    return {**line, **content}


def human_label(line: dict[str, Any], attribute: str = LABEL_ATTRIBUTE) -> tuple[str, float] | None:
    """The consolidated label and confidence in one output-manifest line, or None when nobody answered."""
    metadata = line.get(f"{attribute}-metadata") or {}
    if metadata.get("failure-reason"):
        return None
    value = line.get(attribute)
    label = metadata.get("class-name")
    if label is None and isinstance(value, dict):
        label = value.get("label")
    elif label is None and isinstance(value, str):
        label = value
    if not isinstance(label, str):
        return None
    confidence = metadata.get("confidence", 1.0)
    return label, float(confidence if isinstance(confidence, int | float) else 1.0)


def human_labels(lines: Iterable[dict[str, Any]]) -> dict[str, tuple[str, float]]:
    """record id → (label, confidence) for every output-manifest line a human labeled."""
    labels: dict[str, tuple[str, float]] = {}
    for number, line in enumerate(lines, start=1):
        record_id = line.get("record_id")
        if not isinstance(record_id, str):
            raise ManifestError(f"review output manifest line {number} has no record_id")
        found = human_label(line)
        if found is not None:
            labels[record_id] = found
    return labels
