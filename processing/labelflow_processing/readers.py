"""Read the run's input files in bounded batches: CSV, JSON Lines or Parquet, each optionally gzipped, as told.

Planning resolves how the landed file is read (labelflow.formats in the layer: the one definition of the
input-format rules) and passes it to the job as arguments, a `ReadAs`; every input file is read that way and
nothing is detected here. What only reading the whole file can find is still checked: a record with the wrong
number of fields, bytes that are not text in the encoding, a corrupt gzip stream, required columns missing.

Every reader yields `RawBatch`es: the spec's required columns (CSV cells as text; JSON and Parquet values as
they are typed there) and the line of each row. A row the reader itself cannot use (a CSV record with the wrong
number of fields, a JSON Lines line that is not an object) comes back as a `Rejection` instead. Lines are
1-based: a CSV row's line counts records with the header as line 1 (the physical line unless a quoted cell
spans lines or blank lines come before it), a JSON Lines row's is its physical line, a Parquet row's is its
row number.

A CSV row is a record, not a physical line: a quoted cell may span lines. A record with the wrong number of
fields that spans lines is broken quoting (an unclosed quote folded the next lines into it): it is rejected with
the number of lines it holds, and so is every later record of the file. A quote still open at the end of the
file rejects the record it opened. Rows read = records, and each ends a record or a rejection. When the spec
says no CSV value holds a line break (`ReadAs.newlines_in_values` false: each line is a whole record, so the
file may be cut at line ends), the first record holding one fails the file (QuotedLineBreak).
"""

from __future__ import annotations

import argparse
import codecs
import csv
import functools
import io
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from labelflow_processing import rejections
from labelflow_processing.config import FatalInputError

FORMATS = ("csv", "jsonl", "parquet")
# ~25,000 rows of a typical CSV per batch: large enough to amortise per-batch work, small enough to keep memory flat.
BLOCK_BYTES = 4 << 20
PARQUET_BATCH_ROWS = 32_768
HEADER_BYTES = 1 << 16
# JSON's insignificant whitespace (RFC 8259) besides the line feed that ends a line.
_JSON_BLANKS = np.array([False] * 256)
_JSON_BLANKS[[ord(" "), ord("\t"), ord("\r")]] = True
_END_MARK = "labelflow:end-of-input"
_UNCLOSED = "unclosed quote: a quoted field opened in this record runs to the end of the file"


@dataclass(frozen=True)
class ReadAs:
    """How every input file is read, as planning resolved it (labelflow.formats.ResolvedInput's arguments)."""

    format: str
    gzip: bool = False
    encoding: str = "utf-8-sig"
    delimiter: str | None = None
    # False: the spec says no CSV value holds a line break (input.newlines_in_values).
    newlines_in_values: bool = True

    @property
    def codec(self) -> str:
        """The encoding's canonical name ("utf-8", "utf-8-sig", "cp1252"...); LookupError when Python has none."""
        return codecs.lookup(self.encoding).name

    @property
    def utf8(self) -> bool:
        """Whether the text is UTF-8, which the readers take as bytes without transcoding."""
        return self.codec in ("utf-8", "utf-8-sig")


class QuotedLineBreak(FatalInputError):
    """A CSV record holds a line break inside quotes though the spec says no value does; `line` numbers it in the
    whole input (a part's reader gives its own line, which the sharded passes shift)."""

    def __init__(self, line: int) -> None:
        super().__init__(
            "the spec says CSV values hold no line breaks (input.newlines_in_values: false) but line "
            f"{line} has one inside quotes; remove the setting"
        )
        self.line = line


@dataclass(frozen=True)
class Rejection:
    """A row that cannot be processed, with the reason written to rejected.jsonl."""

    line: int
    record_id: str | None
    reason: str


@dataclass
class RawBatch:
    """Rows as read: the required columns and each row's line, plus the rows the reader rejected."""

    columns: dict[str, pa.Array]
    lines: np.ndarray
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return len(self.lines)


