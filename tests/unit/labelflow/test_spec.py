"""models/spec.py: the dataset spec's validators, its required columns and its Feature Store columns."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import ValidationError

from labelflow.models.spec import DatasetSpec, FeatureSpec, output_features, transform_fingerprint
from tests.conftest import ROOT

DEMO_SPEC = ROOT / "demo" / "datasets" / "reviews.json"


def demo_spec_dict() -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(DEMO_SPEC.read_text())
    return raw


def minimal_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "dataset": "tickets",
        "record_id_column": "id",
        "display_columns": ["body"],
        "features": [{"name": "priority", "type": "numeric"}],
        "labels": ["bug", "question"],
    }
    spec.update(overrides)
    return spec


# ------------------------------------------------------------------------- valid spec
def test_demo_spec_is_valid() -> None:
    # Given the demo dataset's spec file
    raw = demo_spec_dict()

    # When it is validated
    spec = DatasetSpec.model_validate(raw)

    # Then every section is read, and unset sections take their defaults
    assert spec.dataset == "reviews"
    assert [f.name for f in spec.features] == ["product_category", "helpful_votes", "price", "verified_purchase"]
    assert spec.labels == ["negative", "positive"]
    assert spec.model is not None and spec.model.text_column == "review_text"
    assert spec.confidence_threshold == 0.8
    assert spec.labeling.workers_per_object == 3
    assert spec.labeling.task_time_limit_seconds == 600
    assert spec.input.format == "auto" and spec.input.delimiter is None and spec.input.encoding is None
    assert spec.display_columns == ["review_text", "product_category"]
    assert spec.fit_version == 1


def test_minimal_spec_takes_defaults() -> None:
    # Given a spec with only the required fields
    # When it is validated
    spec = DatasetSpec.model_validate(minimal_spec())

    # Then the optional sections are unset or defaulted
    assert spec.model is None
    assert spec.event_time_column is None
    assert spec.confidence_threshold is None
    assert spec.labeling.workers_per_object == 1


def test_unknown_keys_are_rejected() -> None:
    # Given a spec with a misspelled key
    raw = minimal_spec(confidence_treshold=0.5)

    # When it is validated / Then the typo is an error rather than silently ignored
    with pytest.raises(ValidationError, match="confidence_treshold"):
        DatasetSpec.model_validate(raw)


# ------------------------------------------------------------------- feature validators
@pytest.mark.parametrize(
    ("feature", "message"),
    [
        (
            {"name": "price", "type": "numeric", "encoding": "onehot", "categories": ["a"]},
            "feature 'price': encoding applies to categorical features only",
        ),
        (
            {"name": "color", "type": "categorical", "scaling": "standard"},
            "feature 'color': scaling applies to numeric features only",
        ),
        (
            {"name": "color", "type": "categorical", "impute": "mean"},
            "feature 'color': impute 'mean' needs a numeric feature",
        ),
        (
            {"name": "color", "type": "categorical", "impute": "median"},
            "feature 'color': impute 'median' needs a numeric feature",
        ),
        (
            {"name": "color", "type": "categorical", "encoding": "onehot"},
            "feature 'color': encoding needs a fixed categories list",
        ),
        (
            {"name": "color", "type": "categorical", "encoding": "ordinal", "categories": []},
            "feature 'color': encoding needs a fixed categories list",
        ),
        (
            {"name": "price", "type": "numeric", "impute": "constant"},
            "feature 'price': impute 'constant' needs fill_value",
        ),
    ],
)
def test_feature_validator_errors_name_the_feature(feature: dict[str, Any], message: str) -> None:
    # Given a feature whose transforms do not fit its type
    # When a spec with it is validated
    with pytest.raises(ValidationError) as caught:
        DatasetSpec.model_validate(minimal_spec(features=[feature]))

    # Then the error names the feature and the problem
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "feature",
    [
        {"name": "price", "type": "numeric", "impute": "mean", "scaling": "minmax"},
        {"name": "price", "type": "numeric", "impute": "constant", "fill_value": 0},
        {"name": "color", "type": "categorical", "impute": "constant", "fill_value": "none"},
        {"name": "color", "type": "categorical", "impute": "most_frequent", "encoding": "ordinal", "categories": ["a"]},
    ],
)
def test_valid_feature_combinations_pass(feature: dict[str, Any]) -> None:
    # Given a feature whose transforms fit its type
    # When it is validated
    parsed = FeatureSpec.model_validate(feature)

    # Then it is accepted unchanged
    assert parsed.name == feature["name"]
    assert parsed.impute == feature.get("impute")


def test_source_column_defaults_to_the_feature_name() -> None:
    # Given one feature with an explicit source column and one without
    renamed = FeatureSpec(name="price", column="Price (USD)", type="numeric")
    plain = FeatureSpec(name="price", type="numeric")

    # When their source columns are read / Then the explicit column wins, else the name
    assert renamed.source_column == "Price (USD)"
    assert plain.source_column == "price"


@pytest.mark.parametrize("name", ["1price", "price-usd", "", "x" * 65])
def test_feature_names_must_be_identifiers(name: str) -> None:
    # Given a feature name that is not an identifier (or too long)
    # When the feature is validated / Then the name is rejected
    with pytest.raises(ValidationError, match="name"):
        FeatureSpec.model_validate({"name": name, "type": "numeric"})


# -------------------------------------------------------------------- spec validators
def test_duplicate_labels_are_rejected() -> None:
    # Given a spec that lists a label twice
    raw = minimal_spec(labels=["bug", "question", "bug"])

    # When it is validated / Then the error is about the labels
    with pytest.raises(ValidationError, match="labels must be unique"):
        DatasetSpec.model_validate(raw)


def test_duplicate_feature_names_are_rejected() -> None:
    # Given two features with the same name, read from different columns
    raw = minimal_spec(
        features=[
            {"name": "priority", "type": "numeric"},
            {"name": "priority", "column": "prio", "type": "numeric"},
        ]
    )

    # When it is validated / Then the error is about the feature names
    with pytest.raises(ValidationError, match="feature names must be unique"):
        DatasetSpec.model_validate(raw)


@pytest.mark.parametrize(
    "name",
    ["label", "label_source", "label_confidence", "run_id", "is_deleted", "write_time", "record_id", "event_time"],
)
def test_reserved_feature_names_are_rejected(name: str) -> None:
    # Given a feature named like a column Feature Store or labelflow owns
    raw = minimal_spec(features=[{"name": "priority", "type": "numeric"}, {"name": name, "type": "numeric"}])

    # When it is validated
    with pytest.raises(ValidationError) as caught:
        DatasetSpec.model_validate(raw)

    # Then the error names the reserved feature, and only that one
    assert f"feature names ['{name}'] are reserved" in str(caught.value)


def test_fewer_than_two_labels_is_rejected() -> None:
    # Given a spec with a single label
    # When it is validated / Then it is rejected: a classifier needs at least two labels
    with pytest.raises(ValidationError, match="labels"):
        DatasetSpec.model_validate(minimal_spec(labels=["bug"]))


@pytest.mark.parametrize(
    "name", ["Reviews", "has_underscore", "-leading", "trailing-", "double--hyphen", "9starts-with-digit", "x" * 64]
)
def test_dataset_names_follow_one_rule(name: str) -> None:
    # Given a dataset name that some name built from it (job, execution, feature group, S3 key) could not carry
    # When the spec is validated / Then the name is rejected, saying what is allowed
    with pytest.raises(ValidationError, match="dataset"):
        DatasetSpec.model_validate(minimal_spec(dataset=name))


@pytest.mark.parametrize("name", ["a", "churn-2024", "x" * 63, "reviews"])
def test_dataset_names_the_rule_allows(name: str) -> None:
    assert DatasetSpec.model_validate(minimal_spec(dataset=name)).dataset == name


def test_a_spec_may_have_no_features() -> None:
    # Given a text dataset whose only input is the text the model and reviewers read
    spec = DatasetSpec.model_validate(minimal_spec(features=[]))
    # Then it is valid and its feature group has only labelflow's columns
    assert output_features(spec) == []


def test_display_columns_must_be_unique() -> None:
    with pytest.raises(ValidationError, match="display_columns must be unique"):
        DatasetSpec.model_validate(minimal_spec(display_columns=["body", "body"]))


def test_unknown_other_adds_a_one_hot_column() -> None:
    # Given a one-hot feature whose unseen values go to an "other" bucket
    feature = {
        "name": "plan",
        "type": "categorical",
        "encoding": "onehot",
        "categories": ["a", "b"],
        "unknown": "other",
    }
    spec = DatasetSpec.model_validate(minimal_spec(features=[feature]))
    # Then the bucket is its own Integral column after the categories
    assert output_features(spec) == [("plan__a", "Integral"), ("plan__b", "Integral"), ("plan__other", "Integral")]


@pytest.mark.parametrize(
    ("feature", "message"),
    [
        ({"name": "plan", "type": "categorical", "unknown": "other"}, "unknown 'other' needs an encoding"),
        (
            {"name": "plan", "type": "categorical", "encoding": "ordinal", "categories": ["other"], "unknown": "other"},
            "both a category and the unknown bucket",
        ),
    ],
)
def test_unknown_other_needs_an_encoding_and_a_free_name(feature: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DatasetSpec.model_validate(minimal_spec(features=[feature]))


def test_transform_fingerprint_changes_with_features_and_fit_version_only() -> None:
    # Given a spec, the same spec with another threshold, a bumped fit_version and a changed feature
    base = DatasetSpec.model_validate(minimal_spec())
    other_threshold = DatasetSpec.model_validate(minimal_spec(confidence_threshold=0.5))
    refit = DatasetSpec.model_validate(minimal_spec(fit_version=2))
    scaled = DatasetSpec.model_validate(
        minimal_spec(features=[{"name": "priority", "type": "numeric", "scaling": "minmax"}])
    )

    # Then only what the fitted state depends on changes the fingerprint
    assert transform_fingerprint(base) == transform_fingerprint(other_threshold)
    assert len({transform_fingerprint(base), transform_fingerprint(refit), transform_fingerprint(scaled)}) == 3


# ------------------------------------------------------------------- required columns
def test_required_columns_of_the_demo_spec_are_ordered_and_deduplicated() -> None:
    # Given the demo spec, whose model reads the display column again
    spec = DatasetSpec.model_validate(demo_spec_dict())

    # When its required columns are listed
    columns = spec.required_columns

    # Then they come id, display, event time, features, model text, each once
    assert columns == [
        "review_id",
        "review_text",
        "product_category",
        "reviewed_at",
        "helpful_votes",
        "price",
        "verified_purchase",
    ]


def test_required_columns_use_source_columns_and_the_model_text_column() -> None:
    # Given a spec without an event time column, a renamed feature, a feature reusing the id column,
    # and a model reading its own text column
    spec = DatasetSpec.model_validate(
        minimal_spec(
            features=[
                {"name": "priority", "column": "Prio", "type": "numeric"},
                {"name": "ticket", "column": "id", "type": "categorical"},
            ],
            model={**MODEL, "text_column": "subject"},
        )
    )

    # When its required columns are listed
    # Then source columns replace feature names, duplicates keep their first place, and the model's column is last
    assert spec.required_columns == ["id", "body", "Prio", "subject"]


MODEL = {"s3_uri": "s3://bucket/config/models/m.joblib", "classes": ["bug", "question"]}


def test_a_tabular_model_reads_its_input_columns() -> None:
    # Given a model reading two columns, one of them also a feature's
    spec = DatasetSpec.model_validate(minimal_spec(model={**MODEL, "input_columns": ["priority", "age"]}))
    # Then the file must have both
    assert spec.required_columns == ["id", "body", "priority", "age"]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (MODEL, "set exactly one of text_column and input_columns"),
        ({**MODEL, "text_column": "t", "input_columns": ["a"]}, "set exactly one of text_column and input_columns"),
        ({**MODEL, "text_column": "t", "classes": ["bug", "bug"]}, "model.classes must be unique"),
        ({**MODEL, "text_column": "t", "class_labels": {"2": "bug"}}, "maps ['2'], which are not in model.classes"),
        ({**MODEL, "text_column": "t", "sha256": "abc"}, "sha256"),
    ],
)
def test_model_section_errors_say_what_is_allowed(model: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        DatasetSpec.model_validate(minimal_spec(model=model))


def test_model_classes_must_map_to_labels() -> None:
    # Given a model with integer classes 0/1 and a spec whose labels are words
    model = {**MODEL, "text_column": "t", "classes": ["0", "1"]}
    # When it is validated without a mapping / Then the error names the classes and the way out
    with pytest.raises(ValidationError, match=r"'0' \(label '0'\), '1' \(label '1'\) not among labels"):
        DatasetSpec.model_validate(minimal_spec(model=model))
    # And with class_labels the classes map onto the labels
    mapped = DatasetSpec.model_validate(minimal_spec(model={**model, "class_labels": {"0": "bug", "1": "question"}}))
    assert mapped.model is not None and mapped.model.label_of("1") == "question"


# -------------------------------------------------------------------- output features
def test_output_features_of_the_demo_spec() -> None:
    # Given the demo spec (one-hot, two numeric, one ordinal feature)
    spec = DatasetSpec.model_validate(demo_spec_dict())

    # When its Feature Store columns are listed
    columns = output_features(spec)

    # Then one-hot expands per category in order, numeric is Fractional, ordinal is Integral
    assert columns == [
        ("product_category__books", "Integral"),
        ("product_category__electronics", "Integral"),
        ("product_category__home", "Integral"),
        ("product_category__toys", "Integral"),
        ("helpful_votes", "Fractional"),
        ("price", "Fractional"),
        ("verified_purchase", "Integral"),
    ]


def test_unencoded_categorical_is_a_string_column() -> None:
    # Given a categorical feature with no encoding
    spec = DatasetSpec.model_validate(minimal_spec(features=[{"name": "team", "type": "categorical"}]))

    # When its Feature Store columns are listed / Then it stays one String column
    assert output_features(spec) == [("team", "String")]


def test_duplicate_categories_are_rejected() -> None:
    # Given a one-hot feature that lists a category twice (two columns would share a name)
    raw = minimal_spec(
        features=[{"name": "team", "type": "categorical", "encoding": "onehot", "categories": ["a", "b", "a"]}]
    )
    # When it is validated / Then the error names the feature
    with pytest.raises(ValidationError, match="feature 'team': categories must be unique"):
        DatasetSpec.model_validate(raw)


@pytest.mark.parametrize("category", ["home & garden", "x" * 60, "ends-"])
def test_one_hot_columns_must_be_valid_feature_store_names(category: str) -> None:
    # Given a one-hot category that makes an invalid Feature Store column name
    raw = minimal_spec(
        features=[{"name": "team", "type": "categorical", "encoding": "onehot", "categories": ["ok", category]}]
    )
    # When it is validated / Then the error names the offending column
    with pytest.raises(ValidationError, match="not valid Feature Store feature names"):
        DatasetSpec.model_validate(raw)
