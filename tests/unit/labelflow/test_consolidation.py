"""review/consolidation.py: workers' answers become one label with a confidence (Dawid–Skene EM)."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ResponseStreamingError

from labelflow.models.groundtruth import ConsolidationRequestItem, WorkerAnnotation
from labelflow.review import consolidation
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
    # Given fifteen objects where good workers g1 and g2 agree and "bad" always says the other label,
    batch = {}
    for i in range(15):
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
    assert all(result[f"t{i}"].label == CATEGORIES[i % 2] for i in range(15))


def test_the_same_split_without_history_is_a_tie() -> None:
    # Given the split object alone: nothing tells the two workers apart
    batch = {"x": votes(("bad", "negative"), ("g1", "positive"))}

    # When it is consolidated
    result = consolidate_votes(batch, CATEGORIES)["x"]

    # Then it is an even tie, and flagged as one
    assert result.confidence == pytest.approx(0.5, abs=1e-3)
    assert result.tie is True


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


def crowd(objects: int = 40) -> dict[str, list[Vote]]:
    """Three good workers, a spammer who always says "negative", and an adversary who always says the other label."""
    batch = {}
    for i in range(objects):
        truth, wrong = CATEGORIES[i % 2], CATEGORIES[1 - i % 2]
        batch[f"t{i}"] = votes(("g1", truth), ("g2", truth), ("g3", truth), ("spam", "negative"), ("adv", wrong))
    return batch


def test_a_large_batch_gets_full_confusion_matrices_and_reliabilities() -> None:
    # Given a batch with enough answers for a confusion matrix per worker
    # When it is consolidated
    result = consolidate_votes(crowd(), CATEGORIES)

    # Then every object is labeled by Dawid–Skene, right, and the workers' reliabilities are reported
    assert {r.method for r in result.values()} == {"dawid-skene"}
    assert all(result[f"t{i}"].label == CATEGORIES[i % 2] for i in range(40))
    reliability = result["t0"].reliabilities
    assert set(reliability) == {"g1", "g2", "g3", "spam", "adv"}
    assert min(reliability["g1"], reliability["g2"], reliability["g3"]) > 0.9
    assert reliability["spam"] == pytest.approx(0.5, abs=0.05)
    assert reliability["adv"] < 0.1


def test_a_spammer_is_down_weighted() -> None:
    # Given the crowd, and an object only the spammer and one good worker answered, who disagree
    batch = crowd()
    batch["x"] = votes(("spam", "negative"), ("g1", "positive"))

    # When it is consolidated
    result = consolidate_votes(batch, CATEGORIES)["x"]

    # Then the good worker wins (a plain vote would tie and pick "negative"), and the tie is flagged
    assert result.label == "positive"
    assert result.confidence > 0.9
    assert (result.method, result.tie) == ("weighted-vote", True)


def test_an_adversarys_answers_are_flipped() -> None:
    # Given the crowd, an object only the adversary answered, and one where the adversary and the spammer
    # outvote a good worker
    batch = crowd()
    batch["alone"] = votes(("adv", "negative"))
    batch["outvoted"] = votes(("adv", "negative"), ("spam", "negative"), ("g1", "positive"))

    # When it is consolidated
    result = consolidate_votes(batch, CATEGORIES)

    # Then the adversary's answer counts as its opposite
    assert result["alone"].label == "positive"
    assert result["outvoted"].label == "positive"
    assert result["outvoted"].method == "dawid-skene"
    assert result["outvoted"].confidence > 0.9


def test_a_single_answer_is_weighed_against_the_class_prior() -> None:
    # Given 40 objects, 4 of them positive, answered by three good workers and a loose one who says "positive" on
    # every positive object and on every other negative one, and an object only the loose worker answered
    batch = {}
    for i in range(40):
        truth = "positive" if i < 4 else "negative"
        loose = "positive" if i < 4 or i % 2 else "negative"
        batch[f"t{i}"] = votes(("g1", truth), ("g2", truth), ("g3", truth), ("loose", loose))
    batch["x"] = votes(("loose", "positive"))

    # When it is consolidated
    result = consolidate_votes(batch, CATEGORIES)["x"]

    # Then the answer is read through the worker's matrix and the prior: their "positive" is wrong 18 times in 22,
    # so the object goes to "negative" (a vote weighed without the prior would take "positive")
    assert (result.label, result.method, result.tie) == ("negative", "dawid-skene", False)
    assert 0.75 < result.confidence < 0.9
    assert set(result.reliabilities) == {"loose"}


def test_a_small_batch_with_fifteen_answers_per_worker_is_fitted() -> None:
    # Given a batch of 15 answers per worker, far too few to fill a confusion matrix from the worker's own record
    batch = {f"o{i}": votes(("a", "positive"), ("b", "positive"), ("c", CATEGORIES[i % 2])) for i in range(15)}

    # When it is consolidated / Then the matrices are fitted, shrunk toward the crowd's, and c is found the weakest
    result = consolidate_votes(batch, CATEGORIES)
    assert {r.method for r in result.values()} == {"dawid-skene"}
    assert all(r.label == "positive" for r in result.values())
    assert result["o0"].reliabilities["c"] < result["o0"].reliabilities["a"]


def test_a_worker_with_no_record_on_a_label_is_read_like_the_typical_worker() -> None:
    # Given EM's posteriors for four objects, 0 and 1 of label 0, 2 and 3 of label 1; worker 0 answered 0 on objects
    # 0 and 1, worker 1 answered 0 on object 2 and 1 on object 3, worker 2 answered 0 on object 0
    posterior = [[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]
    objects_by_code = [[0, 1], [], [2], [3], [0], []]  # code = worker * 2 + answer

    # When the M-step estimates the workers' matrices
    (_, theta), pseudo = consolidation._m_step(posterior, objects_by_code, 3, [1.0, 1.0])

    # Then each row gets two pseudo-counts, spread like the median of the smoothed rows of the workers who saw the
    # label: on label 0, worker 0's (2.5, 0.5) / 3 and worker 2's (1.5, 0.5) / 2, so (19, 5) / 24
    assert pseudo[0] == pytest.approx([2 * 19 / 24, 2 * 5 / 24])
    # and worker 1, who never saw a label-0 object, is read on it like that typical worker
    assert theta[0][2:4] == pytest.approx([19 / 24, 5 / 24])
    # while worker 0's row mixes its own two right answers with the pseudo-counts
    assert theta[0][0:2] == pytest.approx([(2 + 2 * 19 / 24) / 4, 2 * 5 / 24 / 4])


def test_a_spammer_does_not_shape_a_rare_labels_pseudo_counts() -> None:
    # Given the expected answers on the rare label's few objects: two good workers right 3 and 2 times, and a spammer
    # who gave the common label 10 times (the pooled row would read the rare label as answered "common" 11 in 17)
    rows = [[0.0, 3.0], [0.0, 2.0], [10.0, 0.0]]

    # When the row's pseudo-counts are spread / Then they follow the median worker: (0.5, 2.5) / 3, times two
    assert consolidation._typical_row(rows) == pytest.approx([1 / 3, 5 / 3])


def lean_crowd(objects: int) -> dict[str, list[Vote]]:
    """Three good workers, right but for every tenth object, and two who call half of the "c" objects "a"."""
    batch = {}
    for i in range(objects):
        truth = THREE[i % 3]
        good = [(f"g{j}", THREE[(i + 1) % 3] if (i + j) % 10 == 0 else truth) for j in range(3)]
        lean = [(f"l{j}", "a" if truth == "c" and (i // 3 + j) % 2 == 0 else truth) for j in range(2)]
        batch[f"t{i}"] = votes(*good, *lean)
    return batch


THREE = ["a", "b", "c"]


def test_a_mid_size_batch_reads_each_workers_own_confusions() -> None:
    # Given 45 objects answered by five workers (225 answers: 45 per worker, fewer than the 300 that ten per cell of
    # five 3x3 matrices would need), where l0 and l1 call half of the "c" objects "a"
    batch = lean_crowd(45)
    # and an object where l0 and l1 say "a" and a good worker says "c"
    batch["x"] = votes(("l0", "a"), ("l1", "a"), ("g0", "c"))

    # When it is consolidated
    result = consolidate_votes(batch, THREE)

    # Then Dawid–Skene fits the matrices (one accuracy per worker, right four times in five, would side with the two)
    # and knows that their "a" is often a "c": the good worker's "c" wins
    assert (result["x"].label, result["x"].method, result["x"].tie) == ("c", "dawid-skene", False)
    assert all(result[f"t{i}"].label == THREE[i % 3] for i in range(45))


def test_a_tiny_batch_is_a_majority_vote_that_flags_only_its_split() -> None:
    # Given the Label Studio batch of issue 8: 8 answers over 3 records, far too few to tell the workers apart
    batch = {
        "r1": votes(("u1", "negative"), ("u2", "negative"), ("u3", "positive")),
        "r2": votes(("u1", "positive"), ("u2", "positive"), ("u3", "positive")),
        "r3": votes(("u1", "negative"), ("u2", "positive")),
    }

    # When it is consolidated
    result = consolidate_votes(batch, CATEGORIES)

    # Then no model is fitted and the majority stands: r1 is negative, 2 to 1 and no tie (a one-coin fit made it
    # positive, 0.76), r2 positive, and r3's 1-1 split is flagged and goes to the first category
    assert {r.method for r in result.values()} == {"majority-vote"}
    assert [(r.label, r.confidence, r.tie) for r in result.values()] == [
        ("negative", pytest.approx(2 / 3, abs=1e-4), False),
        ("positive", 1.0, False),
        ("negative", 0.5, True),
    ]
    assert all(r.reliabilities == {} for r in result.values())


def test_a_split_too_small_to_fit_goes_to_the_worker_who_agrees_more() -> None:
    # Given a batch too small to fit, where u1 sides with u2 on two objects that u3 answers otherwise
    batch = {
        "r1": votes(("u1", "positive"), ("u2", "positive"), ("u3", "negative")),
        "r2": votes(("u1", "negative"), ("u2", "negative"), ("u3", "positive")),
        # and an object only u3 and u1 answered, who disagree
        "x": votes(("u3", "negative"), ("u1", "positive")),
    }

    # When it is consolidated
    result = consolidate_votes(batch, CATEGORIES)["x"]

    # Then the split is still a flagged majority-vote tie, but it goes to u1's answer, not to the first category
    assert (result.label, result.confidence, result.method, result.tie) == ("positive", 0.5, "majority-vote", True)


@pytest.mark.parametrize(
    ("history", "label", "method"), [(15, "positive", "dawid-skene"), (14, "negative", "majority-vote")]
)
def test_a_majority_is_outvoted_only_on_enough_evidence(history: int, label: str, method: str) -> None:
    # Given objects on which good workers g1, g2, g3 agree and b1, b2 both give the other label,
    batch = {}
    for i in range(history):
        truth, wrong = CATEGORIES[i % 2], CATEGORIES[1 - i % 2]
        batch[f"t{i}"] = votes(("g1", truth), ("g2", truth), ("g3", truth), ("b1", wrong), ("b2", wrong))
    # and an object where b1 and b2 outvote g1
    batch["x"] = votes(("b1", "negative"), ("b2", "negative"), ("g1", "positive"))

    # When it is consolidated
    result = consolidate_votes(batch, CATEGORIES)

    # Then with fifteen answers per worker (78 for 5 workers) the fit knows b1 and b2 are wrong and overturns the 2-1
    # majority; with one object less (73) it has not enough evidence, and the majority stands
    assert (result["x"].label, result["x"].method, result["x"].tie) == (label, method, False)
    assert all(result[f"t{i}"].label == CATEGORIES[i % 2] for i in range(history))


def test_one_answer_per_object_is_a_plain_majority_vote() -> None:
    # Given a batch where no object has a second answer: nothing to learn workers from
    batch = {"0": votes(("a", "positive")), "1": votes(("b", "negative"))}

    # When it is consolidated / Then each answer stands, with no reliabilities claimed
    result = consolidate_votes(batch, CATEGORIES)
    assert [(r.label, r.method, r.reliabilities) for r in result.values()] == [
        ("positive", "majority-vote", {}),
        ("negative", "majority-vote", {}),
    ]


def test_em_stops_when_the_posteriors_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given EM steps that are counted
    rounds: list[int] = []
    e_step = consolidation._e_step

    def counted(*args: Any) -> tuple[list[list[float]], float]:
        rounds.append(1)
        return e_step(*args)

    monkeypatch.setattr(consolidation, "_e_step", counted)

    # When the crowd is consolidated with the default tolerance, then with none
    settled = consolidate_votes(crowd(), CATEGORIES)
    converged_in = len(rounds)
    rounds.clear()
    monkeypatch.setattr(consolidation, "_TOLERANCE", 0.0)
    exhausted = consolidate_votes(crowd(), CATEGORIES)

    # Then it stops early once nothing moves, at the same labels the full run of rounds reaches
    # (a SQUAREM cycle is two or three EM steps, so the last one may end just past the limit)
    assert converged_in < consolidation._MAX_ROUNDS
    assert consolidation._MAX_ROUNDS <= len(rounds) < consolidation._MAX_ROUNDS + 3
    assert {k: r.label for k, r in settled.items()} == {k: r.label for k, r in exhausted.items()}


def noisy_crowd(objects: int) -> list[list[int]]:
    """Answer codes (worker * 3 + label) of five workers of uneven skill on three labels, two to four answers each,
    objects with fewer answers first."""
    skill = [9, 8, 7, 5, 2]  # right answers in ten
    codes = []
    for i in range(objects):
        truth = i % 3
        workers = [(i + j) % len(skill) for j in range(2 + i % 3)]
        # A fixed pattern of mistakes, wrong toward one of the two other labels by worker.
        codes.append([w * 3 + (truth if (i * 7 + w * 3) % 10 < skill[w] else (truth + 1 + w % 2) % 3) for w in workers])
    return sorted(codes, key=len)


def plain_em(codes: list[list[int]]) -> list[list[float]]:
    """Dawid–Skene for five workers and three labels by unaccelerated EM steps from majority vote, until still."""
    objects_by_code: list[list[int]] = [[] for _ in range(5 * 3)]
    for i, object_codes in enumerate(codes):
        for code in object_codes:
            objects_by_code[code].append(i)
    blocks = [consolidation._Block.of(list(run)) for _, run in itertools.groupby(codes, key=len)]
    posterior = consolidation._majority_shares(codes, 3)
    prior_objects = consolidation._prior_objects(objects_by_code, 5, 3)
    for _ in range(10_000):
        params, _ = consolidation._m_step(posterior, objects_by_code, 5, prior_objects)
        updated, _ = consolidation._e_step(blocks, *params)
        if (
            max(abs(a - b) for new, old in zip(updated, posterior, strict=True) for a, b in zip(new, old, strict=True))
            < 1e-12
        ):
            break
        posterior = updated
    return updated


@pytest.mark.parametrize("objects", [60, 300])
def test_squarem_reaches_the_fixed_point_of_plain_em(monkeypatch: pytest.MonkeyPatch, objects: int) -> None:
    # Given a noisy batch of five workers on three labels, and a tight tolerance
    codes = noisy_crowd(objects)
    monkeypatch.setattr(consolidation, "_TOLERANCE", 1e-10)

    # When it is fitted (with SQUAREM), and by a long run of plain EM steps
    fit = consolidation._fit(codes, 5, 3)
    reference = plain_em(codes)

    # Then both reach the same posteriors
    assert fit.method == "dawid-skene"
    for accelerated, plain in zip(fit.posterior, reference, strict=True):
        assert accelerated == pytest.approx(plain, abs=1e-6)


# ------------------------------------------------------------------------- response
def test_consolidation_response_shape() -> None:
    # Given a batch with two answered objects and one whose only answer is invalid (too few answers to fit workers)
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
    assert content["label"]["label"] == "positive"
    assert content["label"]["votes"] == 3
    assert content["label"]["method"] == "majority-vote"
    assert content["label"]["tie"] is False
    assert content["label"]["worker-reliability"] == {}
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


def test_load_consolidation_request_fetches_stored_answers_in_order(s3: Any, bucket: str) -> None:
    # Given a request of twenty objects whose three answers each are all stored in S3
    request = []
    for i in range(20):
        annotations = []
        for worker in ("w1", "w2", "w3"):
            key = f"gt/answers/{i}/{worker}.json"
            s3.put_object(Bucket=bucket, Key=key, Body=answer(CATEGORIES[(i + len(worker)) % 2]).encode())
            annotations.append({"workerId": worker, "annotationData": {"s3Uri": f"s3://{bucket}/{key}"}})
        request.append({"datasetObjectId": str(i), "dataObject": {"content": "t"}, "annotations": annotations})
    s3.put_object(Bucket=bucket, Key="gt/request.json", Body=json.dumps(request).encode())

    # When the request is loaded (the answers are fetched concurrently)
    items = load_consolidation_request(s3, f"s3://{bucket}/gt/request.json")

    # Then every answer is inlined on its own object and worker
    assert [i.dataset_object_id for i in items] == [str(i) for i in range(20)]
    for i, loaded in enumerate(items):
        assert [a.annotation_data.content for a in loaded.annotations] == [answer(CATEGORIES[(i + 2) % 2])] * 3


class _CutOffOnce:
    """An S3 client whose first read of each body fails mid-stream, as a dropped connection does."""

    def __init__(self, body: bytes) -> None:
        self.body, self.calls = body, 0

    def get_object(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        outer = self

        class Body:
            def read(self) -> bytes:
                if outer.calls == 1:
                    raise ResponseStreamingError(error="connection reset")
                return outer.body

        return {"Body": Body()}


def test_a_stored_answer_cut_off_while_read_is_fetched_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an S3 client whose first read of an answer is cut off, and no real waiting between attempts
    client = _CutOffOnce(answer("positive").encode())
    monkeypatch.setattr("labelflow.review.consolidation.time.sleep", lambda _: None)

    # When the answer is fetched / Then the second attempt returns it
    assert consolidation._fetch_answer(client, "s3://b/k.json") == answer("positive")  # type: ignore[arg-type]
    assert client.calls == 2


def _imbalanced_batch(objects: int, seed: int) -> tuple[dict[str, list[Vote]], dict[str, str]]:
    """Three labels at 70/25/5%, three answers each (one for a fifth of the objects) from 30 good workers whose
    mistakes lean toward the common label, and 8 spammers (one always gives it, the others answer at random)."""
    rng = random.Random(seed)
    labels = ["common", "middle", "rare"]
    skills = {f"g{w}": [rng.uniform(0.75, 0.95), rng.uniform(0.6, 0.9), rng.uniform(0.5, 0.85)] for w in range(30)}

    def answer(worker: str, truth: str) -> str:
        if worker == "lazy":
            return "common"
        if worker.startswith("s"):
            return rng.choice(labels)
        k = labels.index(truth)
        if rng.random() < skills[worker][k]:
            return truth
        wrong = [label for label in labels if label != truth]
        return rng.choices(wrong, weights=[3.0 if label == "common" else 1.0 for label in wrong])[0]

    pool = [*skills, "lazy", *(f"s{i}" for i in range(7))]
    batch, truths = {}, {}
    for i in range(objects):
        truths[f"o{i}"] = rng.choices(labels, weights=[0.70, 0.25, 0.05])[0]
        workers = rng.sample(pool, 1 if rng.random() < 0.2 else 3)
        batch[f"o{i}"] = [Vote(w, answer(w, truths[f"o{i}"])) for w in workers]
    return batch, truths


# Batches where EM alone, from a majority vote, shrank the rare label's prior and rows together until it lost some of
# these objects (3 of 7 at 400 objects and seed 31, 3 of 11 at seed 39).
@pytest.mark.parametrize(("objects", "seed"), [(400, 31), (400, 39), (800, 400)])
def test_a_rare_object_answered_rare_by_good_workers_stays_rare(objects: int, seed: int) -> None:
    # Given a mid-size imbalanced batch, about one object in twenty of the rare label
    batch, truths = _imbalanced_batch(objects, seed)
    backed = [
        oid
        for oid, votes in batch.items()
        if truths[oid] == "rare" and sum(v.label == "rare" and v.worker_id.startswith("g") for v in votes) >= 2
    ]

    # When it is consolidated
    result = consolidate_votes(batch, ["common", "middle", "rare"])

    # Then every rare object two good workers answered "rare" keeps that label, and the fit still beats a plain vote
    assert len(backed) >= 5
    assert all(result[oid].method == "dawid-skene" for oid in backed)
    assert [oid for oid in backed if result[oid].label != "rare"] == []
    fitted = sum(result[oid].label == truth for oid, truth in truths.items())
    voted = sum(Counter(v.label for v in batch[oid]).most_common(1)[0][0] == truth for oid, truth in truths.items())
    assert fitted > voted
