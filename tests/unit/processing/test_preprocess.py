"""Unit tests for processing/preprocess.py, the SageMaker Processing script (stdlib only)."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import math
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from labelflow_local.processing_env import ensure_processing_env

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "demo"

try:
    from labelflow.models.spec import DatasetSpec, output_features
except ImportError:  # the layer is not installed: import it from the source tree
    sys.path.insert(0, str(ROOT / "layers" / "labelflow"))
    from labelflow.models.spec import DatasetSpec, output_features


def _load_script() -> ModuleType:
    module_spec = importlib.util.spec_from_file_location("preprocess", ROOT / "processing" / "preprocess.py")
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module
    module_spec.loader.exec_module(module)
    return module


preprocess = _load_script()

HEADER = "id,ts,text,num,cat"
LABELS = ["negative", "positive"]


def make_spec(features: list[dict[str, Any]] | None = None, **overrides: Any) -> dict[str, Any]:
    """A validated DatasetSpec, dumped to JSON the way the pipeline hands it to the script."""
    fields: dict[str, Any] = {
        "dataset": "test",
        "record_id_column": "id",
        "event_time_column": "ts",
        "display_column": "text",
        "features": features
        or [
            {"name": "num", "type": "numeric", "impute": "mean"},
            {"name": "cat", "type": "categorical", "impute": "most_frequent"},
        ],
        "labels": LABELS,
        "feature_group_name": "test-group",
    }
    fields.update(overrides)
    return DatasetSpec.model_validate(fields).model_dump(mode="json")


@dataclass
class Outcome:
    code: int
    out: Path
    message_file: Path

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (self.out / "records.jsonl").read_text(encoding="utf-8").splitlines()]

    @property
    def rejected(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (self.out / "rejected.jsonl").read_text(encoding="utf-8").splitlines()]

    @property
    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads((self.out / "stats.json").read_text(encoding="utf-8"))
        return result

    @property
    def message(self) -> str:
        return self.message_file.read_text(encoding="utf-8").strip()


def run_job(
    tmp_path: Path,
    data: str | bytes | None,
    spec: dict[str, Any],
    extra: list[str] | None = None,
    name: str = "input.csv",
) -> Outcome:
    """Lay out the container's folders under tmp_path and run the script's main()."""
    input_dir = tmp_path / "input" / "data"
    input_dir.mkdir(parents=True)
    if data is not None:
        (input_dir / name).write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    spec_file = tmp_path / "input" / "spec" / "spec.json"
    spec_file.parent.mkdir(parents=True)
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    model_dir = tmp_path / "input" / "model"
    model_dir.mkdir(exist_ok=True)
    out = tmp_path / "output"
    message_file = tmp_path / "opt" / "ml" / "output" / "message"
    argv = ["--input-dir", str(input_dir), "--spec", str(spec_file), "--model-dir", str(model_dir)]
    argv += ["--output-dir", str(out), "--message-file", str(message_file), *(extra or [])]
    return Outcome(preprocess.main(argv), out, message_file)


def csv_text(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


# --- numeric transforms -----------------------------------------------------------------------------------


def test_numeric_mean_impute_and_standard_scaling(tmp_path: Path) -> None:
    # Given values 1, 2, 3 and one missing value imputed with the mean (2)
    spec = make_spec([{"name": "num", "type": "numeric", "impute": "mean", "scaling": "standard"}])
    data = csv_text("a,2026-01-01T00:00:00Z,t,1,", "b,2026-01-01T00:00:00Z,t,2,", "c,2026-01-01T00:00:00Z,t,3,")
    data += "d,2026-01-01T00:00:00Z,t,,\n"

    # When the job runs
    outcome = run_job(tmp_path, data, spec)

    # Then the imputed column [1, 2, 3, 2] is standardised with its population std (sqrt(0.5))
    assert outcome.code == 0
    assert [r["features"]["num"] for r in outcome.records] == [-1.414214, 0.0, 1.414214, 0.0]
    fitted = outcome.stats["fitted"]["num"]
    assert fitted["impute_value"] == 2.0
    assert fitted["missing"] == 1
    assert fitted["mean"] == pytest.approx(2.0)
    assert fitted["std"] == pytest.approx(math.sqrt(0.5))


def test_numeric_median_impute_and_minmax_scaling(tmp_path: Path) -> None:
    # Given values 1, 3, 10 and a missing value imputed with the median (3)
    spec = make_spec([{"name": "num", "type": "numeric", "impute": "median", "scaling": "minmax"}])
    data = csv_text(*(f"{i},1767225600,t,{v}," for i, v in enumerate(["1", "3", "10", " "])))

    # When the job runs
    outcome = run_job(tmp_path, data, spec)

    # Then values are scaled into [0, 1] over the range 1..10 and rounded to 6 decimals
    assert [r["features"]["num"] for r in outcome.records] == [0.0, 0.222222, 1.0, 0.222222]
    assert outcome.stats["fitted"]["num"]["min"] == 1.0
    assert outcome.stats["fitted"]["num"]["max"] == 10.0


@pytest.mark.parametrize(
    ("impute", "fill_value", "expected"),
    [("most_frequent", None, 5.0), ("constant", -1.5, -1.5), ("constant", "9", 9.0)],
)
def test_numeric_most_frequent_and_constant_impute_without_scaling(
    tmp_path: Path, impute: str, fill_value: Any, expected: float
) -> None:
    # Given a column with a repeated value and a missing one, and no scaling
    spec = make_spec([{"name": "num", "type": "numeric", "impute": impute, "fill_value": fill_value}])
    data = csv_text("a,1767225600,t,5,", "b,1767225600,t,7.1234567,", "c,1767225600,t,5,", "d,1767225600,t,,")

    # When the job runs
    outcome = run_job(tmp_path, data, spec)

    # Then raw values pass through (rounded) and the missing one gets the imputed value
    assert [r["features"]["num"] for r in outcome.records] == [5.0, 7.123457, 5.0, expected]


@pytest.mark.parametrize("scaling", ["standard", "minmax"])
def test_numeric_constant_column_scales_to_zero(tmp_path: Path, scaling: str) -> None:
    # Given a column where every value is the same (std 0, range 0)
    spec = make_spec([{"name": "num", "type": "numeric", "scaling": scaling}])
    data = csv_text("a,1767225600,t,0.1,", "b,1767225600,t,0.1,", "c,1767225600,t,0.1,")

    # When the job runs
    outcome = run_job(tmp_path, data, spec)

    # Then every scaled value is 0.0 instead of a division by zero
    assert [r["features"]["num"] for r in outcome.records] == [0.0, 0.0, 0.0]


# --- categorical transforms -------------------------------------------------------------------------------


def test_onehot_names_and_types_match_output_features(tmp_path: Path) -> None:
    # Given one feature of each kind, including a one-hot one with an unknown value in the input
    features: list[dict[str, Any]] = [
        {"name": "num", "type": "numeric", "scaling": "standard"},
        {"name": "cat", "type": "categorical", "encoding": "onehot", "categories": ["red", "green", "blue"]},
        {"name": "size", "column": "text", "type": "categorical", "encoding": "ordinal", "categories": ["s", "m"]},
    ]
    spec = make_spec(features, display_column="id")
    data = csv_text("a,1767225600,m,1,green", "b,1767225600,xl,2,purple", "c,1767225600,s,3,red")

    # When the job runs
    outcome = run_job(tmp_path, data, spec)

    # Then the feature columns are exactly output_features() of the spec, in order and with matching types
    expected = output_features(DatasetSpec.model_validate(spec))
    python_types = {"Integral": int, "Fractional": float, "String": str}
    for record in outcome.records:
        assert list(record["features"]) == [name for name, _ in expected]
        for name, feature_type in expected:
            assert type(record["features"][name]) is python_types[feature_type]
    # And one-hot sets the matching category, an unknown value gets all zeros, ordinal unknown gets -1
    assert [r["features"]["cat__green"] for r in outcome.records] == [1, 0, 0]
    assert [r["features"]["cat__red"] for r in outcome.records] == [0, 0, 1]
    assert [sum(r["features"][f"cat__{c}"] for c in ("red", "green", "blue")) for r in outcome.records] == [1, 0, 1]
    assert [r["features"]["size"] for r in outcome.records] == [1, -1, 0]
    assert outcome.stats["fitted"]["cat"]["unknown"] == 1


def test_categorical_impute_most_frequent_and_constant(tmp_path: Path) -> None:
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
    outcome = run_job(tmp_path, data, spec)

    # Then the ordinal gets the code of the most frequent value and the string the constant, as-is
    assert [r["features"]["cat"] for r in outcome.records] == [1, 0, 1, 1]
    assert [r["features"]["tag"] for r in outcome.records] == ["hello", "unknown", "world", "unknown"]
    assert outcome.stats["fitted"]["cat"]["impute_value"] == "y"


# --- event time -------------------------------------------------------------------------------------------


@pytest.fixture
def non_utc_local_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run with a local time zone other than UTC, so "naive means UTC" is really tested."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("non_utc_local_zone")
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-01-02T03:04:05Z", "2026-01-02T03:04:05Z"),
        ("2026-01-02T03:04:05.987654Z", "2026-01-02T03:04:05Z"),
        ("2026-01-02T05:04:05+02:00", "2026-01-02T03:04:05Z"),
        ("2026-01-01T22:04:05-05:00", "2026-01-02T03:04:05Z"),
        ("2026-01-02 03:04:05", "2026-01-02T03:04:05Z"),
        ("2026-01-02", "2026-01-02T00:00:00Z"),
        ("1767323045", "2026-01-02T03:04:05Z"),
        (" 1767323045.75 ", "2026-01-02T03:04:05Z"),
    ],
)
def test_parse_event_time_normalises_to_utc(raw: str, expected: str) -> None:
    # Given an ISO-8601 time (with or without offset) or epoch seconds
    # When it is parsed
    # Then it comes out in UTC with a Z suffix and whole seconds
    assert preprocess.parse_event_time(raw) == expected


@pytest.mark.parametrize("raw", ["", "yesterday", "2026-13-01T00:00:00Z", "1e400", "99999999999999999999"])
def test_parse_event_time_rejects_garbage(raw: str) -> None:
    # Given text that is not a time
    # When it is parsed
    # Then it raises ValueError
    with pytest.raises(ValueError):
        preprocess.parse_event_time(raw)


def test_default_event_time_applies_when_the_spec_has_no_event_time_column(tmp_path: Path) -> None:
    # Given a spec without an event time column and a default time with an offset
    spec = make_spec(event_time_column=None)

    # When the job runs with --default-event-time
    outcome = run_job(
        tmp_path, csv_text("a,junk,t,1,x"), spec, extra=["--default-event-time", "2026-03-01T12:00+01:00"]
    )

    # Then every record carries the default, normalised to UTC (the ts column is ignored)
    assert outcome.code == 0
    assert [r["event_time"] for r in outcome.records] == ["2026-03-01T11:00:00Z"]


def test_missing_default_event_time_is_fatal(tmp_path: Path) -> None:
    # Given a spec without an event time column and no default
    # When the job runs
    outcome = run_job(tmp_path, csv_text("a,junk,t,1,x"), make_spec(event_time_column=None))

    # Then it fails with exit code 2 and says why
    assert outcome.code == 2
    assert "--default-event-time" in outcome.message


# --- model ------------------------------------------------------------------------------------------------
# Models are scikit-learn objects pickled by the processing image's scikit-learn, so these tests train them
# and run the job in the image's environment (processing/image.json), as the deployed job would.

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


@pytest.fixture(scope="module")
def image_python() -> str:
    return str(ensure_processing_env())


def train(python: str, script: str, path: Path) -> Path:
    subprocess.run([python, "-c", script, str(path)], check=True)
    return path


def run_in_image(python: str, tmp_path: Path, data: str, spec: dict[str, Any], model: Path | None) -> Outcome:
    """Lay out the container's folders and run preprocess.py with the image's Python, as the job does."""
    input_dir, model_dir = tmp_path / "input" / "data", tmp_path / "input" / "model"
    input_dir.mkdir(parents=True)
    model_dir.mkdir()
    (input_dir / "input.csv").write_text(data, encoding="utf-8")
    if model is not None:
        shutil.copy(model, model_dir / model.name)
    spec_file = tmp_path / "input" / "spec.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    out, message_file = tmp_path / "output", tmp_path / "message"
    argv = ["--input-dir", str(input_dir), "--spec", str(spec_file), "--model-dir", str(model_dir)]
    argv += ["--output-dir", str(out), "--message-file", str(message_file)]
    done = subprocess.run([python, str(ROOT / "processing" / "preprocess.py"), *argv], capture_output=True, text=True)
    return Outcome(done.returncode, out, message_file)


def test_a_scikit_learn_text_pipeline_labels_each_record(image_python: str, tmp_path: Path) -> None:
    # Given a text pipeline trained with the image's scikit-learn, and texts it has seen and not seen
    model = train(image_python, TRAIN_TEXT, tmp_path / "m.joblib")
    data = csv_text("a,1767225600,great fun,1,x", "b,1767225600,bad and broken,1,x", "c,1767225600,,1,x")

    # When the job runs in the image's environment
    outcome = run_in_image(image_python, tmp_path / "job", data, make_spec(model=TEXT_MODEL_SPEC), model)

    # Then each record carries the pipeline's most probable label and its probability
    assert outcome.code == 0, outcome.message
    predictions = [r["prediction"] for r in outcome.records]
    assert [p["label"] for p in predictions[:2]] == ["positive", "negative"]
    assert all(0.5 <= p["confidence"] <= 1.0 for p in predictions)
    assert outcome.stats["predicted_labels"]["positive"] + outcome.stats["predicted_labels"]["negative"] == 3
    # And stats.json records what was loaded
    assert outcome.stats["model"] == {
        "file": "m.joblib",
        "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "classes": LABELS,
    }


def test_a_tabular_pipeline_reads_numbers_as_numbers_and_maps_classes_to_labels(
    image_python: str, tmp_path: Path
) -> None:
    # Given a tabular pipeline trained on a DataFrame (a number with gaps, a category) with integer classes
    model = train(image_python, TRAIN_TABULAR, tmp_path / "m.joblib")
    spec = make_spec(
        [{"name": "num", "type": "numeric", "impute": "mean"}, {"name": "cat", "type": "categorical"}],
        model=TABULAR_MODEL_SPEC,
    )
    data = csv_text("a,1767225600,t,1.5,x", "b,1767225600,t,9.5,y", "c,1767225600,t,,y")

    # When the job runs, shipped as SageMaker's model.tar.gz
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(model, arcname="model.joblib")
    outcome = run_in_image(image_python, tmp_path / "job", data, spec, archive)

    # Then the model saw real numbers (NaN where missing) and its classes 0/1 became the spec's labels
    assert outcome.code == 0, outcome.message
    assert [r["prediction"]["label"] for r in outcome.records] == ["negative", "positive", "negative"]
    assert outcome.stats["model"]["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()


def test_model_classes_must_be_the_specs(image_python: str, tmp_path: Path) -> None:
    # Given a spec that declares other classes than the model has
    model = train(image_python, TRAIN_TEXT, tmp_path / "m.joblib")
    spec = make_spec(model={**TEXT_MODEL_SPEC, "classes": ["positive", "negative"]})

    # When the job runs / Then it is fatal, on one line naming both lists
    outcome = run_in_image(image_python, tmp_path / "job", csv_text("a,1767225600,t,1,x"), spec, model)
    assert outcome.code == 2
    assert outcome.message == (
        "the model's classes ['negative', 'positive'] differ from the spec's model.classes ['positive', 'negative']"
    )


def test_a_pinned_model_refuses_another_file(image_python: str, tmp_path: Path) -> None:
    # Given a spec pinning a sha256 that is not the model file's
    model = train(image_python, TRAIN_TEXT, tmp_path / "m.joblib")
    spec = make_spec(model={**TEXT_MODEL_SPEC, "sha256": "0" * 64})
    # When the job runs / Then it refuses to load the file
    outcome = run_in_image(image_python, tmp_path / "job", csv_text("a,1767225600,t,1,x"), spec, model)
    assert outcome.code == 2 and "the spec pins 000000" in outcome.message


def test_without_model_prediction_is_null(tmp_path: Path) -> None:
    # Given a spec without a model
    # When the job runs
    outcome = run_job(tmp_path, csv_text("a,1767225600,t,1,x"), make_spec())

    # Then records have no prediction and no label counts
    assert outcome.records[0]["prediction"] is None
    assert outcome.stats["predicted_labels"] == {}
    assert outcome.stats["model"] is None


@pytest.mark.parametrize(
    ("files", "message"),
    [({}, "expected one model file in model/, found: none"), ({"notes.txt": b"x"}, "is neither a joblib file")],
)
def test_a_missing_or_unknown_model_file_is_fatal(tmp_path: Path, files: dict[str, bytes], message: str) -> None:
    # Given a spec with a model but no usable file in the model folder
    model_dir = tmp_path / "input" / "model"
    model_dir.mkdir(parents=True)
    for name, body in files.items():
        (model_dir / name).write_bytes(body)
    # When the job runs / Then it is fatal and says what it found
    outcome = run_job(tmp_path, csv_text("a,1767225600,t,1,x"), make_spec(model=TEXT_MODEL_SPEC))
    assert outcome.code == 2
    assert message in outcome.message


# --- fatal input problems ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "no input file: no *.csv in"),
        (b"", "input file is empty: input.csv"),
        (HEADER + "\n", "input has no data rows"),
        (HEADER + "\n\n\n", "input has no data rows"),
        (b"id,ts,text,num,cat\na,1,\xff\xfe bad bytes,1,x\n", "input is not valid utf-8 text: input.csv"),
        ("id,ts,text\na,1767225600,t\n", "missing required columns: cat, num"),
    ],
)
def test_fatal_input_problems_exit_2_with_a_message(tmp_path: Path, data: str | bytes | None, message: str) -> None:
    # Given an input that cannot be processed at all
    # When the job runs
    outcome = run_job(tmp_path, data, make_spec())

    # Then it exits 2, writes a one-line message for SageMaker (creating its folder) and no outputs
    assert outcome.code == 2
    assert outcome.message.startswith(message)
    assert "\n" not in outcome.message
    assert not (outcome.out / "stats.json").exists()
    assert not (outcome.out / "records.jsonl").exists()


def test_bad_utf8_late_in_the_file_leaves_no_partial_output(tmp_path: Path) -> None:
    # Given a file whose undecodable bytes come after many good rows (and a rejected one)
    good = "".join(f"r{i},1767225600,text,{i},x\n" for i in range(20_000))
    data = (HEADER + "\n,1767225600,t,1,x\n" + good).encode() + b"z,1767225600,\xc3\x28,1,x\n"

    # When the job runs
    outcome = run_job(tmp_path, data, make_spec())

    # Then it is fatal and the partial rejected.jsonl is removed
    assert outcome.code == 2
    assert outcome.message == "input is not valid utf-8 text: input.csv"
    assert not (outcome.out / "rejected.jsonl").exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing_column.csv", "missing required columns: price"),
        ("empty.csv", "input file is empty: empty.csv"),
        ("header_only.csv", "input has no data rows"),
    ],
)
def test_demo_bad_inputs_are_fatal(tmp_path: Path, name: str, message: str) -> None:
    # Given one of the demo's bad input files and the demo spec
    spec = json.loads((DEMO / "datasets" / "reviews.json").read_text(encoding="utf-8"))
    data = (DEMO / "data" / "bad" / name).read_bytes()

    # When the job runs on it (the input is checked before the model is loaded)
    outcome = run_job(tmp_path, data, spec, name=name)

    # Then the message names the precise problem
    assert outcome.code == 2
    assert outcome.message == message


# --- row rejections ---------------------------------------------------------------------------------------


def test_row_problems_are_rejected_without_failing_the_job(tmp_path: Path) -> None:
    # Given rows with each kind of row problem; num has no impute, cat does
    spec = make_spec(
        [
            {"name": "num", "type": "numeric"},
            {"name": "cat", "type": "categorical", "impute": "most_frequent"},
        ]
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
    )

    # When the job runs
    outcome = run_job(tmp_path, data, spec)

    # Then each bad row is reported with its line, id and reason, and the good ones are kept
    assert outcome.code == 0
    assert outcome.rejected == [
        {"line": 3, "record_id": None, "reason": "missing record id"},
        {"line": 4, "record_id": "ok2", "reason": "unparsable event time: 'next tuesday'"},
        {"line": 5, "record_id": "ok3", "reason": "num is not a number: 'abc'"},
        {"line": 6, "record_id": "ok4", "reason": "missing value for num"},
        {"line": 7, "record_id": "ok5", "reason": "num is not a number: 'inf'"},
        {"line": 8, "record_id": "ok6", "reason": "expected 5 fields, found 4"},
    ]
    assert [r["record_id"] for r in outcome.records] == ["ok1", "ok7"]
    assert outcome.records[1]["features"]["cat"] == "x"
    assert outcome.stats | {"fitted": None} == {
        "records_in": 8,
        "records_out": 2,
        "rejected": 6,
        "fitted": None,
        "predicted_labels": {},
        "model": None,
        "input_files": ["input.csv"],
    }


def test_duplicate_record_ids_keep_the_first_occurrence(tmp_path: Path) -> None:
    # Given an id appearing three times
    data = csv_text("a,1767225600,first,1,x", "b,1767225600,t,2,x", "a,1767225600,second,3,x", "a,1767225600,third,4,x")

    # When the job runs
    outcome = run_job(tmp_path, data, make_spec())

    # Then the second and third occurrences are rejected and the first is kept
    assert [r["display"] for r in outcome.records] == ["first", "t"]
    assert outcome.rejected == [
        {"line": 4, "record_id": "a", "reason": "duplicate record id"},
        {"line": 5, "record_id": "a", "reason": "duplicate record id"},
    ]


def test_all_rows_rejected_still_succeeds_with_empty_records(tmp_path: Path) -> None:
    # Given only bad rows
    # When the job runs
    outcome = run_job(tmp_path, csv_text("a,never,t,1,x", "b,never,t,1,x"), make_spec())

    # Then the job succeeds with no records and everything rejected
    assert outcome.code == 0
    assert outcome.records == []
    assert outcome.stats["rejected"] == 2


# --- reading CSV ------------------------------------------------------------------------------------------


def test_utf8_bom_is_ignored(tmp_path: Path) -> None:
    # Given a file saved with a UTF-8 byte order mark (as Excel does) and CRLF line ends
    data = "\ufeff" + csv_text("a,1767225600,café,1,x").replace("\n", "\r\n")

    # When the job runs
    outcome = run_job(tmp_path, data, make_spec())

    # Then the first column is still found as "id" and the text is intact
    assert outcome.code == 0
    assert outcome.records[0]["record_id"] == "a"
    assert outcome.records[0]["display"] == "café"


def test_csv_quoting_commas_quotes_and_newlines(tmp_path: Path) -> None:
    # Given a text cell with commas, doubled quotes and a line break, followed by a bad row
    tricky = 'She said "it\'s fine", then\nchanged her mind, sadly'
    rows = [["a", "1767225600", tricky, "1", "x"], ["b", "1767225600", "t", "oops", "x"]]
    path = tmp_path / "written.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER.split(","))
        writer.writerows(rows)

    # When the job runs
    outcome = run_job(tmp_path, path.read_text(encoding="utf-8"), make_spec())

    # Then the cell comes back exactly, and the next record's line counts the embedded line break
    assert outcome.records[0]["display"] == tricky
    assert outcome.rejected == [{"line": 4, "record_id": "b", "reason": "num is not a number: 'oops'"}]


def test_several_input_files_are_processed_in_name_order(tmp_path: Path) -> None:
    # Given two files in the input folder, with an id repeated across them
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(make_spec()), encoding="utf-8")
    input_dir = tmp_path / "data"
    input_dir.mkdir()
    (input_dir / "b.csv").write_text(csv_text("b1,1767225600,t,1,x", "a1,1767225600,t,1,x"), encoding="utf-8")
    (input_dir / "a.csv").write_text(csv_text("a1,1767225600,t,1,x"), encoding="utf-8")
    (input_dir / "notes.txt").write_text("not an input", encoding="utf-8")
    out = tmp_path / "out"

    # When the job runs
    code = preprocess.main(
        ["--input-dir", str(input_dir), "--spec", str(spec_file), "--output-dir", str(out)]
        + ["--message-file", str(tmp_path / "message"), "--model-dir", str(tmp_path)]
    )

    # Then a.csv comes first and the repeated id in b.csv is rejected
    assert code == 0
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["input_files"] == ["a.csv", "b.csv"]
    assert (stats["records_in"], stats["records_out"], stats["rejected"]) == (3, 2, 1)


# --- the demo ---------------------------------------------------------------------------------------------


def test_demo_dataset_runs_clean_and_the_model_is_unsure_about_some_rows(image_python: str, tmp_path: Path) -> None:
    # Given the demo reviews, spec and scikit-learn model
    spec = json.loads((DEMO / "datasets" / "reviews.json").read_text(encoding="utf-8"))
    data = (DEMO / "data" / "reviews.csv").read_text(encoding="utf-8")

    # When the job runs in the image's environment
    outcome = run_in_image(image_python, tmp_path, data, spec, DEMO / "model" / "sentiment.joblib")

    # Then every row becomes a record
    assert outcome.code == 0
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
