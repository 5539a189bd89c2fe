"""Turn a dataset's raw CSV input into labelflow feature records.

This is the entry point of the SageMaker Processing job, on the scikit-learn processing image
(processing/image.json): the standard library, plus scikit-learn and pandas for the dataset's model. The
dataset spec arrives as JSON (`DatasetSpec.model_dump(mode="json")`), already validated by labelflow, so
its shape is trusted here.

The input is read twice. The first pass checks every row, reports row problems in `rejected.jsonl` and fits
the feature transforms on the accepted rows. The second pass transforms the accepted rows, scores them with
the optional model in batches (scoring.py) and writes `records.jsonl`. `stats.json` is written last, so its
presence means the run finished. A problem with the input as a whole (no file, no data rows, unreadable text,
missing columns, an unusable model) stops the job with exit code 2 and a one-line message in the SageMaker
message file.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import statistics
import sys
from abc import ABC, abstractmethod
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain, repeat
from pathlib import Path
from typing import Any, TextIO

from scoring import ModelConfig, ModelError, Scorer, load_model

EXIT_FATAL = 2
# SageMaker keeps at most 1024 characters of the message file as the job's failure reason.
MAX_MESSAGE_CHARS = 1000
OUTPUT_FILES = ("records.jsonl", "rejected.jsonl", "stats.json")
# Rows scored per predict_proba call: large enough to amortise the call, small enough to bound memory.
SCORING_BATCH = 2048
EPOCH_PATTERN = re.compile(r"[+-]?\d+(\.\d+)?")

Parsed = float | str | None
OutputValue = float | int | str


class FatalInputError(Exception):
    """The input as a whole cannot be processed; the message becomes the job's failure reason."""


