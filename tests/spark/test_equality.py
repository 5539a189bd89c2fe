"""The Spark engine against the single-machine one: the same records, rejections and counts from the same state,
and a fitted state equal within float tolerance.

Cases: the demo's reviews with its spec and model, and a generated table (numeric, categorical and text columns,
missing values, rows each check rejects, a duplicate id) under a spec with every transform kind, read as CSV,
JSON Lines and Parquet.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from labelflow.models.spec import DatasetSpec
from tests.spark.conftest import ROOT, Case, run_spark_jobs

pytestmark = pytest.mark.spark

DEMO = ROOT / "demo"
MODEL = DEMO / "model" / "sentiment.joblib"
ROWS = 1500
WORDS = ["great", "awful", "fine", "broken", "love", "hate", "okay", 'the "best"', "meh, really", "très bien"]


def every_kind_spec() -> dict[str, Any]:
    """A spec with each impute, scaling, encoding and unknown choice, and the demo model reading `text`."""
    features = [
        {"name": "n_mean", "type": "numeric", "impute": "mean", "scaling": "standard"},
        {"name": "n_median", "type": "numeric", "impute": "median", "scaling": "minmax"},
        {"name": "n_frequent", "type": "numeric", "impute": "most_frequent"},
        {"name": "n_constant", "type": "numeric", "impute": "constant", "fill_value": -1, "scaling": "standard"},
        {"name": "n_required", "type": "numeric"},
        {
            "name": "c_onehot",
            "type": "categorical",
            "impute": "most_frequent",
            "encoding": "onehot",
            "categories": ["a", "b", "c"],
        },
        {
            "name": "c_onehot_other",
            "type": "categorical",
            "impute": "constant",
            "fill_value": "zz",
            "encoding": "onehot",
            "categories": ["a", "b"],
            "unknown": "other",
        },
        {
            "name": "c_ordinal",
            "type": "categorical",
            "impute": "most_frequent",
            "encoding": "ordinal",
            "categories": ["x", "y", "z"],
        },
        {
            "name": "c_ordinal_other",
            "type": "categorical",
            "column": "c_onehot",
            "impute": "most_frequent",
            "encoding": "ordinal",
            "categories": ["b", "c"],
            "unknown": "other",
        },
        {"name": "c_plain", "type": "categorical", "impute": "most_frequent"},
    ]
    fields = {
        "dataset": "kinds",
        "record_id_column": "id",
        "event_time_column": "ts",
        "display_columns": ["text", "c_plain"],
        "features": features,
        "labels": ["negative", "positive"],
        "model": {"s3_uri": "s3://bucket/model.joblib", "text_column": "text", "classes": ["negative", "positive"]},
        "max_rejected_share": 0.5,
    }
    return DatasetSpec.model_validate(fields).model_dump(mode="json")


def _maybe(rng: random.Random, value: str, missing: float = 0.06) -> str:
    return "" if rng.random() < missing else value


def table(rows: int = ROWS) -> list[dict[str, str]]:
    """The generated rows, as CSV cells; a few break one check each."""
    rng = random.Random(7)
    out = []
    for i in range(rows):
        stamp = 1_767_225_600 + i * 997
        ts = str(stamp) if i % 5 == 0 else f"2026-01-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:07Z"
        out.append(
            {
                "id": f" r{i:05d} " if i % 11 == 0 else f"r{i:05d}",
                "ts": ts,
                "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6))),
                "n_mean": _maybe(rng, f"{rng.gauss(50, 20):.4f}"),
                "n_median": _maybe(rng, str(rng.randint(0, 40))),
                "n_frequent": _maybe(rng, str(rng.choice([1, 2, 2, 3, 3, 3]))),
                "n_constant": _maybe(rng, f"{rng.uniform(-5, 5):.3f}", 0.3),
                "n_required": f"{rng.expovariate(0.1):.5f}",
                "c_onehot": _maybe(rng, rng.choice("abcd")),
                "c_onehot_other": _maybe(rng, rng.choice(["a", "b", "q"])),
                "c_ordinal": _maybe(rng, rng.choice("xyzw")),
                "c_plain": _maybe(rng, rng.choice(["red", "green", "blue", "teal"])),
            }
        )
    out[3]["id"] = ""
    out[7]["ts"] = "yesterday"
    out[9]["ts"] = ""
    out[12]["n_required"] = "abc"
    out[14]["n_required"] = ""
    out[20]["id"] = out[2]["id"]
    out[25]["id"] = "r\x01bad"
    return out


def write_csv(rows: list[dict[str, str]], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def write_jsonl(rows: list[dict[str, str]], path: Path) -> None:
    """Typed values where a number is a number; missing cells as absent members or null."""
    lines = []
    for index, row in enumerate(rows):
        record: dict[str, Any] = {}
        for name, value in row.items():
            if value == "" and index % 2:
                continue
            if name.startswith("n_") and value not in ("", "abc"):
                record[name] = float(value)
            else:
                record[name] = value or None
        lines.append(json.dumps(record, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_parquet(python: str, csv_path: Path, path: Path) -> None:
    """The CSV as Parquet with Arrow's inferred types (numbers typed, empty cells null)."""
    code = (
        "import sys, pyarrow.csv as c, pyarrow.parquet as p; "
        "p.write_table(c.read_csv(sys.argv[1], convert_options=c.ConvertOptions("
        "column_types={'id': 'string', 'ts': 'string', 'n_required': 'string'})), sys.argv[2], row_group_size=400)"
    )
    subprocess.run([python, "-c", code, str(csv_path), str(path)], check=True)


