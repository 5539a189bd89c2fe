"""processing/preprocess.py end to end: transforms, output shape, row rejections, fatal inputs, the model."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from labelflow.models.spec import DatasetSpec, output_features  # conftest puts the layer on sys.path if needed
from tests.unit.processing.conftest import DEMO, HEADER, LABELS, Job, csv_text, demo_spec, in_image, make_spec

PYTHON_TYPES = {"Integral": int, "Fractional": float, "String": str}


def assert_output_features(spec: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Every record's features are exactly output_features(spec): names, order and types."""
    expected = output_features(DatasetSpec.model_validate(spec))
    for record in records:
        assert list(record["features"]) == [name for name, _ in expected]
        for name, feature_type in expected:
            assert type(record["features"][name]) is PYTHON_TYPES[feature_type]


# --- numeric transforms -----------------------------------------------------------------------------------


def test_numeric_mean_impute_and_standard_scaling(job: Job) -> None:
    # Given values 1, 2, 3 and one missing value imputed with the mean (2)
    spec = make_spec([{"name": "num", "type": "numeric", "impute": "mean", "scaling": "standard"}])
    data = csv_text(*(f"{i},2026-01-01T00:00:00Z,t,{v}," for i, v in enumerate(["1", "2", "3", ""])))

    # When the job runs
    outcome = job.run(data, spec)

    # Then the imputed column [1, 2, 3, 2] is standardised with its population std (sqrt(0.5))
    assert outcome.code == 0, outcome.message
    assert [r["features"]["num"] for r in outcome.records] == [-1.414214, 0.0, 1.414214, 0.0]
    # And the state records what was fitted on the observed values and the imputed column
    fitted = outcome.state["features"]["num"]
    assert fitted["impute_value"] == 2.0
    assert fitted["fit"] == {
        "count": 3,
        "missing": 1,
        "mean": 2.0,
        "std": pytest.approx(math.sqrt(2 / 3)),
        "min": 1.0,
        "max": 3.0,
    }
    assert fitted["scaler"]["std"] == pytest.approx(math.sqrt(0.5))


def test_numeric_median_impute_and_minmax_scaling(job: Job) -> None:
    # Given values 1, 3, 10 and a missing value imputed with the median (3)
    spec = make_spec([{"name": "num", "type": "numeric", "impute": "median", "scaling": "minmax"}])
    data = csv_text(*(f"{i},1767225600,t,{v}," for i, v in enumerate(["1", "3", "10", " "])))

    # When the job runs
    outcome = job.run(data, spec)

    # Then values are scaled into [0, 1] over the range 1..10 and rounded to 6 decimals
    assert [r["features"]["num"] for r in outcome.records] == [0.0, 0.222222, 1.0, 0.222222]
    assert outcome.state["features"]["num"]["impute_value"] == 3.0
    assert (outcome.state["features"]["num"]["scaler"]["min"], outcome.state["features"]["num"]["scaler"]["max"]) == (
        1,
        10,
    )


@pytest.mark.parametrize(
    ("impute", "fill_value", "expected"),
    [("most_frequent", None, 5.0), ("constant", -1.5, -1.5), ("constant", "9", 9.0), ("median", None, 5.0)],
)
def test_numeric_most_frequent_constant_and_median_impute_without_scaling(
    job: Job, impute: str, fill_value: Any, expected: float
) -> None:
    # Given a column with a repeated value and a missing one, and no scaling
    spec = make_spec([{"name": "num", "type": "numeric", "impute": impute, "fill_value": fill_value}])
    data = csv_text("a,1767225600,t,5,", "b,1767225600,t,7.1234567,", "c,1767225600,t,5,", "d,1767225600,t,,")

    # When the job runs
    outcome = job.run(data, spec)

    # Then raw values pass through (rounded) and the missing one gets the imputed value
    assert [r["features"]["num"] for r in outcome.records] == [5.0, 7.123457, 5.0, expected]


