"""Fit once, apply everywhere: the transform state, its statistics, and drift against it."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import pytest

from tests.unit.processing.conftest import Job, csv_text, in_image, make_spec

FEATURES: list[dict[str, Any]] = [
    {"name": "num", "type": "numeric", "impute": "median", "scaling": "standard"},
    {"name": "scaled", "column": "num", "type": "numeric", "impute": "mean", "scaling": "minmax"},
    {"name": "cat", "type": "categorical", "impute": "most_frequent", "encoding": "onehot", "categories": ["x", "y"]},
]


def rows(values: list[tuple[str, str, str]]) -> str:
    return csv_text(*(f"{rid},1767225600,t,{num},{cat}" for rid, num, cat in values))


def test_a_state_fitted_on_one_file_is_applied_unchanged_to_another(job: Job) -> None:
    # Given a first file that fits a state, and a second with other data plus two rows identical to the first's
    spec = make_spec(FEATURES)
    first = job.run(rows([("a", "1", "x"), ("b", "2", "y"), ("c", "10", "x"), ("d", "", "")]), spec)
    state = (first.out / "state.json").read_bytes()
    second_data = rows([("p", "1000", "z"), ("a", "1", "x"), ("q", "-50", ""), ("d", "", "")])

    # When the second file runs with the first run's state
    second = job.run(second_data, spec, state=state)

    # Then identical raw rows give identical features: nothing was refitted on the second file
    assert second.code == 0, second.message
    by_id = {r["record_id"]: r["features"] for r in first.records}
    for record in second.records:
        if record["record_id"] in by_id:
            assert record["features"] == by_id[record["record_id"]]
    # And the state written is byte for byte the one applied, and stats says it was not fitted
    assert (second.out / "state.json").read_bytes() == state
    assert second.stats["state"] == {"sha256": hashlib.sha256(state).hexdigest(), "fitted": False}
    assert first.stats["state"] == {"sha256": hashlib.sha256(state).hexdigest(), "fitted": True}


def test_the_state_file_is_versioned_and_holds_mergeable_statistics(job: Job) -> None:
    # Given a fit on a few rows / When the job runs
    outcome = job.run(rows([("a", "1", "x"), ("b", "2", "y"), ("c", "10", "x"), ("d", "", "")]), make_spec(FEATURES))

    # Then the state names its format and version, and per feature its transform, statistics and impute value
    state = outcome.state
    assert (state["format"], state["version"], list(state["features"])) == (
        "labelflow.transform-state",
        1,
        ["num", "scaled", "cat"],
    )
    num = state["features"]["num"]
    assert num["transform"] == {"type": "numeric", "impute": "median", "fill_value": None, "scaling": "standard"}
    assert num["fit"] == {
        "count": 3,
        "missing": 1,
        "mean": pytest.approx(13 / 3),
        "std": pytest.approx(4.0276820),
        "min": 1.0,
        "max": 10.0,
    }
    assert num["impute_value"] == 2.0
    cat = state["features"]["cat"]
    assert cat["fit"] == {"count": 3, "missing": 1, "counts": {"x": 2, "y": 1}, "unknown": 0}
    assert cat["impute_value"] == "x"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda f: f[:2],
            "the transform state has features ['num', 'scaled', 'cat'], the spec ['num', 'scaled']: refit it",
        ),
        (
            lambda f: [f[0], {**f[1], "scaling": "standard"}, f[2]],
            "the transform state's feature 'scaled' differs from the spec's: refit it",
        ),
        (
            lambda f: [f[0], f[1], {**f[2], "categories": ["x", "y", "z"]}],
            "the transform state's feature 'cat' differs from the spec's: refit it",
        ),
    ],
)
def test_a_state_that_does_not_match_the_spec_is_fatal(job: Job, change: Any, message: str) -> None:
    # Given a state fitted for FEATURES and a spec whose features differ
    fitted = job.run(rows([("a", "1", "x")]), make_spec(FEATURES))
    state = (fitted.out / "state.json").read_bytes()

    # When the job runs with that state / Then it stops on one line and writes nothing
    outcome = job.run(rows([("a", "1", "x")]), make_spec(change(FEATURES)), state=state)
    assert (outcome.code, outcome.message) == (2, message)
    assert not (outcome.out / "records.jsonl").exists()


def test_a_state_dir_without_state_fits_one(job: Job) -> None:
    # Given --state-dir naming an empty folder (no published state yet)
    empty = job.root / "empty-state"
    empty.mkdir()
    # When the job runs / Then it fits a state
    outcome = job.run(rows([("a", "1", "x")]), make_spec(FEATURES), extra=["--state-dir", str(empty)])
    assert outcome.code == 0, outcome.message
    assert outcome.stats["state"]["fitted"] is True


FIT_IN_BATCHES = """
import json, random, sys
import numpy as np, pyarrow as pa
from labelflow_processing.config import FeatureSpec
from labelflow_processing.transforms import FeatureStats, fit

values = json.loads(sys.argv[1])
features = [FeatureSpec.from_json(f) for f in json.loads(sys.argv[2])]
results = []
for size, seed in [(1, None), (7, None), (1000, None), (3, 1), (50, 2)]:
    order = list(values)
    if seed is not None:
        random.Random(seed).shuffle(order)
    states = {}
    for feature in features:
        stats = FeatureStats(feature, True)
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            if feature.numeric:
                column = np.array([float("nan") if v is None else v for v in chunk], dtype=float)
            else:
                column = pa.array([None if v is None else str(v) for v in chunk], pa.string())
            stats.merge(FeatureStats.of(feature, True, column))
        states[feature.name] = fit(feature, stats)
    results.append(states)
