"""The dataset spec as the processing step needs it, and the error that stops a job."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scoring import ModelConfig


class FatalInputError(Exception):
    """The input as a whole cannot be processed; the message becomes the job's failure reason."""


class TooManyRejectedError(FatalInputError):
    """Too large a share of the input was rejected: the job refuses the file, rejected.jsonl says why."""

    def __init__(self, message: str, read: int, rejected: int) -> None:
        super().__init__(message)
        self.read, self.rejected = read, rejected


@dataclass(frozen=True)
class FeatureSpec:
    """One feature of the spec: its source column and transform."""

    name: str
    column: str
    type: str
    impute: str | None
    fill_value: str | float | None
    encoding: str | None
    scaling: str | None
    categories: tuple[str, ...]
    unknown: str

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
            unknown=raw.get("unknown") or "ignore",
        )

    @property
    def numeric(self) -> bool:
        return self.type == "numeric"

    def transform(self) -> dict[str, Any]:
        """What the fitted state depends on: everything but the name (its key) and the source column."""
        if self.numeric:
            return {"type": self.type, "impute": self.impute, "fill_value": self.fill_value, "scaling": self.scaling}
        return {
            "type": self.type,
            "impute": self.impute,
            "fill_value": self.fill_value,
            "encoding": self.encoding,
            "categories": list(self.categories),
            "unknown": self.unknown,
        }


@dataclass(frozen=True)
class Spec:
    """The parts of the dataset spec that drive processing."""

    record_id_column: str
    event_time_column: str | None
    display_columns: tuple[str, ...]
    features: tuple[FeatureSpec, ...]
    labels: tuple[str, ...]
    model: ModelConfig | None
    max_rejected_share: float
    max_cell_bytes: int
    max_row_bytes: int

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Spec:
        model = raw.get("model")
        return cls(
            record_id_column=raw["record_id_column"],
            event_time_column=raw.get("event_time_column"),
            display_columns=tuple(raw["display_columns"]),
            features=tuple(FeatureSpec.from_json(feature) for feature in raw.get("features") or ()),
            labels=tuple(raw["labels"]),
            model=ModelConfig.from_json(model) if model else None,
            max_rejected_share=float(raw["max_rejected_share"]),
            max_cell_bytes=int(raw["max_cell_bytes"]),
            max_row_bytes=int(raw["max_row_bytes"]),
        )

    @property
    def required_columns(self) -> list[str]:
        """Columns every input file must have, without repeats (same order as DatasetSpec.required_columns)."""
        columns = [self.record_id_column, *self.display_columns]
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
