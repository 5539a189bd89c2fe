"""The processing run as a Spark job, following pipeline.py step by step.

reading.py reads the files and numbers their rows, checks.py checks and parses the cells (values.py's rules),
fit.py aggregates the kept rows' statistics for transforms.py's fit, apply.py applies the state as column
expressions and scores with the model, outputs.py writes rejected.jsonl and records.jsonl, files.py moves bytes
through Hadoop's file systems. Where Spark cannot read an input as the single-machine readers do, the job stops
with a FatalInputError that says so rather than diverging.

The run caches the rows read (until the checked rows are cached), the checked rows, which every later pass
(counts, statistics, outputs) reads, and the scored rows when there is a model. The records' JSON is rendered
once, after the sort into input order, never cached: on one machine the text of a million records does not
fit Spark's storage memory, and spilling it cost more than everything else together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from labelflow_processing.config import FatalInputError, Spec
from labelflow_processing.pipeline import check_rejected_share, feature_field
from labelflow_processing.readers import InputFile, ReadAs
from labelflow_processing.spark.apply import encoded_column, model_file, numeric_column, record_line, scored
from labelflow_processing.spark.checks import ID, REASON, checked, count_checked
from labelflow_processing.spark.files import list_inputs, read_bytes, write_bytes
from labelflow_processing.spark.fit import feature_stats
from labelflow_processing.spark.outputs import write_records, write_rejected
from labelflow_processing.spark.reading import FILE, LINE, numbered, read_input
from labelflow_processing.state import drift, fit_state, parse_state, sha256
from labelflow_processing.values import parse_event_time


def session(app: str = "labelflow-processing") -> SparkSession:
    """A session whose clock is UTC (naive times are UTC) and whose JSON keeps null members."""
    spark = (
        SparkSession.builder.appName(app)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.jsonGenerator.ignoreNullFields", "false")
        .getOrCreate()
    )
    if spark.sparkContext.master.startswith("local"):
        # One machine: a shuffle partition per core rather than the cluster default of 200.
        spark.conf.set("spark.sql.shuffle.partitions", str(spark.sparkContext.defaultParallelism))
    return spark


@dataclass(frozen=True)
class Job:
    """Where a run reads and writes (URIs Hadoop reads: file:, s3:) and how the input is read."""

    input: str
    output: str
    spec: str
    read_as: ReadAs
    state: str | None = None
    model: str | None = None
    default_event_time: str | None = None


def _duplicates(accepted: DataFrame) -> tuple[DataFrame, DataFrame, int]:
    """(kept, duplicates, how many): a row whose record id an earlier accepted row (by file, then line) has is
    a duplicate. Only the ids that repeat are joined back, and nothing when none does (the usual case)."""
    first = F.min(F.struct(FILE, LINE))
    repeated = accepted.groupBy(ID).agg(F.count("*").alias("_n"), first.alias("_first")).where(F.col("_n") > 1)
    repeated = repeated.persist()
    found = repeated.agg(F.sum(F.col("_n") - 1)).first()
    count = int(found[0]) if found and found[0] is not None else 0
    if not count:
        repeated.unpersist()
        return accepted, accepted.limit(0), 0
    joined = accepted.join(repeated.select(ID, "_first"), ID, "left")
    later = F.col("_first").isNotNull() & (F.struct(FILE, LINE) != F.col("_first"))
    flagged = joined.withColumn("_later", later).drop("_first").persist()
    return flagged.where(~F.col("_later")).drop("_later"), flagged.where(F.col("_later")).drop("_later"), count


def _applied(spec: Spec, states: dict[str, Any]) -> dict[str, list[Column]]:
    """Each feature's output columns: transforms.py's apply as expressions over the parsed values."""
    return {
        f.name: [numeric_column(f, states[f.name], F.col(f"`{feature_field(f)}`")).alias(f.name)]
        if f.numeric
        else encoded_column(f, states[f.name], F.col(f"`{feature_field(f)}`"))
        for f in spec.features
    }


def _overflow(spec: Spec, applied: dict[str, list[Column]]) -> Column:
    """A scaled numeric output out of float range (numeric_column gives null there)."""
    overflow = F.lit(False)
    for feature in spec.features:
        if feature.numeric:
            overflow = overflow | applied[feature.name][0].isNull()
    return overflow


def _with_reason(frame: DataFrame, code: str) -> DataFrame:
    return frame.withColumn(REASON, F.array(F.lit(code)))


def run(spark: SparkSession, job: Job) -> dict[str, Any]:
    """Process the input into the output folder, as preprocess.run does; returns the stats it wrote."""
    raw_spec = read_bytes(spark, job.spec)
    if raw_spec is None:
        raise FatalInputError(f"cannot read the dataset spec {job.spec}")
    spec = Spec.from_json(json.loads(raw_spec))
    default_seconds = _default_seconds(spec, job.default_event_time)
    files = list_inputs(spark, job.input, job.read_as)
    inputs = [InputFile(Path(name), name, job.read_as) for _, name in files]
    state = read_bytes(spark, job.state) if job.state else None
    read = read_input(spark, files, job.read_as, spec).persist()
    checks = checked(numbered(read, job.read_as), spec, default_seconds).persist()
    records_in, rejected = count_checked(checks, job.read_as)
    read.unpersist()
    if records_in == 0:
        raise FatalInputError("input has no data rows")
    check_rejected_share(inputs, spec, records_in, rejected)
    kept, duplicates, duplicated = _duplicates(checks.where(F.col(REASON).isNull()))
    stats = feature_stats(kept, spec, fitting=state is None)
    state_bytes = fit_state(spec, stats) if state is None else state
    states = parse_state(state_bytes, spec)
    for feature in spec.features:
        if stats[feature.name].missing and states[feature.name]["impute_value"] is None:
            raise FatalInputError(f"cannot impute {feature.name}: the accepted rows have no value for it")
    model = model_file(spark, spec, job.model)
    applied = _applied(spec, states)
    flagged = kept.withColumn("_overflow", _overflow(spec, applied))
    good = flagged.where(~F.col("_overflow"))
    labels: dict[str, int] = {}
    if model is not None:
        good = scored(good, spec, model[0], spark.sparkContext.broadcast(model[1])).persist()
        labels = {row[0]: int(row[1]) for row in good.groupBy("_label").count().collect()}
    records_out = sum(labels.values()) if model is not None else good.count()
    late = records_in - rejected - duplicated - records_out
    rejected += duplicated + late
    out = job.output.rstrip("/")
    stages = [checks.where(F.col(REASON).isNotNull()), _with_reason(duplicates, "duplicate")]
    stages.append(_with_reason(flagged.where(F.col("_overflow")), "overflow"))
    if rejected:
        write_rejected(spark, spec, job.read_as, files, stages, f"{out}/rejected.jsonl")
    else:
        write_bytes(spark, f"{out}/rejected.jsonl", b"")
    check_rejected_share(inputs, spec, records_in, rejected)
    write_records(spark, good, record_line(spec, applied, model is not None), f"{out}/records.jsonl")
    predicted: dict[str, int] = {}
    if model is not None:
        predicted = dict.fromkeys(spec.labels, 0)
        for name, count in labels.items():
            predicted[name] = predicted.get(name, 0) + count
    write_bytes(spark, f"{out}/state.json", state_bytes)
    scorer = model[2] if model else None
    result = {
        "records_in": records_in,
        "records_out": records_out,
        "rejected": rejected,
        "state": {"sha256": sha256(state_bytes), "fitted": state is None},
        "drift": drift(spec, states, stats),
        "predicted_labels": predicted,
        "model": {"file": scorer.file_name, "sha256": scorer.sha256, "classes": list(scorer.config.classes)}
        if scorer
        else None,
        "input_files": [name for _, name in files],
    }
    write_bytes(spark, f"{out}/stats.json", (json.dumps(result, indent=2, ensure_ascii=False) + "\n").encode())
    return result


def _default_seconds(spec: Spec, default_event_time: str | None) -> int | None:
    if default_event_time is None:
        if not spec.event_time_column:
            raise FatalInputError("the spec has no event_time_column and no --default-event-time was given")
        return None
    try:
        normalised = parse_event_time(default_event_time)
    except ValueError:
        raise FatalInputError(f"invalid --default-event-time: {default_event_time!r}") from None
    return int(datetime.strptime(normalised, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
