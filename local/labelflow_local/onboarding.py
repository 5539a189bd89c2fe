"""`labelflow init` infers a dataset spec from a sample of the data and says why; `labelflow validate` checks one.

Inference looks at the first rows only (labelflow_local.sampling) and decides, per column: the record id, the
event time, numeric and categorical features with their transforms, the text or image columns shown to
reviewers, or nothing (with the reason). The result is a DatasetSpec (labelflow.models.spec), so everything it
writes passed the same validation a run applies.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from labelflow.models.spec import (
    LABEL_FEATURES,
    RESERVED_FEATURE_NAMES,
    DatasetName,
    DatasetSpec,
    FeatureSpec,
    InputSpec,
    ModelSpec,
)
from labelflow_local.sampling import Sample
from labelflow_local.spec_reference import error_lines
from labelflow_local.template import LOCAL_BUCKET, PROJECT_ROOT

CATEGORY_CAP = 20
ONEHOT_MAX = 10
DISPLAY_MAX = 8
# A numeric column may hold a few placeholder tokens ("NA", "?"); processing rejects those rows.
NUMERIC_SHARE = 0.9
PLACEHOLDERS_MAX = 3
# Epoch seconds between 2000-01-01 and 2100-01-01, in a column named like a time, make an event time.
EPOCH_RANGE = (946_684_800, 4_102_444_800)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")
LABEL_COLUMN_NAMES = frozenset({"label", "labels", "target", "y", "truth", "ground_truth"})
_ID_NAME = re.compile(r"^(id|key|uuid|guid)$|[_\-\s.](id|key|uuid|guid)$", re.IGNORECASE)
_TIME_NAME = re.compile(r"time|date|timestamp|(^|_)ts$|_at$|created|updated", re.IGNORECASE)
_IMAGE_URI = re.compile(r"^(s3|https?)://\S+$", re.IGNORECASE)
_EPOCH = re.compile(r"[+-]?\d+(\.\d+)?")
# Feature Store's FeatureName pattern (labelflow.models.spec checks one-hot columns against it too).
_FEATURE_STORE_NAME = re.compile(r"^[a-zA-Z0-9]([-_]*[a-zA-Z0-9]){0,63}$")
# Runs in the processing image's venv: joblib.load needs its scikit-learn, and unpickling runs the file's code.
_INSPECT_MODEL = """
import json, shutil, sys, tempfile
from pathlib import Path
sys.path.insert(0, sys.argv[1])
try:
    import joblib
    from scoring import find_model_file
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as unpacked:
        shutil.copy(sys.argv[2], folder)
        path = find_model_file(Path(folder), Path(unpacked))[1]
        model = joblib.load(path)
    names = getattr(model, "feature_names_in_", None)
    print(json.dumps({
        "type": type(model).__name__,
        "classes": [str(c) for c in getattr(model, "classes_", [])],
        "predict_proba": callable(getattr(model, "predict_proba", None)),
        "feature_names_in": None if names is None else [str(n) for n in names],
    }))
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
"""


class OnboardingError(ValueError):
    """A user's input cannot make a spec; the message says why and what to do, in one line."""


@dataclass(frozen=True)
class Decision:
    """What init made of one column, and why."""

    column: str
    role: str
    why: str


@dataclass(frozen=True)
class ModelInfo:
    """What a model file holds, read in the processing image's venv."""

    path: Path
    sha256: str
    type_name: str
    classes: list[str]
    feature_names_in: list[str] | None


@dataclass(frozen=True)
class Inferred:
    spec: DatasetSpec
    decisions: list[Decision]
    notes: list[str]


# --- values -----------------------------------------------------------------------------------------------


