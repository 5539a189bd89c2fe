"""What a landed file is: its format, compression, text encoding and CSV delimiter, from its key and first bytes.

The one definition of the input-format rules. Planning resolves them on the first bytes of the object and
passes the result to the processing step, which reads the file as told; `labelflow init` and `validate` use
the same rules locally. Standard library only: this runs in Lambda.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import zlib
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from labelflow.errors import InvalidInputError
from labelflow.models.spec import InputSpec

FileFormat = Literal["csv", "jsonl", "parquet"]
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
UTF8_BOM = codecs.BOM_UTF8
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
DELIMITERS = (",", ";", "\t", "|")
_EXTENSIONS: dict[str, FileFormat] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class ResolvedInput(BaseModel):
    """How the processing step reads the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: FileFormat
    gzip: bool = False
    encoding: str = "utf-8-sig"
    delimiter: str | None = None
    columns: list[str] | None = None
    # CSV only: False when the spec says no value holds a line break (input.newlines_in_values), so every line is
    # a whole record and the file can be cut at line ends.
    newlines_in_values: bool = True

    def container_arguments(self) -> list[str]:
        """The processing script's arguments that say how to read the input (both engines take the same ones)."""
        arguments = ["--format", self.format, "--encoding", self.encoding]
        if self.gzip:
            arguments.append("--gzip")
        if self.delimiter is not None:
            arguments += ["--delimiter", self.delimiter]
        if not self.newlines_in_values:
            arguments.append("--no-newlines-in-values")
        return arguments


# More than one NUL in this many characters of the first bytes: binary, not text.
BINARY_NUL_SHARE = 100


def format_from_key(key: str) -> tuple[FileFormat | None, bool]:
    """The format the key's extension names (None when it names none) and whether it ends in .gz."""
    name = key.rsplit("/", 1)[-1].lower()
    gzipped = name.endswith(".gz")
    name = name.removesuffix(".gz")
    suffix = name[name.rfind(".") :] if "." in name else ""
    return _EXTENSIONS.get(suffix), gzipped


def _inflate(head: bytes, where: str) -> bytes:
    """The start of a gzip stream's content (as much as the given bytes hold)."""
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 256 * 1024)
    except zlib.error as exc:
        raise InvalidInputError(f"{where} is not a readable gzip file: {exc}") from exc


def rows_per_byte(head: bytes, resolved: ResolvedInput) -> float | None:
    """Lines per byte of the stored object, from its first bytes (gzip: per compressed byte); None for Parquet,
    whose row count only its footer knows. Quoted newlines count as rows: an estimate errs high."""
    if resolved.format == "parquet":
        return None
    content, consumed = head, len(head)
    if resolved.gzip:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        content = inflater.decompress(head, 4 * 1024 * 1024)
        consumed = len(head) - len(inflater.unconsumed_tail)
    lines = content.count(b"\n") or 1
    return lines / max(consumed, 1)


def decode_head(head: bytes, encoding: str, where: str) -> str:
    """The first bytes as text; a multibyte character cut at the end of the probe is not an error."""
    try:
        decoder = codecs.getincrementaldecoder(encoding)()
    except LookupError as exc:
        raise InvalidInputError(f"{where}: unknown text encoding {encoding!r} (input.encoding)") from exc
    try:
        return decoder.decode(head, final=False)
    except UnicodeDecodeError as exc:
        name = "utf-8" if encoding == "utf-8-sig" else encoding
        raise InvalidInputError(
            f"{where} is not {name} text (byte {exc.start}: {exc.reason}): set input.encoding in the spec, "
            "e.g. latin-1 or cp1252"
        ) from exc


