"""The fitted state applied as column expressions (transforms.py's arithmetic), the model's scores, the record."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from scoring import ModelError, Scorer, load_model

from labelflow_processing.config import FatalInputError, FeatureSpec, Spec
from labelflow_processing.pipeline import Layout
from labelflow_processing.spark.checks import ID, TIME
from labelflow_processing.spark.files import read_bytes
from labelflow_processing.transforms import ROUNDING_LIMIT, encoded_outputs


def numeric_column(feature: FeatureSpec, state: dict[str, Any], value: Column) -> Column:
    """transforms.apply_numeric as a column: imputed, scaled, rounded to 6 places; null when out of float range."""
    if state["impute_value"] is not None:
        value = F.coalesce(value, F.lit(float(state["impute_value"])))
    scaler = state["scaler"]
    if scaler is not None and feature.scaling in ("standard", "minmax"):
        if feature.scaling == "standard":
            offset, half_spread = scaler["mean"], scaler["std"] * 0.5
        else:
            offset, half_spread = scaler["min"], scaler["max"] * 0.5 - scaler["min"] * 0.5
        value = F.lit(0.0) if half_spread == 0 else (value * 0.5 - F.lit(offset * 0.5)) / F.lit(half_spread)
    rounded = F.when(F.abs(value) < ROUNDING_LIMIT, F.rint(value * 1e6) / 1e6).otherwise(value) + F.lit(0.0)
    return F.when(~F.isnan(rounded) & (F.abs(rounded) != float("inf")), rounded)


def encoded_column(feature: FeatureSpec, state: dict[str, Any], text: Column) -> list[Column]:
    """transforms.encode as columns: the imputed text, or the members encoded_outputs gives for its bucket."""
    if state["impute_value"] is not None:
        text = F.coalesce(text, F.lit(state["impute_value"]))
    if feature.encoding is None:
        return [text.alias(feature.name)]
    unknown = -1 if feature.unknown == "ignore" else len(feature.categories)
    indices = F.create_map(*[F.lit(v) for index, c in enumerate(feature.categories) for v in (c, index)])
    bucket = F.coalesce(indices[text], F.lit(unknown))
    outputs = encoded_outputs(feature)
    names = list(outputs[0])
    # encoded_outputs lists each bucket's members, bucket -1 first: member values as a lookup by bucket.
    return [F.element_at(F.array(*[F.lit(o[n]) for o in outputs]), bucket + 2).alias(n) for n in names]


_MODELS: dict[str, Scorer] = {}


def _scorer(spec: Spec, name: str, data: bytes) -> Scorer:
    """The model, loaded once per Python worker from the broadcast file."""
    key = f"{name}:{hashlib.sha256(data).hexdigest()}:{spec.model!r}"
    if key not in _MODELS:
        with tempfile.TemporaryDirectory(prefix="labelflow-model-") as folder:
            (Path(folder) / name).write_bytes(data)
            assert spec.model is not None
            _MODELS[key] = load_model(Path(folder), spec.model)
    return _MODELS[key]


def scored(frame: DataFrame, spec: Spec, model_name: str, model_data: Any) -> DataFrame:
    """The rows with `_label` and `_confidence` from the model (Scorer.predict), a partition's batches at a time."""
    fields = Layout(spec).model_fields

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        scorer = _scorer(spec, model_name, model_data.value)
        for batch in batches:
            if not batch.num_rows:
                continue
            columns = {column: batch.column(name) for column, name in fields.items()}
            labels, confidences = scorer.predict(columns)
            arrays = [*batch.columns, pa.array(labels, pa.string()), pa.array(confidences, pa.float64())]
            yield pa.RecordBatch.from_arrays(arrays, [*batch.schema.names, "_label", "_confidence"])

    schema = T.StructType(
        [*frame.schema.fields, T.StructField("_label", T.StringType()), T.StructField("_confidence", T.DoubleType())]
    )
    return frame.mapInArrow(score, schema)


def record_line(spec: Spec, applied: dict[str, list[Column]], has_model: bool) -> Column:
    """A records.jsonl line: record_id, event_time, features, display, prediction (null without a model)."""
    features = F.struct(*[column for feature in spec.features for column in applied[feature.name]])
    display = F.struct(*[F.col(f"`d:{c}`").alias(c) for c in spec.display_columns])
    prediction = (
        F.struct(F.col("_label").alias("label"), F.col("_confidence").alias("confidence"))
        if has_model
        else F.lit(None).cast("struct<label:string,confidence:double>")
    )
    event_time = F.date_format(F.timestamp_seconds(F.col(TIME)), "yyyy-MM-dd'T'HH:mm:ss'Z'")
    record = F.struct(
        F.col(ID).alias("record_id"),
        event_time.alias("event_time"),
        features.alias("features"),
        display.alias("display"),
        prediction.alias("prediction"),
    )
    return F.to_json(record)


def model_file(spark: SparkSession, spec: Spec, uri: str | None) -> tuple[str, bytes, Scorer] | None:
    """The model file's name, bytes and Scorer (checked on the driver before any executor loads it)."""
    if spec.model is None:
        return None
    data = read_bytes(spark, uri) if uri else None
    if data is None:
        raise FatalInputError(f"no model file at {uri}")
    name = uri.rstrip("/").rsplit("/", 1)[-1] if uri else ""
    try:
        with tempfile.TemporaryDirectory(prefix="labelflow-model-") as folder:
            (Path(folder) / name).write_bytes(data)
            scorer = load_model(Path(folder), spec.model)
    except ModelError as exc:
        raise FatalInputError(str(exc)) from exc
    return name, data, scorer