@pytest.mark.parametrize("scaling", ["standard", "minmax"])
def test_numeric_constant_column_scales_to_zero(job: Job, scaling: str) -> None:
    # Given a column where every value is the same (std 0, range 0)
    spec = make_spec([{"name": "num", "type": "numeric", "scaling": scaling}])
    data = csv_text("a,1767225600,t,0.1,", "b,1767225600,t,0.1,", "c,1767225600,t,0.1,")

    # When the job runs
    outcome = job.run(data, spec)

    # Then every scaled value is 0.0 instead of a division by zero
    assert [r["features"]["num"] for r in outcome.records] == [0.0, 0.0, 0.0]


def test_numbers_are_floats_rounded_to_6_places_without_negative_zero(job: Job) -> None:
    # Given integral, tiny negative, huge and precise values
    spec = make_spec([{"name": "num", "type": "numeric"}])
    values = ["3", "-0.0000001", "-0", "1e300", "-123456.1234567", "12345678901.5", "0.1"]
    data = csv_text(*(f"r{i},1767225600,t,{v}," for i, v in enumerate(values)))

    # When the job runs
    outcome = job.run(data, spec)

    # Then each is a JSON float equal to round(value, 6), with -0.0 written as 0.0
    numbers = [r["features"]["num"] for r in outcome.records]
    assert numbers == [3.0, 0.0, 0.0, 1e300, -123456.123457, 12345678901.5, 0.1]
    assert all(type(n) is float for n in numbers)
    assert all(math.copysign(1, n) == 1 for n in numbers[1:3])


# --- categorical transforms -------------------------------------------------------------------------------


def test_onehot_and_ordinal_names_and_types_match_output_features(job: Job) -> None:
    # Given one feature of each kind, including a one-hot one with an unknown value in the input
    features: list[dict[str, Any]] = [
        {"name": "num", "type": "numeric", "scaling": "standard"},
        {"name": "cat", "type": "categorical", "encoding": "onehot", "categories": ["red", "green", "blue"]},
        {"name": "size", "column": "text", "type": "categorical", "encoding": "ordinal", "categories": ["s", "m"]},
    ]
    spec = make_spec(features, display_columns=["id"])
    data = csv_text("a,1767225600,m,1,green", "b,1767225600,xl,2,purple", "c,1767225600,s,3,red")

    # When the job runs
    outcome = job.run(data, spec)

    # Then the feature columns are exactly output_features() of the spec, in order and with matching types
    assert_output_features(spec, outcome.records)
    # And one-hot sets the matching category, an unknown value gets all zeros, ordinal unknown gets -1
    assert [r["features"]["cat__green"] for r in outcome.records] == [1, 0, 0]
    assert [r["features"]["cat__red"] for r in outcome.records] == [0, 0, 1]
    assert [sum(r["features"][f"cat__{c}"] for c in ("red", "green", "blue")) for r in outcome.records] == [1, 0, 1]
    assert [r["features"]["size"] for r in outcome.records] == [1, -1, 0]
    assert outcome.state["features"]["cat"]["fit"]["unknown"] == 1


def test_unknown_other_gets_its_own_bucket(job: Job) -> None:
    # Given a one-hot and an ordinal feature whose unknown values go to "other"
    features: list[dict[str, Any]] = [
        {"name": "cat", "type": "categorical", "encoding": "onehot", "categories": ["x", "y"], "unknown": "other"},
        {
            "name": "size",
            "column": "text",
            "type": "categorical",
            "encoding": "ordinal",
            "categories": ["s", "m"],
            "unknown": "other",
        },
    ]
    spec = make_spec(features, display_columns=["id"])
    data = csv_text("a,1767225600,m,1,y", "b,1767225600,xl,2,z")

    # When the job runs
    outcome = job.run(data, spec)

    # Then the unknown value sets <name>__other and its ordinal code is len(categories)
    assert_output_features(spec, outcome.records)
    assert [r["features"] for r in outcome.records] == [
        {"cat__x": 0, "cat__y": 1, "cat__other": 0, "size": 1},
        {"cat__x": 0, "cat__y": 0, "cat__other": 1, "size": 2},
    ]


