"""Every row processed or rejected with a reason: broken quoting, extreme numbers, oversized cells, control
characters in ids, and the share of rejected rows past which the job fails."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tests.unit.processing.conftest import DEMO, Job, Outcome, csv_text, demo_spec, make_spec

UNCLOSED = "unclosed quote: a quoted field opened in this record runs to the end of the file"


def accounted(outcome: Outcome) -> tuple[int, int, int]:
    """(rows read, records written + rows rejected, lines in rejected.jsonl) from the job's outputs."""
    stats = outcome.stats
    assert stats["rejected"] == len(outcome.rejected)
    assert stats["records_out"] == len(outcome.records)
    return stats["records_in"], stats["records_out"] + stats["rejected"], len(outcome.rejected)


def demo_rows(count: int) -> list[str]:
    """The demo's header and first `count` data rows, as lines."""
    return (DEMO / "data" / "reviews.csv").read_text(encoding="utf-8").splitlines()[: count + 1]


# --- broken quoting ---------------------------------------------------------------------------------------


def test_an_unclosed_quote_in_the_demo_fails_the_file_naming_the_line(job: Job) -> None:
    # Given 20 demo rows whose 6th (line 7) loses the quote that closes its text
    lines = demo_rows(20)
    assert lines[6].endswith('"')
    lines[6] = lines[6][:-1]

    # When the job runs with the demo spec and model
    outcome = job.run(
        "\n".join(lines) + "\n", demo_spec(), name="reviews.csv", model=DEMO / "model" / "sentiment.joblib"
    )

    # Then the record that swallowed line 8 is rejected naming both lines, and every later row with it
    rejected = outcome.rejected
    assert rejected[0] == {
        "line": 7,
        "record_id": "r00006",
        "reason": "broken quoting: expected 7 fields, found 11 in a record of 2 lines (an unclosed quote?)",
    }
    assert {r["reason"] for r in rejected[1:]} == {"after the broken quoting at line 7"}
    assert [r["line"] for r in rejected] == list(range(7, 21))
    # And 14 of the 19 records rejected is past the default share: the file is refused, rejected.jsonl stays
    assert outcome.code == 0
    assert outcome.stats["refused"] == (
        "reviews.csv: 14 of 19 rows were rejected (73.7%), above the spec's max_rejected_share of 0.5; "
        "see rejected.jsonl for the reasons, fix the file and upload it again, or raise max_rejected_share"
    )
    assert not (outcome.out / "records.jsonl").exists()


def test_rows_before_broken_quoting_are_processed_and_the_rest_rejected(job: Job) -> None:
    # Given a quote opened in the middle column of line 4 and closed by line 5's quoted text
    data = csv_text(
        "a,1767225600,t,1,x",
        "b,1767225600,t,2,x",
        'c,1767225600,"open,3,x',
        'd,1767225600,"quoted, text",4,x',
        "e,1767225600,t,5,x",
        "f,1767225600,t,6,x",
    )

    # When the job runs, allowing any share of rejected rows
    outcome = job.run(data, make_spec(max_rejected_share=0.9))

    # Then the rows before are records, and every row from the broken line on is rejected with a reason
    assert outcome.code == 0, outcome.message
    assert [r["record_id"] for r in outcome.records] == ["a", "b"]
    assert [(r["line"], r["record_id"], r["reason"].split(":")[0]) for r in outcome.rejected] == [
        (4, "c", "broken quoting"),
        (5, "e", "after the broken quoting at line 4"),
        (6, "f", "after the broken quoting at line 4"),
    ]
    # And the counts add up: five records (c and d are one), none lost
    assert accounted(outcome) == (5, 5, 3)


@pytest.mark.parametrize("trailing_newline", [True, False])
def test_a_quote_open_at_the_end_of_the_file_rejects_its_record(job: Job, trailing_newline: bool) -> None:
    # Given a last-column quote opened on line 3 and never closed: Arrow folds the later lines into that cell
    data = csv_text("a,1767225600,t,1,x", 'b,1767225600,t,2,"open', "c,1767225600,t,3,x", "d,1767225600,t,4,y")

    # When the job runs
    outcome = job.run(data if trailing_newline else data.rstrip("\n"), make_spec())

    # Then that record is rejected as an unclosed quote, and the row before it is a record
    assert outcome.code == 0, outcome.message
    assert outcome.rejected == [{"line": 3, "record_id": "b", "reason": UNCLOSED}]
    assert [r["record_id"] for r in outcome.records] == ["a"]
    assert accounted(outcome) == (2, 2, 1)


def test_a_quote_open_at_the_end_in_a_middle_column_rejects_its_record(job: Job) -> None:
    # Given a quote opened in the text column of the last-but-one row and never closed
    data = csv_text("a,1767225600,t,1,x", "b,1767225600,t,1,x", 'c,1767225600,"open,2,x', "d,1767225600,t,3,x")

    # When the job runs
    outcome = job.run(data, make_spec())

    # Then the record running to the end of the file is rejected
    assert outcome.rejected == [{"line": 4, "record_id": "c", "reason": UNCLOSED}]
    assert accounted(outcome) == (3, 3, 1)


