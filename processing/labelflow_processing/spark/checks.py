"""Scanner.check as Spark column expressions: each row's parsed values and the code of its rejection reason.

The expressions come in stages (strip, then parse, then check), each a select over the previous one: a cell is
stripped and parsed once, however many checks read it. Spark keeps the stages apart because their values are
read more than once and are not cheap (CollapseProject), where one nested expression would repeat each regular
expression for every check that reads it.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from labelflow_processing.config import FatalInputError, Spec
from labelflow_processing.pipeline import Layout, feature_field
from labelflow_processing.readers import ReadAs
from labelflow_processing.spark.reading import FILE, LINE
from labelflow_processing.values import MAX_SECONDS, MIN_SECONDS

# Python's float() grammar for finite decimal numbers (underscores aside); inf and nan are not finite anyway.
NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
EPOCH = r"^[+-]?\d+(\.\d+)?$"
# The single-machine engine takes its fast ISO path only for texts with a four-digit year then a hyphen.
ISO = r"^\d{4}-"
CONTROL = "[\\x00-\\x1F\\x7F]"
ID, TIME, REASON = "_id", "_time", "_reason"


def _text(frame: DataFrame, column: str) -> Column:
    """values.as_text: the value as text, null when null."""
    kind = frame.schema[column].dataType
    return F.col(column) if isinstance(kind, T.StringType) else F.col(column).cast("string")


def _size(frame: DataFrame, column: str) -> Column:
    """values.text_sizes: UTF-8 bytes of the text, 0 for numbers, booleans and nulls."""
    if isinstance(frame.schema[column].dataType, T.NumericType | T.BooleanType):
        return F.lit(0)
    return F.coalesce(F.octet_length(_text(frame, column)), F.lit(0))


def _stripped(frame: DataFrame, column: str) -> Column:
    """values.stripped: text without Unicode whitespace at its ends, null when empty."""
    text = F.regexp_replace(_text(frame, column), r"(?U)^\s+|\s+$", "")
    return F.when(text != "", text)


def _col(name: str) -> Column:
    return F.col(f"`{name}`")


def _stripped_columns(spec: Spec) -> list[str]:
    """The columns whose values are read stripped: id, event time, features and the model's text columns."""
    columns = [spec.record_id_column, *([spec.event_time_column] if spec.event_time_column else [])]
    columns += [f.column for f in spec.features] + model_text_columns(spec)
    return list(dict.fromkeys(columns))


def _strip(frame: DataFrame, spec: Spec) -> DataFrame:
    """Stage 1: each cell's size (`z:`) and stripped text (`s:`), the display texts (`d:`), U+FFFD seen."""
    required = spec.required_columns
    columns = [F.col(FILE), F.col(LINE), F.col("_corrupt")]
    columns += [F.col(c).alias(f"r:{c}") for c in required]
    columns += [_size(frame, c).alias(f"z:{c}") for c in required]
    columns += [_stripped(frame, c).alias(f"s:{c}") for c in _stripped_columns(spec)]
    columns += [F.coalesce(_text(frame, c), F.lit("")).alias(f"d:{c}") for c in spec.display_columns]
    texts = [_text(frame, c) for c in required]
    columns.append(F.exists(F.array(*texts), lambda t: F.instr(t, "\ufffd") > 0).alias("_replaced"))
    return frame.select(*columns)


def _number(frame: DataFrame, column: str) -> Column:
    """values.numbers' parse, before the finite check: a numeric type as it is, text by Python's float grammar."""
    if isinstance(frame.schema[f"r:{column}"].dataType, T.NumericType):
        return _col(f"r:{column}").cast("double")
    text = _col(f"s:{column}")
    return F.when(text.rlike(NUMBER), text.cast("double"))


def _event_seconds(text: Column) -> Column:
    """values.event_times' parse, before the range check: epoch seconds (floored) or ISO-8601 (naive is UTC)."""
    epoch = text.cast("double")
    epoch_ok = text.rlike(EPOCH) & (F.abs(epoch) <= -MIN_SECONDS)
    return F.when(epoch_ok, F.floor(epoch)).when(text.rlike(ISO), F.unix_seconds(text.cast("timestamp")))


def _parse(frame: DataFrame, spec: Spec) -> DataFrame:
    """Stage 2: numbers (`v:`) and event seconds (`_seconds`) parsed from the stripped texts."""
    numeric = list(dict.fromkeys(f.column for f in spec.features if f.numeric))
    columns = [F.col("*"), *[_number(frame, c).alias(f"v:{c}") for c in numeric]]
    if spec.event_time_column:
        columns.append(_event_seconds(_col(f"s:{spec.event_time_column}")).alias("_seconds"))
    return frame.select(*columns)