def _case(root: Path, spec: dict[str, Any], files: dict[str, Path], read_as: dict[str, Any]) -> Case:
    case = Case(root, read_as, MODEL)
    case.input_dir.mkdir(parents=True)
    for name, source in files.items():
        shutil.copy(source, case.input_dir / name)
    case.spec.write_text(json.dumps(spec), encoding="utf-8")
    return case


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory, image_python: str, pyspark_python: str) -> dict[str, Case]:
    """Every case run by the single-machine engine, then by Spark fitting its own state and applying the other's."""
    root = tmp_path_factory.mktemp("engines")
    demo_spec = DatasetSpec.model_validate(json.loads((DEMO / "datasets" / "reviews.json").read_text())).model_dump(
        mode="json"
    )
    rows = table()
    source = root / "source"
    source.mkdir()
    write_csv(rows, source / "kinds.csv")
    write_csv([{**row, "id": f"b{row['id']}"} for row in rows[:400]], source / "kinds-b.csv")
    write_jsonl(rows, source / "kinds.jsonl")
    write_parquet(pyspark_python, source / "kinds.csv", source / "kinds.parquet")
    comma = {"format": "csv", "delimiter": ","}
    built = {
        "demo": _case(root / "demo", demo_spec, {"reviews.csv": DEMO / "data" / "reviews.csv"}, comma),
        "csv": _case(
            root / "csv", every_kind_spec(), {"a.csv": source / "kinds.csv", "b.csv": source / "kinds-b.csv"}, comma
        ),
        "jsonl": _case(root / "jsonl", every_kind_spec(), {"kinds.jsonl": source / "kinds.jsonl"}, {"format": "jsonl"}),
        "parquet": _case(
            root / "parquet", every_kind_spec(), {"k.parquet": source / "kinds.parquet"}, {"format": "parquet"}
        ),
    }
    jobs = []
    for case in built.values():
        case.preprocess(image_python)
        jobs.append(case.spark_job("spark-fit"))
        jobs.append(case.spark_job("spark-apply", state=case.out("single") / "state.json"))
    run_spark_jobs(pyspark_python, jobs)
    return built


CASES = ["demo", "csv", "jsonl", "parquet"]


@pytest.mark.parametrize("name", CASES)
def test_records_are_equal_from_the_same_state(cases: dict[str, Case], name: str) -> None:
    # Given a case run by both engines, Spark applying the single-machine engine's state
    case = cases[name]
    # When their records are read back
    single, spark = case.lines("single", "records.jsonl"), case.lines("spark-apply", "records.jsonl")
    # Then every record (features, display, prediction) is the same, in the same order
    assert len(single) > 0
    assert spark == single


@pytest.mark.parametrize("name", CASES)
def test_rejections_and_counts_are_equal(cases: dict[str, Case], name: str) -> None:
    # Given a case run by both engines
    case = cases[name]
    # When their rejections and stats are read back
    single, spark = case.document("single", "stats.json"), case.document("spark-apply", "stats.json")
    # Then the same rows are rejected for the same reasons and every count agrees
    assert case.lines("spark-apply", "rejected.jsonl") == case.lines("single", "rejected.jsonl")
    for key in ("records_in", "records_out", "rejected", "predicted_labels", "model", "input_files"):
        assert spark[key] == single[key], key
    assert _close(spark["drift"], single["drift"])


@pytest.mark.parametrize("name", CASES)
def test_spark_fits_the_same_state(cases: dict[str, Case], name: str) -> None:
    # Given a case where each engine fitted its own state
    case = cases[name]
    # When the two states are read back
    single, spark = case.document("single", "state.json"), case.document("spark-fit", "state.json")
    # Then they are the same document, numbers equal within float tolerance
    assert _close(spark, single), json.dumps({"spark": spark, "single": single}, indent=1)[:4000]
    assert case.document("spark-fit", "stats.json")["state"]["fitted"] is True


def _close(left: Any, right: Any) -> bool:
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_close(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_close(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, float) or isinstance(right, float):
        return (
            isinstance(left, int | float)
            and isinstance(right, int | float)
            and math.isclose(left, right, rel_tol=1e-9, abs_tol=1e-12)
        )
    return bool(left == right)
