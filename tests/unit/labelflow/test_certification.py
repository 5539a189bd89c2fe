"""certification.py: the exact binomial tail, the certified threshold, the audit sample."""

from __future__ import annotations

import random
from fractions import Fraction
from math import comb

import pytest

from labelflow.certification import (
    accuracy_lower_bound,
    binomial_cdf,
    candidate_thresholds,
    certify,
    fewest_labels_to_certify,
    is_audited,
    max_errors_certified,
)
from labelflow.models.records import AuditLabel


def exact_cdf(k: int, n: int, p: Fraction) -> Fraction:
    return sum((comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1)), Fraction(0))


# ------------------------------------------------------------------ binomial tail
@pytest.mark.parametrize(
    ("k", "n", "p"), [(3, 10, "1/2"), (0, 59, "1/20"), (16, 500, "1/20"), (38, 1000, "1/20"), (120, 400, "3/10")]
)
def test_binomial_cdf_matches_the_exact_rational_sum(k: int, n: int, p: str) -> None:
    # Given a binomial tail summed exactly in rationals
    expected = exact_cdf(k, n, Fraction(p))
    # When it is computed in floating point
    # Then they agree to 1e-12 relative
    assert binomial_cdf(k, n, float(Fraction(p))) == pytest.approx(float(expected), rel=1e-12)


def test_binomial_cdf_known_values_and_edges() -> None:
    # Given textbook values: P(X <= 3) for 10 fair coins is 176/1024
    # Then the tail returns them, and the edges of k and p
    assert binomial_cdf(3, 10, 0.5) == pytest.approx(176 / 1024, rel=1e-14)
    assert binomial_cdf(-1, 10, 0.5) == 0.0
    assert binomial_cdf(10, 10, 0.3) == 1.0
    assert binomial_cdf(2, 10, 0.0) == 1.0 and binomial_cdf(2, 10, 1.0) == 0.0


# scipy 1.14.1's binom.cdf(k, n, p) and 1 - beta.ppf(0.95, errors + 1, n - errors), recorded in the processing
# image's venv (scipy is not in the dev venv, and the layer must not import it).
SCIPY_BINOMIAL_CDF = [
    (1899, 4936, 0.634861, 1.3453690252086366e-277),
    (12777, 17144, 0.741252, 0.8872925853116446),
    (843, 1017, 0.865527, 0.0005317477644859438),
    (9744, 15492, 0.718824, 1.3735955270398407e-129),
    (8876, 10696, 0.904696, 1.1729841671255049e-127),
    (16, 500, 0.05, 0.034290186598394896),
    (38, 1000, 0.05, 0.043348190606908005),
    (0, 59, 0.05, 0.04849452524942324),
    (3, 10, 0.5, 0.171875),
    (4990, 10000, 0.5, 0.42465516331865977),
    (120, 20000, 0.01, 5.731879750110851e-10),
]
SCIPY_LOWER_BOUNDS = [
    (0, 59, 0.9504923901117731),
    (16, 500, 0.951801851330953),
    (38, 1000, 0.950487129744074),
    (5, 20, 0.5444175959982512),
    (0, 1, 0.050000000000000044),
]


@pytest.mark.parametrize(("k", "n", "p", "expected"), SCIPY_BINOMIAL_CDF)
def test_binomial_cdf_matches_scipy(k: int, n: int, p: float, expected: float) -> None:
    # Given scipy's value / Then our tail equals it (absolute 1e-12: far tails are tiny)
    assert binomial_cdf(k, n, p) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("errors", "n", "expected"), SCIPY_LOWER_BOUNDS)
def test_clopper_pearson_lower_bound_matches_scipy(errors: int, n: int, expected: float) -> None:
    # Given the one-sided bound is the beta quantile / Then the bisection finds it
    assert accuracy_lower_bound(errors, n, 0.05) == pytest.approx(expected, abs=1e-9)


def test_the_issue_figures_hold() -> None:
    # Given the target 95% at confidence 95%
    # Then 500 labels certify it with at most 16 errors, 1,000 with 38; without error it takes 59 (299 for 99%)
    assert max_errors_certified(500, 0.95, 0.05) == 16
    assert max_errors_certified(1000, 0.95, 0.05) == 38
    assert max_errors_certified(58, 0.95, 0.05) is None
    assert fewest_labels_to_certify(0.95, 0.05) == 59 and fewest_labels_to_certify(0.99, 0.05) == 299


