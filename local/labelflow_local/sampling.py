"""Read a bounded sample of a data file (CSV, JSON Lines or Parquet, each maybe gzipped), streaming.

`labelflow init` and `labelflow validate` look at the first rows only, so a file of any size costs the same.
How the file is read (format, gzip, encoding, CSV delimiter) is resolved by labelflow.formats on its first
bytes, exactly as planning resolves a landed object; this module only reads the rows.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from labelflow.datasets import HEADER_PROBE_BYTES
from labelflow.errors import InvalidInputError
from labelflow.formats import ResolvedInput, format_from_key, resolve_input
from labelflow.models.spec import InputSpec

SAMPLE_ROWS = 10_000
# When nothing names the encoding (init), a file that is not UTF-8 is tried as Windows' Western code page; init
# then writes it into the spec's input.encoding, so planning reads the file the same way. Latin-1 decodes any
# byte, so it is never wrong enough to fail: it is left to the user to name.
FALLBACK_ENCODING = "cp1252"
type Stream = gzip.GzipFile | io.BufferedReader
# The columns, the rows read, and whether they are all the file holds.
type Rows = tuple[list[str], list[dict[str, object]], bool]


class SampleError(ValueError):
    """The file cannot be read as a table; the message says why in one line."""


class _NotTextError(SampleError):
    """The file's bytes are not text in the encoding it was read with."""


@dataclass(frozen=True)
class Sample:
    """The first rows of a file, as {column: text}, as processing reads them; a missing or blank cell is None.

    Typed values (JSON Lines, Parquet) are rendered as processing renders them; nested values stay objects.
    `options` is the input section the file was read with; `resolved` is what labelflow.formats made of it.
    """

    path: Path
    resolved: ResolvedInput
    columns: list[str]
    rows: list[dict[str, object]]
    complete: bool
    options: InputSpec = InputSpec()

    @property
    def extension_says_format(self) -> bool:
        """Whether `input.format: auto` finds this file's format from its name alone."""
        return format_from_key(self.path.name)[0] == self.resolved.format

    def values(self, column: str) -> list[object]:
        """The column's non-missing values, in row order."""
        return [row[column] for row in self.rows if row.get(column) is not None]

    def describe(self) -> str:
        size = f"{len(self.rows)} rows" if self.complete else f"the first {len(self.rows)} rows"
        return f"{size} of {self.path.name}"


def read_sample(path: Path, options: InputSpec | None = None, limit: int = SAMPLE_ROWS) -> Sample:
    """The first `limit` rows of `path`, read as the spec's `input` section says, as planning would.

    Without a section (init: no spec yet), a file that is not UTF-8 is read as cp1252 if it decodes as that; the
    sample's `options` then name the encoding.
    """
    if not path.is_file():
        raise SampleError(f"{path}: no such file")
    if options is not None:
        return _read(path, options, limit)
    try:
        return _read(path, InputSpec(), limit)
    except _NotTextError as not_utf8:
        try:
            return _read(path, InputSpec(encoding=FALLBACK_ENCODING), limit)
        except _NotTextError:
            raise not_utf8 from None
        except SampleError as exc:
            raise SampleError(f"{exc} (read as {FALLBACK_ENCODING}: not utf-8 text)") from exc


def _read(path: Path, options: InputSpec, limit: int) -> Sample:
    with path.open("rb") as probe:
        head = probe.read(HEADER_PROBE_BYTES)
    try:
        resolved = resolve_input(path.name, head, options, path.name)
    except InvalidInputError as exc:
        error = _NotTextError if isinstance(exc.__cause__, UnicodeDecodeError) else SampleError
        raise error(str(exc)) from exc
    try:
        with gzip.open(path, "rb") if resolved.gzip else path.open("rb") as stream:
            if resolved.format == "parquet":
                columns, rows, complete = _read_parquet(path.name, stream, limit)
            else:
                columns, rows, complete = _read_text(path.name, stream, resolved, limit)
    except UnicodeDecodeError as exc:
        encoding = "utf-8" if resolved.encoding == "utf-8-sig" else resolved.encoding
        raise _NotTextError(
            f"{path.name} is not {encoding} text past its first bytes ({exc.reason}): set input.encoding "
            "in the spec, e.g. latin-1 or cp1252"
        ) from exc
    except (OSError, EOFError) as exc:  # a truncated or corrupt gzip stream
        raise SampleError(f"{path.name}: cannot be read: {exc}") from exc
    return Sample(path, resolved, columns, rows, complete, options)


def _read_text(name: str, stream: Stream, resolved: ResolvedInput, limit: int) -> Rows:
    with io.TextIOWrapper(stream, encoding=resolved.encoding, newline="") as text:
        if resolved.format == "jsonl":
            return _read_jsonl(name, text, limit)
        return _read_csv(name, csv.reader(text, delimiter=resolved.delimiter or ","), limit)


def _cell(text: str) -> str | None:
    return text.strip() or None


def _read_csv(name: str, reader: Iterator[list[str]], limit: int) -> Rows:
    """The header is the first non-blank record, as labelflow.formats takes it; blank records are skipped."""
    header: list[str] | None = None
    rows: list[dict[str, object]] = []
    try:
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue
            if header is None:
                header = _check_header(name, fields)
                continue
            if len(rows) == limit:
                return header, rows, False
            rows.append({column: _cell(field) for column, field in zip(header, fields, strict=False)})
    except csv.Error as exc:
        raise SampleError(f"{name}: not readable as CSV: {exc}") from exc
    return header or [], rows, True


def _check_header(name: str, fields: list[str]) -> list[str]:
    header = [column.strip() for column in fields]
    repeated = sorted({column for column in header if header.count(column) > 1})
    if repeated:
        raise SampleError(f"{name}: repeated column names in the header: {', '.join(repeated)}")
    if "" in header:
        raise SampleError(f"{name}: column {header.index('') + 1} of the header has no name")
    return header


def _read_jsonl(name: str, text: IO[str], limit: int) -> Rows:
    columns: dict[str, None] = {}
    rows: list[dict[str, object]] = []
    complete = True
    for number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        if len(rows) == limit:
            complete = False
            break
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SampleError(f"{name}: line {number} is not JSON: {exc.msg}") from exc
        if not isinstance(record, dict):
            raise SampleError(f"{name}: line {number} is not a JSON object")
        columns.update(dict.fromkeys(record))
        rows.append(record)
    return list(columns), _as_text(rows), complete


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


def _read_parquet(name: str, stream: Stream, limit: int) -> Rows:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(stream)
    except pa.ArrowInvalid as exc:
        raise SampleError(f"{name}: not a Parquet file: {exc}") from exc
    columns = list(parquet.schema_arrow.names)
    batch = next(parquet.iter_batches(batch_size=limit), None)
    if batch is None:
        return columns, [], True
    # Scalar columns as text, as Arrow casts them; nested ones (lists, structs) stay objects.
    arrays = [a.cast(pa.string()) if not pa.types.is_nested(a.type) else a for a in batch.columns]
    rows = pa.RecordBatch.from_arrays(arrays, names=batch.schema.names).to_pylist()
    return columns, _as_text(rows), parquet.metadata.num_rows <= limit