def test_categorical_impute_most_frequent_and_constant(job: Job) -> None:
    # Given missing values in an ordinal feature (most frequent) and a plain string feature (constant)
    features: list[dict[str, Any]] = [
        {
            "name": "cat",
            "type": "categorical",
            "impute": "most_frequent",
            "encoding": "ordinal",
            "categories": ["x", "y"],
        },
        {"name": "tag", "column": "num", "type": "categorical", "impute": "constant", "fill_value": "unknown"},
    ]
    spec = make_spec(features)
    data = csv_text("a,1767225600,t,hello,y", "b,1767225600,t,,x", "c,1767225600,t,world,y", "d,1767225600,t,,")

    # When the job runs
    outcome = job.run(data, spec)

    # Then the ordinal gets the code of the most frequent value and the string the constant, as-is
    assert [r["features"]["cat"] for r in outcome.records] == [1, 0, 1, 1]
    assert [r["features"]["tag"] for r in outcome.records] == ["hello", "unknown", "world", "unknown"]
    assert outcome.state["features"]["cat"]["impute_value"] == "y"


def test_most_frequent_ties_go_to_the_smallest_value(job: Job) -> None:
    # Given two values seen twice each, the larger one first
    spec = make_spec([{"name": "cat", "type": "categorical", "impute": "most_frequent"}])
    data = csv_text(
        "a,1767225600,t,1,b", "b,1767225600,t,1,b", "c,1767225600,t,1,a", "d,1767225600,t,1,a", "e,1767225600,t,1,"
    )

    # When the job runs / Then the tie is broken by value, not by order
    assert job.run(data, spec).records[-1]["features"]["cat"] == "a"


# --- the record -------------------------------------------------------------------------------------------


def test_a_record_has_its_keys_in_order_and_display_holds_the_display_columns(job: Job) -> None:
    # Given two display columns, one of them empty in a row, with text that needs JSON escaping
    spec = make_spec(display_columns=["text", "cat"])
    tricky = 'a "quote", a back\\slash, a tab\t, a bell \x07 and é'
    rows = [["a", "1767225600", tricky, "1", "x"], ["b", "1767225600", "", "2", "y"]]
    path = job.root / "written.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([HEADER.split(","), *rows])

    # When the job runs
    outcome = job.run(path.read_text(encoding="utf-8"), spec)

    # Then each record has record_id, event_time, features, display, prediction in that order
    first, second = outcome.records
    assert list(first) == ["record_id", "event_time", "features", "display", "prediction"]
    assert first["event_time"] == "2026-01-01T00:00:00Z"
    # And display maps each display column to its text ("" when empty), escaped and read back exactly
    assert first["display"] == {"text": tricky, "cat": "x"}
    assert second["display"] == {"text": "", "cat": "y"}


# --- event time -------------------------------------------------------------------------------------------

PARSE_TIMES = """
import json, sys
from labelflow_processing.values import parse_event_time
out = []
for raw in json.loads(sys.argv[1]):
    try:
        out.append(parse_event_time(raw))
    except ValueError:
        out.append(None)
print(json.dumps(out))
"""


def parse_times(python: str, texts: list[str]) -> list[str | None]:
    done = subprocess.run(
        [python, "-c", PARSE_TIMES, json.dumps(texts)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(DEMO.parent / "processing"), "TZ": "America/New_York"},
    )
    assert done.returncode == 0, done.stderr
    result: list[str | None] = json.loads(done.stdout)
    return result


def test_parse_event_time_normalises_to_utc(image_python: str) -> None:
    # Given ISO-8601 times (with or without offset) and epoch seconds, in a local time zone other than UTC
    cases = {
        "2026-01-02T03:04:05Z": "2026-01-02T03:04:05Z",
        "2026-01-02T03:04:05.987654Z": "2026-01-02T03:04:05Z",
        "2026-01-02T05:04:05+02:00": "2026-01-02T03:04:05Z",
        "2026-01-01T22:04:05-05:00": "2026-01-02T03:04:05Z",
        "2026-01-02 03:04:05": "2026-01-02T03:04:05Z",
        "2026-01-02": "2026-01-02T00:00:00Z",
        "1767323045": "2026-01-02T03:04:05Z",
        " 1767323045.75 ": "2026-01-02T03:04:05Z",
    }
    # When they are parsed / Then they come out in UTC with a Z suffix and whole seconds (naive means UTC)
    assert parse_times(image_python, list(cases)) == list(cases.values())