def _why(condition: Column, *parts: str | Column) -> tuple[Column, Column]:
    return condition, F.array(*[F.lit(p) if isinstance(p, str) else p.cast("string") for p in parts])


def _finite(value: Column) -> Column:
    return value.isNotNull() & ~F.isnan(value) & (F.abs(value) != float("inf"))


def checked(frame: DataFrame, spec: Spec, default_seconds: int | None) -> DataFrame:
    """Each row's parsed values and `_reason` (null when accepted): Scanner.check's checks in its order."""
    frame = _parse(_strip(frame, spec), spec)
    required = spec.required_columns
    checks: list[tuple[Column, Column]] = []
    for column in required:
        checks.append(_why(_col(f"z:{column}") > spec.max_cell_bytes, "cell", column, _col(f"z:{column}")))
    row_bytes = sum((_col(f"z:{c}") for c in required), F.lit(0))
    checks.append(_why(row_bytes > spec.max_row_bytes, "row", row_bytes))
    record_id = _col(f"s:{spec.record_id_column}")
    checks.append(_why(record_id.isNull(), "missing id"))
    checks.append(_why(record_id.rlike(CONTROL), "control", record_id))
    if spec.event_time_column:
        time_text, parsed_seconds = _col(f"s:{spec.event_time_column}"), F.col("_seconds")
        in_range = (parsed_seconds >= MIN_SECONDS) & (parsed_seconds <= MAX_SECONDS)
        seconds = F.when(in_range, parsed_seconds.cast("long"))
        checks.append(_why(time_text.isNull(), "missing time"))
        checks.append(_why(seconds.isNull(), "bad time", time_text))
    else:
        seconds = F.lit(default_seconds).cast("long")
    parsed: dict[str, Column] = {}
    for feature in spec.features:
        text = _col(f"s:{feature.column}")
        if feature.numeric:
            value = _col(f"v:{feature.column}")
            numeric_type = isinstance(frame.schema[f"r:{feature.column}"].dataType, T.NumericType)
            missing = _col(f"r:{feature.column}").isNull() if numeric_type else text.isNull()
            if feature.impute is None:
                checks.append(_why(missing, "missing", feature.name))
            checks.append(_why(~missing & ~_finite(value), "number", feature.name, text))
            parsed[feature_field(feature)] = F.when(_finite(value), value)
        else:
            if feature.impute is None:
                checks.append(_why(text.isNull(), "missing", feature.name))
            parsed[feature_field(feature)] = text
    reason: Any = F.when(F.col("_corrupt").isNotNull(), F.array(F.lit("fields"), F.col("_corrupt")))
    for condition, why in checks:
        reason = reason.when(condition, why)
    columns = [F.col(FILE), F.col(LINE), record_id.alias(ID), seconds.alias(TIME), reason.alias(REASON)]
    columns += [value.alias(name) for name, value in parsed.items()]
    columns += [_col(f"d:{c}") for c in spec.display_columns]
    columns += [_col(f"s:{c}").alias(f"m:{c}") for c in model_text_columns(spec)]
    return frame.select(*columns, "_replaced", "_corrupt")


def model_text_columns(spec: Spec) -> list[str]:
    """The model's columns that are not a numeric feature's (those it reads as the feature's numbers)."""
    return [column for column, name in Layout(spec).model_fields.items() if name.startswith("m:")]


def count_checked(checks: DataFrame, read_as: ReadAs) -> tuple[int, int]:
    """Rows read and rejected, in the same pass as the refusal (FatalInputError) of what Spark reads differently
    from the single-machine readers."""
    quotes = F.size(F.split(F.col("_corrupt"), '"')) - 1
    unreadable = F.col("_corrupt").isNotNull() & ((quotes % 2 == 1) | F.lit(read_as.format == "jsonl"))
    found = checks.agg(
        F.count("*").alias("rows"),
        F.count(REASON).alias("rejected"),
        F.min(F.when(F.col("_replaced"), F.col(LINE))).alias("replaced"),
        F.min(F.when(unreadable, F.col(LINE))).alias("corrupt"),
    ).first()
    assert found is not None
    if found["replaced"] is not None:
        raise FatalInputError(
            f"line {found['replaced']}: bytes that are not {read_as.encoding} text (or U+FFFD): the Spark engine "
            "cannot tell them apart; process this file with the single-machine engine"
        )
    if found["corrupt"] is not None:
        what = "a quoted cell spanning lines" if read_as.format == "csv" else "a line that is not a JSON object"
        raise FatalInputError(
            f"line {found['corrupt']}: {what}, which the Spark engine does not reject as the single-machine engine "
            "does; process this file with the single-machine engine"
        )
    return int(found["rows"]), int(found["rejected"])
