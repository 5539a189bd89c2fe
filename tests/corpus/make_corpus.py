"""Bad and unusual inputs for the demo dataset: one file per kind, each with what must become of it (issue 7).

Every kind is built from the first 40 rows of demo/data/reviews.csv and is run as its own dataset (the demo spec,
renamed after the kind, with the kind's `input` settings), so each run fits its own transform state, as a
dataset's first run does. Run as a script to write the corpus to a folder:

    python tests/corpus/make_corpus.py OUT_DIR     # OUT_DIR/<kind>/<file> and OUT_DIR/index.json
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
DEMO_DATA = ROOT / "demo/data/reviews.csv"
DEMO_SPEC = ROOT / "demo/datasets/reviews.json"
ROWS = 40
Row = list[str]


@dataclass(frozen=True)
class Expect:
    """What must become of a file: every record processed, some rejected per row, or the file failed."""

    outcome: Literal["processed", "rejected", "failed"]
    # processed / rejected: the records read (a quoted cell spanning lines is one record) and how many are rejected.
    records: int = ROWS
    rejected: int = 0
    # failed: a phrase of the reason run.json gives; quarantined when the file itself is refused (before
    # processing, or by it: too many rows rejected).
    reason: str = ""
    quarantined: bool = False


@dataclass(frozen=True)
class Kind:
    """One kind of input: its name (also its dataset's), the file's name, its bytes and its expectation."""

    name: str
    filename: str
    body: bytes
    expect: Expect
    input: dict[str, str] = field(default_factory=dict)

    def spec(self) -> bytes:
        """The demo spec, as this kind's dataset, with the kind's `input` settings."""
        spec = json.loads(DEMO_SPEC.read_text(encoding="utf-8"))
        spec["dataset"] = self.name
        if self.input:
            spec["input"] = self.input
        return json.dumps(spec, indent=2).encode()


PROCESSED = Expect("processed")


def base() -> tuple[Row, list[Row]]:
    """The demo file's header and its first ROWS rows."""
    with DEMO_DATA.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, [next(reader) for _ in range(ROWS)]


def csv_text(header: Row, rows: list[Row], delimiter: str = ",", newline: str = "\n") -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def good_csv(delimiter: str = ",", newline: str = "\n") -> str:
    header, rows = base()
    return csv_text(header, rows, delimiter, newline)


def edited(change: Callable[[Row, list[Row]], None]) -> bytes:
    """The base file after `change` edits its header and rows in place."""
    header, rows = base()
    change(header, rows)
    return csv_text(header, rows).encode()


def setting(column: str, values: dict[int, str]) -> Callable[[Row, list[Row]], None]:
    """An edit that puts values in one column of the given rows (0-based)."""

    def change(header: Row, rows: list[Row]) -> None:
        for index, value in values.items():
            rows[index][header.index(column)] = value

    return change


def raw_lines(text: str, replace: dict[int, str]) -> bytes:
    """The text with some data rows (0-based) replaced by raw lines, written as they are (no quoting)."""
    lines = text.split("\n")
    for index, line in replace.items():
        lines[index + 1] = line
    return "\n".join(lines).encode()


def jsonl() -> str:
    header, rows = base()
    return "".join(json.dumps(dict(zip(header, row, strict=True))) + "\n" for row in rows)


def broken_jsonl(index: int) -> bytes:
    """JSON Lines whose line `index` (0-based) is cut short."""
    lines = jsonl().splitlines()
    lines[index] = lines[index][:40]
    return "".join(f"{line}\n" for line in lines).encode()


def parquet() -> bytes:
    """The base rows as Parquet, numbers typed (missing ones null), the rest text."""
    header, rows = base()
    columns: dict[str, list[Any]] = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    table = pa.table(
        {
            **columns,
            "helpful_votes": pa.array([int(v) if v else None for v in columns["helpful_votes"]], pa.int64()),
            "price": pa.array([float(v) if v else None for v in columns["price"]], pa.float64()),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def gzipped(data: bytes) -> bytes:
    # mtime=0: the same bytes on every run.
    return gzip.compress(data, mtime=0)


def _drop_column(name: str) -> Callable[[Row, list[Row]], None]:
    def change(header: Row, rows: list[Row]) -> None:
        index = header.index(name)
        for row in [header, *rows]:
            del row[index]

    return change


def _extra_column(header: Row, rows: list[Row]) -> None:
    header.append("notes")
    for number, row in enumerate(rows):
        row.append(f"note {number}")


def _reordered(header: Row, rows: list[Row]) -> None:
    for row in [header, *rows]:
        row.reverse()


def _quoted_newline(header: Row, rows: list[Row]) -> None:
    text = header.index("review_text")
    rows[3][text] = 'first line\nsecond line, "quoted"\r\nthird line'


def _duplicate_ids(header: Row, rows: list[Row]) -> None:
    rows[10][0], rows[20][0] = rows[1][0], rows[2][0]


def _ragged(index: int, fields: int) -> Callable[[Row, list[Row]], None]:
    def change(header: Row, rows: list[Row]) -> None:
        rows[index] = (rows[index] + ["extra"] * fields)[: len(header) + fields]

    return change


def _blank_lines() -> bytes:
    """A blank line after the header, after every tenth row and at the end."""
    header, *rows = good_csv().splitlines()
    lines = [header, ""]
    for number, row in enumerate(rows, 1):
        lines += [row, ""] if number % 10 == 0 else [row]
    return ("\n".join(lines) + "\n").encode()


def _unterminated_quote(index: int) -> bytes:
    """Row `index` (0-based) opens a quote in its last cell that never closes."""
    header, rows = base()
    lines = csv_text(header, rows).splitlines()
    lines[index + 1] = csv_text(header, [rows[index][:-1]]).splitlines()[1] + ',"never closed'
    return ("\n".join(lines) + "\n").encode()


def _trailing_delimiter() -> bytes:
    return "".join(f"{line},\n" for line in good_csv().splitlines()).encode()


def _latin1_text(header: Row, rows: list[Row]) -> None:
    rows[0][header.index("review_text")] = "Un café crème, très bon. Naïve but good."


def kinds() -> list[Kind]:
    """Every kind of the corpus, in a stable order."""
    good = good_csv()
    text = good.encode()
    seeded = random.Random(7)
    gz = gzipped(text)
    latin1 = edited(_latin1_text).decode()
    return [
        Kind("baseline", "reviews.csv", text, PROCESSED),
        # structure
        # Row 38 opens a quote that row 39's first quote closes: one record of two lines (so 39 records), broken,
        # and the record after it are rejected, from the broken line on.
        Kind("unterminated-quote", "reviews.csv", _unterminated_quote(37), Expect("rejected", records=39, rejected=2)),
        Kind("ragged-short", "reviews.csv", edited(_ragged(4, -2)), Expect("rejected", rejected=1)),
        Kind("ragged-long", "reviews.csv", edited(_ragged(6, 3)), Expect("rejected", rejected=1)),
        Kind("empty", "reviews.csv", b"", Expect("failed", reason="is empty", quarantined=True)),
        Kind("whitespace-only", "reviews.csv", b" \n\n \n", Expect("failed", reason="is empty", quarantined=True)),
        Kind("header-only", "reviews.csv", good.split("\n")[0].encode() + b"\n", Expect("failed", reason="no data")),
        Kind("blank-lines", "reviews.csv", _blank_lines(), PROCESSED),
        Kind("trailing-delimiter", "reviews.csv", _trailing_delimiter(), PROCESSED),
        Kind("quoted-newlines", "reviews.csv", edited(_quoted_newline), PROCESSED),
        Kind("huge-line", "reviews.csv", raw_lines(good, {12: "x" * 1_000_000}), Expect("rejected", rejected=1)),
        # encodings and line ends
        Kind("utf8-bom", "reviews.csv", b"\xef\xbb\xbf" + text, PROCESSED),
        Kind("utf16", "reviews.csv", good.encode("utf-16"), Expect("failed", reason="UTF-16", quarantined=True)),
        Kind("utf16-declared", "reviews.csv", good.encode("utf-16"), PROCESSED, {"encoding": "utf-16"}),
        Kind("latin1", "reviews.csv", latin1.encode("latin-1"), Expect("failed", reason="utf-8", quarantined=True)),
        Kind("latin1-declared", "reviews.csv", latin1.encode("latin-1"), PROCESSED, {"encoding": "latin-1"}),
        Kind("crlf", "reviews.csv", good_csv(newline="\r\n").encode(), PROCESSED),
        Kind("cr", "reviews.csv", good_csv(newline="\r").encode(), PROCESSED),
        # delimiters
        Kind("tab", "reviews.csv", good_csv("\t").encode(), PROCESSED),
        Kind("tsv", "reviews.tsv", good_csv("\t").encode(), PROCESSED),
        Kind("semicolon", "reviews.csv", good_csv(";").encode(), PROCESSED),
        Kind("pipe", "reviews.csv", good_csv("|").encode(), PROCESSED),
        # columns
        Kind(
            "missing-column",
            "reviews.csv",
            edited(_drop_column("price")),
            Expect("failed", reason="missing required columns: price", quarantined=True),
        ),
        Kind("extra-column", "reviews.csv", edited(_extra_column), PROCESSED),
        Kind("reordered-columns", "reviews.csv", edited(_reordered), PROCESSED),
        # record ids
        Kind("duplicate-ids", "reviews.csv", edited(_duplicate_ids), Expect("rejected", rejected=2)),
        Kind(
            "empty-ids", "reviews.csv", edited(setting("review_id", {5: "", 6: "  "})), Expect("rejected", rejected=2)
        ),
        Kind(
            "id-control-chars",
            "reviews.csv",
            edited(setting("review_id", {3: "r\x01x", 4: "r\x1fx", 5: "r\x7fx"})),
            Expect("rejected", rejected=3),
        ),
        Kind("id-nul", "reviews.csv", edited(setting("review_id", {30: "r00031\x00"})), Expect("rejected", rejected=1)),
        Kind(
            "id-nul-first-row",
            "reviews.csv",
            edited(setting("review_id", {0: "r00001\x00"})),
            Expect("rejected", rejected=1),
        ),
        # values
        Kind("number-1e308", "reviews.csv", edited(setting("helpful_votes", {2: "1e308", 3: "-1e308"})), PROCESSED),
        Kind("number-1e160", "reviews.csv", edited(setting("helpful_votes", {2: "1e160"})), PROCESSED),
        Kind("number-price-1e308", "reviews.csv", edited(setting("price", {2: "1e308", 9: "5e-324"})), PROCESSED),
        Kind(
            "number-inf",
            "reviews.csv",
            edited(setting("helpful_votes", {2: "inf", 3: "-Infinity"})),
            Expect("rejected", rejected=2),
        ),
        Kind(
            "number-nan", "reviews.csv", edited(setting("price", {2: "nan", 3: "NaN"})), Expect("rejected", rejected=2)
        ),
        Kind("number-comma", "reviews.csv", edited(setting("price", {2: "1,5"})), Expect("rejected", rejected=1)),
        Kind(
            "huge-cell",
            "reviews.csv",
            edited(setting("review_text", {7: "y" * 200_000})),
            Expect("rejected", rejected=1),
        ),
        Kind(
            "bad-event-time",
            "reviews.csv",
            edited(setting("reviewed_at", {1: "yesterday", 2: "2026-13-45T99:00:00Z"})),
            Expect("rejected", rejected=2),
        ),
        Kind("unknown-category", "reviews.csv", edited(setting("product_category", {0: "garden"})), PROCESSED),
        Kind(
            "all-rows-rejected",
            "reviews.csv",
            edited(setting("reviewed_at", dict.fromkeys(range(ROWS), "never"))),
            Expect("failed", reason="all 40 rows were rejected", quarantined=True),
        ),
        Kind(
            "mostly-rejected",
            "reviews.csv",
            edited(setting("reviewed_at", dict.fromkeys(range(30), "never"))),
            Expect("failed", reason="30 of 40 rows were rejected (75.0%)", quarantined=True),
        ),
        # not CSV text at all
        Kind(
            "binary-garbage",
            "reviews.csv",
            bytes(seeded.randrange(256) for _ in range(4096)),
            Expect("failed", reason="text", quarantined=True),
        ),
        Kind(
            "json-array",
            "reviews.json",
            json.dumps([json.loads(line) for line in jsonl().splitlines()]).encode(),
            Expect("failed", reason="JSON Lines", quarantined=True),
        ),
        # compression and other formats
        Kind("gzip", "reviews.csv.gz", gz, PROCESSED),
        Kind("gzip-without-extension", "reviews.csv", gz, PROCESSED),
        Kind("gzip-truncated", "reviews.csv.gz", gz[: len(gz) // 2], Expect("failed", reason="gzip")),
        Kind("jsonl", "reviews.jsonl", jsonl().encode(), PROCESSED),
        Kind(
            "jsonl-broken-line",
            "reviews.jsonl",
            broken_jsonl(5),
            Expect("rejected", rejected=1),
        ),
        Kind("jsonl-gzip", "reviews.jsonl.gz", gzipped(jsonl().encode()), PROCESSED),
        Kind("parquet", "reviews.parquet", parquet(), PROCESSED),
        # keys
        Kind("no-extension", "reviews", text, PROCESSED),
        Kind("awkward-key", "week 1+2 100% café – naïve.csv", text, PROCESSED),
    ]


def write(out_dir: Path) -> list[Path]:
    """Write every kind to `out_dir/<kind>/<file>` (its spec beside it) and an index; returns the files."""
    written = []
    index = []
    for kind in kinds():
        folder = out_dir / kind.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / kind.filename).write_bytes(kind.body)
        (folder / "spec.json").write_bytes(kind.spec())
        written.append(folder / kind.filename)
        index.append({"kind": kind.name, "file": f"{kind.name}/{kind.filename}", "expect": asdict(kind.expect)})
    (out_dir / "index.json").write_text(json.dumps(index, indent=2, ensure_ascii=False), encoding="utf-8")
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_corpus.py OUT_DIR")
    print(f"wrote {len(write(Path(sys.argv[1])))} kinds to {sys.argv[1]}")