def test_parse_event_time_rejects_garbage(image_python: str) -> None:
    # Given text that is not a time / When it is parsed / Then it is refused
    garbage = ["", "yesterday", "2026-13-01T00:00:00Z", "1e400", "99999999999999999999"]
    assert parse_times(image_python, garbage) == [None] * len(garbage)


def test_a_batch_mixing_time_forms_parses_each_value(job: Job) -> None:
    # Given ISO times with and without offsets, epoch seconds and a bad value in one file
    times = ["2026-01-02T03:04:05Z", "2026-01-02 03:04:05", "1767323045", "2026-01-02T05:04:05+02:00", "soon"]
    data = csv_text(*(f"r{i},{t},t,1,x" for i, t in enumerate(times)))

    # When the job runs
    outcome = job.run(data, make_spec())

    # Then every good one is the same instant and the bad one is rejected
    assert [r["event_time"] for r in outcome.records] == ["2026-01-02T03:04:05Z"] * 4
    assert outcome.rejected == [{"line": 6, "record_id": "r4", "reason": "unparsable event time: 'soon'"}]


def test_default_event_time_applies_when_the_spec_has_no_event_time_column(job: Job) -> None:
    # Given a spec without an event time column and a default time with an offset
    spec = make_spec(event_time_column=None)

    # When the job runs with --default-event-time
    outcome = job.run(csv_text("a,junk,t,1,x"), spec, extra=["--default-event-time", "2026-03-01T12:00+01:00"])

    # Then every record carries the default, normalised to UTC (the ts column is ignored)
    assert outcome.code == 0, outcome.message
    assert [r["event_time"] for r in outcome.records] == ["2026-03-01T11:00:00Z"]


def test_missing_default_event_time_is_fatal(job: Job) -> None:
    # Given a spec without an event time column and no default / When the job runs
    outcome = job.run(csv_text("a,junk,t,1,x"), make_spec(event_time_column=None))

    # Then it fails with exit code 2 and says why
    assert outcome.code == 2
    assert "--default-event-time" in outcome.message


# --- model ------------------------------------------------------------------------------------------------
# Models are scikit-learn objects pickled by the processing image's scikit-learn, so these tests train them
# in the image's environment, as the deployed job would load them.

TRAIN_TEXT = """
import joblib, sys
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
texts = ["great fun", "great value", "bad", "bad and broken", "great", "broken"]
labels = ["positive", "positive", "negative", "negative", "positive", "negative"]
joblib.dump(make_pipeline(CountVectorizer(), LogisticRegression()).fit(texts, labels), sys.argv[1])
"""
TRAIN_TABULAR = """
import joblib, sys, pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OrdinalEncoder
frame = pd.DataFrame({"num": [1.0, 2.0, None, 8.0, 9.0, 10.0] * 5, "cat": ["x", "x", "y", "y", "y", "x"] * 5})
encode = make_column_transformer((OrdinalEncoder(), ["cat"]), remainder="passthrough")
model = make_pipeline(encode, HistGradientBoostingClassifier(max_iter=20, min_samples_leaf=2))
joblib.dump(model.fit(frame, [0, 0, 0, 1, 1, 1] * 5), sys.argv[1])
"""
TEXT_MODEL_SPEC = {"s3_uri": "s3://b/config/models/m.joblib", "text_column": "text", "classes": LABELS}
TABULAR_MODEL_SPEC = {
    "s3_uri": "s3://b/config/models/m.joblib",
    "input_columns": ["num", "cat"],
    "classes": ["0", "1"],
    "class_labels": {"0": "negative", "1": "positive"},
}


def train(python: str, script: str, path: Path) -> Path:
    subprocess.run([python, "-c", script, str(path)], check=True)
    return path