# ------------------------------------------------------------------ certify
def labels_from(rows: list[tuple[float, bool]]) -> list[AuditLabel]:
    return [
        AuditLabel.model_construct(
            record_id=f"r{i}", model_label="a", model_confidence=conf, human_label="a" if ok else "b"
        )
        for i, (conf, ok) in enumerate(rows)
    ]


def calibrated_sample(rng: random.Random, n: int) -> list[tuple[float, bool]]:
    """Confidences uniform on [0.5, 1], each label right with probability equal to its confidence."""
    rows = []
    for _ in range(n):
        conf = round(0.5 + rng.random() / 2, 4)
        rows.append((conf, rng.random() < conf))
    return rows


def true_accuracy(threshold: float) -> float:
    """For calibrated_sample: the mean confidence above t, (t + 1) / 2."""
    return (threshold + 1) / 2


def test_certified_threshold_meets_the_target_in_at_least_1_minus_delta_of_repetitions() -> None:
    # Given 300 repetitions of 3,000 audit labels from a calibrated model, whose true accuracy above t is (t+1)/2
    rng = random.Random(11)
    missed, certified = 0, 0
    for _ in range(300):
        # When a threshold is certified for 95% at confidence 90%
        choice = certify(labels_from(calibrated_sample(rng, 3000)), 0.95, 0.9, 2, fallback=0.99)
        certified += choice.method == "certified"
        # Then count the certificates whose threshold's true accuracy is below the target
        missed += choice.method == "certified" and true_accuracy(choice.threshold) < 0.95
    # Then at most 10% of repetitions certify a threshold that misses the target, and most certify one
    assert missed / 300 <= 0.1
    assert certified / 300 > 0.5


def test_certification_goes_down_to_the_lowest_threshold_that_still_passes() -> None:
    # Given 2,000 audit labels all right from 0.80 up and all wrong below
    rows = [(0.8 + i / 10_000, True) for i in range(2000)] + [(0.795, False)] * 200
    # When 95% is certified
    choice = certify(labels_from(rows), 0.95, 0.95, 2, fallback=0.9)
    # Then the threshold is 0.80, resting on the 2,000 labels above it, with a lower bound above the target
    assert choice.method == "certified" and choice.threshold == 0.8
    assert choice.audit_labels == 2000 and choice.audit_errors == 0 and choice.audit_labels_total == 2200
    assert choice.certified_lower_bound is not None and 0.95 < choice.certified_lower_bound < 1


def test_too_few_audit_labels_fall_back_to_the_fixed_threshold_and_say_so() -> None:
    # Given 58 audit labels, all right and all confident: one short of certifying 95%
    choice = certify(labels_from([(0.99, True)] * 58), 0.95, 0.95, 2, fallback=0.85)
    # Then the fixed threshold is used, and the reason says how many it would take
    assert (choice.method, choice.threshold, choice.certified_lower_bound) == ("fixed", 0.85, None)
    assert choice.audit_labels == 58 and "it takes 59" in choice.reason


def test_no_audit_labels_fall_back() -> None:
    choice = certify([], 0.95, 0.95, 3, fallback=0.8)
    assert (choice.method, choice.threshold, choice.audit_labels_total) == ("fixed", 0.8, 0)


def test_candidates_go_from_the_target_down_to_one_over_the_classes() -> None:
    assert candidate_thresholds(0.95, 2)[:2] == [0.95, 0.94] and candidate_thresholds(0.95, 2)[-1] == 0.5
    assert candidate_thresholds(0.9, 4)[-1] == 0.25


# ------------------------------------------------------------------ audit sample
def test_audit_sample_is_reproducible_per_run_and_fresh_across_runs() -> None:
    # Given 20,000 record ids
    ids = [f"r{i}" for i in range(20_000)]
    # When two runs draw at 2%, one of them twice
    first = {r for r in ids if is_audited("run-a", r, 0.02)}
    again = {r for r in ids if is_audited("run-a", r, 0.02)}
    other = {r for r in ids if is_audited("run-b", r, 0.02)}
    # Then a run draws the same sample again, of about 2%, and another run draws a different one
    assert first == again and 300 < len(first) < 500
    assert len(first & other) < 40
    assert not any(is_audited("run-a", r, 0.0) for r in ids)
