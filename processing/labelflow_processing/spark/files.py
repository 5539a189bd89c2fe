"""Files through Hadoop's file systems (file:, s3:): the spec, state and model in, the outputs out."""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, SparkSession

from labelflow_processing.config import FatalInputError
from labelflow_processing.readers import ReadAs


def _fs(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def read_bytes(spark: SparkSession, uri: str) -> bytes | None:
    """A file's bytes through Hadoop's file systems (file:, s3:), None when it does not exist."""
    fs, path = _fs(spark, uri)
    if not fs.exists(path):
        return None
    stream = fs.open(path)
    try:
        jvm = spark.sparkContext._jvm
        return bytes(jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
    finally:
        stream.close()


def write_bytes(spark: SparkSession, uri: str, data: bytes) -> None:
    fs, path = _fs(spark, uri)
    stream = fs.create(path, True)
    try:
        stream.write(bytearray(data))
    finally:
        stream.close()


def delete(spark: SparkSession, uri: str) -> None:
    fs, path = _fs(spark, uri)
    fs.delete(path, True)


def list_inputs(spark: SparkSession, input_uri: str, read_as: ReadAs) -> list[tuple[str, str]]:
    """(uri, name below the input folder) of every input file, sorted; FatalInputError as find_inputs says."""
    fs, root = _fs(spark, input_uri)
    if not fs.exists(root):
        raise FatalInputError(f"no input file: directory {input_uri} does not exist")
    prefix = fs.makeQualified(root).toString().rstrip("/") + "/"
    found: list[tuple[str, str, int]] = []
    listing = fs.listFiles(root, True)
    while listing.hasNext():
        status = listing.next()
        uri = status.getPath().toString()
        found.append((uri, uri[len(prefix) :], status.getLen()))
    if not found:
        raise FatalInputError(f"no input file in {input_uri}")
    for _, name, size in found:
        if size == 0:
            raise FatalInputError(f"input file is empty: {name}")
        if name.endswith(".gz") != read_as.gzip:
            raise FatalInputError(
                f"the Spark engine decompresses by file name: {name} must end in .gz exactly when the input is gzip"
            )
    return sorted((uri, name) for uri, name, _ in found)


def merge_parts(spark: SparkSession, folder: str, target: str) -> None:
    """Concatenate a Spark output folder's part files, in name order, into one file, then drop the folder."""
    fs, path = _fs(spark, folder)
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    parts = sorted((s.getPath() for s in fs.listStatus(path)), key=lambda p: p.getName())
    out_fs, out_path = _fs(spark, target)
    out = out_fs.create(out_path, True)
    try:
        for part in parts:
            if part.getName().startswith("part-"):
                source = fs.open(part)
                try:
                    jvm.org.apache.hadoop.io.IOUtils.copyBytes(source, out, 1 << 20, False)
                finally:
                    source.close()
    finally:
        out.close()
    fs.delete(path, True)


def write_text(spark: SparkSession, frame: DataFrame, target: str) -> None:
    """A one-column DataFrame's rows as the lines of one file, in the frame's order."""
    folder = f"{target}.parts"
    frame.write.mode("overwrite").text(folder)
    merge_parts(spark, folder, target)
