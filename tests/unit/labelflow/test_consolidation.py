"""review/consolidation.py: workers' answers become one label with a confidence (one-coin Dawid–Skene)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pytest

from labelflow.models.groundtruth import ConsolidationRequestItem, WorkerAnnotation
from labelflow.review.consolidation import (
    Consolidated,
    Vote,
    answer_label,
    consolidate_votes,
    consolidation_response,
    load_consolidation_request,
    votes_of,
)

CATEGORIES = ["negative", "positive"]
JOB_ARN = "arn:aws:sagemaker:us-east-1:123456789012:labeling-job/lf-reviews-abc-review"


def answer(label: str) -> str:
    return json.dumps({"category": {"label": label}})


def item(object_id: str, answers: Iterable[tuple[str, str | None]]) -> ConsolidationRequestItem:
    """A request item; an answer of None is stored as raw content that is not JSON."""
    return ConsolidationRequestItem.model_validate(
        {
            "datasetObjectId": object_id,
            "dataObject": {"content": f"text of {object_id}"},
            "annotations": [
                {"workerId": worker, "annotationData": {"content": answer(label) if label else "not json"}}
                for worker, label in answers
            ],
        }
    )


def votes(*pairs: tuple[str, str]) -> list[Vote]:
    return [Vote(worker, label) for worker, label in pairs]


# ------------------------------------------------------------------------- answers
@pytest.mark.parametrize(
    ("content", "label"),
    [
        ('{"category": {"label": "positive"}}', "positive"),
        ({"category": {"label": "negative"}}, "negative"),
        ('{"category": {"label": "neutral"}}', None),
        ("not json", None),
        ('{"other": {"label": "positive"}}', None),
        ('{"category": "positive"}', None),
        ('{"category": {"label": 1}}', None),
        ('["positive"]', None),
        ('"positive"', None),
    ],
)
def test_answer_label(content: str | dict[str, Any], label: str | None) -> None:
    # Given one worker's raw answer
    # When its label is read / Then only a category from the crowd-classifier counts
    assert answer_label(content, CATEGORIES) == label


def test_answer_label_without_categories_accepts_any_string() -> None:
    # Given no category list
    # When an answer is read / Then any string label is taken
    assert answer_label(answer("whatever"), []) == "whatever"


def test_votes_of_skips_invalid_and_missing_answers() -> None:
    # Given an object with a valid answer, one that is not JSON, one outside the categories,
    # and one whose content was never inlined
    request = item("0", [("w1", "positive"), ("w2", None), ("w3", "neutral")])
    request.annotations.append(
        WorkerAnnotation.model_validate({"workerId": "w4", "annotationData": {"s3Uri": "s3://b/k"}})
    )

    # When its votes are read / Then only the valid answer is a vote
    assert votes_of(request, CATEGORIES) == [Vote("w1", "positive")]


# ------------------------------------------------------------------------- consolidation
def test_single_worker_answer_is_the_label() -> None:
    # Given one object with one answer
    # When it is consolidated / Then the label is that answer
    result = consolidate_votes({"0": votes(("w1", "positive"))}, CATEGORIES)
    assert result["0"].label == "positive"
    assert result["0"].votes == 1


def test_one_worker_per_object_keeps_every_answer_even_a_rare_one() -> None:
    # Given a batch with one answer per object (workers_per_object = 1), mostly "negative"
    batch = {f"n{i}": votes(("w1", "negative")) for i in range(10)}
    batch["rare"] = votes(("w1", "positive"))

    # When it is consolidated
    result = consolidate_votes(batch, CATEGORIES)

    # Then each object's label is its worker's answer: the batch's label mix never overrides a human
    assert result["rare"].label == "positive"
    assert all(result[f"n{i}"].label == "negative" for i in range(10))
    assert all(0.0 < r.confidence <= 1.0 for r in result.values())


def test_majority_of_three_wins() -> None:
    # Given an object where two of three workers agree
    batch = {"0": votes(("a", "positive"), ("b", "negative"), ("c", "positive"))}

    # When it is consolidated / Then the majority label wins with more than even confidence
    result = consolidate_votes(batch, CATEGORIES)["0"]
    assert result.label == "positive"
    assert result.votes == 3
    assert 0.5 < result.confidence <= 1.0


def test_unanimous_answers_are_more_confident_than_two_of_three() -> None:
    # Given a batch of reliable workers a, b, c who agree on six objects (both labels),
    # then agree on "u" and split 2-1 on "m"
    batch = {f"t{i}": votes(*((w, CATEGORIES[i % 2]) for w in "abc")) for i in range(6)}
    batch["u"] = votes(("a", "positive"), ("b", "positive"), ("c", "positive"))
    batch["m"] = votes(("a", "positive"), ("b", "positive"), ("c", "negative"))

    # When it is consolidated
    result = consolidate_votes(batch, CATEGORIES)

    # Then both go to the majority, and the unanimous one is the more confident
    assert result["u"].label == result["m"].label == "positive"
    assert result["u"].confidence > result["m"].confidence


def test_dawid_skene_trusts_the_worker_with_the_better_record() -> None:
    # Given ten objects where good workers g1 and g2 agree and "bad" always says the other label,
    batch = {}
    for i in range(10):
        truth, wrong = CATEGORIES[i % 2], CATEGORIES[1 - i % 2]
        batch[f"t{i}"] = votes(("g1", truth), ("g2", truth), ("bad", wrong))
    # and one object where only "bad" and g1 answered, and disagree
    batch["x"] = votes(("bad", "negative"), ("g1", "positive"))

    # When the batch is consolidated
    result = consolidate_votes(batch, CATEGORIES)

    # Then the split object goes to g1 (a plain vote would tie and pick "negative", the first category)
    assert result["x"].label == "positive"
    assert result["x"].confidence > 0.9
    # and the good workers' majority stands on every other object
    assert all(result[f"t{i}"].label == CATEGORIES[i % 2] for i in range(10))


def test_the_same_split_without_history_is_a_tie() -> None:
    # Given the split object alone: nothing tells the two workers apart
    batch = {"x": votes(("bad", "negative"), ("g1", "positive"))}

    # When it is consolidated / Then it is an even tie
    assert consolidate_votes(batch, CATEGORIES)["x"].confidence == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize(
    ("categories", "winner"), [(["negative", "positive"], "negative"), (["positive", "negative"], "positive")]
)
def test_ties_go_to_the_earliest_category(categories: list[str], winner: str) -> None:
    # Given an object with one answer for each label, from two workers with no history
    batch = {"0": votes(("a", "positive"), ("b", "negative"))}

    # When it is consolidated / Then the tie goes to the label listed first, not to alphabetical order
    assert consolidate_votes(batch, categories)["0"].label == winner


def test_objects_without_votes_are_left_out() -> None:
    # Given one object with a vote and one without
    # When the batch is consolidated / Then only the voted object has a result
    result = consolidate_votes({"0": votes(("a", "positive")), "1": []}, CATEGORIES)
    assert set(result) == {"0"}
    assert consolidate_votes({"1": []}, CATEGORIES) == {}


def test_consolidation_is_deterministic() -> None:
    # Given a mixed batch
    batch = {
        "0": votes(("a", "positive"), ("b", "negative"), ("c", "positive")),
        "1": votes(("a", "negative"), ("b", "negative")),
        "2": votes(("c", "positive")),
    }

    # When it is consolidated twice, once with the objects in reverse order
    first = consolidate_votes(batch, CATEGORIES)
    again = consolidate_votes(dict(reversed(batch.items())), CATEGORIES)

    # Then the results are the same
    assert first == again
    assert isinstance(first["0"], Consolidated)


# ------------------------------------------------------------------------- response
def test_consolidation_response_shape() -> None:
    # Given a batch with two answered objects and one whose only answer is invalid
    items = [
        item("0", [("a", "positive"), ("b", "positive"), ("c", "negative")]),
        item("1", [("a", None), ("b", "neutral")]),
        item("2", [("a", "negative"), ("b", "negative"), ("c", "negative")]),
    ]
    now = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

    # When Ground Truth's response is built
    response = consolidation_response(items, CATEGORIES, "label", JOB_ARN, now=now)

    # Then the unanswered object is omitted and the others follow Ground Truth's output format
    assert [entry["datasetObjectId"] for entry in response] == ["0", "2"]
    content = response[0]["consolidatedAnnotation"]["content"]
    assert content["label"] == {"label": "positive", "votes": 3}
    metadata = content["label-metadata"]
    assert metadata["class-name"] == "positive"
    assert metadata["human-annotated"] == "yes"
    assert metadata["type"] == "groundtruth/custom"
    assert metadata["job-name"] == "labeling-job/lf-reviews-abc-review"
    assert metadata["creation-date"] == "2026-01-02T03:04:05.678901"
    assert 0.5 < metadata["confidence"] <= 1.0
    assert response[1]["consolidatedAnnotation"]["content"]["label-metadata"]["class-name"] == "negative"
    # and the whole response is JSON, as the Lambda returns it
    assert json.loads(json.dumps(response)) == response


def test_consolidation_response_uses_the_label_attribute_name() -> None:
    # Given a job whose label attribute is "sentiment"
    items = [item("0", [("a", "negative")])]

    # When the response is built / Then the content is keyed by that attribute
    content = consolidation_response(items, CATEGORIES, "sentiment", JOB_ARN)[0]["consolidatedAnnotation"]["content"]
    assert set(content) == {"sentiment", "sentiment-metadata"}


def test_consolidation_response_for_no_answers_is_empty() -> None:
    # Given a batch where nobody gave a valid answer
    items = [item("0", [("a", None)]), item("1", [])]

    # When the response is built / Then it is empty
    assert consolidation_response(items, CATEGORIES, "label", JOB_ARN) == []


# ------------------------------------------------------------------------- request loading
def test_load_consolidation_request_inlines_answers_stored_in_s3(s3: Any, bucket: str) -> None:
    # Given a request whose first answer is inline and whose second is stored in S3
    s3.put_object(Bucket=bucket, Key="gt/answers/w2.json", Body=answer("negative").encode())
    request = [
        {
            "datasetObjectId": "0",
            "dataObject": {"content": "great product"},
            "annotations": [
                {"workerId": "w1", "annotationData": {"content": answer("positive")}},
                {"workerId": "w2", "annotationData": {"s3Uri": f"s3://{bucket}/gt/answers/w2.json"}},
            ],
        }
    ]
    s3.put_object(Bucket=bucket, Key="gt/request.json", Body=json.dumps(request).encode())

    # When the request is loaded
    items = load_consolidation_request(s3, f"s3://{bucket}/gt/request.json")

    # Then both answers are inline and count as votes
    assert len(items) == 1
    assert [a.annotation_data.content for a in items[0].annotations] == [answer("positive"), answer("negative")]
    assert items[0].data_object == {"content": "great product"}
    assert votes_of(items[0], CATEGORIES) == [Vote("w1", "positive"), Vote("w2", "negative")]
