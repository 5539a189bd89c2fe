"""Target-accuracy routing: the audit sample, and the lowest confidence threshold whose auto-label accuracy is
certified from audit labels (fixed-sequence testing with exact binomial tests, as in Learn-then-Test,
Angelopoulos et al.). Pure Python: Lambdas carry no numpy or scipy."""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence

from labelflow.models.records import AuditLabel
from labelflow.models.run import ThresholdChoice

# Candidate thresholds go down in hundredths, from the target accuracy (above it a calibrated model is at least
# that accurate, so the first test has a chance) to the floor (the arg-max confidence of K classes is >= 1/K).
_GRID_STEP = 100
_BISECTION_ROUNDS = 60


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed term by term in log space (math.lgamma), exact to rounding."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    head = math.lgamma(n + 1)
    terms = [head - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(term - top) for term in terms))


def accuracy_p_value(errors: int, n: int, target: float) -> float:
    """The exact one-sided p-value of "accuracy < target" after `errors` wrong labels among `n` audited ones."""
    return binomial_cdf(errors, n, 1.0 - target)


def accuracy_lower_bound(errors: int, n: int, delta: float) -> float:
    """The Clopper-Pearson one-sided lower confidence bound (level 1 - delta) on accuracy; 0 without labels."""
    if n == 0 or errors >= n:
        return 0.0
    low, high = 0.0, 1.0  # the error rate's upper bound lies between; binomial_cdf falls as the rate rises
    for _ in range(_BISECTION_ROUNDS):
        middle = (low + high) / 2
        if binomial_cdf(errors, n, middle) > delta:
            low = middle
        else:
            high = middle
    return 1.0 - high


def max_errors_certified(n: int, target: float, delta: float) -> int | None:
    """The most errors among `n` audited labels that still certify `target`; None when even none would not."""
    allowed = None
    for errors in range(n + 1):
        if accuracy_p_value(errors, n, target) > delta:
            break
        allowed = errors
    return allowed


def candidate_thresholds(target: float, classes: int) -> list[float]:
    """The fixed sequence tested, strictest first: hundredths from the target down to 1/classes."""
    top = math.floor(target * _GRID_STEP)
    floor = math.ceil(_GRID_STEP / classes)
    return [step / _GRID_STEP for step in range(top, floor - 1, -1)]


class _Tally:
    """Audit labels counted per candidate threshold they reach (constant memory however many are read), to tell
    how many reach any candidate and the model's errors among them."""

    def __init__(self, labels: Iterable[AuditLabel], candidates: Sequence[float]) -> None:
        self.ascending = sorted(candidates)
        # reached[k]: labels whose highest candidate reached is ascending[k - 1] (k = 0: none reached).
        self.reached = [0] * (len(self.ascending) + 1)
        self.wrong = [0] * (len(self.ascending) + 1)
        self.total = 0
        for label in labels:
            index = bisect_right(self.ascending, label.model_confidence)
            self.reached[index] += 1
            self.wrong[index] += label.model_label != label.human_label
            self.total += 1

    def at(self, threshold: float) -> tuple[int, int]:
        """Labels whose confidence reaches the threshold (a candidate), and the errors among them."""
        start = self.ascending.index(threshold) + 1
        return sum(self.reached[start:]), sum(self.wrong[start:])


def certify(
    labels: Iterable[AuditLabel], target: float, confidence: float, classes: int, fallback: float
) -> ThresholdChoice:
    """The lowest candidate threshold certified at `target` with probability `confidence`, testing from the
    strictest down and stopping at the first that fails; the fallback threshold when the first already fails.
    The labels are read once, as they come."""
    delta = 1.0 - confidence
    candidates = candidate_thresholds(target, classes)
    tally = _Tally(labels, candidates)
    chosen: ThresholdChoice | None = None
    for threshold in candidates:
        n, errors = tally.at(threshold)
        if n == 0 or accuracy_p_value(errors, n, target) > delta:
            break
        chosen = ThresholdChoice(
            threshold=threshold,
            method="certified",
            reason=f"lowest threshold whose auto-label accuracy is certified >= {target:g} "
            f"with probability {confidence:g}, tested from {target:g} down",
            target_accuracy=target,
            confidence=confidence,
            certified_lower_bound=accuracy_lower_bound(errors, n, delta),
            audit_labels=n,
            audit_errors=errors,
            audit_labels_total=tally.total,
        )
    if chosen is not None:
        return chosen
    n, errors = tally.at(candidates[0])
    needed = fewest_labels_to_certify(target, delta)
    return ThresholdChoice(
        threshold=fallback,
        method="fixed",
        reason=f"not certified: {n} audit labels at confidence >= {target:g} with {errors} model errors "
        f"do not show accuracy >= {target:g} with probability {confidence:g} (even with no error it takes "
        f"{needed}); the fixed threshold is used",
        target_accuracy=target,
        confidence=confidence,
        audit_labels=n,
        audit_errors=errors,
        audit_labels_total=tally.total,
    )


def fewest_labels_to_certify(target: float, delta: float) -> int:
    """The fewest audit labels that certify `target` at level `delta` when the model made no error among them."""
    return math.ceil(math.log(delta) / math.log(target))


def is_audited(run_id: str, record_id: str, rate: float) -> bool:
    """Whether a record is in the run's audit sample: a uniform draw seeded by the run id, so a retry or replay
    of the run draws the same sample and every run draws a fresh one."""
    digest = hashlib.sha256(f"{run_id}\0{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < rate * 2**64


def audit_accuracy(labels: Iterable[AuditLabel], threshold: float) -> tuple[int, float | None]:
    """How many audit labels are of auto-labeled records (confidence >= threshold), and the model's accuracy
    among them (None when there are none)."""
    above = [label for label in labels if label.model_confidence >= threshold]
    if not above:
        return 0, None
    return len(above), sum(1 for label in above if label.model_label == label.human_label) / len(above)
