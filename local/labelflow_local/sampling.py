"""Read a bounded sample of a data file (CSV, JSON Lines or Parquet, each maybe gzipped), streaming.

`labelflow init` and `labelflow validate` look at the first rows only, so a file of any size costs the same.
Formats and delimiters follow the spec's `input` section (labelflow.models.spec.InputSpec): the format from the
file name's extension, else from the content; the CSV delimiter from the header line.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import IO, BinaryIO, Literal

from labelflow.models.spec import InputSpec

SAMPLE_ROWS = 10_000
Format = Literal["csv", "jsonl", "parquet"]
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}
DELIMITERS = (",", ";", "\t", "|")
# Tried in order when the spec names no encoding: UTF-8 (a BOM is dropped), then Windows' Western code page.
# Latin-1 decodes any byte, so it is never wrong enough to fail: it is left to the user to name.
_ENCODINGS = ("utf-8-sig", "cp1252")


class SampleError(ValueError):
    """The file cannot be read as a table; the message says why in one line."""


@dataclass(frozen=True)
class Sample:
    """The first rows of a file, as {column: text}, as processing reads them; a missing or blank cell is None.

    Typed values (JSON Lines, Parquet) are rendered as processing renders them; nested values stay objects.
    """

    path: Path
    format: Format
    gzipped: bool
    columns: list[str]
    rows: list[dict[str, object]]
    complete: bool
    delimiter: str | None = None
    encoding: str | None = None

    @property
    def extension_says_format(self) -> bool:
        """Whether `input.format: auto` finds this file's format from its name alone."""
        return _format_from_name(self.path.name) == self.format

    def values(self, column: str) -> list[object]:
        """The column's non-missing values, in row order."""
        return [row[column] for row in self.rows if row.get(column) is not None]

    def describe(self) -> str:
        size = f"{len(self.rows)} rows" if self.complete else f"the first {len(self.rows)} rows"
        return f"{size} of {self.path.name}"


def _format_from_name(name: str) -> Format | None:
    stem = name.lower().removesuffix(".gz")
    return next((fmt for ext, fmt in _EXTENSIONS.items() if stem.endswith(ext)), None)


def _open_binary(path: Path) -> tuple[BinaryIO, bool]:
    with path.open("rb") as probe:
        gzipped = probe.read(2) == _GZIP_MAGIC
    return (io.BufferedReader(gzip.GzipFile(path)) if gzipped else path.open("rb")), gzipped


def _format_from_content(stream: BinaryIO) -> Format:
    head = stream.read(4096)
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    text = head.lstrip(codecs.BOM_UTF8).lstrip()
    if text.startswith(b"{"):
        return "jsonl"
    if text.startswith(b"["):
        raise SampleError("a JSON array is not JSON Lines: write one JSON object per line")
    return "csv"


def detect_delimiter(header: str) -> str:
    """The candidate (`,` `;` tab `|`) seen most often in the header line; `,` when none is."""
    counts = {candidate: header.count(candidate) for candidate in DELIMITERS}
    best = max(counts, key=lambda candidate: counts[candidate])
    return best if counts[best] else ","


def read_sample(path: Path, spec: InputSpec | None = None, limit: int = SAMPLE_ROWS) -> Sample:
    """The first `limit` rows of `path`, read as the spec's `input` section says (detected when unset)."""
    spec = spec or InputSpec()
    if not path.is_file():
        raise SampleError(f"{path}: no such file")
    stream, gzipped = _open_binary(path)
    with stream:
        try:
            fmt = _format(path, spec, stream)
            if fmt == "parquet":
                columns, rows, complete = _read_parquet(stream, limit)
                return Sample(path, fmt, gzipped, columns, rows, complete)
            encodings = [spec.encoding] if spec.encoding else list(_ENCODINGS)
            for encoding in encodings:
                stream.seek(0)
                try:
                    return _read_text(path, stream, gzipped, fmt, encoding, spec.delimiter, limit)
                except UnicodeDecodeError:
                    continue
                except LookupError as exc:
                    raise SampleError(f"input.encoding {encoding!r} is not an encoding Python knows") from exc
        except (OSError, EOFError) as exc:  # a truncated or corrupt gzip stream
            raise SampleError(f"{path.name}: cannot be read: {exc}") from exc
    hint = "" if spec.encoding else ": name its encoding in the spec's input.encoding"
    raise SampleError(f"{path.name}: not {' or '.join(encodings)} text{hint}")