def as_text(value: object) -> str:
    """A sampled cell as text: cells are text already (labelflow_local.sampling), nested values as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def as_number(value: object) -> float | None:
    """The cell as a finite number, or None."""
    try:
        number = float(value) if isinstance(value, str) else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def is_timestamp(value: object, epoch: bool = True) -> bool:
    """ISO-8601 or (when `epoch`) epoch seconds, as processing parses event times."""
    if not isinstance(value, str):
        return False
    if _EPOCH.fullmatch(value):
        return epoch and EPOCH_RANGE[0] <= float(value) <= EPOCH_RANGE[1]
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def is_image_uri(value: object) -> bool:
    if not isinstance(value, str) or not _IMAGE_URI.match(value):
        return False
    return value.split("?", 1)[0].split("#", 1)[0].lower().endswith(IMAGE_EXTENSIONS)


def is_id_name(column: str) -> bool:
    return bool(_ID_NAME.search(column) or re.search(r"[a-z0-9](Id|ID)$", column))


def feature_name(column: str, taken: set[str]) -> str:
    """A feature name for a column: letters, digits and underscores, starting with a letter, unique."""
    name = re.sub(r"[^A-Za-z0-9]+", "_", column).strip("_")
    if not name[:1].isalpha():
        name = f"f_{name}".rstrip("_")
    name = name[:58].rstrip("_")
    if name in RESERVED_FEATURE_NAMES | set(LABEL_FEATURES) | {"record_id", "event_time"}:
        name = f"{name}_value"
    unique, suffix = name, 2
    while unique in taken:
        unique, suffix = f"{name}_{suffix}", suffix + 1
    taken.add(unique)
    return unique


# --- the columns ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column of the sample: its non-missing values and their counts."""

    name: str
    values: list[object]
    rows: int

    @property
    def missing(self) -> int:
        return self.rows - len(self.values)

    @property
    def counts(self) -> Counter[str]:
        return Counter(as_text(v) for v in self.values)

    @property
    def unique(self) -> bool:
        return len(self.counts) == len(self.values)

    def numbers(self) -> tuple[int, Counter[str]]:
        """How many values are numbers, and the others (by text)."""
        others = Counter(as_text(v) for v in self.values if as_number(v) is None)
        return len(self.values) - sum(others.values()), others


def columns_of(sample: Sample) -> list[Column]:
    return [Column(name, sample.values(name), len(sample.rows)) for name in sample.columns]


def choose_id(columns: list[Column], requested: str | None, described: str) -> Decision:
    """The record id: the requested column, else the first unique, non-empty column named like an id."""
    by_name = {c.name: c for c in columns}
    if requested is not None:
        if requested not in by_name:
            raise OnboardingError(f"--id-column {requested!r} is not a column of the data ({_names(by_name)})")
        column = by_name[requested]
        if column.missing or not column.unique:
            repeated = len(column.values) - len(column.counts)
            raise OnboardingError(
                f"--id-column {requested!r}: {column.missing} empty and {repeated} repeated values in {described}: "
                "record ids must be unique and non-empty"
            )
        return Decision(requested, "record id", f"as asked (--id-column); unique and non-empty in {described}")
    candidates = [c for c in columns if c.values and not c.missing and c.unique]
    for column in candidates:
        if is_id_name(column.name):
            return Decision(column.name, "record id", f"named like an id; unique and non-empty in {described}")
    for column in candidates:
        if all(isinstance(v, str) and as_number(v) is None and " " not in v for v in column.values):
            return Decision(
                column.name,
                "record id",
                f"unique and non-empty in {described}; no column is named like an id: --id-column picks another",
            )
    raise OnboardingError(
        "no record id column: no column is unique and non-empty and named like an id (id, *_id, key); "
        "pass --id-column COLUMN or add an id column to the data"
    )


def choose_event_time(columns: list[Column]) -> tuple[Decision | None, dict[str, str]]:
    """The event-time column (ISO-8601 or epoch seconds in every sampled row), and why other time columns are not."""
    candidates: list[Column] = []
    rejected: dict[str, str] = {}
    for column in columns:
        if not column.values:
            continue
        named = bool(_TIME_NAME.search(column.name))
        if not all(is_timestamp(v, epoch=named) for v in column.values):
            continue
        if column.missing:
            rejected[column.name] = (
                f"timestamps, but {column.missing} sampled rows have none (a run rejects rows without an "
                "event time): not the event time"
            )
        else:
            candidates.append(column)
    if not candidates:
        return None, rejected
    chosen = next((c for c in candidates if _TIME_NAME.search(c.name)), candidates[0])
    for column in candidates:
        if column is not chosen:
            rejected[column.name] = f"timestamps too; {chosen.name} is the event time"
    numeric = all(as_number(v) is not None for v in chosen.values)
    kind = "epoch seconds" if numeric else "ISO-8601 timestamps"
    return Decision(chosen.name, "event time", f"{kind} in every sampled row"), rejected


