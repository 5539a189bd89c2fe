"""Annotation consolidation: several workers' answers become one label with a confidence.

A Dawid–Skene model is fitted to the whole batch by EM: class priors and, per worker, a full confusion matrix (how
often they answer l when the truth is k), started from majority vote and iterated, with SQUAREM's extrapolation
between EM steps, until no posterior moves by more than `_TOLERANCE` in one EM step (or `_MAX_ROUNDS` steps). Each
row of a worker's matrix gets as many pseudo-counts as there are labels, spread like the median worker's row: a
worker with many answers is read from their own record, one with few like a typical worker, so mid-size batches (a
labeling job holds `labeling.objects_per_job` objects, 1000 by default) get full matrices too. The class prior gets
`_PRIOR_OBJECTS` pseudo-objects spread like the median worker's answers, so a rare label keeps its share in a few
hundred objects, where EM alone lets it fade. Only answers on objects answered more than once are evidence about
workers; a batch with fewer than `_ANSWERS_PER_WORKER` of them per worker fits nothing: a few answers per worker
cannot tell a weak worker from a good one, and EM on so little can overturn a clear majority, so such a batch is a
majority vote, its ties flagged and broken toward the workers who agree more often with their co-workers. Objects
with one answer, or three or more, take the posterior's label: one answer is read through its worker's matrix and
the class prior, so an adversary's is flipped, a spammer's yields the likelier label, and a rare label stands only
when its worker seldom gives it wrongly. Objects with two answers take a vote weighted by their workers' fitted
matrices but not by the class prior, and a split is flagged as a tie. Pure Python: the Lambda layer has no numpy."""

from __future__ import annotations

import functools
import itertools
import json
import math
import operator
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ConnectionError as BotocoreConnectionError
from botocore.exceptions import ResponseStreamingError

from labelflow.models.groundtruth import ConsolidatedAnnotation, ConsolidationRequestItem, ConsolidationResponseItem
from labelflow.review.tasks import CLASSIFIER_NAME

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

Method = Literal["dawid-skene", "weighted-vote", "majority-vote"]

_TOLERANCE = 1e-3
_MAX_ROUNDS = 100
_SMOOTHING = 1.0
# The class prior's pseudo-objects, a labeling job's worth, spread like the median worker's answers (a worker's answers
# are the truth blurred by their mistakes: between the true prior and uniform, and a spammer is not the median). EM
# from a majority vote shrinks a rare label's prior and rows together, each through the other, until a few hundred
# objects hold none of it (bench/consolidation.py, imbalanced 3 + single at 400: prior 0.006 for 0.065). These hold
# it, and fade where a batch holds several jobs: even a prior fixed at those shares costs 10,000 objects about 0.01.
_PRIOR_OBJECTS = 1000.0
# With few answers per worker even one accuracy per worker is noise: from n answers its standard error is about
# 0.5/sqrt(n), 0.29 at three answers, wide enough to read a good worker as worse than chance and flip their answers.
# At twelve (200 objects answered thrice by 40 workers) the fit still loses the rarest label (recall 0.00 to 0.10 where
# majority vote keeps 0.58); from fifteen on, the shrunk matrices beat majority vote at every size the bench measures.
_ANSWERS_PER_WORKER = 15
_PAIR = 2
# exp(-600) is far above the smallest normal double (about exp(-708)).
_UNDERFLOW_EXPONENT = 600.0
# A jump's probabilities stay within exp(-30) of their row's largest (EM's own never come near it).
_LOG_FLOOR = -30.0
_TIE = 1e-9
_FETCH_THREADS = 16
_FETCH_ATTEMPTS = 3


@dataclass(frozen=True)
class Vote:
    worker_id: str
    label: str