@pytest.mark.parametrize("trailing_newline", [True, False])
def test_a_closed_multi_line_cell_in_the_last_row_is_kept(job: Job, trailing_newline: bool) -> None:
    # Given a well-quoted text over two lines in the last row
    data = csv_text("a,1767225600,t,1,x", 'b,1767225600,"two\nlines, ""quoted""",2,x')

    # When the job runs
    outcome = job.run(data if trailing_newline else data.rstrip("\n"), make_spec())

    # Then both rows are records, the cell intact
    assert outcome.code == 0, outcome.message
    assert outcome.records[1]["display"]["text"] == 'two\nlines, "quoted"'
    assert accounted(outcome) == (2, 2, 0)


# --- numbers ----------------------------------------------------------------------------------------------

EXTREMES = ["1e154", "1e160", "1e308", "-1e308", "5e-324", "1", "2.5", "-3", ""]


@pytest.mark.parametrize(
    "feature",
    [
        {"name": "num", "type": "numeric", "impute": "mean", "scaling": "standard"},
        {"name": "num", "type": "numeric", "impute": "median", "scaling": "minmax"},
        {"name": "num", "type": "numeric", "impute": "mean"},
    ],
)
def test_finite_values_near_the_float_limits_give_finite_features(job: Job, feature: dict[str, Any]) -> None:
    # Given values from the smallest subnormal to the largest magnitudes, mixed with normal ones and a missing one
    data = csv_text(*(f"r{i},1767225600,t,{v},x" for i, v in enumerate(EXTREMES)))

    # When the job runs
    outcome = job.run(data, make_spec([feature]))

    # Then every row is a record, and every feature and fitted statistic is finite
    assert outcome.code == 0, outcome.message
    assert accounted(outcome) == (9, 9, 0)
    assert all(math.isfinite(r["features"]["num"]) for r in outcome.records)
    fitted = outcome.state["features"]["num"]
    numbers = [v for v in [*fitted["fit"].values(), *(fitted["scaler"] or {}).values()] if v is not None]
    assert all(math.isfinite(v) for v in numbers)
    # And the extremes keep their order after scaling
    features = [r["features"]["num"] for r in outcome.records]
    assert features[2] > features[0] >= features[5] > features[3]


def test_the_standard_scaling_of_extremes_is_right(job: Job) -> None:
    # Given 1e308 and -1e308: mean 0, population std 1e308 (its square is beyond the float range)
    spec = make_spec([{"name": "num", "type": "numeric", "scaling": "standard"}])

    # When the job runs
    outcome = job.run(csv_text("a,1767225600,t,1e308,x", "b,1767225600,t,-1e308,x"), spec)

    # Then the scaled values are exactly 1 and -1
    assert [r["features"]["num"] for r in outcome.records] == [1.0, -1.0]
    assert outcome.state["features"]["num"]["scaler"]["std"] == 1e308


NON_FINITE = ["inf", "-inf", "+inf", "INF", "Infinity", "-Infinity", "iNfInItY", "nan", "NaN", "-nan", "NAN", "1e309"]


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_non_finite_numbers_are_rejected_per_row_in_every_spelling(job: Job, kind: str) -> None:
    # Given one good row and one row per spelling of infinity or NaN (1e309 overflows to infinity)
    values = ["1", *NON_FINITE]
    if kind == "csv":
        data = csv_text(*(f"r{i},1767225600,t,{v},x" for i, v in enumerate(values)))
    else:
        data = "".join(
            json.dumps({"id": f"r{i}", "ts": 1767225600, "text": "t", "num": v, "cat": "x"}) + "\n"
            for i, v in enumerate(values)
        )

    # When the job runs, allowing any share of rejected rows
    outcome = job.run(data, make_spec(max_rejected_share=1.0), name=f"input.{kind}")

    # Then each non-finite value rejects its row, naming the value
    assert outcome.code == 0, outcome.message
    assert [r["reason"] for r in outcome.rejected] == [f"num is not a number: {v!r}" for v in NON_FINITE]
    assert [r["record_id"] for r in outcome.records] == ["r0"]


# --- sizes and ids ----------------------------------------------------------------------------------------


def test_a_cell_above_the_default_limit_is_rejected_per_row(job: Job) -> None:
    # Given a 200,000-character text between good rows, and one exactly at the 65,536-byte limit
    data = csv_text("a,1767225600,t,1,x", f"b,1767225600,{'é' * 100_000},2,x", f"c,1767225600,{'w' * 65_536},3,x")

    # When the job runs with the spec's default limits
    outcome = job.run(data, make_spec())

    # Then only the oversized row is rejected, naming the column, its size and the limit
    assert outcome.code == 0, outcome.message
    assert outcome.rejected == [{"line": 3, "record_id": "b", "reason": "text is 200,000 bytes, above 65,536"}]
    assert [r["record_id"] for r in outcome.records] == ["a", "c"]