def _names(columns: Sequence[str] | dict[str, Any], limit: int = 8) -> str:
    names = list(columns)
    shown = ", ".join(names[:limit])
    return f"columns: {shown}, ..." if len(names) > limit else f"columns: {shown}"


def _label_like(column: Column, labels: list[str]) -> bool:
    folded = {label.casefold() for label in labels}
    return column.name.casefold() in LABEL_COLUMN_NAMES or all(t.casefold() in folded for t in column.counts)


def _mean_length(column: Column) -> float:
    return sum(len(as_text(v)) for v in column.values) / len(column.values)


def _spaced_share(column: Column) -> float:
    return sum(" " in as_text(v) for v in column.values) / len(column.values)


def classify(column: Column, labels: list[str]) -> tuple[str, str]:
    """(role, why) for a column that is neither the record id nor the event time."""
    if not column.values:
        return "skipped", "empty in every sampled row"
    if any(isinstance(v, dict | list) for v in column.values):
        return "skipped", "nested values (objects or lists): not a feature"
    if _label_like(column, labels):
        return "skipped", "holds the labels (a known label is not a feature; keep it aside as the truth)"
    counts = column.counts
    if len(counts) == 1:
        return "skipped", f"the same value ({next(iter(counts))!r}) in every sampled row: carries no information"
    if is_id_name(column.name) and column.unique:
        return "skipped", "another identifier (named like an id, unique)"
    numbers, others = column.numbers()
    if not others:
        return "numeric", ""
    if numbers >= NUMERIC_SHARE * len(column.values) and len(others) <= PLACEHOLDERS_MAX:
        tokens = ", ".join(repr(t) for t in others)
        return "numeric", (
            f"; {sum(others.values())} rows hold {tokens}, not numbers: a run rejects them (leave such cells empty "
            "to impute them)"
        )
    if all(is_image_uri(v) for v in column.values):
        return "image", "image URIs: shown to reviewers"
    mostly_distinct = len(counts) > len(column.values) / 2
    if _mean_length(column) > 40 or (mostly_distinct and _spaced_share(column) >= 0.5):
        return "text", f"free text (mean {_mean_length(column):.0f} characters): shown to reviewers"
    if not mostly_distinct:
        return "categorical", ""
    return "skipped", (
        f"{len(counts)} distinct values in {len(column.values)} rows: an identifier or free-form value, not a feature"
    )


def numeric_feature(column: Column, name: str, caveat: str) -> tuple[FeatureSpec, str]:
    feature = FeatureSpec(
        name=name,
        column=None if name == column.name else column.name,
        type="numeric",
        impute="median",
        scaling="standard",
    )
    return feature, f"impute median, scale standard ({column.missing} of {column.rows} missing){caveat}"


def categorical_feature(column: Column, name: str) -> tuple[FeatureSpec, str]:
    counts = column.counts
    capped = len(counts) > CATEGORY_CAP
    kept = sorted(category for category, _ in counts.most_common(CATEGORY_CAP))
    unknown: Literal["ignore", "other"] = "other" if capped and "other" not in kept else "ignore"
    buckets = [*kept, *(["other"] if unknown == "other" else [])]
    onehot = len(buckets) <= ONEHOT_MAX and all(_FEATURE_STORE_NAME.match(f"{name}__{c}") for c in buckets)
    feature = FeatureSpec(
        name=name,
        column=None if name == column.name else column.name,
        type="categorical",
        impute="most_frequent",
        encoding="onehot" if onehot else "ordinal",
        categories=kept,
        unknown=unknown,
    )
    if onehot:
        how = "one-hot"
    else:
        how = "ordinal (" + ("many categories" if len(buckets) > ONEHOT_MAX else "names unfit for columns") + ")"
    if capped:
        rest = "any other value -> 'other'" if unknown == "other" else "other values ignored"
        covered = sum(counts[c] for c in kept) / len(column.values)
        scope = f"the {CATEGORY_CAP} most frequent of {len(counts)} categories ({covered:.0%} of values), {rest}"
    else:
        scope = f"{len(kept)} categories"
    return feature, f"{scope}; {how}, impute most_frequent"


