"""Records as they move through the run: processed, routed, labeled, ingested."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FeatureValue = float | int | str


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
    """One line of the human-review input manifest (Ground Truth's `source` plus our own keys).

    `source` is the record as plain text (Ground Truth requires it); reviewers see `display`, the same values
    as a table of column name and value.
    """

    model_config = ConfigDict(extra="allow", defer_build=True)

    source: str
    record_id: str
    display: dict[str, str] = Field(default_factory=dict)
    labels: list[str]
    model_label: str | None = None
    model_confidence: float | None = None


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