@dataclass(frozen=True)
class Consolidated:
    label: str
    confidence: float
    votes: int
    method: Method = "majority-vote"
    tie: bool = False
    reliabilities: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Fit:
    """Posteriors (one list per label, indexed by object) and each worker's estimated accuracy."""

    posterior: list[list[float]]
    prior: list[float]
    accuracy: list[float]
    method: Method


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
    objects = {oid: votes for oid, votes in votes_by_object.items() if votes}
    if not objects:
        return {}
    extra = sorted({v.label for votes in objects.values() for v in votes} - set(categories))
    labels = list(dict.fromkeys(categories)) + extra
    workers = sorted({v.worker_id for votes in objects.values() for v in votes})
    label_index = {label: k for k, label in enumerate(labels)}
    worker_index = {worker: w for w, worker in enumerate(workers)}
    # One code per (worker, answer) pair, so each EM step is a few C-level sums over lists.
    codes = [
        [worker_index[v.worker_id] * len(labels) + label_index[v.label] for v in votes] for votes in objects.values()
    ]
    enough = _evidence(codes) >= _ANSWERS_PER_WORKER * len(workers)
    fit = _fit(codes, len(workers), len(labels)) if enough and len(labels) > 1 else None
    if fit is None:
        agreement = _agreement(codes, len(workers), len(labels))
        return {oid: _vote(codes[i], labels, agreement) for i, oid in enumerate(objects)}
    reliability = {w: round(accuracy, 4) for w, accuracy in enumerate(fit.accuracy)}
    return {oid: _decide(i, codes[i], labels, fit, reliability, workers) for i, oid in enumerate(objects)}