@dataclass(frozen=True)
class InputFile:
    """One input file and how to read it."""

    path: Path
    name: str
    read_as: ReadAs

    def open(self) -> pa.NativeFile:
        """The file's decompressed bytes as a stream."""
        return pa.input_stream(str(self.path), compression="gzip" if self.read_as.gzip else None)


def find_inputs(input_dir: Path, read_as: ReadAs) -> list[InputFile]:
    """Every file under the input directory, sorted by path; FatalInputError when there is none or one is empty."""
    if not input_dir.is_dir():
        raise FatalInputError(f"no input file: directory {input_dir} does not exist")
    paths = sorted(path for path in input_dir.rglob("*") if path.is_file())
    if not paths:
        raise FatalInputError(f"no input file in {input_dir}")
    files = [InputFile(path, path.relative_to(input_dir).as_posix(), read_as) for path in paths]
    for file in files:
        if file.path.stat().st_size == 0:
            raise FatalInputError(f"input file is empty: {file.name}")
    return files


def read_batches(file: InputFile, required: list[str]) -> Iterator[RawBatch]:
    """The file's rows in batches; FatalInputError when the file as a whole is unusable."""
    readers = {"csv": _csv_batches, "jsonl": _jsonl_batches, "parquet": _parquet_batches}
    try:
        yield from readers[file.read_as.format](file, required)
    except OSError as exc:
        # Arrow's gzip stream reports a corrupt or truncated stream as an OSError when the bytes are read.
        if not file.read_as.gzip:
            raise
        raise FatalInputError(f"input file {file.name} is not readable as gzip: {exc}") from exc


# --- CSV --------------------------------------------------------------------------------------------------


def _header(file: InputFile) -> str:
    """The file's first line, decoded (a byte order mark dropped, by utf-8-sig or utf-16)."""
    with file.open() as stream:
        head = stream.read(HEADER_BYTES)
    try:
        # Not final: a character cut at the end of the head is not an error.
        text = codecs.getincrementaldecoder(file.read_as.encoding)().decode(head, final=False)
    except UnicodeDecodeError as exc:
        raise _not_text(file, exc.start) from exc
    # Any of CSV's line ends: LF, CRLF, or a lone CR (old Mac exports), which Arrow's parser accepts too.
    return re.split(r"\r\n|\r|\n", text, maxsplit=1)[0]


def _split(line: str, delimiter: str) -> list[str]:
    # A skipped row may be any length (its size is the reason it is reported): lift the csv module's 128 KiB
    # field limit for this read only.
    limit = csv.field_size_limit(len(line) + 1)
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    finally:
        csv.field_size_limit(limit)


@dataclass
class _CsvScan:
    """What the invalid-row handler learned: rows it skipped, where quoting broke, whether the end mark was seen."""

    width: int
    id_index: int
    delimiter: str
    invalid: list[Rejection] = field(default_factory=list)
    broken: int | None = None
    ended: bool = False
    # The first skipped row whose text holds a line break (a quoted one, or the end mark inside an open quote).
    spanning: int | None = None

    @property
    def end_record(self) -> str:
        """A record of one field more than the header's, so never a valid row, appended after the file's bytes."""
        return self.delimiter * self.width + _END_MARK

    def on_invalid(self, row: Any) -> str:
        text: str = row.text
        reason = rejections.field_count(row.expected_columns, row.actual_columns)
        if text == self.end_record:
            self.ended = True
            return "skip"
        if self.spanning is None and ("\n" in text or "\r" in text):
            self.spanning = row.number
        if text.endswith(self.end_record):
            self.ended = True
            reason = _UNCLOSED
        elif "\n" in text and self.broken is None:
            self.broken = row.number
            reason = f"broken quoting: {reason} in a record of {text.count(chr(10)) + 1} lines (an unclosed quote?)"
        fields = _split(text, self.delimiter)
        record_id = fields[self.id_index].strip() if self.id_index < len(fields) else ""
        self.invalid.append(Rejection(row.number, record_id or None, reason))
        return "skip"

    def taken(self, last: int) -> list[Rejection]:
        """The skipped rows up to line `last`, no longer held."""
        done = [r for r in self.invalid if r.line <= last]
        self.invalid = [r for r in self.invalid if r.line > last]
        return done


