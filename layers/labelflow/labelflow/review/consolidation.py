"""Annotation consolidation: several workers' answers become one label with a confidence.

With one worker per object the label is that worker's answer. With several, answers are weighted by
each worker's estimated accuracy, learned across the whole batch with a one-coin Dawid–Skene EM
(each worker is right with probability a_w, and wrong answers spread evenly over the other labels).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from labelflow.models.groundtruth import ConsolidatedAnnotation, ConsolidationRequestItem, ConsolidationResponseItem
from labelflow.review.tasks import CLASSIFIER_NAME

_EM_ROUNDS = 20
_ACCURACY_FLOOR, _ACCURACY_CEILING = 0.05, 0.99


@dataclass(frozen=True)
class Vote:
    worker_id: str
    label: str


@dataclass(frozen=True)
class Consolidated:
    label: str
    confidence: float
    votes: int


def answer_label(content: str | dict[str, Any], categories: list[str]) -> str | None:
    """The label in one worker's answer (`{"category": {"label": ...}}`), or None when it is not a category."""
    try:
        answer = json.loads(content) if isinstance(content, str) else content
        label = answer[CLASSIFIER_NAME]["label"]
    except (ValueError, KeyError, TypeError):
        return None
    return label if isinstance(label, str) and (not categories or label in categories) else None


def votes_of(item: ConsolidationRequestItem, categories: list[str]) -> list[Vote]:
    votes = []
    for annotation in item.annotations:
        content = annotation.annotation_data.content
        label = answer_label(content, categories) if content is not None else None
        if label is not None:
            votes.append(Vote(annotation.worker_id, label))
    return votes


def consolidate_votes(votes_by_object: dict[str, list[Vote]], categories: list[str]) -> dict[str, Consolidated]:
    """One label per object that has at least one valid vote."""
    labels = sorted(set(categories) | {v.label for votes in votes_by_object.values() for v in votes})
    objects = {oid: votes for oid, votes in votes_by_object.items() if votes}
    if not objects:
        return {}
    if all(len(votes) == 1 for votes in objects.values()):
        # One answer per object: nothing to weigh it against, and EM with no agreement to learn from
        # drifts to the batch's label mix, overriding rare answers. The label is the worker's answer.
        return {oid: Consolidated(label=votes[0].label, confidence=1.0, votes=1) for oid, votes in objects.items()}
    # Start from each object's vote shares, then alternate worker accuracies and object posteriors.
    posterior = {oid: _shares(votes, labels) for oid, votes in objects.items()}
    for _ in range(_EM_ROUNDS):
        accuracy = _worker_accuracy(objects, posterior)
        prior = _label_prior(posterior, labels)
        posterior = {oid: _posterior(votes, labels, accuracy, prior) for oid, votes in objects.items()}
    result = {}
    for oid, probabilities in posterior.items():
        # Ties go to the label earliest in the category list, so results never depend on dict order.
        label = max(labels, key=lambda lab: (round(probabilities[lab], 9), -_rank(lab, categories)))
        result[oid] = Consolidated(label=label, confidence=round(probabilities[label], 4), votes=len(objects[oid]))
    return result


def _rank(label: str, categories: list[str]) -> int:
    return categories.index(label) if label in categories else len(categories)


def _shares(votes: list[Vote], labels: list[str]) -> dict[str, float]:
    counts = Counter(v.label for v in votes)
    return {label: counts[label] / len(votes) for label in labels}


def _worker_accuracy(objects: dict[str, list[Vote]], posterior: dict[str, dict[str, float]]) -> dict[str, float]:
    right: dict[str, float] = defaultdict(float)
    seen: dict[str, int] = defaultdict(int)
    for oid, votes in objects.items():
        for vote in votes:
            right[vote.worker_id] += posterior[oid][vote.label]
            seen[vote.worker_id] += 1
    # Laplace smoothing keeps a worker with few answers from looking perfect or useless.
    return {w: min(_ACCURACY_CEILING, max(_ACCURACY_FLOOR, (right[w] + 1.0) / (seen[w] + 2.0))) for w in seen}


def _label_prior(posterior: dict[str, dict[str, float]], labels: list[str]) -> dict[str, float]:
    totals = {label: 1.0 + sum(p[label] for p in posterior.values()) for label in labels}
    norm = sum(totals.values())
    return {label: value / norm for label, value in totals.items()}


def _posterior(
    votes: list[Vote], labels: list[str], accuracy: dict[str, float], prior: dict[str, float]
) -> dict[str, float]:
    wrong_share = max(len(labels) - 1, 1)
    log_scores = {}
    for label in labels:
        score = math.log(prior[label])
        for vote in votes:
            a = accuracy[vote.worker_id]
            score += math.log(a if vote.label == label else (1.0 - a) / wrong_share)
        log_scores[label] = score
    top = max(log_scores.values())
    weights = {label: math.exp(s - top) for label, s in log_scores.items()}
    norm = sum(weights.values())
    return {label: w / norm for label, w in weights.items()}


def consolidation_response(
    items: list[ConsolidationRequestItem],
    categories: list[str],
    label_attribute: str,
    job_arn: str,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Ground Truth's required response: one consolidated annotation per object that got valid answers."""
    created = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")
    job_name = "labeling-job/" + job_arn.rsplit("/", 1)[-1]
    decided = consolidate_votes({item.dataset_object_id: votes_of(item, categories) for item in items}, categories)
    response = []
    for item in items:
        result = decided.get(item.dataset_object_id)
        if result is None:
            continue
        content = {
            label_attribute: {"label": result.label, "votes": result.votes},
            f"{label_attribute}-metadata": {
                "class-name": result.label,
                "confidence": result.confidence,
                "human-annotated": "yes",
                "creation-date": created,
                "type": "groundtruth/custom",
                "job-name": job_name,
            },
        }
        entry = ConsolidationResponseItem(
            dataset_object_id=item.dataset_object_id, consolidated_annotation=ConsolidatedAnnotation(content=content)
        )
        response.append(entry.model_dump(by_alias=True))
    return response


def load_consolidation_request(s3: Any, s3_uri: str) -> list[ConsolidationRequestItem]:
    """The objects and worker answers Ground Truth wrote for this batch; answers stored in S3 are inlined."""
    from labelflow.s3 import S3Location, get_bytes, get_json

    location = S3Location.parse(s3_uri)
    items = [ConsolidationRequestItem.model_validate(raw) for raw in get_json(s3, location.bucket, location.key)]
    for item in items:
        for annotation in item.annotations:
            data = annotation.annotation_data
            if data.content is None and data.s3_uri:
                answer = S3Location.parse(data.s3_uri)
                data.content = get_bytes(s3, answer.bucket, answer.key).decode()
    return items
