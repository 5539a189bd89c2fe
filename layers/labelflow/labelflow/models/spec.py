"""The dataset spec: the declarative, per-dataset file under config/datasets/."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from labelflow.layout import DATASET_NAME_MAX, DATASET_NAME_PATTERN

Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")]
DatasetName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=DATASET_NAME_MAX,
        pattern=DATASET_NAME_PATTERN,
        description="lowercase letters, digits and single hyphens, starting with a letter (e.g. `churn-2024`)",
    ),
]
# Feature Store's FeatureName pattern; one-hot columns are `<feature>__<category>`, so categories count.
_FEATURE_STORE_NAME = re.compile(r"^[a-zA-Z0-9]([-_]*[a-zA-Z0-9]){0,63}$")
RESERVED_FEATURE_NAMES = frozenset({"is_deleted", "write_time", "api_invocation_time"})
# Columns labelflow adds to every feature record, beside the dataset's own features.
LABEL_FEATURES = ("label", "label_source", "label_confidence", "run_id")
# A row's cells travel to human review in one line of Ground Truth's input manifest, and "the JSON line objects in
# your manifest can be up to 100 kilobytes" (SageMaker guide, sms-custom-templates-step3-lambda-requirements).
MAX_ROW_BYTES = 100 * 1024
# One cell at most 64 KiB leaves that line room for the row's other cells, its record id and JSON escaping. Feature
# Store's own ceilings are higher: ValueAsString max 358,400 (botocore sagemaker-featurestore-runtime 2020-07-01),
# 350 KB per value and per record (SageMaker guide, feature-store-quotas).
MAX_CELL_BYTES = 64 * 1024
# Audit labels cost reviews: 2% draws 100 records per 5,000, so the ~500 labels a 95% target needs (at most 16
# model errors, at 95% confidence) gather within a few runs, for at most 2% more reviews.
DEFAULT_AUDIT_RATE = 0.02
DEFAULT_CERTIFICATION_CONFIDENCE = 0.95
# Past half its rows rejected, a file is more likely the wrong file or a broken export than good data with bad rows.
DEFAULT_MAX_REJECTED_SHARE = 0.5


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class FeatureSpec(_Strict):
    """One feature column and how the processing step turns it into model-ready values."""

    name: Identifier = Field(description="the feature's name in the feature group (one-hot columns add `__<category>`)")
    column: str | None = Field(default=None, description="source column; defaults to the feature name")
    type: Literal["numeric", "categorical"] = Field(
        description="numeric: parsed as a number (a row whose value is not a finite number is rejected); "
        "categorical: kept as text"
    )
    impute: Literal["mean", "median", "most_frequent", "constant"] | None = Field(
        default=None,
        description="how a missing value is filled, from the fitted state (mean and median for numeric only); "
        "unset: a row missing this value is rejected",
    )
    fill_value: str | float | None = Field(default=None, description="the value `impute: constant` fills in")
    encoding: Literal["onehot", "ordinal"] | None = Field(
        default=None,
        description="categorical only: one 0/1 column per category, or the category's position in `categories`; "
        "unset: the text itself",
    )
    scaling: Literal["standard", "minmax"] | None = Field(
        default=None,
        description="numeric only: (x - mean) / std, or (x - min) / (max - min), with the fitted state's statistics",
    )
    categories: list[str] | None = Field(
        default=None, description="fixed category list; required for encoding so codes never shift between runs"
    )
    unknown: Literal["ignore", "other"] = Field(
        default="ignore",
        description="a value outside `categories`: `ignore` (one-hot all 0, ordinal -1) or `other` "
        "(its own one-hot column `<name>__other`, ordinal code len(categories))",
    )

    @property
    def source_column(self) -> str:
        return self.column or self.name

    @model_validator(mode="after")
    def _check_transforms(self) -> FeatureSpec:
        if self.type == "numeric" and self.encoding is not None:
            raise ValueError(f"feature '{self.name}': encoding applies to categorical features only")
        if self.type == "categorical" and self.scaling is not None:
            raise ValueError(f"feature '{self.name}': scaling applies to numeric features only")
        if self.type == "categorical" and self.impute in ("mean", "median"):
            raise ValueError(f"feature '{self.name}': impute '{self.impute}' needs a numeric feature")
        if self.encoding is not None and not self.categories:
            raise ValueError(f"feature '{self.name}': encoding needs a fixed categories list")
        if self.categories and len(set(self.categories)) != len(self.categories):
            raise ValueError(f"feature '{self.name}': categories must be unique")
        if self.unknown == "other" and self.encoding is None:
            raise ValueError(f"feature '{self.name}': unknown 'other' needs an encoding")
        if self.unknown == "other" and "other" in (self.categories or []):
            raise ValueError(f"feature '{self.name}': 'other' is both a category and the unknown bucket")
        if self.impute == "constant" and self.fill_value is None:
            raise ValueError(f"feature '{self.name}': impute 'constant' needs fill_value")
        return self


class ModelSpec(_Strict):
    """The dataset's own scikit-learn model (estimator or pipeline with predict_proba), saved with joblib.

    It reads either one text column (a 1-D array of strings, as a text pipeline expects) or several input
    columns (a pandas DataFrame; a column that a numeric feature reads arrives as numbers, NaN when missing).
    """

    s3_uri: Annotated[str, Field(pattern=r"^s3://[^/]+/.+")] = Field(
        description="the model file: joblib (*.joblib, *.pkl) or SageMaker's model.tar.gz holding one"
    )
    text_column: str | None = Field(default=None, min_length=1, description="the one text column the model reads")
    input_columns: list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None, min_length=1, description="the columns the model reads, as a DataFrame"
    )
    classes: list[Annotated[str, Field(min_length=1)]] = Field(
        min_length=2, description="the model's classes_, as strings, in its order (labelflow init reads them)"
    )
    class_labels: dict[str, str] = Field(
        default_factory=dict, description="model class -> dataset label, for classes not spelled like their label"
    )
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        default=None, description="pins the model file: a run refuses any other file"
    )

    @model_validator(mode="after")
    def _check_inputs(self) -> ModelSpec:
        if (self.text_column is None) == (self.input_columns is None):
            raise ValueError("model: set exactly one of text_column and input_columns")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("model.classes must be unique")
        unknown = sorted(set(self.class_labels) - set(self.classes))
        if unknown:
            raise ValueError(f"model.class_labels maps {unknown}, which are not in model.classes")
        return self

    @property
    def columns(self) -> list[str]:
        return [self.text_column] if self.text_column else list(self.input_columns or [])

    def label_of(self, model_class: str) -> str:
        return self.class_labels.get(model_class, model_class)


class LabelingSpec(_Strict):
    """What human reviewers see and how many of them look at each record."""

    task_title: str = Field(
        default="Classify the record", min_length=1, max_length=128, description="the task's title reviewers see"
    )
    task_description: str = Field(
        default="Choose the label that fits best",
        min_length=1,
        max_length=255,
        description="the task's description reviewers see",
    )
    workers_per_object: int = Field(
        default=1, ge=1, le=9, description="reviewers per record; several answers are consolidated into one label"
    )
    task_time_limit_seconds: int = Field(
        default=600, ge=30, le=28_800, description="how long one reviewer may take over one record"
    )
    task_availability_lifetime_seconds: int = Field(
        default=86_400, ge=60, le=2_592_000, description="how long records wait for reviewers before they expire"
    )
    max_concurrent_task_count: int = Field(
        default=1000, ge=1, le=5000, description="records offered to reviewers at the same time"
    )
    # 1,000 is MaxConcurrentTaskCount's default (SageMaker API reference, HumanTaskConfig): each job offers all of
    # its records to reviewers at once, and a job that fails loses at most that many; the jobs' requests (about
    # 1 KB each) stay far below the 256 KB state payload limit up to 100 jobs.
    objects_per_job: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="records per labeling job: a larger review is split over several jobs, run a few at a time",
    )


# The template's ReviewBackend values.
ReviewBackendName = Literal["groundtruth", "labelstudio"]
EngineName = Literal["single", "spark", "auto"]


class ReviewSpec(_Strict):
    """Who reviews this dataset's records, overriding the deployment's choice."""

    backend: ReviewBackendName | None = Field(
        default=None,
        description="`groundtruth` or `labelstudio`; the deployment's ReviewBackend parameter when unset",
    )


class InputSpec(_Strict):
    """How the landed files are read. Everything is detected when left unset."""

    format: Literal["auto", "csv", "jsonl", "parquet"] = Field(
        default="auto",
        description="`auto`: from the key's extension (.csv, .tsv, .jsonl, .ndjson, .parquet, each optionally "
        ".gz), else from the content",
    )
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] | None = Field(
        default=None, description="CSV field delimiter; detected from the header line when unset (`,` `;` tab `|`)"
    )
    encoding: str | None = Field(
        default=None, description="text encoding of CSV and JSON Lines; utf-8 (with or without BOM) when unset"
    )
    newlines_in_values: bool = Field(
        default=True,
        description="whether a quoted CSV value may hold a line break. `false` says every line is a whole record: "
        "a large CSV file can then be cut at line ends into parts for several processing instances, and the Spark "
        "engine splits it across tasks. A quoted line break then fails the run, naming its line",
    )


class DatasetSpec(_Strict):
    """Everything labelflow needs to know to process, label and store one dataset."""

    dataset: DatasetName
    input: InputSpec = Field(default=InputSpec(), description="how landed files are read; detected when unset")
    record_id_column: str = Field(
        min_length=1, description="the column that identifies a record; its values must be unique in a file"
    )
    event_time_column: str | None = Field(
        default=None, description="ISO-8601 or epoch seconds; without one, records take the time the file landed"
    )
    display_columns: list[Annotated[str, Field(min_length=1)]] = Field(
        min_length=1, description="the columns shown to human reviewers, as a table of column name and value"
    )
    features: list[FeatureSpec] = Field(
        default_factory=list, description="the feature columns and their transforms, in feature-group order"
    )
    labels: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=2, description="the label categories reviewers choose from and the model's classes map to"
    )
    model: ModelSpec | None = Field(
        default=None,
        description="your scikit-learn model that pre-labels records; without one every record is reviewed",
    )
    confidence_threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="records below it go to humans; the deployment default when unset. With target_accuracy: the "
        "fallback while the target cannot be certified yet",
    )
    target_accuracy: float | None = Field(
        default=None,
        ge=0.5,
        lt=1.0,
        description="instead of a fixed threshold: the auto-labels' accuracy to guarantee. Each run picks the "
        "lowest threshold (in hundredths, from the target down) whose accuracy the audit labels gathered for this "
        "dataset and model certify (exact binomial tests, stopping at the first that fails), else falls back to "
        "confidence_threshold and says so in run.json. It takes audit labels at or above the threshold: at least "
        "59 with no model error for 95% (at confidence 0.95), about 500 with at most 16 errors, 1,000 with at "
        "most 38; at least 299 with no error for 99%",
    )
    confidence: float = Field(
        default=DEFAULT_CERTIFICATION_CONFIDENCE,
        ge=0.5,
        lt=1.0,
        description="with target_accuracy: the probability that the certified threshold's accuracy meets the "
        "target (1 - delta of the test)",
    )
    audit_rate: float | None = Field(
        default=None,
        ge=0.0,
        le=0.5,
        description="the share of scored records drawn at random each run (seeded by the run id) whose human "
        "labels become audit labels; the confident ones among them are also sent to review (they keep the model's "
        f"label if nobody answers). Unset: {DEFAULT_AUDIT_RATE} with target_accuracy (100 audit labels per 5,000 "
        "records, so the ~500 a 95% target needs gather within a few runs, for at most 2% more reviews), else 0",
    )
    labeling: LabelingSpec = Field(default=LabelingSpec(), description="what reviewers see, and how many")
    review: ReviewSpec = Field(default=ReviewSpec(), description="the review backend, if not the deployment's")
    engine: EngineName = Field(
        default="auto",
        description="the processing engine: `single` (one SageMaker Processing container), `spark` (a PySpark job "
        "on the deployment's EMR Serverless application), `auto`: Spark from the deployment's SparkAboveBytes input "
        "size on, when the deployment has an application",
    )
    max_rejected_share: float = Field(
        default=DEFAULT_MAX_REJECTED_SHARE,
        ge=0.0,
        le=1.0,
        description="the share of a run's rows that may be rejected (bad values, duplicates, oversized cells...); "
        f"above it the processing step fails, rejected.jsonl still written. Default {DEFAULT_MAX_REJECTED_SHARE}: "
        "a file mostly rejected is more likely the wrong file or a broken export than good data with some bad rows. "
        "A file with no accepted row always fails",
    )
    max_cell_bytes: int = Field(
        default=MAX_CELL_BYTES,
        ge=1,
        le=MAX_CELL_BYTES,
        description=f"a row with a longer cell (UTF-8 bytes, in a column labelflow reads) is rejected. At most "
        f"{MAX_CELL_BYTES:,} (64 KiB): a row's cells must fit one Ground Truth input manifest line (100 KB), and "
        "Feature Store takes at most 350 KB per value",
    )
    max_row_bytes: int = Field(
        default=MAX_ROW_BYTES,
        ge=1,
        le=MAX_ROW_BYTES,
        description=f"a row whose cells (UTF-8 bytes, in the columns labelflow reads) add up to more is rejected. "
        f"At most {MAX_ROW_BYTES:,} (100 KB): Ground Truth's limit for one input manifest line, which carries the "
        "row to review",
    )
    fit_version: int = Field(
        default=1,
        ge=1,
        description="the transform state is fitted on the dataset's first run and applied to every later one; "
        "raise this number (or change a feature) to fit a new state on the next run",
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> DatasetSpec:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        if len(set(self.display_columns)) != len(self.display_columns):
            raise ValueError("display_columns must be unique")
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        clash = (set(names) & RESERVED_FEATURE_NAMES) | (set(names) & set(LABEL_FEATURES))
        clash |= set(names) & {"record_id", "event_time"}
        if clash:
            raise ValueError(f"feature names {sorted(clash)} are reserved")
        if self.model is not None:
            strays = {
                c: self.model.label_of(c) for c in self.model.classes if self.model.label_of(c) not in self.labels
            }
            if strays:
                raise ValueError(
                    f"model.classes: {', '.join(f'{c!r} (label {label!r})' for c, label in strays.items())} "
                    f"not among labels {self.labels}; map classes to labels with model.class_labels"
                )
        invalid = [n for n, _ in output_features(self) if len(n) > 64 or not _FEATURE_STORE_NAME.match(n)]
        if invalid:
            raise ValueError(f"not valid Feature Store feature names (one-hot columns included): {invalid}")
        return self

    @property
    def effective_audit_rate(self) -> float:
        """audit_rate, or its default: 0.02 with a target accuracy, none without."""
        if self.audit_rate is not None:
            return self.audit_rate
        return DEFAULT_AUDIT_RATE if self.target_accuracy is not None else 0.0

    @property
    def required_columns(self) -> list[str]:
        """Columns the input file must have, in a stable order."""
        columns = [self.record_id_column, *self.display_columns]
        if self.event_time_column:
            columns.append(self.event_time_column)
        columns += [f.source_column for f in self.features]
        if self.model:
            columns += self.model.columns
        return list(dict.fromkeys(columns))


FeatureType = Literal["Integral", "Fractional", "String"]


def output_features(spec: DatasetSpec) -> list[tuple[str, FeatureType]]:
    """The processed feature columns and their Feature Store types, in order.

    One-hot features expand to one Integral column per category, named `<feature>__<category>`.
    """
    columns: list[tuple[str, FeatureType]] = []
    for feature in spec.features:
        if feature.type == "numeric":
            columns.append((feature.name, "Fractional"))
        elif feature.encoding == "onehot":
            categories = [*(feature.categories or []), *(["other"] if feature.unknown == "other" else [])]
            columns += [(f"{feature.name}__{category}", "Integral") for category in categories]
        elif feature.encoding == "ordinal":
            columns.append((feature.name, "Integral"))
        else:
            columns.append((feature.name, "String"))
    return columns


def transform_fingerprint(spec: DatasetSpec) -> str:
    """What the fitted transform state depends on: the features and fit_version. A new value means a new fit."""
    material = {"features": [f.model_dump(mode="json") for f in spec.features], "fit_version": spec.fit_version}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