class _Appended:
    """A stream's bytes, then `tail`: Arrow reads it through its Python-file adapter, buffer by buffer."""

    closed = False

    def __init__(self, stream: pa.NativeFile, tail: bytes) -> None:
        self._stream, self._tail = stream, tail

    def read(self, size: int = -1) -> Any:
        data = self._stream.read_buffer(size)
        if data.size:
            return data
        data, self._tail = self._tail[:size], self._tail[size:]
        return data


def _csv_batches(file: InputFile, required: list[str]) -> Iterator[RawBatch]:
    """The CSV rows, a batch held back so that a last record left open by an unclosed quote can still be rejected.

    A mark record is appended after the file: Arrow reads it as a record of its own when every quote is closed,
    and inside the last record's cell when a quote is still open at the end of the file.
    """
    delimiter = file.read_as.delimiter
    assert delimiter is not None, "a CSV input is read with the delimiter planning resolved"
    header = [name.strip() for name in _split(_header(file), delimiter)]
    check_columns(file.name, header, required)
    scan = _CsvScan(len(header), header.index(required[0]), delimiter)
    held: RawBatch | None = None
    for batch in _csv_parsed(file, header, required, scan):
        if held is not None and batch.num_rows:
            yield held
            held = None
        if held is None:
            held = batch
        else:
            held.rejected += batch.rejected
    if held is not None and not scan.ended and held.num_rows:
        held = _cut(held, held.num_rows - 1, required[0], _UNCLOSED)
    if held is not None:
        yield held