def test_a_scikit_learn_text_pipeline_labels_each_record(job: Job) -> None:
    # Given a text pipeline trained with the image's scikit-learn, and texts it has seen and not seen
    model = train(job.python, TRAIN_TEXT, job.root / "m.joblib")
    data = csv_text("a,1767225600,great fun,1,x", "b,1767225600,bad and broken,1,x", "c,1767225600,,1,x")

    # When the job runs in the image's environment
    outcome = job.run(data, make_spec(model=TEXT_MODEL_SPEC), model=model)

    # Then each record carries the pipeline's most probable label and its probability
    assert outcome.code == 0, outcome.message
    predictions = [r["prediction"] for r in outcome.records]
    assert [p["label"] for p in predictions[:2]] == ["positive", "negative"]
    assert all(0.5 <= p["confidence"] <= 1.0 and type(p["confidence"]) is float for p in predictions)
    assert outcome.stats["predicted_labels"]["positive"] + outcome.stats["predicted_labels"]["negative"] == 3
    # And stats.json records what was loaded
    assert outcome.stats["model"] == {
        "file": "m.joblib",
        "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "classes": LABELS,
    }


def test_a_tabular_pipeline_reads_numbers_as_numbers_and_maps_classes_to_labels(job: Job) -> None:
    # Given a tabular pipeline trained on a DataFrame (a number with gaps, a category) with integer classes
    model = train(job.python, TRAIN_TABULAR, job.root / "m.joblib")
    spec = make_spec(
        [{"name": "num", "type": "numeric", "impute": "mean"}, {"name": "cat", "type": "categorical"}],
        model=TABULAR_MODEL_SPEC,
    )
    data = csv_text("a,1767225600,t,1.5,x", "b,1767225600,t,9.5,y", "c,1767225600,t,,y")

    # When the job runs, shipped as SageMaker's model.tar.gz
    archive = job.root / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(model, arcname="model.joblib")
    outcome = job.run(data, spec, model=archive)

    # Then the model saw real numbers (NaN where missing) and its classes 0/1 became the spec's labels
    assert outcome.code == 0, outcome.message
    assert [r["prediction"]["label"] for r in outcome.records] == ["negative", "positive", "negative"]
    assert outcome.stats["model"]["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_model_classes_must_be_the_specs(job: Job) -> None:
    # Given a spec that declares other classes than the model has
    model = train(job.python, TRAIN_TEXT, job.root / "m.joblib")
    spec = make_spec(model={**TEXT_MODEL_SPEC, "classes": ["positive", "negative"]})

    # When the job runs / Then it is fatal, on one line naming both lists
    outcome = job.run(csv_text("a,1767225600,t,1,x"), spec, model=model)
    assert outcome.code == 2
    assert outcome.message == (
        "the model's classes ['negative', 'positive'] differ from the spec's model.classes ['positive', 'negative']"
    )


def test_a_pinned_model_refuses_another_file(job: Job) -> None:
    # Given a spec pinning a sha256 that is not the model file's
    model = train(job.python, TRAIN_TEXT, job.root / "m.joblib")
    spec = make_spec(model={**TEXT_MODEL_SPEC, "sha256": "0" * 64})
    # When the job runs / Then it refuses to load the file
    outcome = job.run(csv_text("a,1767225600,t,1,x"), spec, model=model)
    assert outcome.code == 2 and "the spec pins 000000" in outcome.message


def test_without_model_prediction_is_null(job: Job) -> None:
    # Given a spec without a model / When the job runs
    outcome = job.run(csv_text("a,1767225600,t,1,x"), make_spec())

    # Then records have no prediction and no label counts
    assert outcome.records[0]["prediction"] is None
    assert outcome.stats["predicted_labels"] == {}
    assert outcome.stats["model"] is None


def test_a_missing_model_file_is_fatal(job: Job) -> None:
    # Given a spec with a model but no file in the model folder
    # When the job runs / Then it is fatal and says what it found
    outcome = job.run(csv_text("a,1767225600,t,1,x"), make_spec(model=TEXT_MODEL_SPEC))
    assert outcome.code == 2
    assert "expected one model file in model/, found: none" in outcome.message


def test_an_unknown_model_file_is_fatal(job: Job) -> None:
    # Given a model folder holding a file that is neither joblib nor tar.gz
    notes = job.root / "notes.txt"
    notes.write_bytes(b"x")
    # When the job runs / Then it is fatal and names the file
    outcome = job.run(csv_text("a,1767225600,t,1,x"), make_spec(model=TEXT_MODEL_SPEC), model=notes)
    assert outcome.code == 2
    assert "is neither a joblib file" in outcome.message


# --- fatal input problems ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "no input file in"),
        (b"", "input file is empty: input.csv"),
        (HEADER + "\n", "input has no data rows"),
        (HEADER + "\n\n\n", "input has no data rows"),
        ("id,ts,text\na,1767225600,t\n", "missing required columns: cat, num"),
    ],
)
def test_fatal_input_problems_exit_2_with_a_message(job: Job, data: str | bytes | None, message: str) -> None:
    # Given an input that cannot be processed at all / When the job runs
    outcome = job.run(data, make_spec())

    # Then it exits 2, writes a one-line message for SageMaker (creating its folder) and no outputs
    assert outcome.code == 2
    assert outcome.message.startswith(message)
    assert "\n" not in outcome.message
    for name in ("stats.json", "records.jsonl", "rejected.jsonl", "state.json"):
        assert not (outcome.out / name).exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing_column.csv", "missing required columns: price"),
        ("empty.csv", "input file is empty: empty.csv"),
        ("header_only.csv", "input has no data rows"),
    ],
)
def test_demo_bad_inputs_are_fatal(job: Job, name: str, message: str) -> None:
    # Given one of the demo's bad input files and the demo spec
    spec = demo_spec()

    # When the job runs on it (the input is checked before the model is loaded)
    outcome = job.run((DEMO / "data" / "bad" / name).read_bytes(), spec, name=name)

    # Then the message names the precise problem
    assert outcome.code == 2
    assert outcome.message == message