class RowRejected(Exception):
    """One row cannot be processed; it goes to rejected.jsonl and the run carries on."""

    def __init__(self, reason: str, record_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.record_id = record_id


# --- the dataset spec -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSpec:
    """One feature of the spec, as the processing step needs it."""

    name: str
    column: str
    type: str
    impute: str | None
    fill_value: str | float | None
    encoding: str | None
    scaling: str | None
    categories: tuple[str, ...]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> FeatureSpec:
        return cls(
            name=raw["name"],
            column=raw.get("column") or raw["name"],
            type=raw["type"],
            impute=raw.get("impute"),
            fill_value=raw.get("fill_value"),
            encoding=raw.get("encoding"),
            scaling=raw.get("scaling"),
            categories=tuple(raw.get("categories") or ()),
        )


@dataclass(frozen=True)
class Spec:
    """The parts of the dataset spec that drive processing."""

    record_id_column: str
    event_time_column: str | None
    display_column: str
    features: tuple[FeatureSpec, ...]
    labels: tuple[str, ...]
    model: ModelConfig | None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Spec:
        model = raw.get("model")
        return cls(
            record_id_column=raw["record_id_column"],
            event_time_column=raw.get("event_time_column"),
            display_column=raw["display_column"],
            features=tuple(FeatureSpec.from_json(feature) for feature in raw["features"]),
            labels=tuple(raw["labels"]),
            model=ModelConfig.from_json(model) if model else None,
        )

    @property
    def required_columns(self) -> list[str]:
        """Columns every input file must have, without repeats (same order as DatasetSpec.required_columns)."""
        columns = [self.record_id_column, self.display_column]
        if self.event_time_column:
            columns.append(self.event_time_column)
        columns += [feature.column for feature in self.features]
        if self.model:
            columns += self.model.columns
        return list(dict.fromkeys(columns))


def load_spec(path: Path) -> Spec:
    """Read the dataset spec JSON."""
    try:
        return Spec.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise FatalInputError(f"cannot read the dataset spec {path}: {exc}") from exc
    except (KeyError, TypeError) as exc:
        raise FatalInputError(f"dataset spec {path} is malformed: {exc!r}") from exc


# --- values -----------------------------------------------------------------------------------------------


def parse_event_time(text: str) -> str:
    """Normalise ISO-8601 (naive means UTC) or epoch seconds to `YYYY-MM-DDTHH:MM:SSZ`; ValueError otherwise."""
    text = text.strip()
    try:
        if EPOCH_PATTERN.fullmatch(text):
            moment = datetime.fromtimestamp(float(text), tz=UTC)
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
        utc = moment.astimezone(UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise ValueError(f"not a timestamp: {text!r}") from exc
    return utc.replace(tzinfo=None, microsecond=0).isoformat() + "Z"


def _short(text: str, limit: int = 40) -> str:
    """Quote a cell for a rejection reason, cut to a readable length."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


# --- feature transforms -----------------------------------------------------------------------------------


class Feature(ABC):
    """A feature's transform: parse a cell, observe accepted values, fit, then transform."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.missing = 0

    def parse(self, raw: str) -> Parsed:
        """The cell's value, None when missing and imputable; RowRejected when the row cannot be used."""
        text = raw.strip()
        if not text:
            if self.spec.impute is None:
                raise RowRejected(f"missing value for {self.spec.name}")
            return None
        return self.parse_present(text)

    @abstractmethod
    def parse_present(self, text: str) -> Parsed:
        """Parse a non-empty cell."""

    @abstractmethod
    def observe(self, value: Parsed) -> None:
        """Record a value of an accepted row for the fit."""

    @abstractmethod
    def fit(self) -> None:
        """Compute the transform's parameters from the observed values."""

    @abstractmethod
    def transform(self, value: Parsed) -> dict[str, OutputValue]:
        """The output feature column(s) for a value."""

    @abstractmethod
    def fitted(self) -> dict[str, Any]:
        """The fitted parameters, for stats.json."""

    def _cannot_impute(self) -> FatalInputError:
        return FatalInputError(f"cannot impute {self.spec.name}: the accepted rows have no value for it")


def _most_frequent[T: (float, str)](counts: Counter[T]) -> T | None:
    """The most common value; ties go to the smallest value so the choice never depends on row order."""
    if not counts:
        return None
    return min(counts.items(), key=lambda item: (-item[1], item[0]))[0]


class NumericFeature(Feature):
    """Parse a float, impute missing values, then optionally scale (standard or min-max)."""

    def __init__(self, spec: FeatureSpec) -> None:
        super().__init__(spec)
        self.observed = array("d")
        self.impute_value: float | None = None
        if spec.impute == "constant":
            try:
                self.impute_value = float(str(spec.fill_value))
            except ValueError as exc:
                raise FatalInputError(f"fill_value for {spec.name} is not a number: {spec.fill_value!r}") from exc
        self.stats: dict[str, float] | None = None

    def parse_present(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise RowRejected(f"{self.spec.name} is not a number: {_short(text)}")
        return value

    def observe(self, value: Parsed) -> None:
        if value is None:
            self.missing += 1
        else:
            self.observed.append(float(value))

    def fit(self) -> None:
        if self.observed:
            if self.spec.impute == "mean":
                self.impute_value = math.fsum(self.observed) / len(self.observed)
            elif self.spec.impute == "median":
                self.impute_value = statistics.median(self.observed)
            elif self.spec.impute == "most_frequent":
                self.impute_value = _most_frequent(Counter(self.observed))
        if self.missing and self.impute_value is None:
            raise self._cannot_impute()
        total = len(self.observed) + self.missing
        if not total:
            return
        # Scaling is fitted on the imputed column, as an imputer followed by a scaler would be.
        fill = self.impute_value if self.impute_value is not None else math.nan  # only used when missing > 0

        def column() -> Iterator[float]:
            return chain(self.observed, repeat(fill, self.missing))

        mean = math.fsum(column()) / total
        low, high = min(column()), max(column())
        std = 0.0 if low == high else math.sqrt(math.fsum((x - mean) ** 2 for x in column()) / total)
        self.stats = {"mean": mean, "std": std, "min": low, "max": high}

    def transform(self, value: Parsed) -> dict[str, OutputValue]:
        if value is None:
            if self.impute_value is None:
                raise self._cannot_impute()
            value = self.impute_value
        x = float(value)
        if self.stats is not None and self.spec.scaling == "standard":
            x = 0.0 if self.stats["std"] == 0 else (x - self.stats["mean"]) / self.stats["std"]
        elif self.stats is not None and self.spec.scaling == "minmax":
            span = self.stats["max"] - self.stats["min"]
            x = 0.0 if span == 0 else (x - self.stats["min"]) / span
        # Adding 0.0 turns a -0.0 into 0.0.
        return {self.spec.name: round(x, 6) + 0.0}

    def fitted(self) -> dict[str, Any]:
        return {
            "missing": self.missing,
            "impute": self.spec.impute,
            "impute_value": self.impute_value,
            "scaling": self.spec.scaling,
            **(self.stats or dict.fromkeys(("mean", "std", "min", "max"))),
        }


class CategoricalFeature(Feature):
    """Keep a string, impute missing values, then optionally encode it (one-hot or ordinal)."""

    def __init__(self, spec: FeatureSpec) -> None:
        super().__init__(spec)
        self.counts: Counter[str] = Counter()
        self.codes = {category: code for code, category in enumerate(spec.categories)}
        self.impute_value: str | None = None
        if spec.impute == "constant" and spec.fill_value is not None:
            fill = spec.fill_value
            self.impute_value = str(int(fill)) if isinstance(fill, float) and fill.is_integer() else str(fill)

    def parse_present(self, text: str) -> str:
        return text

    def observe(self, value: Parsed) -> None:
        if value is None:
            self.missing += 1
        else:
            self.counts[str(value)] += 1

    def fit(self) -> None:
        if self.spec.impute == "most_frequent":
            self.impute_value = _most_frequent(self.counts)
        if self.missing and self.impute_value is None:
            raise self._cannot_impute()

    def transform(self, value: Parsed) -> dict[str, OutputValue]:
        if value is None:
            if self.impute_value is None:
                raise self._cannot_impute()
            value = self.impute_value
        text = str(value)
        if self.spec.encoding == "onehot":
            return {f"{self.spec.name}__{category}": int(text == category) for category in self.spec.categories}
        if self.spec.encoding == "ordinal":
            return {self.spec.name: self.codes.get(text, -1)}
        return {self.spec.name: text}

    def fitted(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "missing": self.missing,
            "impute": self.spec.impute,
            "impute_value": self.impute_value,
            "encoding": self.spec.encoding,
        }
        if self.spec.categories:
            params["unknown"] = sum(n for value, n in self.counts.items() if value not in self.codes)
        return params


def make_feature(spec: FeatureSpec) -> Feature:
    return NumericFeature(spec) if spec.type == "numeric" else CategoricalFeature(spec)


# --- reading the input ------------------------------------------------------------------------------------


def read_csv(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number where the record starts, fields) for each non-blank record, header first.

    A UTF-8 byte order mark is dropped. Line numbers are physical lines, so a quoted cell spanning two
    lines moves the following records down by one.
    """
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            while True:
                line = reader.line_num + 1
                fields = next(reader, None)
                if fields is None:
                    return
                if fields:
                    yield line, fields
        except UnicodeDecodeError as exc:
            raise FatalInputError(f"input is not valid utf-8 text: {path.name}") from exc
        except csv.Error as exc:
            raise FatalInputError(f"input is not readable as csv: {path.name} line {reader.line_num}: {exc}") from exc


@dataclass(frozen=True)
class InputFile:
    """One input CSV file whose header has been checked."""

    path: Path
    width: int
    columns: dict[str, int]

    @classmethod
    def open(cls, path: Path, required: list[str]) -> InputFile:
        """Check the file is non-empty and has every required column."""
        if path.stat().st_size == 0:
            raise FatalInputError(f"input file is empty: {path.name}")
        first = next(read_csv(path), None)
        if first is None:
            raise FatalInputError(f"input file is empty: {path.name}")
        header = [name.strip() for name in first[1]]
        missing = sorted(set(required) - set(header))
        if missing:
            raise FatalInputError(f"missing required columns: {', '.join(missing)}")
        repeated = sorted(name for name in set(required) if header.count(name) > 1)
        if repeated:
            raise FatalInputError(f"repeated columns in the header of {path.name}: {', '.join(repeated)}")
        return cls(path=path, width=len(header), columns={name: header.index(name) for name in required})

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """The data records (header skipped) with their line numbers."""
        records = read_csv(self.path)
        next(records, None)
        yield from records


def find_inputs(input_dir: Path) -> list[Path]:
    """The *.csv files of the input directory, sorted by name."""
    if not input_dir.is_dir():
        raise FatalInputError(f"no input file: directory {input_dir} does not exist")
    files = sorted(path for path in input_dir.glob("*.csv") if path.is_file())
    if not files:
        raise FatalInputError(f"no input file: no *.csv in {input_dir}")
    return files


# --- the run ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """An accepted row, parsed."""

    record_id: str
    event_time: str
    values: list[Parsed]
    display: str
    model_inputs: dict[str, Parsed]


class Processor:
    """Checks, fits and transforms the rows of one run."""

    def __init__(self, spec: Spec, default_event_time: str | None) -> None:
        self.spec = spec
        self.default_event_time = default_event_time
        self.features = [make_feature(feature) for feature in spec.features]
        # A model reads a numeric feature's column as the parsed number (NaN when missing), any other as text.
        self.numeric_columns = {f.spec.column: i for i, f in enumerate(self.features) if f.spec.type == "numeric"}

    def record_id(self, file: InputFile, fields: list[str]) -> str:
        """The row's record id; RowRejected for a malformed row or an empty id."""
        index = file.columns[self.spec.record_id_column]
        record_id = fields[index].strip() if index < len(fields) else ""
        if len(fields) != file.width:
            raise RowRejected(f"expected {file.width} fields, found {len(fields)}", record_id or None)
        if not record_id:
            raise RowRejected("missing record id")
        return record_id

    def parse_row(self, file: InputFile, fields: list[str], record_id: str) -> Row:
        """Parse every cell the run needs; RowRejected on the first problem."""

        def cell(column: str) -> str:
            return fields[file.columns[column]]

        try:
            if self.spec.event_time_column:
                raw_time = cell(self.spec.event_time_column).strip()
                if not raw_time:
                    raise RowRejected("missing event time")
                try:
                    event_time = parse_event_time(raw_time)
                except ValueError:
                    raise RowRejected(f"unparsable event time: {_short(raw_time)}") from None
            else:
                assert self.default_event_time is not None
                event_time = self.default_event_time
            values = [feature.parse(cell(feature.spec.column)) for feature in self.features]
        except RowRejected as exc:
            exc.record_id = record_id
            raise
        model_inputs: dict[str, Parsed] = {}
        for column in self.spec.model.columns if self.spec.model else ():
            if column in self.numeric_columns:
                model_inputs[column] = values[self.numeric_columns[column]]
            else:
                model_inputs[column] = cell(column).strip() or None
        return Row(record_id, event_time, values, cell(self.spec.display_column), model_inputs)

    def check(self, files: list[InputFile], rejected_out: TextIO) -> tuple[int, set[tuple[int, int]]]:
        """First pass: reject bad rows and observe the accepted ones. Returns rows read and rejected lines."""
        seen: set[str] = set()
        rejected: set[tuple[int, int]] = set()
        rows_read = 0
        for index, file in enumerate(files):
            for line, fields in file.rows():
                rows_read += 1
                try:
                    record_id = self.record_id(file, fields)
                    if record_id in seen:
                        raise RowRejected("duplicate record id", record_id)
                    seen.add(record_id)
                    row = self.parse_row(file, fields, record_id)
                except RowRejected as exc:
                    rejected.add((index, line))
                    entry = {"line": line, "record_id": exc.record_id, "reason": exc.reason}
                    rejected_out.write(json.dumps(entry, ensure_ascii=False) + "\n")
                    continue
                for feature, value in zip(self.features, row.values, strict=True):
                    feature.observe(value)
        return rows_read, rejected

    def fit(self) -> None:
        for feature in self.features:
            feature.fit()

    def write_records(
        self, files: list[InputFile], rejected: set[tuple[int, int]], records_out: TextIO, model: Scorer | None
    ) -> tuple[int, dict[str, int]]:
        """Second pass: transform and score the accepted rows. Returns records written and label counts."""
        written = 0
        predicted = dict.fromkeys(self.spec.labels, 0) if model else {}
        pending: list[tuple[dict[str, Any], dict[str, Parsed]]] = []

        def flush() -> None:
            nonlocal written
            predictions: list[tuple[str, float]] = []
            if model is not None:
                columns = {name: [inputs[name] for _, inputs in pending] for name in model.config.columns}
                predictions = model.predict(columns)
            for index, (record, _) in enumerate(pending):
                if predictions:
                    label, confidence = predictions[index]
                    predicted[label] = predicted.get(label, 0) + 1
                    record["prediction"] = {"label": label, "confidence": confidence}
                records_out.write(json.dumps(record, ensure_ascii=False) + "\n")
            written += len(pending)
            pending.clear()

        for index, file in enumerate(files):
            for line, fields in file.rows():
                if (index, line) in rejected:
                    continue
                row = self.parse_row(file, fields, self.record_id(file, fields))
                features: dict[str, OutputValue] = {}
                for feature, value in zip(self.features, row.values, strict=True):
                    features.update(feature.transform(value))
                record = {
                    "record_id": row.record_id,
                    "event_time": row.event_time,
                    "features": features,
                    "display": row.display,
                    "prediction": None,
                }
                pending.append((record, row.model_inputs))
                if len(pending) >= SCORING_BATCH:
                    flush()
        flush()
        return written, predicted


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Process the input described by the arguments; returns the stats it wrote."""
    spec = load_spec(args.spec)
    default_event_time: str | None = None
    if args.default_event_time is not None:
        try:
            default_event_time = parse_event_time(args.default_event_time)
        except ValueError:
            raise FatalInputError(f"invalid --default-event-time: {args.default_event_time!r}") from None
    elif not spec.event_time_column:
        raise FatalInputError("the spec has no event_time_column and no --default-event-time was given")
    files = [InputFile.open(path, spec.required_columns) for path in find_inputs(args.input_dir)]

    processor = Processor(spec, default_event_time)
    output_dir: Path = args.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    with (output_dir / "rejected.jsonl").open("w", encoding="utf-8") as rejected_out:
        rows_read, rejected = processor.check(files, rejected_out)
    if rows_read == 0:
        raise FatalInputError("input has no data rows")
    # Loaded once the input is known to be usable: a model can be large.
    try:
        model = load_model(args.model_dir, spec.model) if spec.model else None
    except ModelError as exc:
        raise FatalInputError(str(exc)) from exc
    processor.fit()
    with (output_dir / "records.jsonl").open("w", encoding="utf-8") as records_out:
        written, predicted = processor.write_records(files, rejected, records_out, model)

    stats = {
        "records_in": rows_read,
        "records_out": written,
        "rejected": len(rejected),
        "fitted": {feature.spec.name: feature.fitted() for feature in processor.features},
        "predicted_labels": predicted,
        "model": {"file": model.file_name, "sha256": model.sha256, "classes": list(model.config.classes)}
        if model
        else None,
        "input_files": [file.path.name for file in files],
    }
    (output_dir / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return stats


def report_failure(message_file: Path, message: str) -> None:
    """Tell SageMaker (message file) and the logs (stderr) why the job failed."""
    message = message[:MAX_MESSAGE_CHARS]
    print(message, file=sys.stderr)
    try:
        message_file.parent.mkdir(parents=True, exist_ok=True)
        message_file.write_text(message + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"cannot write the message file {message_file}: {exc}", file=sys.stderr)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--input-dir", type=Path, default=Path("/opt/ml/processing/input/data"))
    parser.add_argument("--spec", type=Path, default=Path("/opt/ml/processing/input/spec/spec.json"))
    parser.add_argument("--model-dir", type=Path, default=Path("/opt/ml/processing/input/model"))
    parser.add_argument("--output-dir", type=Path, default=Path("/opt/ml/processing/output"))
    parser.add_argument("--message-file", type=Path, default=Path("/opt/ml/output/message"))
    parser.add_argument(
        "--default-event-time", help="ISO-8601 UTC time for every record; required when the spec has no event time"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        stats = run(args)
    except FatalInputError as exc:
        for name in OUTPUT_FILES:
            (args.output_dir / name).unlink(missing_ok=True)
        report_failure(args.message_file, str(exc))
        return EXIT_FATAL
    except Exception as exc:
        report_failure(args.message_file, f"internal error: {type(exc).__name__}: {exc}")
        raise
    print(
        f"processed {stats['records_in']} rows from {len(stats['input_files'])} file(s): "
        f"{stats['records_out']} records, {stats['rejected']} rejected"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