def _csv_parsed(file: InputFile, header: list[str], required: list[str], scan: _CsvScan) -> Iterator[RawBatch]:
    """Arrow's batches as RawBatches; every row after broken quoting is rejected. Without newlines in values,
    every cell is read to find the first that holds a line break (QuotedLineBreak)."""
    read_as = file.read_as
    # Columns by position: a header may repeat a name the spec does not need.
    positions = [f"c{index}" for index in range(len(header))]
    wanted = {name: positions[header.index(name)] for name in required}
    included = list(wanted.values()) if read_as.newlines_in_values else positions
    # Single-threaded, so the reader knows the number of each row it skips.
    read_options = pa_csv.ReadOptions(
        use_threads=False, block_size=BLOCK_BYTES, column_names=positions, skip_rows=1, encoding="utf8"
    )
    parse_options = pa_csv.ParseOptions(
        delimiter=scan.delimiter, newlines_in_values=True, invalid_row_handler=scan.on_invalid
    )
    convert_options = pa_csv.ConvertOptions(
        include_columns=included,
        column_types=dict.fromkeys(included, pa.string()),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    stream = file.open()
    try:
        text = stream if read_as.utf8 else pa.transcoding_input_stream(stream, read_as.encoding, "utf8")
        source = _Appended(text, f"\n{scan.end_record}\n".encode())
        next_line = 2
        for records in _csv_records(file, source, (read_options, parse_options, convert_options)):
            lines = _lines_between(next_line, records.num_rows, [r.line for r in scan.invalid])
            last = int(lines[-1]) if len(lines) else next_line - 1
            if not read_as.newlines_in_values:
                _check_single_line(records, lines, scan, last)
            batch = RawBatch({name: records.column(wanted[name]) for name in required}, lines, scan.taken(last))
            if scan.broken is not None:
                reason = f"after the broken quoting at line {scan.broken}"
                batch = _cut(batch, int(np.searchsorted(lines, scan.broken)), required[0], reason)
            yield batch
            next_line = last + 1
        if not read_as.newlines_in_values and scan.spanning is not None:
            raise QuotedLineBreak(scan.spanning)
        if scan.invalid:
            yield RawBatch(columns={}, lines=np.empty(0, np.int64), rejected=scan.taken(np.iinfo(np.int64).max))
    finally:
        stream.close()


def _check_single_line(records: pa.RecordBatch, lines: np.ndarray, scan: _CsvScan, last: int) -> None:
    """QuotedLineBreak at the first row up to line `last` that holds a line break: a cell of the batch (only a
    quoted cell can), or a skipped row's text."""
    found = [scan.spanning] if scan.spanning is not None and scan.spanning <= last else []
    if records.num_columns:
        breaks = functools.reduce(pc.or_, (pc.match_substring_regex(c, r"[\r\n]") for c in records.columns))
        rows = np.flatnonzero(breaks.to_numpy(zero_copy_only=False))
        found += [int(lines[rows[0]])] if len(rows) else []
    if found:
        raise QuotedLineBreak(min(found))


def _cut(batch: RawBatch, keep: int, id_column: str, reason: str) -> RawBatch:
    """The batch's first `keep` rows; the others rejected with `reason`."""
    if keep >= batch.num_rows:
        return batch
    ids = pc.utf8_trim_whitespace(batch.columns[id_column].slice(keep)).to_pylist()
    cut = [Rejection(int(line), rid or None, reason) for line, rid in zip(batch.lines[keep:], ids, strict=True)]
    columns = {name: column.slice(0, keep) for name, column in batch.columns.items()}
    return RawBatch(columns, batch.lines[:keep], batch.rejected + cut)


def _csv_records(file: InputFile, stream: Any, reader_options: tuple[Any, Any, Any]) -> Iterator[pa.RecordBatch]:
    """Arrow's batches; its errors as FatalInputError (the first block is read when the reader opens)."""
    read_options, parse_options, convert_options = reader_options
    try:
        reader = pa_csv.open_csv(
            stream, read_options=read_options, parse_options=parse_options, convert_options=convert_options
        )
        yield from reader
    except pa.ArrowInvalid as exc:
        if "UTF8" in str(exc) and file.read_as.utf8:
            raise _not_text(file, _first_bad_utf8(file)) from exc
        raise FatalInputError(f"input is not readable as csv: {file.name}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise _not_text(file, None) from exc


def _lines_between(first: int, count: int, skipped: list[int]) -> np.ndarray:
    """The first `count` line numbers from `first` on that are not among the reader's skipped rows."""
    candidates = np.arange(first, first + count + len(skipped), dtype=np.int64)
    if skipped:
        candidates = candidates[~np.isin(candidates, np.asarray(skipped, dtype=np.int64))]
    return candidates[:count]


def check_columns(file_name: str, header: list[str], required: list[str]) -> None:
    """Every required column present once in the header of `file_name` (both engines read headers by this)."""
    missing = [name for name in required if name not in header]
    if missing:
        raise FatalInputError(f"missing required columns: {', '.join(sorted(missing))}")
    repeated = sorted(name for name in set(required) if header.count(name) > 1)
    if repeated:
        raise FatalInputError(f"repeated columns in the header of {file_name}: {', '.join(repeated)}")


def _first_bad_utf8(file: InputFile) -> int | None:
    """The offset of the first byte that is not UTF-8 in the file's (decompressed) bytes."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with file.open() as stream:
        while chunk := stream.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                return offset + exc.start - len(decoder.getstate()[0])
            offset += len(chunk)
    return None


def _not_text(file: InputFile, offset: int | None) -> FatalInputError:
    where = f" at byte {offset}" if offset is not None else ""
    label = "utf-8" if file.read_as.utf8 else file.read_as.encoding
    return FatalInputError(
        f"input is not valid {label} text: {file.name}{where}; set input.encoding to the file's encoding (e.g. cp1252)"
    )


# --- JSON Lines -------------------------------------------------------------------------------------------


def _jsonl_batches(file: InputFile, required: list[str]) -> Iterator[RawBatch]:
    seen: set[str] = set()
    first_line = 1
    for chunk in _line_chunks(file):
        ends = np.flatnonzero(np.frombuffer(chunk, np.uint8) == ord("\n"))
        starts = np.concatenate(([0], ends[:-1] + 1))
        filled = _non_blank(chunk, starts, ends)
        lines = first_line + np.flatnonzero(filled)
        first_line += len(ends)
        batch = _jsonl_fast(chunk, required, lines) or _jsonl_slow(chunk, starts[filled], ends[filled], required, lines)
        seen.update(name for name, column in batch.columns.items() if column.null_count < len(column))
        yield batch
    missing = [name for name in required if name not in seen]
    if missing and first_line > 1:
        raise FatalInputError(f"missing required columns: {', '.join(sorted(missing))}")


def _line_chunks(file: InputFile) -> Iterator[bytes]:
    """The file as UTF-8 chunks of whole lines, each ending with a line feed."""
    read_as = file.read_as
    decoder = None if read_as.utf8 else codecs.getincrementaldecoder(read_as.encoding)()
    strip_bom = read_as.codec == "utf-8-sig"
    rest, rest_offset, read = b"", 0, 0
    with file.open() as stream:
        while True:
            raw = stream.read(BLOCK_BYTES)
            data = raw
            if decoder is not None:
                try:
                    data = decoder.decode(raw, final=not raw).encode("utf-8")
                except UnicodeDecodeError as exc:
                    raise _not_text(file, read + exc.start) from exc
            elif read == 0 and strip_bom and data.startswith(codecs.BOM_UTF8):
                data, rest_offset = data[len(codecs.BOM_UTF8) :], len(codecs.BOM_UTF8)
            read += len(raw)
            data, offset = rest + data, rest_offset
            cut = data.rfind(b"\n") + 1 if raw else len(data)
            chunk, rest, rest_offset = data[:cut], data[cut:], offset + cut
            if chunk:
                if decoder is None:
                    _check_utf8(file, chunk, offset)
                yield chunk if chunk.endswith(b"\n") else chunk + b"\n"
            if not raw:
                return


def _check_utf8(file: InputFile, chunk: bytes, offset: int) -> None:
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_text(file, offset + exc.start) from exc


def _non_blank(chunk: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Which lines hold something besides JSON whitespace."""
    blank = _JSON_BLANKS[np.frombuffer(chunk, np.uint8)]
    # Non-blank bytes per line, from prefix sums at the line boundaries.
    counts = np.concatenate(([0], np.cumsum(~blank)))
    filled: np.ndarray = counts[ends] - counts[starts] > 0
    return filled


def _jsonl_fast(chunk: bytes, required: list[str], lines: np.ndarray) -> RawBatch | None:
    """Arrow's JSON reader on a whole chunk; None when the chunk needs line-by-line reading."""
    import pyarrow.json as pa_json  # only JSON Lines inputs pay for its import

    try:
        table = pa_json.read_json(
            io.BytesIO(chunk), read_options=pa_json.ReadOptions(use_threads=False, block_size=len(chunk) + 1)
        )
    except pa.ArrowInvalid:
        return None
    if table.num_rows != len(lines):
        return None
    columns: dict[str, pa.Array] = {}
    for name in required:
        if name not in table.column_names:
            columns[name] = pa.nulls(table.num_rows, pa.string())
            continue
        column = table.column(name).combine_chunks()
        if pa.types.is_nested(column.type):
            return None
        columns[name] = column
    return RawBatch(columns=columns, lines=lines)


def _jsonl_slow(chunk: bytes, starts: np.ndarray, ends: np.ndarray, required: list[str], lines: np.ndarray) -> RawBatch:
    """Line by line: a line that is not a JSON object is rejected; values become text as the fast path's."""
    kept: list[int] = []
    rejected: list[Rejection] = []
    values: dict[str, list[Any]] = {name: [] for name in required}
    for start, end, line in zip(starts.tolist(), ends.tolist(), lines.tolist(), strict=True):
        try:
            row = json.loads(chunk[start:end])
        except ValueError as exc:
            rejected.append(Rejection(line, None, f"not valid JSON: {exc}"))
            continue
        if not isinstance(row, dict):
            rejected.append(Rejection(line, None, f"not a JSON object: {type(row).__name__}"))
            continue
        kept.append(line)
        for name in required:
            values[name].append(row.get(name))
    columns = {name: json_values_as_text(column) for name, column in values.items()}
    return RawBatch(columns=columns, lines=np.asarray(kept, dtype=np.int64), rejected=rejected)


def json_values_as_text(values: list[Any]) -> pa.Array:
    """Parsed JSON values as text, the way Arrow casts typed values (numbers, booleans); objects as JSON."""
    floats = [i for i, v in enumerate(values) if isinstance(v, float)]
    float_text = pa.array([values[i] for i in floats], pa.float64()).cast(pa.string()).to_pylist() if floats else []
    text: list[str | None] = []
    for value in values:
        if value is None or isinstance(value, str):
            text.append(value)
        elif isinstance(value, bool):
            text.append("true" if value else "false")
        elif isinstance(value, int):
            text.append(str(value))
        elif isinstance(value, float):
            text.append(None)
        else:
            text.append(json.dumps(value, ensure_ascii=False))
    for position, rendered in zip(floats, float_text, strict=True):
        text[position] = rendered
    return pa.array(text, pa.string())


# --- Parquet ----------------------------------------------------------------------------------------------


def _parquet_batches(file: InputFile, required: list[str]) -> Iterator[RawBatch]:
    import pyarrow.parquet as pq  # only Parquet inputs pay for its import (~0.1 s)

    with tempfile.TemporaryDirectory(prefix="labelflow-parquet-") as scratch:
        path = file.path
        if file.read_as.gzip:
            # Parquet needs random access: unpack to local disk, not to memory.
            path = Path(scratch) / "input.parquet"
            with file.open() as source, path.open("wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
        try:
            parquet = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise FatalInputError(f"input is not readable as parquet: {file.name}: {exc}") from exc
        check_columns(file.name, parquet.schema_arrow.names, required)
        first = 1
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=required, use_threads=False):
            lines = np.arange(first, first + batch.num_rows, dtype=np.int64)
            first += batch.num_rows
            yield RawBatch(columns={name: batch.column(name) for name in required}, lines=lines)


def _encoding(name: str) -> str:
    try:
        codecs.lookup(name)
    except LookupError:
        raise argparse.ArgumentTypeError(f"unknown text encoding {name!r}") from None
    return name


def _delimiter(text: str) -> str:
    if len(text) != 1:
        raise argparse.ArgumentTypeError(f"a delimiter is one character, not {text!r}")
    return text


def add_read_arguments(parser: argparse.ArgumentParser) -> None:
    """How to read the input, as planning resolved it (labelflow.formats.ResolvedInput.container_arguments): the
    same options for every engine's entry point."""
    parser.add_argument("--format", choices=FORMATS, required=True)
    parser.add_argument("--gzip", action="store_true", help="every input file is a gzip stream")
    parser.add_argument("--encoding", type=_encoding, default="utf-8-sig", help="text encoding of CSV and JSON Lines")
    parser.add_argument("--delimiter", type=_delimiter, help="the CSV field delimiter; required with --format csv")
    parser.add_argument(
        "--no-newlines-in-values",
        dest="newlines_in_values",
        action="store_false",
        help="no CSV value holds a line break (the spec's input.newlines_in_values: false): each line is a record",
    )


def read_as_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ReadAs:
    """The ReadAs the options of add_read_arguments give; a delimiter goes with CSV and only with it."""
    if (args.format == "csv") != (args.delimiter is not None):
        parser.error("--delimiter is required with --format csv, and only with it")
    if args.format != "csv" and not args.newlines_in_values:
        parser.error("--no-newlines-in-values goes with --format csv only")
    return ReadAs(
        format=args.format,
        gzip=args.gzip,
        encoding=args.encoding,
        delimiter=args.delimiter,
        newlines_in_values=args.newlines_in_values,
    )
