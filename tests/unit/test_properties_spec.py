"""Properties of the spec validator (hypothesis): valid specs validate, and a broken field is named in the error."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from labelflow.layout import DATASET_NAME_MAX, DATASET_NAME_PATTERN
from labelflow.models.spec import LABEL_FEATURES, RESERVED_FEATURE_NAMES, DatasetSpec

PROPERTY = settings(max_examples=100, deadline=timedelta(milliseconds=500))
TAKEN = RESERVED_FEATURE_NAMES | set(LABEL_FEATURES) | {"record_id", "event_time"}
DATASETS = st.from_regex(DATASET_NAME_PATTERN, fullmatch=True).filter(lambda name: len(name) <= DATASET_NAME_MAX)
COLUMNS = st.from_regex(r"[A-Za-z][A-Za-z0-9_ ]{0,15}", fullmatch=True)
# Feature names end in a letter or digit: with `__<category>` they must stay valid Feature Store names.
FEATURE_NAMES = st.from_regex(r"[a-z]([a-z0-9_]{0,10}[a-z0-9])?", fullmatch=True).filter(lambda n: n not in TAKEN)
CATEGORIES = st.lists(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True), min_size=1, max_size=5, unique=True)


@st.composite
def numeric_features(draw: st.DrawFn, name: str) -> dict[str, Any]:
    impute = draw(st.sampled_from([None, "mean", "median", "most_frequent", "constant"]))
    scaling = draw(st.sampled_from([None, "standard", "minmax"]))
    feature: dict[str, Any] = {"name": name, "type": "numeric", "impute": impute, "scaling": scaling}
    if impute == "constant":
        feature["fill_value"] = draw(st.floats(allow_nan=False, allow_infinity=False))
    return feature


@st.composite
def categorical_features(draw: st.DrawFn, name: str) -> dict[str, Any]:
    impute = draw(st.sampled_from([None, "most_frequent", "constant"]))
    encoding = draw(st.sampled_from([None, "onehot", "ordinal"]))
    feature: dict[str, Any] = {"name": name, "type": "categorical", "impute": impute, "encoding": encoding}
    if impute == "constant":
        feature["fill_value"] = "unknown"
    if encoding is not None:
        feature["categories"] = draw(CATEGORIES.filter(lambda c: "other" not in c))
        feature["unknown"] = draw(st.sampled_from(["ignore", "other"]))
    return feature


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid spec, as the JSON a user writes."""
    names = draw(st.lists(FEATURE_NAMES, max_size=4, unique=True))
    features = [draw(st.one_of(numeric_features(name), categorical_features(name))) for name in names]
    labels = draw(st.lists(st.from_regex(r"[a-z]{1,10}", fullmatch=True), min_size=2, max_size=4, unique=True))
    spec: dict[str, Any] = {
        "dataset": draw(DATASETS),
        "record_id_column": draw(COLUMNS),
        "display_columns": draw(st.lists(COLUMNS, min_size=1, max_size=3, unique=True)),
        "features": features,
        "labels": labels,
        "confidence_threshold": draw(st.none() | st.floats(min_value=0.0, max_value=1.0)),
        "labeling": {"workers_per_object": draw(st.integers(min_value=1, max_value=9))},
        "fit_version": draw(st.integers(min_value=1, max_value=1000)),
    }
    if draw(st.booleans()):
        spec["event_time_column"] = draw(COLUMNS)
    if draw(st.booleans()):
        spec["model"] = {"s3_uri": "s3://bucket/models/m.joblib", "text_column": "text", "classes": labels}
    return spec


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation that sets the field at a dotted path (list positions as numbers)."""

    def mutate(spec: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = spec
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        target[last] = value

    return mutate


def _duplicate_labels(spec: dict[str, Any]) -> None:
    spec["labels"] = [spec["labels"][0], *spec["labels"]]


# (mutation, the field the error must name): each breaks exactly one rule of the spec.
MUTATIONS: list[tuple[Callable[[dict[str, Any]], None], str]] = [
    (_set("dataset", "Not_A_Name"), "dataset"),
    (_set("dataset", "a" * (DATASET_NAME_MAX + 1)), "dataset"),
    (_set("record_id_column", ""), "record_id_column"),
    (_set("display_columns", []), "display_columns"),
    (_set("labels", ["only"]), "labels"),
    (_duplicate_labels, "labels"),
    (_set("confidence_threshold", 1.5), "confidence_threshold"),
    (_set("labeling.workers_per_object", 10), "labeling.workers_per_object"),
    (_set("labeling.task_title", ""), "labeling.task_title"),
    (_set("fit_version", 0), "fit_version"),
    (_set("input.format", "xlsx"), "input.format"),
    (_set("input.delimiter", ",,"), "input.delimiter"),
    (_set("colour", "blue"), "colour"),
]
FEATURE_MUTATIONS: list[tuple[str, Any, str]] = [
    ("type", "text", "type"),
    ("name", "9lives", "name"),
    ("impute", "guess", "impute"),
    ("scaling", "log", "scaling"),
    ("shape", "round", "shape"),
]


def problems(exc: ValidationError) -> str:
    """The error as a run reports it: each problem's dotted field path and message."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors())


@PROPERTY
@given(spec=specs())
def test_a_valid_spec_validates_and_round_trips(spec: dict[str, Any]) -> None:
    # When a valid spec is validated / Then it is accepted, and its dump validates to the same spec
    validated = DatasetSpec.model_validate(spec)
    assert DatasetSpec.model_validate_json(validated.model_dump_json()) == validated


@PROPERTY
@given(spec=specs(), which=st.integers(min_value=0, max_value=len(MUTATIONS) - 1))
def test_a_broken_field_fails_validation_naming_the_field(spec: dict[str, Any], which: int) -> None:
    # Given a valid spec with one field broken
    mutate, field = MUTATIONS[which]
    mutate(spec)
    # When it is validated / Then it fails, and the error names the field
    with pytest.raises(ValidationError) as raised:
        DatasetSpec.model_validate(spec)
    assert field in problems(raised.value)


@PROPERTY
@given(
    spec=specs().filter(lambda s: bool(s["features"])),
    which=st.integers(min_value=0, max_value=len(FEATURE_MUTATIONS) - 1),
    at=st.integers(min_value=0, max_value=3),
)
def test_a_broken_feature_fails_validation_naming_the_feature_and_field(
    spec: dict[str, Any], which: int, at: int
) -> None:
    # Given a valid spec with one field of one feature broken
    key, value, field = FEATURE_MUTATIONS[which]
    at %= len(spec["features"])
    spec["features"][at][key] = value
    # When it is validated / Then it fails, and the error names the feature's position and the field
    with pytest.raises(ValidationError) as raised:
        DatasetSpec.model_validate(spec)
    assert f"features.{at}" in problems(raised.value) and field in problems(raised.value)