# --- row rejections ---------------------------------------------------------------------------------------


def test_row_problems_are_rejected_without_failing_the_job(job: Job) -> None:
    # Given rows with each kind of row problem; num has no impute, cat does; any share of rejected rows allowed
    spec = make_spec(
        [{"name": "num", "type": "numeric"}, {"name": "cat", "type": "categorical", "impute": "most_frequent"}],
        max_rejected_share=1.0,
    )
    data = csv_text(
        "ok1,1767225600,t,1,x",  # line 2
        " ,1767225600,t,1,x",  # line 3: empty record id
        "ok2,next tuesday,t,1,x",  # line 4: unparsable event time
        "ok3,1767225600,t,abc,x",  # line 5: not a number
        "ok4,1767225600,t,,x",  # line 6: missing value, no impute
        "ok5,1767225600,t,inf,x",  # line 7: not a finite number
        "ok6,1767225600,t,2",  # line 8: too few fields
        "ok7,1767225600,t,3,",  # line 9: missing but imputable, accepted
        "ok8,,t,3,x",  # line 10: missing event time
    )

    # When the job runs
    outcome = job.run(data, spec)

    # Then each bad row is reported with its line, id and reason, and the good ones are kept
    assert outcome.code == 0, outcome.message
    assert outcome.rejected == [
        {"line": 3, "record_id": None, "reason": "missing record id"},
        {"line": 4, "record_id": "ok2", "reason": "unparsable event time: 'next tuesday'"},
        {"line": 5, "record_id": "ok3", "reason": "num is not a number: 'abc'"},
        {"line": 6, "record_id": "ok4", "reason": "missing value for num"},
        {"line": 7, "record_id": "ok5", "reason": "num is not a number: 'inf'"},
        {"line": 8, "record_id": "ok6", "reason": "expected 5 fields, found 4"},
        {"line": 10, "record_id": "ok8", "reason": "missing event time"},
    ]
    assert [r["record_id"] for r in outcome.records] == ["ok1", "ok7"]
    assert outcome.records[1]["features"]["cat"] == "x"
    # And the counts add up
    stats = outcome.stats
    assert (stats["records_in"], stats["records_out"], stats["rejected"]) == (9, 2, 7)
    assert stats["input_files"] == ["input.csv"]


