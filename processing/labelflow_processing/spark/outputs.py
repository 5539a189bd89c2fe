"""The outputs in the single-machine job's layout: records.jsonl and rejected.jsonl in input order."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from labelflow_processing import rejections
from labelflow_processing.config import Spec
from labelflow_processing.readers import ReadAs
from labelflow_processing.spark.checks import ID, REASON
from labelflow_processing.spark.files import write_text
from labelflow_processing.spark.reading import FILE, LINE, header


@dataclass(frozen=True)
class Reasons:
    """Renders rejected.jsonl lines from the checks' reason codes in rejections.py's wording."""

    spec: Spec
    delimiter: str
    # Per input file (CSV): its header's width and the record id's position in it.
    widths: dict[int, tuple[int, int]]

    def line(self, file: int, line: int, record_id: str | None, why: list[str]) -> str:
        reason = self.reason(why)
        if why[0] == "fields":
            width, id_index = self.widths[file]
            fields = next(csv.reader([why[1]], delimiter=self.delimiter), [])
            record_id = (fields[id_index].strip() if id_index < len(fields) else "") or None
            reason = rejections.field_count(width, len(fields))
        return json.dumps({"line": line, "record_id": record_id, "reason": reason}, ensure_ascii=False)

    def reason(self, why: list[str]) -> str:
        """The reason for a code (checks.py's) and its arguments."""
        match why:
            case ["cell", name, size]:
                return rejections.cell_too_large(name, int(size), self.spec.max_cell_bytes)
            case ["row", size]:
                return rejections.row_too_large(int(size), self.spec.max_row_bytes)
            case ["missing id"]:
                return rejections.MISSING_ID
            case ["control", record_id]:
                return rejections.control_in_id(record_id)
            case ["missing time"]:
                return rejections.MISSING_TIME
            case ["bad time", text]:
                return rejections.bad_time(text)
            case ["missing", name]:
                return rejections.missing_value(name)
            case ["number", name, text]:
                return rejections.not_a_number(name, text)
            case ["duplicate"]:
                return rejections.DUPLICATE
            case ["overflow"]:
                return rejections.OVERFLOW
        return ""


def _widths(
    spark: SparkSession, files: list[tuple[str, str]], read_as: ReadAs, spec: Spec
) -> dict[int, tuple[int, int]]:
    if read_as.format != "csv":
        return {}
    headers = [header(spark, uri, read_as) for uri, _ in files]
    return {index: (len(names), names.index(spec.record_id_column)) for index, names in enumerate(headers)}


def write_rejected(
    spark: SparkSession,
    spec: Spec,
    read_as: ReadAs,
    files: list[tuple[str, str]],
    stages: list[DataFrame],
    target: str,
) -> None:
    """rejected.jsonl: each stage's rows (FILE, LINE, ID, REASON) in input order, the stages one after another."""
    reasons = Reasons(spec, read_as.delimiter or ",", _widths(spark, files, read_as, spec))
    render = F.udf(reasons.line, T.StringType())
    union = stages[0].select(F.lit(0).alias("_stage"), FILE, LINE, ID, REASON)
    for index, stage in enumerate(stages[1:], 1):
        union = union.union(stage.select(F.lit(index), FILE, LINE, ID, REASON))
    text = union.orderBy("_stage", FILE, LINE).select(render(F.col(FILE), F.col(LINE), F.col(ID), F.col(REASON)))
    write_text(spark, text, target)


def write_records(spark: SparkSession, rows: DataFrame, record: Column, target: str) -> None:
    """records.jsonl: each row's `record` (a JSON text), in input order, rendered after the sort."""
    write_text(spark, rows.orderBy(FILE, LINE).select(record), target)
