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
    display: str
    prediction: Prediction | None = None


class AutoLabel(_Record):
    record_id: str
    label: str
    confidence: float


class ReviewItem(BaseModel):
    """One line of the human-review input manifest (Ground Truth's `source` plus our own keys)."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    source: str
    record_id: str
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
