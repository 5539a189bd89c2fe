"""Pre-label records with the dataset's own scikit-learn model.

The model is any fitted estimator or pipeline with `predict_proba` and `classes_`, saved with joblib, as a
file (`*.joblib`, `*.pkl`) or in SageMaker's `model.tar.gz` layout. Loading a joblib file runs code from it:
labelflow loads it only from the run's frozen copy of the dataset's configured model, and records its sha256.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

MODEL_SUFFIXES = (".joblib", ".pkl", ".pickle")
ARCHIVE_NAME = "model.tar.gz"


class ModelError(Exception):
    """The model cannot be used for this dataset; the message says why in one sentence."""


@dataclass(frozen=True)
class ModelConfig:
    """The spec's `model` section, as scoring needs it."""

    classes: tuple[str, ...]
    class_labels: dict[str, str] = field(default_factory=dict)
    text_column: str | None = None
    input_columns: tuple[str, ...] = ()
    sha256: str | None = None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ModelConfig:
        return cls(
            classes=tuple(raw["classes"]),
            class_labels=dict(raw.get("class_labels") or {}),
            text_column=raw.get("text_column"),
            input_columns=tuple(raw.get("input_columns") or ()),
            sha256=raw.get("sha256"),
        )

    @property
    def columns(self) -> tuple[str, ...]:
        """The input columns the model reads, in order."""
        return (self.text_column,) if self.text_column else self.input_columns

    def label_of(self, model_class: str) -> str:
        return self.class_labels.get(model_class, model_class)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _model_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(MODEL_SUFFIXES))


def find_model_file(model_dir: Path, unpack_to: Path) -> tuple[Path, Path]:
    """The one file in `model_dir` and the joblib file to load: itself, or the one inside a model.tar.gz."""
    entries = sorted(p for p in model_dir.iterdir() if p.is_file()) if model_dir.is_dir() else []
    if len(entries) != 1:
        found = ", ".join(p.name for p in entries) or "none"
        raise ModelError(f"expected one model file in {model_dir.name}/, found: {found}")
    (entry,) = entries
    if entry.name.endswith(MODEL_SUFFIXES):
        return entry, entry
    if not tarfile.is_tarfile(entry):
        raise ModelError(f"model file {entry.name} is neither a joblib file ({', '.join(MODEL_SUFFIXES)}) nor a tar.gz")
    with tarfile.open(entry) as archive:
        # The "data" filter refuses absolute paths, links out of the folder and device files.
        archive.extractall(unpack_to, filter="data")
    inside = _model_files(unpack_to)
    if len(inside) != 1:
        names = ", ".join(p.relative_to(unpack_to).as_posix() for p in inside) or "none"
        raise ModelError(f"{entry.name} must hold one joblib model file, found: {names}")
    return entry, inside[0]


class Scorer:
    """A loaded model that labels batches of rows: the most probable class, mapped to a label, and its probability."""

    def __init__(self, model: Any, config: ModelConfig, file_name: str, sha256: str) -> None:
        self._model = model
        self.config = config
        self.file_name = file_name
        self.sha256 = sha256
        self._labels = [config.label_of(str(c)) for c in model.classes_]

    def predict(self, columns: Mapping[str, pa.Array]) -> tuple[np.ndarray, np.ndarray]:
        """Each row's label and its probability (6 places): numbers arrive as floats (NaN when missing), text as str."""
        if self.config.text_column:
            texts = columns[self.config.text_column].fill_null("").to_pylist()
            probabilities = self._model.predict_proba(texts)
        else:
            import pandas as pd

            frame = pd.DataFrame({name: _values(columns[name]) for name in self.config.input_columns})
            probabilities = self._model.predict_proba(frame)
        labels = np.asarray(self._labels, dtype=object)[probabilities.argmax(axis=1)]
        return labels, np.round(probabilities.max(axis=1).astype(np.float64), 6)


def _values(column: pa.Array) -> Any:
    if pa.types.is_floating(column.type):
        return column.to_numpy(zero_copy_only=False)
    return column.to_pylist()


def load_model(model_dir: Path, config: ModelConfig) -> Scorer:
    """Load and check the model: its file's sha256 is the pinned one, its classes are the spec's."""
    with tempfile.TemporaryDirectory(prefix="labelflow-model-") as unpacked:
        stored, path = find_model_file(model_dir, Path(unpacked))
        digest = sha256_of(stored)
        if config.sha256 and digest != config.sha256:
            raise ModelError(f"model file {stored.name} has sha256 {digest}, the spec pins {config.sha256}")
        import joblib

        try:
            model = joblib.load(path)
        except Exception as exc:  # a pickle can raise anything: report it as an unusable model
            raise ModelError(f"model file {path.name} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    if not callable(getattr(model, "predict_proba", None)) or not hasattr(model, "classes_"):
        raise ModelError(f"model in {path.name} ({type(model).__name__}) has no predict_proba and classes_")
    classes = tuple(str(c) for c in model.classes_)
    if classes != config.classes:
        raise ModelError(
            f"the model's classes {list(classes)} differ from the spec's model.classes {list(config.classes)}"
        )
    return Scorer(model, config, stored.name, digest)