def _format(path: Path, spec: InputSpec, stream: BinaryIO) -> Format:
    if spec.format != "auto":
        return spec.format
    if named := _format_from_name(path.name):
        return named
    detected = _format_from_content(stream)
    stream.seek(0)
    return detected


def _read_text(
    path: Path, stream: BinaryIO, gzipped: bool, fmt: Format, encoding: str, delimiter: str | None, limit: int
) -> Sample:
    text = io.TextIOWrapper(stream, encoding=encoding, newline="")
    shown = None if encoding == "utf-8-sig" else encoding
    try:
        if fmt == "jsonl":
            columns, rows, complete = _read_jsonl(path.name, text, limit)
            return Sample(path, fmt, gzipped, columns, rows, complete, encoding=shown)
        header_line = text.readline()
        if not header_line.strip():
            raise SampleError(f"{path.name}: empty, or its first line is blank: the first line must be the header")
        delimiter = delimiter or detect_delimiter(header_line)
        reader = csv.reader(chain([header_line], text), delimiter=delimiter)
        columns, rows, complete = _read_csv(path.name, reader, limit)
        return Sample(path, fmt, gzipped, columns, rows, complete, delimiter=delimiter, encoding=shown)
    finally:
        text.detach()  # the binary stream stays open for the next encoding


def _cell(text: str) -> str | None:
    return text.strip() or None


def _read_csv(name: str, reader: Iterator[list[str]], limit: int) -> tuple[list[str], list[dict[str, object]], bool]:
    try:
        header = [column.strip() for column in next(reader)]
        repeated = sorted({column for column in header if header.count(column) > 1})
        if repeated:
            raise SampleError(f"{name}: repeated column names in the header: {', '.join(repeated)}")
        if "" in header:
            raise SampleError(f"{name}: column {header.index('') + 1} of the header has no name")
        rows: list[dict[str, object]] = []
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue
            if len(rows) == limit:
                return header, rows, False
            rows.append({column: _cell(field) for column, field in zip(header, fields, strict=False)})
    except csv.Error as exc:
        raise SampleError(f"{name}: not readable as CSV: {exc}") from exc
    return header, rows, True


def _read_jsonl(name: str, text: IO[str], limit: int) -> tuple[list[str], list[dict[str, object]], bool]:
    columns: dict[str, None] = {}
    rows: list[dict[str, object]] = []
    for number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        if len(rows) == limit:
            return list(columns), rows, False
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SampleError(f"{name}: line {number} is not JSON: {exc.msg}") from exc
        if not isinstance(record, dict):
            raise SampleError(f"{name}: line {number} is not a JSON object")
        columns.update(dict.fromkeys(record))
        rows.append(record)
    return list(columns), _as_text(rows), True


def _as_text(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """JSON scalars as the text processing reads them (Arrow's casts: `true`, `3`, `1.5e-07`); objects stay."""
    import pyarrow as pa

    floats = [(row, key) for row in rows for key, value in row.items() if isinstance(value, float)]
    rendered = pa.array([row[key] for row, key in floats], pa.float64()).cast(pa.string()).to_pylist()
    for (row, key), text in zip(floats, rendered, strict=True):
        row[key] = text
    for row in rows:
        for key, value in row.items():
            if isinstance(value, bool):
                row[key] = "true" if value else "false"
            elif isinstance(value, int):
                row[key] = str(value)
            elif isinstance(value, str):
                row[key] = _cell(value)
    return rows


def _read_parquet(stream: BinaryIO, limit: int) -> tuple[list[str], list[dict[str, object]], bool]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(stream)
    except pa.ArrowInvalid as exc:
        raise SampleError(f"not a Parquet file: {exc}") from exc
    columns = list(parquet.schema_arrow.names)
    batch = next(parquet.iter_batches(batch_size=limit), None)
    if batch is None:
        return columns, [], True
    # Scalar columns as text, as Arrow casts them; nested ones (lists, structs) stay objects.
    arrays = [a.cast(pa.string()) if not pa.types.is_nested(a.type) else a for a in batch.columns]
    rows = pa.RecordBatch.from_arrays(arrays, names=batch.schema.names).to_pylist()
    return columns, _as_text(rows), parquet.metadata.num_rows <= limit
