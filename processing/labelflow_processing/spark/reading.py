"""Reading the input files as the single-machine readers do: every cell as text, each row numbered by its line."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from labelflow_processing.config import FatalInputError, Spec
from labelflow_processing.readers import ReadAs, check_columns

# Encodings whose line ends are single bytes, so Spark can split lines before decoding.
SPLITTABLE_ENCODINGS = ("utf-8", "utf-8-sig", "cp1252", "latin-1", "iso8859-1", "ascii")
LINE, FILE = "_line", "_file"


def header(spark: SparkSession, uri: str, read_as: ReadAs) -> list[str]:
    """The first record's fields, stripped (a UTF-8 byte order mark dropped)."""
    encoding = "utf-8" if read_as.utf8 else read_as.encoding
    first = spark.read.csv(uri, header=False, sep=read_as.delimiter, encoding=encoding, escape='"').first()
    fields = [value or "" for value in first] if first else []
    if fields:
        fields[0] = fields[0].removeprefix("\ufeff")
    return [name.strip() for name in fields]


def _read_csv(spark: SparkSession, uri: str, name: str, read_as: ReadAs, required: list[str]) -> DataFrame:
    names = header(spark, uri, read_as)
    check_columns(name, names, required)
    schema = T.StructType([T.StructField(f"c{i}", T.StringType()) for i in range(len(names))])
    schema.add("_corrupt", T.StringType())
    frame = spark.read.csv(
        uri,
        schema=schema,
        header=True,
        sep=read_as.delimiter,
        encoding="utf-8" if read_as.utf8 else read_as.encoding,
        # RFC 4180: a quote inside a quoted cell is doubled, as Arrow's reader expects.
        quote='"',
        escape='"',
        # A quoted cell may span lines unless the spec says none does (input.newlines_in_values), as Arrow's reader
        # reads it; Spark splits a file across tasks only when every line is a record.
        multiLine=read_as.newlines_in_values,
        mode="PERMISSIVE",
        columnNameOfCorruptRecord="_corrupt",
        nullValue=None,
        emptyValue="",
    )
    columns = [F.coalesce(F.col(f"c{names.index(c)}"), F.lit("")).alias(c) for c in required]
    return frame.select(*columns, "_corrupt", *_position())


def _read_jsonl(spark: SparkSession, uri: str, required: list[str]) -> DataFrame:
    """Lines as text (blank lines kept, so a row's line is its physical line), parsed with every member as text."""
    schema = T.StructType([T.StructField(c, T.StringType()) for c in required])
    value = F.regexp_replace(F.col("value"), "^\ufeff", "").alias("value")
    text = spark.read.text(uri).select(value, *_position())
    blank = F.col("value").rlike("^[ \t\r]*$")
    parsed = F.from_json(F.col("value"), schema, {"mode": "PERMISSIVE"})
    return text.select(
        *[parsed[c].alias(c) for c in required],
        F.when(~blank & parsed.isNull(), F.col("value")).alias("_corrupt"),
        blank.alias("_blank"),
        "_path",
        "_block",
        "_mono",
    )


def _read_parquet(spark: SparkSession, uri: str, name: str, spec: Spec) -> DataFrame:
    required = spec.required_columns
    frame = spark.read.parquet(uri)
    check_columns(name, frame.columns, required)
    numbers = {f.column for f in spec.features if f.numeric}
    # Spark spells a float as text its own way (3.0, 1.0E20), Arrow another (3, 1e+20): where a float becomes
    # text (an id, a display, a category, a model's text), the two engines would differ.
    spelled = [
        c
        for c in required
        if c not in numbers
        and isinstance(frame.schema[c].dataType, T.FractionalType | T.TimestampType | T.TimestampNTZType | T.DateType)
    ]
    if spelled:
        raise FatalInputError(
            f"{name}: the Spark engine does not read {', '.join(spelled)} (fractional or time values) as text as the "
            "single-machine engine does; store them as strings, or process this file with the single-machine engine"
        )
    return frame.select(*required, F.lit(None).cast("string").alias("_corrupt"), *_position())


def _position() -> list[Column]:
    return [
        F.col("_metadata.file_path").alias("_path"),
        F.col("_metadata.file_block_start").alias("_block"),
        F.monotonically_increasing_id().alias("_mono"),
    ]


def read_input(spark: SparkSession, files: list[tuple[str, str]], read_as: ReadAs, spec: Spec) -> DataFrame:
    """Every file's rows with `_file` (its index), `_corrupt`, `_blank` and their position (see `numbered`)."""
    if read_as.format != "parquet" and read_as.codec not in SPLITTABLE_ENCODINGS:
        raise FatalInputError(
            f"the Spark engine reads text in {', '.join(SPLITTABLE_ENCODINGS)}, not {read_as.encoding}"
        )
    if read_as.format == "jsonl" and not read_as.utf8:
        raise FatalInputError(f"the Spark engine reads JSON Lines in UTF-8 only, not {read_as.encoding}")
    required = spec.required_columns
    frames = []
    for index, (uri, name) in enumerate(files):
        if read_as.format == "csv":
            frame = _read_csv(spark, uri, name, read_as, required)
        elif read_as.format == "jsonl":
            frame = _read_jsonl(spark, uri, required)
        else:
            frame = _read_parquet(spark, uri, name, spec)
        frames.append(frame.withColumn(FILE, F.lit(index)))
    frame = frames[0]
    for other in frames[1:]:
        frame = frame.unionByName(other, allowMissingColumns=True)
    if "_blank" not in frame.columns:
        frame = frame.withColumn("_blank", F.lit(False))
    return frame


def numbered(frame: DataFrame, read_as: ReadAs) -> DataFrame:
    """The rows read (blank lines dropped) with `_line`, their number in their file as readers.py numbers lines,
    from the row counts of the file's splits; `frame` is read twice, so the caller caches it."""
    first_line = {"csv": 2, "jsonl": 1, "parquet": 1}[read_as.format]
    splits = frame.groupBy(FILE, "_block").agg(F.count("*").alias("rows"), F.min("_mono").alias("first")).collect()
    offsets: list[tuple[int, int, int, int]] = []
    before: dict[int, int] = {}
    for split in sorted(splits, key=lambda s: (s[FILE], s["_block"])):
        start = before.get(split[FILE], 0)
        offsets.append((split[FILE], split["_block"], start, split["first"]))
        before[split[FILE]] = start + split["rows"]
    table = frame.sparkSession.createDataFrame(offsets, f"{FILE} int, _block long, _offset long, _first long")
    line = F.lit(first_line) + F.col("_offset") + F.col("_mono") - F.col("_first")
    joined = frame.join(F.broadcast(table), [FILE, "_block"])
    joined = joined.withColumn(LINE, line.cast("long")).drop("_path", "_block", "_mono", "_offset", "_first")
    return joined.where(~F.col("_blank")).drop("_blank")
