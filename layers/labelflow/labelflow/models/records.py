"""Records as they move through the run: processed, routed, labeled, ingested."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

FeatureValue = float | int | str
# Ground Truth's manifest key for an object stored in S3 (an image), instead of inline `source` text.
SOURCE_REF = "source-ref"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class Prediction(_Record):
    label: str
    confidence: float = Field(ge=0.0, le=1.0)


class ProcessedRecord(_Record):
    """One line of the processing step's records.jsonl."""

    record_id: str
    event_time: str
    features: dict[str, FeatureValue]
    display: dict[str, str] = Field(description="the spec's display columns, in order: column name -> value")
    prediction: Prediction | None = None


class AutoLabel(_Record):
    record_id: str
    label: str
    confidence: float


class ReviewItem(BaseModel):
    """One line of the human-review input manifest (Ground Truth's `source` or `source-ref`, plus our own keys).

    `source` is the record as plain text; an image record has `source-ref`, its S3 URI, instead (Ground Truth
    reads exactly one of them per line). Reviewers see `display`, the same values as a table of column and value.
    """

    model_config = ConfigDict(extra="allow", defer_build=True)

    source: str | None = None
    record_id: str
    display: dict[str, str] = Field(default_factory=dict)
    labels: list[str]
    model_label: str | None = None
    model_confidence: float | None = None
    audit: bool = Field(
        default=False,
        description="in the run's random audit sample: its human label is kept as an audit label (a confident "
        "record is also auto-labeled, and keeps the model's label when nobody answers)",
    )

    @property
    def source_ref(self) -> str | None:
        reference = (self.model_extra or {}).get(SOURCE_REF)
        return str(reference) if reference is not None else None

    @model_validator(mode="after")
    def _one_source(self) -> ReviewItem:
        if (self.source is None) == (self.source_ref is None):
            raise ValueError(f"a review manifest line has exactly one of source and {SOURCE_REF}")
        return self

    @model_serializer(mode="wrap")
    def _without_absent_source(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("source") is None:
            data.pop("source", None)
        return data


class AuditLabel(_Record):
    """One line of an audit file: a randomly drawn record's model prediction beside its human label."""

    record_id: str
    model_label: str
    model_confidence: float = Field(ge=0.0, le=1.0)
    human_label: str


LabelSource = Literal["model", "human"]


class LabeledRecord(_Record):
    """One line of labeled.jsonl: what goes to Feature Store."""

    record_id: str
    event_time: str
    features: dict[str, FeatureValue]
    label: str
    label_source: LabelSource
    label_confidence: float
    run_id: str


class IngestFailure(_Record):
    record_id: str
    error: str


class IngestProgress(_Record):
    """An ingestion's checkpoint: records are written in batches, in file order, and each finished batch is
    counted here before the next starts, so a retried step resumes after the last finished batch."""

    source_uri: str = Field(description="the JSON Lines file being ingested")
    batch_size: int = Field(ge=1)
    batches_done: int = Field(default=0, ge=0)
    ingested: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    failure_batches: list[int] = Field(default_factory=list, description="batches whose failures file exists")


def display_text(display: dict[str, str]) -> str:
    """The display columns as plain text: the value alone for one column, else `column: value` lines."""
    if len(display) == 1:
        return next(iter(display.values()))
    return "\n".join(f"{column}: {value}" for column, value in display.items())
