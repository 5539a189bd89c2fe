"""Benchmark the processing step against scikit-learn on pandas, polars and an I/O floor.

One generated CSV per size (an id, an event time, 12 numeric columns with ~5% empty cells, 6 categorical
columns with 3 to 50 categories), then, interleaved, `--repeat` rounds of every candidate, each a fresh
process whose CPU time and peak RSS come from its own rusage:

- ours: processing/preprocess.py end to end (no model, fitting a state), in the processing image's venv;
- sklearn: the same transforms with a scikit-learn ColumnTransformer on a pandas DataFrame, the same JSONL;
- polars: the same transforms as one lazy polars query, the same JSONL (polars is not in the image: it runs
  in a separate venv under ~/.cache/labelflow/, built on first use from PyPI);
- floor: read the input with pyarrow's CSV reader and write the same output bytes, no transforms.

    python bench/processing.py [--rows 1000000 --rows 100000 ...] [--repeat 3] [--candidates polars,sklearn,floor]

Each candidate's output is checked against ours (same records, features equal to 1e-6) once per size.
Inputs and outputs go to /dev/shm by default (`--scratch`), so a slow disk's write-back does not decide it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from venvs import cached_venv

ROOT = Path(__file__).resolve().parents[1]
POLARS_VERSION = "2.1.0"
NUMERIC = [f"n{i}" for i in range(12)]
CATEGORY_COUNTS = [3, 5, 8, 12, 25, 50]
CATEGORICAL = [f"c{i}" for i in range(len(CATEGORY_COUNTS))]
# Per numeric column: (impute, fill_value, scaling).
NUMERIC_TRANSFORMS: list[tuple[str, int | None, str | None]] = [
    *[("mean", None, "standard")] * 4,
    *[("median", None, "minmax")] * 4,
    *[("mean", None, None)] * 2,
    *[("constant", 0, None)] * 2,
]


def categories(index: int) -> list[str]:
    return [f"c{index}_{j}" for j in range(CATEGORY_COUNTS[index])]


def spec() -> dict[str, Any]:
    """The dataset spec every candidate follows (c2 and c4 hold values outside their category lists)."""
    features: list[dict[str, Any]] = []
    for name, (impute, fill, scaling) in zip(NUMERIC, NUMERIC_TRANSFORMS, strict=True):
        features.append({"name": name, "type": "numeric", "impute": impute, "fill_value": fill, "scaling": scaling})
    encodings: list[tuple[str | None, str]] = [("onehot", "ignore"), ("onehot", "ignore"), ("onehot", "other")]
    encodings += [("ordinal", "ignore"), ("ordinal", "other"), (None, "ignore")]
    for index, (encoding, unknown) in enumerate(encodings):
        listed = categories(index)[: -1 if unknown == "other" else None] if encoding else None
        features.append(
            {
                "name": CATEGORICAL[index],
                "type": "categorical",
                "impute": "most_frequent",
                "encoding": encoding,
                "categories": listed,
                "unknown": unknown,
            }
        )
    return {
        "dataset": "bench",
        "record_id_column": "id",
        "event_time_column": "ts",
        "display_columns": ["id", "c5"],
        "features": features,
        "labels": ["a", "b"],
        "input": {"format": "auto", "delimiter": None, "encoding": None},
    }


# --- children: each runs in its own interpreter ------------------------------------------------------------


def generate(rows: int, path: Path) -> None:
    """Write the benchmark CSV (processing image's venv)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv

    rng = np.random.default_rng(7)
    with pa_csv.CSVWriter(str(path), _schema(pa), write_options=pa_csv.WriteOptions(quoting_style="none")) as out:
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            index = np.arange(start, start + n)
            columns: dict[str, Any] = {"id": pc.binary_join_element_wise("r", pa.array(index).cast(pa.string()), "")}
            seconds = (1_767_225_600 + index * 7).astype("datetime64[s]")
            columns["ts"] = pc.binary_join_element_wise(pa.array(np.datetime_as_string(seconds)), "Z", "")
            for i, name in enumerate(NUMERIC):
                text = pa.array(np.round(rng.normal(100 * i, 10 + i, n), 3)).cast(pa.string())
                columns[name] = pc.if_else(pa.array(rng.random(n) < 0.05), pa.scalar(None, pa.string()), text)
            for i, name in enumerate(CATEGORICAL):
                columns[name] = pa.array(categories(i)).take(pa.array(rng.integers(0, CATEGORY_COUNTS[i], n)))
            out.write_table(pa.table(columns, schema=_schema(pa)))


def _schema(pa: Any) -> Any:
    return pa.schema([(name, pa.string()) for name in ["id", "ts", *NUMERIC, *CATEGORICAL]])


def floor(source: Path, out_dir: Path, reference: Path) -> None:
    """Read the input as our reader does (pyarrow, all text) and write the reference output's bytes."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    names = source.open(encoding="utf-8").readline().strip().split(",")
    reader = pa_csv.open_csv(
        str(source),
        read_options=pa_csv.ReadOptions(use_threads=False, block_size=4 << 20),
        convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())),
    )
    rows = sum(batch.num_rows for batch in reader)
    with reference.open("rb") as src, (out_dir / "records.jsonl").open("wb") as dst:
        shutil.copyfileobj(src, dst, 4 << 20)
    print(rows)


def sklearn(source: Path, out_dir: Path) -> None:
    """The same transforms with scikit-learn's ColumnTransformer on pandas, written as the same JSON Lines."""
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, OneHotEncoder, OrdinalEncoder, StandardScaler

    features = spec()["features"]
    frame = pd.read_csv(source, dtype=dict.fromkeys(["id", "ts", *CATEGORICAL], str), keep_default_na=False)
    for name in NUMERIC:
        frame[name] = pd.to_numeric(frame[name].replace("", np.nan))
    for name in CATEGORICAL:
        frame[name] = frame[name].replace("", np.nan)
    steps: list[Any] = []
    names: list[str] = []
    for feature in features:
        name = feature["name"]
        if feature["type"] == "numeric":
            imputer = SimpleImputer(strategy=feature["impute"], fill_value=feature["fill_value"])
            scaler = {"standard": StandardScaler(), "minmax": MinMaxScaler(), None: "passthrough"}[feature["scaling"]]
            steps.append((name, make_pipeline(imputer, scaler), [name]))
            names.append(name)
            continue
        listed, other = feature["categories"], feature["unknown"] == "other"
        impute = SimpleImputer(strategy="most_frequent")
        bucket = FunctionTransformer(lambda x, known=tuple(listed or ()): np.where(np.isin(x, known), x, "other"))
        if feature["encoding"] == "onehot":
            buckets = [*listed, *(["other"] if other else [])]
            encoder = OneHotEncoder(categories=[buckets], handle_unknown="ignore", sparse_output=False, dtype=np.int64)
            steps.append(
                (name, make_pipeline(impute, bucket, encoder) if other else make_pipeline(impute, encoder), [name])
            )
            names += [f"{name}__{c}" for c in buckets]
        elif feature["encoding"] == "ordinal":
            unknown = len(listed) if other else -1
            encoder = OrdinalEncoder(
                categories=[listed], handle_unknown="use_encoded_value", unknown_value=unknown, dtype=np.int64
            )
            steps.append((name, make_pipeline(impute, encoder), [name]))
            names.append(name)
        else:
            steps.append((name, impute, [name]))
            names.append(name)
    encoded = ColumnTransformer(steps, sparse_threshold=0).fit_transform(frame)
    table = pd.DataFrame(encoded, columns=names)
    for feature in features:
        if feature["type"] == "numeric":
            table[feature["name"]] = table[feature["name"]].astype(np.float64).round(6) + 0.0
    times = pd.to_datetime(frame["ts"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    with (out_dir / "records.jsonl").open("w", encoding="utf-8") as out:
        for start in range(0, len(frame), 50_000):
            end = start + 50_000
            chunk = table.iloc[start:end]
            feature_lines = chunk.to_json(orient="records", lines=True, double_precision=15).splitlines()
            display = frame[["id", "c5"]].iloc[start:end].to_json(orient="records", lines=True).splitlines()
            for record_id, moment, body, shown in zip(
                frame["id"].iloc[start:end], times.iloc[start:end], feature_lines, display, strict=True
            ):
                out.write(
                    f'{{"record_id":{json.dumps(record_id)},"event_time":"{moment}","features":{body},"display":{shown},"prediction":null}}\n'
                )


def polars(source: Path, out_dir: Path) -> None:
    """The same transforms as one lazy polars query, sunk as JSON Lines."""
    pl = importlib.import_module("polars")  # only in the bench's polars venv: untyped for the dev venv's mypy

    features = spec()["features"]
    frame = pl.scan_csv(source, schema_overrides=dict.fromkeys(["id", "ts", *CATEGORICAL], pl.String))
    outputs: list[Any] = []
    for feature in features:
        name, column = feature["name"], pl.col(feature["name"])
        if feature["type"] == "numeric":
            fill = {
                "mean": column.mean(),
                "median": column.median(),
                "constant": pl.lit(float(feature["fill_value"] or 0)),
            }[feature["impute"]]
            value = column.fill_null(fill)
            if feature["scaling"] == "standard":
                std = value.std(ddof=0)
                value = pl.when(std == 0).then(0.0).otherwise((value - value.mean()) / std)
            elif feature["scaling"] == "minmax":
                span = value.max() - value.min()
                value = pl.when(span == 0).then(0.0).otherwise((value - value.min()) / span)
            outputs.append((value.round(6) + 0.0).alias(name))
            continue
        value = column.fill_null(column.drop_nulls().mode().sort().first())
        listed, other = feature["categories"] or [], feature["unknown"] == "other"
        if feature["encoding"] == "onehot":
            for category in listed:
                outputs.append((value == category).cast(pl.Int64).alias(f"{name}__{category}"))
            if other:
                outputs.append((~value.is_in(listed)).cast(pl.Int64).alias(f"{name}__other"))
        elif feature["encoding"] == "ordinal":
            mapping = {category: code for code, category in enumerate(listed)}
            unknown = len(listed) if other else -1
            outputs.append(value.replace_strict(mapping, default=unknown, return_dtype=pl.Int64).alias(name))
        else:
            outputs.append(value.alias(name))
    moment = pl.col("ts").str.to_datetime(time_zone="UTC").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    query = frame.select(
        pl.col("id").alias("record_id"),
        moment.alias("event_time"),
        pl.struct(outputs).alias("features"),
        pl.struct(pl.col("id"), pl.col("c5").fill_null("")).alias("display"),
        pl.lit(None, pl.Null).alias("prediction"),
    )
    query.sink_ndjson(out_dir / "records.jsonl")


def ours(source: Path, out_dir: Path) -> None:
    """processing/preprocess.py, as the processing job runs it."""
    spec_file = out_dir.parent / "spec.json"
    sys.path.insert(0, str(ROOT / "processing"))
    import preprocess

    data_dir = out_dir.parent / "data"
    data_dir.mkdir(exist_ok=True)
    (data_dir / source.name).unlink(missing_ok=True)
    (data_dir / source.name).symlink_to(source)
    argv = ["--input-dir", str(data_dir), "--spec", str(spec_file), "--output-dir", str(out_dir)]
    argv += ["--format", "csv", "--delimiter", ","]  # what planning resolves for the generated file
    sys.exit(preprocess.main([*argv, "--message-file", str(out_dir.parent / "message")]))


CHILDREN: dict[str, Any] = {"generate": generate, "floor": floor, "sklearn": sklearn, "polars": polars, "ours": ours}


# --- the parent ----------------------------------------------------------------------------------------------


def image_python() -> str:
    sys.path.insert(0, str(ROOT / "local"))
    from labelflow_local.processing_env import ensure_processing_env

    return str(ensure_processing_env())


def polars_python(base: str) -> str:
    """A venv with the image's Python and polars."""
    return cached_venv("polars", POLARS_VERSION, base)


def measure(python: str, mode: str, *args: Path) -> dict[str, float]:
    """Run one child; its wall time, CPU time and peak RSS (from its own rusage)."""
    start = time.perf_counter()
    child = subprocess.Popen([python, __file__, mode, *map(str, args)], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if status:
        raise RuntimeError(f"{mode} failed with status {status}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024}


def check_same(reference: Path, other: Path, name: str) -> None:
    """The same records in the same order; features equal to 1e-6."""
    with reference.open(encoding="utf-8") as ours_file, other.open(encoding="utf-8") as theirs_file:
        for number, (mine, theirs) in enumerate(zip(ours_file, theirs_file, strict=True), start=1):
            a, b = json.loads(mine), json.loads(theirs)
            same_shape = list(a) == list(b) and list(a["features"]) == list(b["features"])
            values_equal = all(
                abs(x - b["features"][k]) <= 1e-6 if isinstance(x, float) else x == b["features"][k]
                for k, x in a["features"].items()
            )
            if not (
                same_shape and values_equal and a["display"] == b["display"] and a["event_time"] == b["event_time"]
            ):
                raise SystemExit(f"{name}: line {number} differs from ours:\n{mine}{theirs}")


def bench_size(
    rows: int, repeat: int, pythons: dict[str, str], scratch: Path, candidates: list[str]
) -> dict[str, list[dict[str, float]]]:
    source = scratch / f"bench-{rows}.csv"
    subprocess.run([pythons["ours"], __file__, "generate", str(rows), str(source)], check=True)
    # As planning hands it to the job: validated, every default filled in.
    from labelflow.models.spec import DatasetSpec

    (scratch / "spec.json").write_text(DatasetSpec.model_validate(spec()).model_dump_json(), encoding="utf-8")
    outputs = {name: scratch / name for name in ["ours", *candidates]}
    for path in outputs.values():
        path.mkdir(exist_ok=True)
    reference = scratch / f"reference-{rows}.jsonl"
    measure(pythons["ours"], "ours", source, outputs["ours"])
    shutil.move(outputs["ours"] / "records.jsonl", reference)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in outputs}
    for round_number in range(repeat):
        for name, out_dir in outputs.items():
            args = (source, out_dir, reference) if name == "floor" else (source, out_dir)
            results[name].append(measure(pythons[name], name, *args))
            if round_number == 0 and name in ("sklearn", "polars"):
                check_same(reference, out_dir / "records.jsonl", name)
            (out_dir / "records.jsonl").unlink(missing_ok=True)
    source.unlink()
    reference.unlink()
    return results


def report(rows: int, results: dict[str, list[dict[str, float]]]) -> None:
    medians = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in results.items()}
    print(f"\n{rows:,} rows x 20 columns, {len(results['ours'])} interleaved rounds, medians:\n")
    print("| candidate | rows/s | wall s | CPU s | peak RSS MB | wall × floor | wall × polars |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, m in medians.items():
        print(
            f"| {name} | {rows / m['wall']:,.0f} | {m['wall']:.2f} | {m['cpu']:.2f} | {m['rss_mb']:.0f} | "
            f"{m['wall'] / medians['floor']['wall']:.2f} | {m['wall'] / medians['polars']['wall']:.2f} |"
        )


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in CHILDREN:
        mode, *values = sys.argv[1:]
        if mode == "generate":
            generate(int(values[0]), Path(values[1]))
        else:
            CHILDREN[mode](*map(Path, values))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append", help="rows per run (repeatable; default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--candidates", default="polars,sklearn,floor", help="besides ours (floor and polars needed)")
    parser.add_argument(
        "--scratch",
        default="/dev/shm" if Path("/dev/shm").is_dir() else None,
        help="where inputs and outputs go (default: /dev/shm, so a slow disk's write-back does not decide the race)",
    )
    args = parser.parse_args()
    base = image_python()
    pythons = {"ours": base, "sklearn": base, "floor": base, "polars": polars_python(base)}
    for rows in args.rows or [1_000_000]:
        with tempfile.TemporaryDirectory(prefix="labelflow-bench-", dir=args.scratch) as scratch:
            candidates = args.candidates.split(",")
            report(rows, bench_size(rows, args.repeat, pythons, Path(scratch), candidates))
    return 0


if __name__ == "__main__":
    sys.exit(main())
