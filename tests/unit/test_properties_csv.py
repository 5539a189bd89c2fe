"""Properties of CSV reading (hypothesis): any table Python's csv module writes reads back as it was written.

The reader needs numpy and pyarrow, which only the processing image's venv has, so it runs there: one process for
the module, fed one file per example, so an example costs a read, not a Python start.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from labelflow_local.processing_env import ensure_processing_env
from tests.unit.processing.conftest import PROCESSING

# Reads each request's file as told and answers with its rows (the required columns' values), lines and rejections.
READER = """
import json, sys, tempfile
from pathlib import Path
from labelflow_processing.readers import InputFile, ReadAs, read_batches

for request in sys.stdin:
    ask = json.loads(request)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "input.csv"
        path.write_bytes(bytes.fromhex(ask["data"]))
        file = InputFile(path, "input.csv", ReadAs("csv", encoding=ask["encoding"], delimiter=ask["delimiter"]))
        rows, lines, rejected = [], [], []
        try:
            for batch in read_batches(file, ask["required"]):
                columns = [batch.columns[name].to_pylist() for name in ask["required"]] if batch.num_rows else []
                rows += [list(row) for row in zip(*columns)]
                lines += batch.lines.tolist()
                rejected += [[r.line, r.reason] for r in batch.rejected]
            answer = {"rows": rows, "lines": lines, "rejected": rejected}
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(answer), flush=True)
"""


class Reader:
    """The processing image's CSV reader in a process of its own."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [str(ensure_processing_env()), "-c", READER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=PROCESSING,
            env={"PYTHONPATH": str(PROCESSING)},
        )

    def read(self, data: bytes, delimiter: str, required: list[str], encoding: str = "utf-8-sig") -> dict[str, Any]:
        assert self._process.stdin is not None and self._process.stdout is not None
        request = {"data": data.hex(), "delimiter": delimiter, "required": required, "encoding": encoding}
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        answer: dict[str, Any] = json.loads(self._process.stdout.readline())
        return answer

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=30)


@pytest.fixture(scope="module")
def reader() -> Iterator[Reader]:
    process = Reader()
    yield process
    process.close()


# The reader reads each file from scratch: a module-scoped process is safe to share across examples.
PROPERTY = settings(
    max_examples=60, deadline=timedelta(seconds=2), suppress_health_check=[HealthCheck.function_scoped_fixture]
)
Quoting = Literal[0, 1]  # csv.QUOTE_MINIMAL, csv.QUOTE_ALL
COLUMN_NAMES = st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True), min_size=1, max_size=5, unique=True)
# Any text a UTF-8 file can hold: quotes, delimiters, CR and LF, NUL and other control characters included.
CELLS = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    header = draw(COLUMN_NAMES)
    rows = draw(st.lists(st.lists(CELLS, min_size=len(header), max_size=len(header)), min_size=1, max_size=20))
    return header, rows


def written(header: list[str], rows: list[list[str]], delimiter: str, newline: str, quoting: Quoting) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline, quoting=quoting)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def python_reads(data: bytes, delimiter: str) -> list[list[str]] | None:
    """The rows Python's csv module reads from the file; None when it cannot."""
    try:
        return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=delimiter))
    except csv.Error:
        return None


@PROPERTY
@given(
    table=tables(),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    newline=st.sampled_from(["\n", "\r\n"]),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    bom=st.booleans(),
)
def test_a_table_written_by_the_csv_module_reads_back_as_written(
    reader: Reader, table: tuple[list[str], list[list[str]]], delimiter: str, newline: str, quoting: Quoting, bom: bool
) -> None:
    # Given any table of text cells, written by Python's csv module in any dialect labelflow reads
    header, rows = table
    data = (b"\xef\xbb\xbf" if bom else b"") + written(header, rows, delimiter, newline, quoting)
    # (a file that is a table at all: with "\n" line ends the csv module leaves a lone CR unquoted)
    assume(python_reads(data, delimiter) == [header, *rows])
    # When the processing reader reads it, asked for every column
    answer = reader.read(data, delimiter, header)
    # Then every row comes back, in order, with its values, and none is rejected
    assert "error" not in answer, answer
    assert answer["rejected"] == []
    assert answer["rows"] == rows
    # And each row's line counts records from the header's line 1
    assert answer["lines"] == list(range(2, len(rows) + 2))


@PROPERTY
@given(table=tables(), extra=st.lists(CELLS, min_size=1, max_size=3), at=st.integers(min_value=0, max_value=19))
def test_a_row_with_more_fields_than_the_header_is_rejected_alone_naming_its_line(
    reader: Reader, table: tuple[list[str], list[list[str]]], extra: list[str], at: int
) -> None:
    # Given a table one of whose rows has extra fields, on one line (a ragged record spanning lines reads as an
    # unclosed quote, rejected from there on)
    header, rows = table
    at = at % len(rows)
    ragged = [*rows[:at], rows[at] + extra, *rows[at + 1 :]]
    assume(not any("\n" in cell or "\r" in cell for cell in ragged[at]))
    data = written(header, ragged, ",", "\r\n", csv.QUOTE_MINIMAL)
    assume(python_reads(data, ",") == [header, *ragged])
    # When it is read
    answer = reader.read(data, ",", header)
    # Then that row alone is rejected, on its line, and the others read back as written
    assert "error" not in answer, answer
    assert [line for line, _ in answer["rejected"]] == [at + 2]
    assert answer["rows"] == rows[:at] + rows[at + 1 :]