def detect_delimiter(header_line: str, where: str, required: Sequence[str] = ()) -> str:
    """The header's delimiter among , ; TAB |, counted outside quotes. When two are equally common, the one that
    splits out every required column wins; an error when that does not settle it."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(counts.values())
    if best == 0:
        return ","
    found = [d for d, n in counts.items() if n == best]
    if len(found) > 1 and required:
        found = [d for d in found if set(required) <= {c.strip() for c in _split(header_line, d)}] or found
    if len(found) > 1:
        names = " and ".join(repr(d) for d in found)
        raise InvalidInputError(f"{where}: cannot tell the delimiter ({names} appear equally): set input.delimiter")
    return found[0]


def _split(line: str, delimiter: str) -> list[str]:
    return next(csv.reader(io.StringIO(line), delimiter=delimiter), [])


def resolve_input(key: str, head: bytes, options: InputSpec, where: str, required: Sequence[str] = ()) -> ResolvedInput:
    """Resolve format, compression, encoding and delimiter; InvalidInputError when the file cannot be read.

    `head` is the object's first bytes (enough for the header line). CSV and JSON Lines come back with their
    header columns (the first JSON object's keys); Parquet's columns are checked by the processing step.
    `required` (the spec's columns) settles a delimiter that the header alone leaves open.
    """
    if not head.strip():
        raise InvalidInputError(f"{where} is empty")
    by_key, gzipped = format_from_key(key)
    gzipped = gzipped or head.startswith(GZIP_MAGIC)
    if gzipped and not head.startswith(GZIP_MAGIC):
        raise InvalidInputError(f"{where} ends in .gz but is not gzip data")
    content = _inflate(head, where) if gzipped else head
    if not content.strip():
        raise InvalidInputError(f"{where} is empty")
    kind: FileFormat | None = None if options.format == "auto" else options.format
    kind = kind or by_key
    if kind is None:
        start = content.removeprefix(UTF8_BOM).lstrip()
        if content.startswith(PARQUET_MAGIC):
            kind = "parquet"
        elif start.startswith(b"{"):
            kind = "jsonl"
        elif start.startswith(b"["):
            raise InvalidInputError(f"{where} is a JSON array: labelflow reads JSON Lines, one object per line")
        else:
            kind = "csv"
    if kind == "parquet":
        if not content.startswith(PARQUET_MAGIC):
            raise InvalidInputError(f"{where} is not a Parquet file (no PAR1 magic)")
        return ResolvedInput(format="parquet", gzip=gzipped)
    encoding = options.encoding or "utf-8-sig"
    if options.encoding is None and content.startswith(UTF16_BOMS):
        raise InvalidInputError(f"{where} is UTF-16 text (it starts with a UTF-16 BOM): set input.encoding to utf-16")
    text = decode_head(content, encoding, where)
    # Binary data (or UTF-16 without a BOM) is full of NULs; a stray one in a cell is the row's problem, and
    # processing rejects that row.
    if text.count("\x00") * BINARY_NUL_SHARE > len(text):
        raise InvalidInputError(f"{where} is not a text file (NUL bytes): expected CSV, JSON Lines or Parquet")
    lines = text.splitlines()
    if kind == "jsonl":
        first_line = next((line for line in lines if line.strip()), "")
        try:
            first = json.loads(first_line)
        except ValueError as exc:
            raise InvalidInputError(f"{where}: the first line is not JSON: {exc}") from exc
        if not isinstance(first, dict):
            raise InvalidInputError(f"{where}: JSON Lines need one object per line; the first line is not one")
        return ResolvedInput(format="jsonl", gzip=gzipped, encoding=encoding, columns=list(first))
    first_line = lines[0] if lines else ""
    if not first_line.strip():
        raise InvalidInputError(f"{where}: the first line is blank; a CSV file's first line must be its header")
    delimiter = options.delimiter or (
        "\t" if by_key == "csv" and key.lower().removesuffix(".gz").endswith(".tsv") else None
    )
    delimiter = delimiter or detect_delimiter(first_line, where, required)
    try:
        columns = [column.strip() for column in _split(first_line, delimiter)]
    except csv.Error as exc:
        raise InvalidInputError(f"{where} has no readable csv header") from exc
    return ResolvedInput(
        format="csv",
        gzip=gzipped,
        encoding=encoding,
        delimiter=delimiter,
        columns=columns,
        newlines_in_values=options.newlines_in_values,
    )