print(json.dumps(results))
"""


def test_fitting_depends_neither_on_batch_size_nor_on_row_order(image_python: str) -> None:
    # Given 500 values with gaps and ties, fitted in batches of 1, 7 and 1000 rows, and shuffled twice
    generator = random.Random(0)
    values = [None if generator.random() < 0.1 else round(generator.gauss(50, 20)) for _ in range(500)]
    features = [
        {"name": "mean", "type": "numeric", "impute": "mean", "scaling": "standard"},
        {"name": "median", "type": "numeric", "impute": "median", "scaling": "minmax"},
        {"name": "mode", "type": "numeric", "impute": "most_frequent"},
        {"name": "cat", "type": "categorical", "impute": "most_frequent", "categories": ["50", "51"]},
    ]

    # When each is fitted
    states = in_image(image_python, FIT_IN_BATCHES, json.dumps(values), json.dumps(features))

    # Then every state is the same: exactly for counts, extremes, medians, modes and categories, and to
    # floating-point rounding for means and deviations
    for state in states[1:]:
        assert_same_state(state, states[0])


def assert_same_state(state: dict[str, Any], reference: dict[str, Any]) -> None:
    for name, feature in reference.items():
        other = state[name]
        assert other["impute_value"] == pytest.approx(feature["impute_value"], rel=1e-12), name
        exact = {k: v for k, v in feature["fit"].items() if k not in ("mean", "std")}
        assert {k: v for k, v in other["fit"].items() if k not in ("mean", "std")} == exact, name
        for key in ("mean", "std"):
            if key in feature["fit"]:
                assert other["fit"][key] == pytest.approx(feature["fit"][key], rel=1e-12), (name, key)
        if feature.get("scaler"):
            assert other["scaler"] == pytest.approx(feature["scaler"], rel=1e-12), name


def test_huge_finite_values_do_not_overflow_the_statistics(job: Job) -> None:
    # Given values near the top of the float range, of both signs
    spec = make_spec([{"name": "num", "type": "numeric", "impute": "mean", "scaling": "standard"}])
    data = rows([("a", "1e300", "x"), ("b", "-1e300", "x"), ("c", "1.7e308", "x"), ("d", "", "x")])

    # When the job runs
    outcome = job.run(data, spec)

    # Then the statistics, the imputed value and every feature are finite
    assert outcome.code == 0, outcome.message
    fit = outcome.state["features"]["num"]["fit"]
    assert fit["mean"] == pytest.approx(1.7e308 / 3, rel=1e-9)
    assert fit["std"] == pytest.approx(8.0141e307, rel=1e-4)
    assert [r["features"]["num"] for r in outcome.records] == pytest.approx(
        [-0.816497, -0.816497, 1.632993, 0.0], abs=1e-6
    )


def test_an_applied_state_that_scales_a_value_beyond_the_float_range_rejects_that_row(job: Job) -> None:
    # Given a state fitted on values 1 and 1 + 1e-15 (a tiny std) and a new file with a huge value
    spec = make_spec([{"name": "num", "type": "numeric", "scaling": "standard"}])
    state = (job.run(rows([("a", "1", "x"), ("b", "1.000000000000001", "x")]), spec).out / "state.json").read_bytes()

    # When the new file runs with that state
    outcome = job.run(rows([("c", "1e308", "x"), ("d", "1", "x")]), spec, state=state)

    # Then the row whose feature overflows is rejected, the other kept, and the counts add up
    assert outcome.rejected == [
        {"line": 2, "record_id": "c", "reason": "a scaled feature value is beyond the float range"}
    ]
    assert [r["record_id"] for r in outcome.records] == ["d"]
    assert (outcome.stats["records_in"], outcome.stats["records_out"], outcome.stats["rejected"]) == (2, 1, 1)


def test_drift_compares_this_input_with_the_state(job: Job) -> None:
    # Given a state fitted on num = 1, 2, 3 (mean 2, std 0.8165) and cat in x/y
    spec = make_spec(FEATURES)
    state = (job.run(rows([("a", "1", "x"), ("b", "2", "y"), ("c", "3", "x")]), spec).out / "state.json").read_bytes()

    # When a file with higher numbers, an unknown category and gaps runs with it
    outcome = job.run(rows([("p", "4", "x"), ("q", "6", "z"), ("r", "", "z"), ("s", "5", "")]), spec, state=state)

    # Then drift reports this input's mean and std, the shift in state stds, unknown and missing shares
    drift = outcome.stats["drift"]
    assert drift["num"] == {"mean": 5.0, "std": pytest.approx(0.816497), "mean_shift": 3.674235, "missing_share": 0.25}
    assert drift["cat"] == {"unknown_share": pytest.approx(2 / 3, abs=1e-6), "missing_share": 0.25}


def test_drift_of_a_fresh_fit_is_no_shift(job: Job) -> None:
    # Given no state / When the job fits one / Then the input does not drift from itself
    outcome = job.run(rows([("a", "1", "x"), ("b", "3", "q")]), make_spec(FEATURES))
    assert outcome.stats["drift"]["num"]["mean_shift"] == 0.0
    assert outcome.stats["drift"]["cat"] == {"unknown_share": 0.5, "missing_share": 0.0}