def _vote(codes: list[int], labels: list[str], agreement: list[float]) -> Consolidated:
    """The majority; a tie, still flagged, goes to the label whose workers agree more often with their co-workers."""
    size = len(labels)
    shares = _shares(codes, size)
    label, tie = _argmax(shares)
    if tie:
        support = [0.0] * size
        for code in codes:
            support[code % size] += agreement[code // size]
        tied = [k for k, share in enumerate(shares) if share >= shares[label] - _TIE]
        label = max(tied, key=support.__getitem__)
    return Consolidated(labels[label], round(shares[label], 4), len(codes), "majority-vote", tie)


def _agreement(codes: list[list[int]], n_workers: int, size: int) -> list[float]:
    """Each worker's share of co-workers' answers that matched theirs, smoothed (one in two before any answer)."""
    # Too few answers to fit anyone, but enough to rank workers: in bench/consolidation.py's balanced 2 + single at
    # 200 objects, 76 of 200 are 1-1 splits, and breaking them so instead of by category order takes 0.625 to 0.720.
    agreed = [1.0] * n_workers
    seen = [2.0] * n_workers
    for object_codes in codes:
        if len(object_codes) < _PAIR:
            continue
        counts = [0] * size
        for code in object_codes:
            counts[code % size] += 1
        for code in object_codes:
            agreed[code // size] += (counts[code % size] - 1) / (len(object_codes) - 1)
            seen[code // size] += 1
    return [a / n for a, n in zip(agreed, seen, strict=True)]


def _decide(
    i: int, codes: list[int], labels: list[str], fit: _Fit, reliability: dict[int, float], workers: list[str]
) -> Consolidated:
    size = len(labels)
    posterior = [column[i] for column in fit.posterior]
    reliabilities = {workers[code // size]: reliability[code // size] for code in codes}
    if len(codes) != _PAIR:
        label, tie = _argmax(posterior)
        return Consolidated(labels[label], round(posterior[label], 4), len(codes), fit.method, tie, reliabilities)
    # Two answers: weighed by their workers' matrices without the class prior, which a batch answered mostly twice
    # overstates for the label weak workers drift toward (bench/consolidation.py, balanced 2 + single: 0.40 for 0.33).
    likelihood = [p / prior for p, prior in zip(posterior, fit.prior, strict=True)]
    norm = sum(likelihood)
    likelihood = [value / norm for value in likelihood]
    label, tie = _argmax(likelihood)
    if tie:
        label = max(
            (k for k, value in enumerate(likelihood) if value >= likelihood[label] - _TIE), key=posterior.__getitem__
        )
    tie = tie or _argmax(_shares(codes, size))[1]
    return Consolidated(labels[label], round(likelihood[label], 4), len(codes), "weighted-vote", tie, reliabilities)


def _evidence(codes: list[list[int]]) -> int:
    """The answers that say something about their worker: those on objects someone else also answered."""
    return sum(len(object_codes) for object_codes in codes if len(object_codes) > 1)


def _shares(codes: list[int], size: int) -> list[float]:
    """Each label's share of one object's answers."""
    counts = [0] * size
    for code in codes:
        counts[code % size] += 1
    return [count / len(codes) for count in counts]


def _argmax(values: Sequence[float]) -> tuple[int, bool]:
    """The first index of the largest value (labels are in category order), and whether another equals it."""
    top = max(values)
    best = [k for k, value in enumerate(values) if value >= top - _TIE]
    return best[0], len(best) > 1


def _fit(codes: list[list[int]], n_workers: int, size: int) -> _Fit:
    """Dawid–Skene EM, with matrices shrunk toward the typical worker's, from majority vote to convergence."""
    # EM runs on the objects ordered by their number of answers, so that each run of equal length is a block.
    order = sorted(range(len(codes)), key=lambda i: len(codes[i]))
    ordered = [codes[i] for i in order]
    objects_by_code: list[list[int]] = [[] for _ in range(n_workers * size)]
    for i, object_codes in enumerate(ordered):
        for code in object_codes:
            objects_by_code[code].append(i)
    blocks = [_Block.of(list(run)) for _, run in itertools.groupby(ordered, key=len)]
    prior_objects = _prior_objects(objects_by_code, n_workers, size)
    # The pseudo-counts of the latest M-step: SQUAREM compares a jump with an EM step under this one prior.
    pseudo: list[list[float]] = []

    def m_step(posterior: list[list[float]]) -> _Params:
        params, pseudo[:] = _m_step(posterior, objects_by_code, n_workers, prior_objects)
        return params

    def objective(likelihood: float, params: _Params) -> float:
        """What smoothed EM climbs: the log-likelihood plus the log-density of the pseudo-counts' priors."""
        prior, theta = params
        matrices = sum(
            pseudo[k][code % size] * math.log(p) for k, row in enumerate(theta) for code, p in enumerate(row)
        )
        classes = sum(count * math.log(p) for count, p in zip(prior_objects, prior, strict=True))
        return likelihood + classes + matrices

    # SQUAREM: two EM steps, a jump along their direction, kept when the objective does not drop. The stopping
    # rule is plain EM's: no posterior moved by `_TOLERANCE` in the first of the two steps.
    params = m_step(_majority_shares(ordered, size))
    rounds = 0
    while True:
        posterior, _ = _e_step(blocks, *params)
        once = m_step(posterior)
        updated, likelihood = _e_step(blocks, *once)
        rounds += 2
        moved = max(max(map(abs, map(operator.sub, new, old))) for new, old in zip(updated, posterior, strict=True))
        posterior, start, params = updated, params, m_step(updated)
        if moved < _TOLERANCE or rounds >= _MAX_ROUNDS:
            break
        jump = _extrapolate(start, once, params, size)
        if jump is not None:
            jumped, jumped_likelihood = _e_step(blocks, *jump)
            rounds += 1
            if objective(jumped_likelihood, jump) >= objective(likelihood, once):
                params = m_step(jumped)
    prior, theta = params
    accuracy = [sum(prior[k] * theta[k][w * size + k] for k in range(size)) for w in range(n_workers)]
    position = [0] * len(order)
    for j, i in enumerate(order):
        position[i] = j
    restored = [list(map(column.__getitem__, position)) for column in posterior]
    return _Fit(restored, prior, accuracy, "dawid-skene")


def _prior_objects(objects_by_code: list[list[int]], n_workers: int, size: int) -> list[float]:
    """Each label's pseudo-objects in the class prior: one, plus `_PRIOR_OBJECTS` spread like the median worker's."""
    answers = [[float(len(objects_by_code[w * size + label])) for label in range(size)] for w in range(n_workers)]
    return [_SMOOTHING + _PRIOR_OBJECTS * share / size for share in _typical_row(answers)]


def _majority_shares(codes: list[list[int]], size: int) -> list[list[float]]:
    columns = [[0.0] * len(codes) for _ in range(size)]
    for i, object_codes in enumerate(codes):
        for code in object_codes:
            columns[code % size][i] += 1.0 / len(object_codes)
    return columns


# Class priors, and θ[k][code] (one list per true label k).
_Params = tuple[list[float], list[list[float]]]


def _m_step(
    posterior: list[list[float]], objects_by_code: list[list[int]], n_workers: int, prior_objects: list[float]
) -> tuple[_Params, list[list[float]]]:
    """Class priors (`prior_objects` are each label's pseudo-objects) and θ[k][code], the chance that a worker answers
    the code's label when the truth is k; and the pseudo-counts each row of θ got (`size` of them per row)."""
    size = len(prior_objects)
    totals = [sum(column) + extra for column, extra in zip(posterior, prior_objects, strict=True)]
    norm = sum(totals)
    prior = [t / norm for t in totals]
    # counts[w][k][l]: expected number of times worker w answered l on objects whose truth is k.
    counts = [
        [
            [sum(map(posterior[k].__getitem__, objects_by_code[w * size + answer])) for answer in range(size)]
            for k in range(size)
        ]
        for w in range(n_workers)
    ]
    pseudo = [_typical_row([matrix[k] for matrix in counts]) for k in range(size)]
    theta = [[0.0] * (n_workers * size) for _ in range(size)]
    for w, matrix in enumerate(counts):
        for k, row in enumerate(matrix):
            row_norm = sum(row) + _SMOOTHING * size
            theta[k][w * size : (w + 1) * size] = [
                (count + prior_count) / row_norm for count, prior_count in zip(row, pseudo[k], strict=True)
            ]
    return (prior, theta), pseudo


def _typical_row(rows: list[list[float]]) -> list[float]:
    """Pseudo-counts, one per label, spread like the median row (smoothed, among rows of at least one count)."""
    # Not the pooled row: that weighs workers by their answers, so on a rare label's few objects a spammer who always
    # gives the common label is a large part of it, and every worker's rare row is read as often common.
    size = len(rows[0])
    seen = [row for row in rows if sum(row) >= 1.0] or rows
    typical = [
        statistics.median((row[answer] + _SMOOTHING / size) / (sum(row) + _SMOOTHING) for row in seen)
        for answer in range(size)
    ]
    norm = sum(typical)
    return [_SMOOTHING * size * value / norm for value in typical]


def _e_step(blocks: list[_Block], prior: list[float], theta: list[list[float]]) -> tuple[list[list[float]], float]:
    """Each object's posterior over labels (one list per label, in the blocks' order) and the log-likelihood."""
    # Products of probabilities, without logs: renormalising after every `run` factors keeps each label's
    # score above smallest**run, far from underflow, and changes no ratio between labels.
    smallest = min(min(prior), *map(min, theta))
    run = max(1, int(_UNDERFLOW_EXPONENT / -math.log(smallest)) - 1)
    posterior: list[list[float]] = [[] for _ in prior]
    likelihood = 0.0
    for block in blocks:
        scores = [[p] * block.size for p in prior]
        for start in range(0, len(block.columns), run):
            for column in block.columns[start : start + run]:
                scores = [
                    list(map(operator.mul, s, map(t.__getitem__, column))) for s, t in zip(scores, theta, strict=True)
                ]
            norms = functools.reduce(lambda total, s: list(map(operator.add, total, s)), scores)
            likelihood += sum(map(math.log, norms))
            scores = [list(map(operator.truediv, s, norms)) for s in scores]
        for label_posterior, score in zip(posterior, scores, strict=True):
            label_posterior.extend(score)
    return posterior, likelihood


def _extrapolate(start: _Params, once: _Params, twice: _Params, size: int) -> _Params | None:
    """SQUAREM's jump (Varadhan & Roland 2008, scheme S3) in log space; None when it is no longer than EM's."""
    base, first, second = ([list(map(math.log, vector)) for vector in (p[0], *p[1])] for p in (start, once, twice))
    r = [list(map(operator.sub, b, a)) for a, b in zip(base, first, strict=True)]
    v = [[c - 2 * b + a for a, b, c in zip(*vectors, strict=True)] for vectors in zip(base, first, second, strict=True)]
    curvature = sum(x * x for vector in v for x in vector)
    if curvature == 0.0:
        return None
    step = math.sqrt(sum(x * x for vector in r for x in vector) / curvature)
    if step <= 1.0:
        return None
    jumped = [
        [a + 2 * step * dr + step * step * dv for a, dr, dv in zip(*vectors, strict=True)]
        for vectors in zip(base, r, v, strict=True)
    ]
    theta = [
        [p for row in range(0, len(vector), size) for p in _softmax(vector[row : row + size])] for vector in jumped[1:]
    ]
    return _softmax(jumped[0]), theta


def _softmax(logs: list[float]) -> list[float]:
    """Probabilities from unnormalised logs, none below `_LOG_FLOOR` of the largest, so no product can vanish."""
    top = max(logs)
    weights = [math.exp(max(value - top, _LOG_FLOOR)) for value in logs]
    total = sum(weights)
    return [weight / total for weight in weights]


@dataclass(frozen=True)
class _Block:
    """Objects with the same number of answers; columns[j][i] is the code of the i-th object's j-th answer."""

    columns: list[list[int]]
    size: int

    @classmethod
    def of(cls, codes: list[list[int]]) -> _Block:
        return cls([list(column) for column in zip(*codes, strict=True)], len(codes))


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
        # A custom workflow's content is ours to shape; the metadata keeps the keys Ground Truth's own
        # classification output has, so readers of either find the class name and confidence.
        content = {
            label_attribute: {
                "label": result.label,
                "votes": result.votes,
                "method": result.method,
                "tie": result.tie,
                "worker-reliability": result.reliabilities,
            },
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


def load_consolidation_request(s3: S3Client, s3_uri: str) -> list[ConsolidationRequestItem]:
    """The objects and worker answers Ground Truth wrote for this batch; answers stored in S3 are inlined."""
    from labelflow.s3 import S3Location, get_json

    location = S3Location.parse(s3_uri)
    items = [ConsolidationRequestItem.model_validate(raw) for raw in get_json(s3, location.bucket, location.key)]
    pending = [
        annotation.annotation_data
        for item in items
        for annotation in item.annotations
        if annotation.annotation_data.content is None and annotation.annotation_data.s3_uri
    ]
    if pending:
        with ThreadPoolExecutor(max_workers=min(_FETCH_THREADS, len(pending))) as pool:
            contents = pool.map(lambda data: _fetch_answer(s3, data.s3_uri or ""), pending)
            for data, content in zip(pending, contents, strict=True):
                data.content = content
    return items


def _fetch_answer(s3: S3Client, uri: str) -> str:
    """One stored answer; botocore retries the request, this retries a body cut off while it was being read."""
    from labelflow.s3 import S3Location, get_bytes

    answer = S3Location.parse(uri)
    for attempt in range(1, _FETCH_ATTEMPTS):
        try:
            return get_bytes(s3, answer.bucket, answer.key).decode()
        except (ResponseStreamingError, BotocoreConnectionError):
            time.sleep(0.1 * 2**attempt)
    return get_bytes(s3, answer.bucket, answer.key).decode()
