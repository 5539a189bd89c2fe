"""`labelflow init`'s inference (one decision per column, with its reason) and `validate`'s data checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from labelflow.formats import ResolvedInput
from labelflow.models.spec import DatasetSpec, InputSpec
from labelflow_local import onboarding
from labelflow_local.onboarding import (
    CATEGORY_CAP,
    Inferred,
    ModelInfo,
    OnboardingError,
    check_data,
    infer_spec,
    map_classes,
)
from labelflow_local.sampling import Sample
from tests.conftest import ROOT

LABELS = ["bad", "good"]
SHA = "0" * 64


def sample_of(rows: list[dict[str, Any]], name: str = "data.csv") -> Sample:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return Sample(Path(name), ResolvedInput(format="csv", delimiter=","), columns, rows, True)


def rows_with(count: int = 40, /, **columns: Any) -> list[dict[str, Any]]:
    """`count` rows with an id, and each extra column from a function of the row number."""
    return [{"id": f"r{i}", **{name: make(i) for name, make in columns.items()}} for i in range(count)]


def decisions(inferred: Inferred) -> dict[str, tuple[str, str]]:
    return {d.column: (d.role, d.why) for d in inferred.decisions}


def feature(inferred: Inferred, name: str) -> dict[str, Any]:
    return next(f.model_dump(exclude_defaults=True) for f in inferred.spec.features if f.name == name)


def model_info(classes: list[str], columns: list[str] | None = None) -> ModelInfo:
    return ModelInfo(Path("m.joblib"), SHA, "Pipeline", classes, columns)


# --- column kinds -----------------------------------------------------------------------------------------


def test_numbers_become_numeric_features_imputed_by_median_and_standard_scaled() -> None:
    # Given a numeric column with a gap
    rows = rows_with(price=lambda i: None if i == 3 else f"{i * 1.5}")
    # When the spec is inferred
    inferred = infer_spec(sample_of(rows), "shop", LABELS)
    # Then price is a numeric feature, and the reason counts the gap
    assert feature(inferred, "price") == {"name": "price", "type": "numeric", "impute": "median", "scaling": "standard"}
    assert decisions(inferred)["price"] == ("numeric feature", "impute median, scale standard (1 of 40 missing)")


def test_a_few_placeholder_tokens_keep_a_column_numeric_and_are_called_out() -> None:
    # Given a numeric column where two rows say "NA"
    rows = rows_with(weight=lambda i: "NA" if i in (1, 2) else str(i))
    # When the spec is inferred / Then it is numeric, and the reason says a run rejects those rows
    role, why = decisions(infer_spec(sample_of(rows), "shop", LABELS))["weight"]
    assert role == "numeric feature" and "2 rows hold 'NA', not numbers: a run rejects them" in why


def test_few_categories_are_one_hot_encoded_with_a_sorted_list() -> None:
    # Given a column of three repeated values
    rows = rows_with(color=lambda i: ("red", "green", "blue")[i % 3])
    # When the spec is inferred
    inferred = infer_spec(sample_of(rows), "shop", LABELS)
    # Then it is one-hot over its categories, imputed by the most frequent
    assert feature(inferred, "color") == {
        "name": "color",
        "type": "categorical",
        "impute": "most_frequent",
        "encoding": "onehot",
        "categories": ["blue", "green", "red"],
    }


def test_categories_unfit_for_column_names_or_too_many_for_one_hot_are_ordinal() -> None:
    # Given categories with spaces, and a column of 15 categories
    rows = rows_with(city=lambda i: ("New York", "Paris")[i % 2], code=lambda i: f"c{i % 15}")
    # When the spec is inferred
    inferred = infer_spec(sample_of(rows, "x.csv"), "shop", LABELS)
    # Then both are ordinal, each saying why
    assert feature(inferred, "city")["encoding"] == feature(inferred, "code")["encoding"] == "ordinal"
    assert "names unfit for columns" in decisions(inferred)["city"][1]
    assert "many categories" in decisions(inferred)["code"][1]


def test_many_categories_are_capped_with_an_other_bucket() -> None:
    # Given 30 categories over 400 rows, c0 the most frequent
    rows = rows_with(400, brand=lambda i: "c0" if i < 100 else f"c{i % 30}")
    # When the spec is inferred
    inferred = infer_spec(sample_of(rows), "shop", LABELS)
    brand = feature(inferred, "brand")
    # Then the list keeps the most frequent CATEGORY_CAP and sends the rest to "other"
    assert len(brand["categories"]) == CATEGORY_CAP and "c0" in brand["categories"]
    assert brand["unknown"] == "other" and brand["encoding"] == "ordinal"
    assert (
        f"the {CATEGORY_CAP} most frequent of 30 categories (75% of values), any other value -> 'other'"
        in decisions(inferred)["brand"][1]
    )


def test_text_and_image_uris_are_shown_to_reviewers_not_features() -> None:
    # Given free text and image URIs (one with a query string) beside a category
    rows = rows_with(
        review=lambda i: f"this thing number {i} was quite something to behold",
        photo=lambda i: f"s3://bucket/img/{i}.JPG" if i % 2 else f"https://cdn.example.com/{i}.png?w=200",
        kind=lambda i: ("a", "b")[i % 2],
    )
    # When the spec is inferred
    inferred = infer_spec(sample_of(rows), "shop", LABELS)
    # Then review and photo are the display columns, kind a feature
    assert inferred.spec.display_columns == ["review", "photo"]
    assert [f.name for f in inferred.spec.features] == ["kind"]
    assert decisions(inferred)["photo"][0] == "image (display)"
    assert decisions(inferred)["review"][0] == "text (display)"


def test_without_text_the_first_feature_columns_are_shown() -> None:
    # Given only numeric columns
    rows = rows_with(**{f"x{n}": (lambda i, n=n: str(i * n)) for n in range(1, 11)})
    # When the spec is inferred / Then the first few feature columns are shown, and the notes say so
    inferred = infer_spec(sample_of(rows), "shop", LABELS)
    assert inferred.spec.display_columns == [f"x{n}" for n in range(1, onboarding.DISPLAY_MAX + 1)]
    assert any(note.startswith("display_columns:") for note in inferred.notes)


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (lambda i: None, "empty in every sampled row"),
        (lambda i: "same", "the same value ('same') in every sampled row"),
        (lambda i: ("good", "bad")[i % 2], "holds the labels"),
        (lambda i: {"a": i}, "nested values"),
        (lambda i: f"user{i}@example.com", "40 distinct values in 40 rows: an identifier or free-form value"),
    ],
)
def test_columns_that_are_no_features_are_skipped_with_a_reason(values: Any, reason: str) -> None:
    # Given a column of one of those kinds, named so that nothing else claims it
    rows = rows_with(extra=values, n=lambda i: str(i))
    # When the spec is inferred
    role, why = decisions(infer_spec(sample_of(rows), "shop", LABELS, id_column="id"))["extra"]
    # Then it is skipped, saying why
    assert role == "skipped" and reason in why


def test_a_column_named_like_the_label_is_skipped_whatever_its_values() -> None:
    # Given a 0/1 column named target
    rows = rows_with(target=lambda i: str(i % 2), n=lambda i: str(i))
    # When the spec is inferred / Then it is no feature
    inferred = infer_spec(sample_of(rows), "shop", LABELS)
    assert decisions(inferred)["target"][0] == "skipped" and "target" not in {f.name for f in inferred.spec.features}


def test_column_names_become_feature_names_with_the_source_column_kept() -> None:
    # Given columns whose names are not identifiers, or are reserved
    rows = rows_with(**{"mean radius": lambda i: str(i), "2nd": lambda i: str(i), "run_id": lambda i: str(i % 3)})
    # When the spec is inferred
    features = {f.name: f.column for f in infer_spec(sample_of(rows), "shop", LABELS).spec.features}
    # Then each feature has a valid name and reads its original column
    assert features == {"mean_radius": "mean radius", "f_2nd": "2nd", "run_id_value": "run_id"}


# --- record id and event time -----------------------------------------------------------------------------


def test_the_id_is_the_first_unique_non_empty_column_named_like_an_id() -> None:
    # Given a unique "sku" first, then a unique "order_id"
    rows = [{"sku": f"s{i}", "order_id": f"o{i}", "n": str(i % 4)} for i in range(20)]
    # When the spec is inferred / Then the column named like an id wins
    inferred = infer_spec(sample_of(rows), "shop", LABELS)
    assert inferred.spec.record_id_column == "order_id"
    assert decisions(inferred)["sku"] == (
        "skipped",
        "20 distinct values in 20 rows: an identifier or free-form value, not a feature",
    )


def test_without_an_id_name_a_unique_token_column_is_the_id_and_the_reason_says_so() -> None:
    # Given no column named like an id, but unique codes
    rows = [{"sku": f"s-{i}", "n": str(i)} for i in range(20)]
    # When the spec is inferred / Then sku is the id, and the reason points at --id-column
    inferred = infer_spec(sample_of(rows), "shop", LABELS)
    assert inferred.spec.record_id_column == "sku" and "--id-column" in decisions(inferred)["sku"][1]


def test_no_id_column_is_an_error_that_says_what_to_do() -> None:
    # Given only repeated values and unique numbers
    rows = [{"n": str(i), "kind": ("a", "b")[i % 2]} for i in range(20)]
    # When the spec is inferred / Then the error says to pass --id-column or add one
    with pytest.raises(OnboardingError, match="pass --id-column COLUMN or add an id column"):
        infer_spec(sample_of(rows), "shop", LABELS)


@pytest.mark.parametrize(
    ("column", "message"),
    [("nope", "is not a column of the data"), ("kind", "0 empty and 18 repeated values in 20 rows of data.csv")],
)
def test_an_unusable_id_column_is_refused(column: str, message: str) -> None:
    # Given a requested id column that does not exist, or repeats
    rows = [{"n": str(i), "kind": ("a", "b")[i % 2]} for i in range(20)]
    # When the spec is inferred / Then the error names it and why
    with pytest.raises(OnboardingError, match=message):
        infer_spec(sample_of(rows), "shop", LABELS, id_column=column)


def test_iso_timestamps_make_the_event_time_and_other_time_columns_are_skipped() -> None:
    # Given two complete timestamp columns, one named like a time
    rows = rows_with(
        first_seen=lambda i: f"2024-02-{i % 28 + 1:02d}",
        updated_at=lambda i: f"2024-03-01T10:{i:02d}:00Z",
    )
    # When the spec is inferred
    inferred = infer_spec(sample_of(rows), "shop", LABELS)
    # Then the time-named one is the event time, the other is skipped
    assert inferred.spec.event_time_column == "updated_at"
    assert decisions(inferred)["first_seen"] == ("skipped", "timestamps too; updated_at is the event time")


def test_epoch_seconds_are_an_event_time_only_in_a_column_named_like_a_time() -> None:
    # Given epoch seconds in "created_ts" and the same numbers in "amount"
    rows = rows_with(created_ts=lambda i: str(1_700_000_000 + i), amount=lambda i: str(1_700_000_000 + i))
    # When the spec is inferred
    inferred = infer_spec(sample_of(rows), "shop", LABELS)
    # Then created_ts is the event time and amount a number
    assert inferred.spec.event_time_column == "created_ts"
    assert decisions(inferred)["created_ts"] == ("event time", "epoch seconds in every sampled row")
    assert decisions(inferred)["amount"][0] == "numeric feature"


def test_a_timestamp_column_with_gaps_is_not_the_event_time() -> None:
    # Given a time column empty in one row
    rows = rows_with(seen_at=lambda i: None if i == 5 else f"2024-03-01T10:{i:02d}:00")
    # When the spec is inferred / Then there is no event time, and the reason says rows would be rejected
    inferred = infer_spec(sample_of(rows), "shop", LABELS)
    assert inferred.spec.event_time_column is None
    assert "1 sampled rows have none" in decisions(inferred)["seen_at"][1]
    assert "no event-time column: records take the time their file landed" in inferred.notes


# --- input section ----------------------------------------------------------------------------------------


def test_the_input_section_records_what_detection_might_not_find_again() -> None:
    # Given a semicolon cp1252 file without an extension
    rows = rows_with(n=lambda i: str(i))
    read = ResolvedInput(format="csv", delimiter=";", encoding="cp1252")
    sample = Sample(Path("export"), read, ["id", "n"], rows, True, InputSpec(encoding="cp1252"))
    # When the spec is inferred
    inferred = infer_spec(sample, "shop", LABELS)
    # Then its input section names format, delimiter and encoding (and leaves CSV values free to hold line breaks:
    # a sample cannot tell that of the whole file), and the report says the encoding was guessed
    assert inferred.spec.input.model_dump() == {
        "format": "csv",
        "delimiter": ";",
        "encoding": "cp1252",
        "newlines_in_values": True,
    }
    assert any(note.startswith("input.encoding: cp1252 (the file is not UTF-8)") for note in inferred.notes)


def test_an_input_section_that_detection_finds_again_is_left_out() -> None:
    # Given a comma-separated UTF-8 .csv sample / When the spec is inferred
    spec = infer_spec(sample_of(rows_with(n=lambda i: str(i))), "shop", LABELS).spec
    # Then the written spec has no input section: planning detects the same
    assert spec.input == InputSpec() and '"input"' not in onboarding.spec_json(spec)


# --- arguments --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["My_Data", "2024-sales", "a--b", "x" * 64])
def test_dataset_names_follow_the_spec_rule(name: str) -> None:
    # Given a name outside the rule / When it is checked / Then the error quotes it and states the rule
    with pytest.raises(OnboardingError, match="lowercase letters, digits and single hyphens") as caught:
        onboarding.check_dataset_name(name)
    assert repr(name) in str(caught.value)


@pytest.mark.parametrize("text", ["good", "good,good", " , "])
def test_labels_need_two_different_ones(text: str) -> None:
    # Given too few labels / When they are parsed / Then the error says what is needed
    with pytest.raises(OnboardingError, match="at least two different labels"):
        onboarding.parse_labels(text)


def test_an_empty_file_has_no_spec() -> None:
    # Given a header and no rows / When the spec is inferred / Then the error says so
    with pytest.raises(OnboardingError, match="no data rows"):
        infer_spec(Sample(Path("e.csv"), ResolvedInput(format="csv"), ["id"], [], True), "shop", LABELS)


# --- the model --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("classes", "labels", "mapping"),
    [
        (["bad", "good"], ["bad", "good", "meh"], {}),
        (["Bad", "GOOD"], ["bad", "good"], {"Bad": "bad", "GOOD": "good"}),
        (["not_spam", "spam"], ["not spam", "spam"], {"not_spam": "not spam"}),
        (["0", "1", "2"], ["low", "mid", "high"], {"0": "low", "1": "mid", "2": "high"}),
    ],
)
def test_model_classes_map_onto_the_labels(classes: list[str], labels: list[str], mapping: dict[str, str]) -> None:
    # Given classes spelled like the labels, differently cased, or numbered / When mapped / Then the mapping is that
    assert map_classes(classes, labels)[0] == mapping


@pytest.mark.parametrize(
    ("classes", "labels"), [(["0", "1"], ["a", "b", "c"]), (["cat", "dog"], ["a", "b"]), (["A", "a"], ["a", "b"])]
)
def test_classes_that_do_not_map_are_refused_in_one_line(classes: list[str], labels: list[str]) -> None:
    # Given classes with no unambiguous mapping / When mapped / Then the error names both sides
    with pytest.raises(OnboardingError, match="do not map onto --labels") as caught:
        map_classes(classes, labels)
    assert "\n" not in str(caught.value)


def test_a_tabular_model_reads_its_feature_names_and_numeric_inputs_stay_numeric() -> None:
    # Given a model fitted on a DataFrame of n and flag, where flag is constant in the sample
    rows = rows_with(n=lambda i: str(i), flag=lambda i: "1")
    info = model_info(["0", "1"], ["n", "flag"])
    # When the spec is inferred with it
    inferred = infer_spec(sample_of(rows), "shop", ["no", "yes"], model=info)
    model = inferred.spec.model
    # Then the model reads those columns, its classes map by position, and flag reaches it as a number
    assert model is not None and model.input_columns == ["n", "flag"] and model.class_labels == {"0": "no", "1": "yes"}
    assert model.s3_uri == "s3://labelflow-demo/config/models/m.joblib" and model.sha256 == SHA
    assert decisions(inferred)["flag"][0] == "numeric feature"


def test_a_text_model_reads_the_text_column_and_the_uri_can_be_set() -> None:
    # Given a text model (no feature names) and a text column
    rows = rows_with(body=lambda i: f"a long enough review text number {i} with several words")
    # When the spec is inferred with a model URI
    uri = "s3://my-bucket/config/models/m.joblib"
    model = infer_spec(sample_of(rows), "shop", LABELS, model=model_info(LABELS), model_uri=uri).spec.model
    # Then the model reads the text column from that URI
    assert model is not None and model.text_column == "body" and model.s3_uri == uri


@pytest.mark.parametrize(
    ("info", "message"),
    [
        (model_info(LABELS), "has no feature_names_in_"),
        (model_info(LABELS, ["n", "gone"]), "reads columns the data lacks: gone"),
    ],
)
def test_a_model_whose_inputs_cannot_be_found_is_refused(info: ModelInfo, message: str) -> None:
    # Given numeric data and a model without feature names, or reading a missing column
    rows = rows_with(n=lambda i: str(i))
    # When the spec is inferred / Then the error says why
    with pytest.raises(OnboardingError, match=message):
        infer_spec(sample_of(rows), "shop", LABELS, model=info)


def test_the_demo_model_is_inspected_in_the_processing_venv() -> None:
    # Given the demo's scikit-learn pipeline (a joblib file)
    # When it is inspected
    info = onboarding.inspect_model(ROOT / "demo/model/sentiment.joblib")
    # Then its classes are read, it has no feature names (a text pipeline), and its sha256 is the spec's
    spec = DatasetSpec.model_validate_json((ROOT / "demo/datasets/reviews.json").read_bytes())
    assert spec.model is not None
    assert (info.classes, info.feature_names_in, info.sha256) == (spec.model.classes, None, spec.model.sha256)


def test_a_file_that_is_no_model_is_refused(tmp_path: Path) -> None:
    # Given a file that is not a joblib pickle
    path = tmp_path / "model.joblib"
    path.write_text("not a pickle")
    # When it is inspected / Then the error says it cannot be loaded
    with pytest.raises(OnboardingError, match="cannot be loaded with scikit-learn"):
        onboarding.inspect_model(path)


# --- what init writes -------------------------------------------------------------------------------------


def test_init_on_the_demo_data_finds_the_demo_spec_decisions() -> None:
    # Given the demo's reviews file
    from labelflow_local.sampling import read_sample

    # When a spec is inferred for it
    inferred = infer_spec(read_sample(ROOT / "demo/data/reviews.csv"), "reviews", ["negative", "positive"])
    spec = inferred.spec
    # Then it makes the demo spec's choices for id, time, display and features
    assert (spec.record_id_column, spec.event_time_column) == ("review_id", "reviewed_at")
    assert spec.display_columns == ["review_text"]
    assert {f.name: f.type for f in spec.features} == {
        "product_category": "categorical",
        "helpful_votes": "numeric",
        "price": "numeric",
        "verified_purchase": "categorical",
    }
    # And the written file holds only what differs from the defaults, and is a valid spec again
    text = onboarding.spec_json(spec)
    assert '"labeling"' not in text and DatasetSpec.model_validate_json(text) == spec
    assert len(onboarding.report(inferred, Path("reviews.json")).splitlines()) == 1 + len(spec.features) + 3 + 1


# --- validate with data -----------------------------------------------------------------------------------


def demo_spec(**changes: Any) -> DatasetSpec:
    body = DatasetSpec.model_validate_json((ROOT / "demo/datasets/reviews.json").read_bytes()).model_dump()
    return DatasetSpec.model_validate({**body, **changes})


def test_the_demo_file_fits_the_demo_spec() -> None:
    # Given the demo data and spec / When checked / Then nothing is found
    from labelflow_local.sampling import read_sample

    assert check_data(demo_spec(), read_sample(ROOT / "demo/data/reviews.csv")) == []


def test_each_problem_of_a_file_is_one_finding() -> None:
    # Given rows with a missing column, repeated and empty ids, bad times, text in a number, unknown categories
    rows = [
        {
            "review_id": "r1" if i < 3 else (None if i == 3 else f"r{i}"),
            "reviewed_at": "yesterday" if i == 4 else "2024-01-01T00:00:00Z",
            "product_category": "garden" if i % 2 else "books",
            "helpful_votes": "many" if i == 5 else str(i),
            "price": "1.0",
            "verified_purchase": "yes",
        }
        for i in range(10)
    ]
    # When checked against the demo spec
    findings = check_data(demo_spec(), sample_of(rows))
    # Then each problem is named once, in one line
    texts = [f.text for f in findings if f.problem]
    assert texts[0].startswith("missing columns the spec reads: review_text")
    assert "record_id_column review_id: 1 empty and 2 repeated ids" in texts[1]
    assert (
        "event_time_column reviewed_at: 0 empty and 1 neither ISO-8601 nor epoch seconds (e.g. 'yesterday')" in texts[2]
    )
    assert texts[3].startswith("features[1] helpful_votes: 1 values are not numbers (e.g. 'many')")
    notes = [f.text for f in findings if not f.problem]
    assert notes == [
        "features[0] product_category: 50.0% of values are not among its categories: "
        "ignored (one-hot all 0, ordinal -1)"
    ]
    assert all("\n" not in f.text for f in findings)


def test_mostly_ignored_categories_are_a_problem_other_buckets_a_note_and_gaps_without_impute_a_problem() -> None:
    # Given two category columns almost all unknown, one ignoring them, one counting them as other,
    # and a feature without impute that has gaps
    rows = rows_with(kind=lambda i: "x" if i else "a", n=lambda i: None if i == 2 else str(i))
    categorical = {"type": "categorical", "column": "kind", "encoding": "ordinal", "categories": ["a"]}
    spec = DatasetSpec.model_validate(
        {
            "dataset": "shop",
            "record_id_column": "id",
            "display_columns": ["kind"],
            "labels": LABELS,
            "features": [
                {"name": "ignored", **categorical},
                {"name": "bucketed", **categorical, "unknown": "other"},
                {"name": "n", "type": "numeric"},
            ],
        }
    )
    # When checked
    findings = check_data(spec, sample_of(rows))
    # Then ignoring most values and gaps without impute are problems; values counted as other are a note
    assert [(f.problem, f.text) for f in findings] == [
        (
            True,
            "features[0] ignored: 97.5% of values are not among its categories: ignored (one-hot all 0, ordinal -1); "
            "wrong column or categories?",
        ),
        (False, "features[1] bucketed: 97.5% of values are not among its categories: 'other'"),
        (True, "features[2] n: 1 empty values and no impute: a run rejects those rows"),
    ]