# --- the model --------------------------------------------------------------------------------------------


def inspect_model(path: Path) -> ModelInfo:
    """Load a joblib model in the processing image's venv and read its classes and input column names.

    Unpickling runs code from the file: only pass model files you trust.
    """
    from labelflow_local.processing_env import ensure_processing_env, image_pins

    if not path.is_file():
        raise OnboardingError(f"--model {path}: no such file")
    if not (PROJECT_ROOT / "processing").is_dir():
        checkout = f"no processing/ under {PROJECT_ROOT}"
        raise OnboardingError(f"--model needs a labelflow checkout ({checkout}): install it with pip install -e .")
    with path.open("rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    python = ensure_processing_env()
    done = subprocess.run(
        [str(python), "-c", _INSPECT_MODEL, str(PROJECT_ROOT / "processing"), str(path.resolve())],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise OnboardingError(f"--model {path.name}: the inspection failed: {(done.stderr.strip() or '?')[-300:]}")
    found: dict[str, Any] = json.loads(lines[-1])
    sklearn = image_pins().packages.get("scikit-learn", "?")
    if "error" in found:
        raise OnboardingError(f"--model {path.name}: cannot be loaded with scikit-learn {sklearn}: {found['error']}")
    if not found["predict_proba"] or not found["classes"]:
        raise OnboardingError(f"--model {path.name}: a {found['type']} has no predict_proba and classes_")
    return ModelInfo(path, sha256, found["type"], found["classes"], found["feature_names_in"])


def _folded(text: str) -> str:
    return re.sub(r"[\s_\-]+", " ", text).strip().casefold()


def map_classes(classes: list[str], labels: list[str]) -> tuple[dict[str, str], str]:
    """model.class_labels for classes not spelled like the labels, and how they were matched."""
    if set(classes) <= set(labels):
        return {}, "spelled like the labels"
    folded = {_folded(label): label for label in labels}
    by_spelling = {c: folded.get(_folded(c)) for c in classes}
    if all(by_spelling.values()) and len(set(by_spelling.values())) == len(classes):
        return {c: str(label) for c, label in by_spelling.items() if c != label}, "matched by spelling"
    if len(classes) == len(labels) and set(classes) == {str(i) for i in range(len(labels))}:
        return {c: labels[int(c)] for c in classes}, "class i is the i-th of --labels: reorder them if not"
    raise OnboardingError(
        f"the model's classes {classes} do not map onto --labels {labels}: name the labels like the classes "
        "(or as many as the classes, in class order, for classes 0..n-1)"
    )


def model_section(
    info: ModelInfo, labels: list[str], text_columns: list[str], uri: str | None
) -> tuple[ModelSpec, str]:
    class_labels, matched = map_classes(info.classes, labels)
    s3_uri = uri or f"s3://{LOCAL_BUCKET}/config/models/{info.path.name}"
    if info.feature_names_in:
        inputs: dict[str, Any] = {"input_columns": info.feature_names_in}
        reads = f"reads {len(info.feature_names_in)} input columns (its feature_names_in_)"
    elif text_columns:
        inputs = {"text_column": text_columns[0]}
        others = f"; of the text columns {', '.join(text_columns)}, the first" if len(text_columns) > 1 else ""
        reads = f"reads the text column {text_columns[0]}{others}"
    else:
        raise OnboardingError(
            f"--model {info.path.name} has no feature_names_in_ (it was not fitted on a pandas DataFrame) and the "
            "data has no text column: refit it on a DataFrame, or add model.input_columns to the spec by hand"
        )
    model = ModelSpec(s3_uri=s3_uri, classes=info.classes, class_labels=class_labels, sha256=info.sha256, **inputs)
    mapping = ", ".join(f"{c}->{model.label_of(c)}" for c in info.classes)
    return model, f"{info.type_name}, classes {mapping} ({matched}); {reads}; s3_uri {s3_uri}"


# --- the spec ---------------------------------------------------------------------------------------------


def check_dataset_name(name: str) -> str:
    try:
        return TypeAdapter(DatasetName).validate_python(name)
    except ValidationError:
        rule = DatasetSpec.model_fields["dataset"].description
        raise OnboardingError(f"--dataset {name!r}: not a dataset name: {rule}") from None


def parse_labels(text: str) -> list[str]:
    labels = [label.strip() for label in text.split(",") if label.strip()]
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise OnboardingError(f"--labels {text!r}: give at least two different labels, comma-separated")
    return labels


def infer_spec(
    sample: Sample,
    dataset: str,
    labels: list[str],
    id_column: str | None = None,
    model: ModelInfo | None = None,
    model_uri: str | None = None,
) -> Inferred:
    """The spec for the sampled data, with one decision per column."""
    if not sample.rows:
        raise OnboardingError(f"{sample.path.name}: no data rows after the header")
    described = sample.describe()
    columns = columns_of(sample)
    record_id = choose_id(columns, id_column, described)
    event_time, time_reasons = choose_event_time([c for c in columns if c.name != record_id.column])
    decided = {record_id.column: record_id, **({event_time.column: event_time} if event_time else {})}
    features: list[FeatureSpec] = []
    shown: list[str] = []
    taken: set[str] = set()
    model_inputs = set(model.feature_names_in or []) if model else set()
    for column in columns:
        if column.name in decided:
            continue
        role, why = classify(column, labels)
        if column.name in time_reasons:
            role, why = "skipped", time_reasons[column.name]
        if role == "skipped" and column.name in model_inputs and column.values and not column.numbers()[1]:
            role, why = "numeric", "; the model reads it, so it must reach the model as numbers"
        if role == "numeric":
            feature, why = numeric_feature(column, feature_name(column.name, taken), why)
        elif role == "categorical":
            feature, why = categorical_feature(column, feature_name(column.name, taken))
        else:
            if role in ("text", "image"):
                shown.append(column.name)
            decided[column.name] = Decision(column.name, role if role == "skipped" else f"{role} (display)", why)
            continue
        features.append(feature)
        renamed = f" {feature.name}" if feature.name != column.name else ""
        decided[column.name] = Decision(column.name, f"{role} feature{renamed}", why)
    notes: list[str] = []
    if not shown:
        shown = [f.source_column for f in features][:DISPLAY_MAX] or [record_id.column]
        notes.append(f"display_columns: {', '.join(shown)} (no text or image column: the first few columns)")
    body: dict[str, Any] = {
        "dataset": check_dataset_name(dataset),
        "record_id_column": record_id.column,
        "event_time_column": event_time.column if event_time else None,
        "display_columns": shown,
        "features": features,
        "labels": labels,
    }
    body["input"] = input_section(sample)
    if encoding := sample.options.encoding:
        notes.append(f"input.encoding: {encoding} (the file is not UTF-8): check that accented letters read right")
    if model is not None:
        missing = [c for c in model.feature_names_in or [] if c not in sample.columns]
        if missing:
            raise OnboardingError(f"--model {model.path.name} reads columns the data lacks: {', '.join(missing)}")
        body["model"], why = model_section(model, labels, shown_text(decided), model_uri)
        notes.append(f"model: {why}")
    else:
        notes.append("no --model: every record goes to reviewers")
    if not event_time:
        notes.append("no event-time column: records take the time their file landed")
    try:
        spec = DatasetSpec.model_validate(body)
    except ValidationError as exc:
        raise OnboardingError(f"the inferred spec is not valid: {'; '.join(error_lines(exc, DatasetSpec))}") from exc
    return Inferred(spec, [decided[c.name] for c in columns], notes)


def input_section(sample: Sample) -> InputSpec:
    """What the spec's `input` must say so that planning reads later files as the sample was read."""
    delimiter = sample.resolved.delimiter
    return InputSpec(
        format="auto" if sample.extension_says_format else sample.resolved.format,
        delimiter=None if delimiter == "," else delimiter,
        encoding=sample.options.encoding,
    )


def shown_text(decided: dict[str, Decision]) -> list[str]:
    return [d.column for d in decided.values() if d.role == "text (display)"]


def spec_json(spec: DatasetSpec) -> str:
    """The spec as written by init: only what differs from the defaults."""
    return json.dumps(spec.model_dump(mode="json", exclude_defaults=True), indent=2) + "\n"


def report(inferred: Inferred, out: Path) -> str:
    """What init decided, one line per column, then the notes."""
    width = min(max(len(d.column) for d in inferred.decisions), 28)
    lines = [f"wrote {out} (dataset {inferred.spec.dataset}):"]
    for decision in inferred.decisions:
        lines.append(f"  {decision.column:<{width}}  {decision.role}: {decision.why}")
    lines += [f"  {note}" for note in inferred.notes]
    return "\n".join(lines)


# --- checking a file against a spec -----------------------------------------------------------------------


_REJECTED = "a run rejects those rows"


@dataclass(frozen=True)
class Finding:
    """One result of checking data against a spec: a problem (a run would reject rows or fail) or a note."""

    problem: bool
    text: str


def _is_event_time(value: object) -> bool:
    return as_number(value) is not None or is_timestamp(value, epoch=False)


def _examples(values: Sequence[object]) -> str:
    return ", ".join(repr(as_text(v))[:40] for v in list(dict.fromkeys(values))[:3])


def check_data(spec: DatasetSpec, sample: Sample) -> list[Finding]:
    """Check sampled rows against a spec: required columns, record ids, event times, numbers, categories."""
    missing = [c for c in spec.required_columns if c not in sample.columns]
    findings: list[Finding] = []
    if missing:
        present = _names(sample.columns)
        findings.append(Finding(True, f"missing columns the spec reads: {', '.join(missing)} (the file has {present})"))
    columns = {c.name: c for c in columns_of(sample) if c.name in spec.required_columns}
    if ids := columns.get(spec.record_id_column):
        repeated = len(ids.values) - len(ids.counts)
        if ids.missing or repeated:
            text = f"record_id_column {ids.name}: {ids.missing} empty and {repeated} repeated ids: ids must be unique"
            findings.append(Finding(True, f"{text} and non-empty"))
    if spec.event_time_column and (times := columns.get(spec.event_time_column)):
        bad = [v for v in times.values if not _is_event_time(v)]
        if times.missing or bad:
            examples = f" (e.g. {_examples(bad)})" if bad else ""
            findings.append(
                Finding(
                    True,
                    f"event_time_column {times.name}: {times.missing} empty and {len(bad)} neither ISO-8601 nor epoch "
                    f"seconds{examples}: {_REJECTED}",
                )
            )
    for index, feature in enumerate(spec.features):
        if column := columns.get(feature.source_column):
            findings += _check_feature(f"features[{index}] {feature.name}", feature, column)
    return findings


def _check_feature(where: str, feature: FeatureSpec, column: Column) -> list[Finding]:
    findings: list[Finding] = []
    if column.missing and feature.impute is None:
        findings.append(Finding(True, f"{where}: {column.missing} empty values and no impute: {_REJECTED}"))
    if feature.type == "numeric":
        _, others = column.numbers()
        if others:
            count = sum(others.values())
            examples = _examples(list(others))
            findings.append(Finding(True, f"{where}: {count} values are not numbers (e.g. {examples}): {_REJECTED}"))
    if feature.categories and column.values:
        known = set(feature.categories)
        share = sum(n for text, n in column.counts.items() if text not in known) / len(column.values)
        if share and feature.unknown == "other":
            findings.append(Finding(False, f"{where}: {share:.1%} of values are not among its categories: 'other'"))
        elif share:
            # Ignored values lose their information; most of a column ignored is likely the wrong list.
            text = f"{where}: {share:.1%} of values are not among its categories: ignored (one-hot all 0, ordinal -1)"
            wrong = share > 0.5
            findings.append(Finding(wrong, text + ("; wrong column or categories?" if wrong else "")))
    return findings