def test_a_row_whose_cells_add_up_above_the_row_limit_is_rejected(job: Job) -> None:
    # Given lowered limits (20 bytes a cell, 40 a row) and rows at, below and above them
    spec = make_spec(max_cell_bytes=20, max_row_bytes=40, max_rejected_share=1.0)
    data = csv_text(
        "a,1767225600,short,1,x",  # 1 + 10 + 5 + 1 + 1 = 18 bytes
        f"b,1767225600,{'t' * 20},1,{'x' * 7}",  # 1 + 10 + 20 + 1 + 7 = 39 bytes
        f"c,1767225600,{'t' * 20},1,{'x' * 9}",  # 41 bytes
        f"d,1767225600,{'t' * 21},1,x",  # a 21-byte cell
    )

    # When the job runs
    outcome = job.run(data, spec)

    # Then the rows above a limit are rejected with the sizes that broke it
    assert outcome.rejected == [
        {"line": 4, "record_id": "c", "reason": "the row's cells are 41 bytes, above 40"},
        {"line": 5, "record_id": "d", "reason": "text is 21 bytes, above 20"},
    ]
    assert accounted(outcome) == (4, 4, 2)


@pytest.mark.parametrize("control", ["\x00", "\x01", "\t", "\n", "\x1b", "\x1f", "\x7f"])
def test_a_control_character_in_a_record_id_rejects_the_row(job: Job, control: str) -> None:
    # Given an id with a control character inside it (a quoted cell, so a line feed stays in it)
    data = csv_text("a,1767225600,t,1,x", f'"b{control}c",1767225600,t,2,x', "d,1767225600,t,3,x")

    # When the job runs
    outcome = job.run(data, make_spec())

    # Then that row is rejected, the id shown with the character escaped
    assert outcome.code == 0, outcome.message
    assert outcome.rejected == [
        {"line": 3, "record_id": f"b{control}c", "reason": f"control character in the record id: {f'b{control}c'!r}"}
    ]
    assert [r["record_id"] for r in outcome.records] == ["a", "d"]


def test_whitespace_around_a_record_id_is_trimmed_not_rejected(job: Job) -> None:
    # Given ids padded with tabs and spaces / When the job runs / Then they are trimmed and kept
    outcome = job.run(csv_text('"\ta ",1767225600,t,1,x'), make_spec())
    assert [r["record_id"] for r in outcome.records] == ["a"]


# --- the share of rejected rows ---------------------------------------------------------------------------


def test_a_share_of_rejected_rows_above_the_limit_refuses_the_file_keeping_rejected_jsonl(job: Job) -> None:
    # Given 3 bad rows of 5, one of them a duplicate
    data = csv_text(
        "a,1767225600,t,1,x", "b,never,t,1,x", "c,1767225600,t,oops,x", "a,1767225600,t,1,x", "e,1767225600,t,1,x"
    )

    # When the job runs with the default limit (0.5)
    outcome = job.run(data, make_spec())

    # Then the job completes (so its outputs are uploaded) and stats.json refuses the file in one sentence naming
    # the file, the share, the limit and what to do; the workflow fails the run on it (routing)
    assert outcome.code == 0
    assert outcome.stats == {
        "records_in": 5,
        "records_out": 0,
        "rejected": 3,
        "refused": "input.csv: 3 of 5 rows were rejected (60.0%), above the spec's max_rejected_share of 0.5; "
        "see rejected.jsonl for the reasons, fix the file and upload it again, or raise max_rejected_share",
    }
    # And rejected.jsonl says why for each row, while no records or fitted state are left to use
    assert [r["line"] for r in outcome.rejected] == [3, 4, 5]
    for name in ("records.jsonl", "state.json"):
        assert not (outcome.out / name).exists()


def test_a_share_of_rejected_rows_at_the_limit_passes(job: Job) -> None:
    # Given 3 bad rows of 5 and a limit of 0.6 / When the job runs / Then it succeeds
    data = csv_text("a,1767225600,t,1,x", "b,never,t,1,x", "c,never,t,1,x", "d,never,t,1,x", "e,1767225600,t,1,x")
    outcome = job.run(data, make_spec(max_rejected_share=0.6))
    assert outcome.code == 0, outcome.message
    assert accounted(outcome) == (5, 5, 3)


@pytest.mark.parametrize("limit", [0.5, 1.0])
def test_a_file_whose_every_row_is_rejected_fails_whatever_the_limit(job: Job, limit: float) -> None:
    # Given only bad rows / When the job runs
    outcome = job.run(csv_text("a,never,t,1,x", "b,never,t,1,x"), make_spec(max_rejected_share=limit))

    # Then the file is refused, saying so, and rejected.jsonl keeps the reasons
    assert outcome.code == 0
    assert outcome.stats["refused"] == (
        "input.csv: all 2 rows were rejected; see rejected.jsonl for the reasons, fix the file and upload it again"
    )
    assert len(outcome.rejected) == 2