def test_duplicate_record_ids_keep_the_first_accepted_occurrence(job: Job) -> None:
    # Given an id appearing four times, the first time in a rejected row
    data = csv_text(
        "a,never,bad,1,x",
        "a,1767225600,first,1,x",
        "b,1767225600,t,2,x",
        "a,1767225600,second,3,x",
        "a,1767225600,third,4,x",
    )

    # When the job runs, allowing any share of rejected rows
    outcome = job.run(data, make_spec(max_rejected_share=1.0))

    # Then the first accepted occurrence is kept and the later ones are rejected as duplicates
    assert [r["display"]["text"] for r in outcome.records] == ["first", "t"]
    assert outcome.rejected == [
        {"line": 2, "record_id": "a", "reason": "unparsable event time: 'never'"},
        {"line": 5, "record_id": "a", "reason": "duplicate record id"},
        {"line": 6, "record_id": "a", "reason": "duplicate record id"},
    ]
    # And the fit did not see the duplicates: the mean is that of 1 and 2
    assert outcome.state["features"]["num"]["fit"]["mean"] == 1.5


def test_duplicates_are_found_across_batches_and_files(job: Job) -> None:
    # Given two files of 60,000 rows (several batches each) where the second repeats 3 ids of the first
    first = csv_text(*(f"r{i},1767225600,t,{i},x" for i in range(60_000)))
    second = csv_text(
        *(f"s{i},1767225600,t,{i},x" for i in range(59_997)),
        "r5,1767225600,t,1,x",
        "r59999,1767225600,t,1,x",
        "s7,1767225600,t,1,x",
    )

    # When the job runs
    outcome = job.run({"a.csv": first, "b.csv": second}, make_spec())

    # Then exactly those three rows are rejected as duplicates
    assert [(r["line"], r["record_id"]) for r in outcome.rejected] == [
        (59_999, "r5"),
        (60_000, "r59999"),
        (60_001, "s7"),
    ]
    assert (outcome.stats["records_out"], outcome.stats["rejected"]) == (119_997, 3)


# --- the demo ---------------------------------------------------------------------------------------------


def test_demo_dataset_runs_clean_and_the_model_is_unsure_about_some_rows(job: Job) -> None:
    # Given the demo reviews, spec and scikit-learn model
    spec = demo_spec()
    data = (DEMO / "data" / "reviews.csv").read_bytes()

    # When the job runs in the image's environment
    outcome = job.run(data, spec, name="reviews.csv", model=DEMO / "model" / "sentiment.joblib")

    # Then every row becomes a record
    assert outcome.code == 0, outcome.message
    stats = outcome.stats
    assert (stats["records_in"], stats["records_out"], stats["rejected"]) == (3000, 3000, 0)
    assert sum(stats["predicted_labels"].values()) == 3000
    # And confidences vary, with 15-25% below the spec's threshold
    records = outcome.records
    confidences = [r["prediction"]["confidence"] for r in records]
    assert len(set(confidences)) > 100
    below = [c < spec["confidence_threshold"] for c in confidences]
    assert 0.15 <= sum(below) / len(below) <= 0.25
    # And the confident predictions are right far more often than the unsure ones
    with (DEMO / "data" / "reviews.labels.csv").open(encoding="utf-8", newline="") as handle:
        truth = {row["record_id"]: row["label"] for row in csv.DictReader(handle)}
    correct = [r["prediction"]["label"] == truth[r["record_id"]] for r in records]
    above_hits = [ok for ok, low in zip(correct, below, strict=True) if not low]
    below_hits = [ok for ok, low in zip(correct, below, strict=True) if low]
    assert sum(above_hits) / len(above_hits) >= 0.95
    assert sum(below_hits) / len(below_hits) < 0.85


def test_engine_pieces_import_without_the_layer(image_python: str) -> None:
    # Given the processing folder alone on the path (as in the container)
    # When the engine's modules are imported / Then nothing outside the image is needed
    code = "import json, preprocess, scoring, labelflow_processing.pipeline; print(json.dumps('ok'))"
    assert in_image(image_python, code) == "ok"
