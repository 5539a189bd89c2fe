"""`labelflow run --local --reviewer terminal` driven through stdin: progress, quit, and resume in a later run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

TEXTS = {"t1": "love it", "t2": "broke at once", "t3": "works fine", "t4": "waste of money"}
CLI = "from labelflow_local.cli import main; raise SystemExit(main())"


def labelflow(stdin: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process, a person's replies on its stdin (the end of them is Ctrl-D)."""
    return subprocess.run(
        [sys.executable, "-c", CLI, *argv], input=stdin, capture_output=True, text=True, timeout=300, check=False
    )


def test_a_person_quits_half_way_and_the_next_run_resumes_where_they_stopped(tmp_path: Path) -> None:
    # Given a text dataset with no model (every record goes to review) and a person at the terminal
    data, spec = tmp_path / "notes.csv", tmp_path / "notes.json"
    data.write_text("note_id,text\n" + "".join(f"{rid},{text}\n" for rid, text in TEXTS.items()))
    spec.write_text(
        json.dumps(
            {"dataset": "notes", "record_id_column": "note_id", "display_columns": ["text"], "labels": ["good", "bad"]}
        )
    )
    run = ["run", str(data), "--local", "--spec", str(spec), "--reviewer", "terminal", "--workdir", str(tmp_path / "w")]

    # When they answer t1 and t2, then type q
    first = labelflow("1\n2\nq\n", *run)
    # Then the run ends PARTIAL (exit 1): two records labeled, two unlabeled, and they are told the answers are kept
    assert first.returncode == 1, first.stderr
    assert "[1 of 4, 0 answered] t1" in first.stdout and "[2 of 4, 1 answered] t2" in first.stdout
    assert "stopped: 2 of 4 answered, all kept in" in first.stdout
    assert "labeled         2 (0 by the model, 2 by humans)" in first.stdout
    assert "reviewed by     terminal, 1 workers, 1 per record" in first.stdout

    # When the same command runs again and they answer the two left (with a typo refused on the spot)
    second = labelflow("maybe\n1\n2\n", *run)
    # Then t1 and t2 are not asked again, the typo was asked again, and the run SUCCEEDED (exit 0)
    assert second.returncode == 0, second.stderr
    assert "] t1" not in second.stdout and "] t2" not in second.stdout
    assert "[3 of 4, 2 answered] t3" in second.stdout and "'maybe' is not a label" in second.stdout
    assert "labeled         4 (0 by the model, 4 by humans)" in second.stdout


def test_ctrl_d_at_the_first_record_stops_cleanly_and_keeps_nothing_made_up(tmp_path: Path) -> None:
    # Given the same dataset and a person who closes stdin (Ctrl-D) at once
    data, spec = tmp_path / "notes.csv", tmp_path / "notes.json"
    data.write_text("note_id,text\n" + "".join(f"{rid},{text}\n" for rid, text in TEXTS.items()))
    spec.write_text(
        json.dumps(
            {"dataset": "notes", "record_id_column": "note_id", "display_columns": ["text"], "labels": ["good", "bad"]}
        )
    )
    # When the run reviews at the terminal, with --json (the conversation then goes to stderr)
    done = labelflow("", "run", str(data), "--local", "--spec", str(spec), "--reviewer", "terminal", "--json",
                     "--workdir", str(tmp_path / "w"))  # fmt: skip
    # Then the run ends PARTIAL with every record unlabeled, and the report on stdout is pure JSON
    report = json.loads(done.stdout)
    assert done.returncode == 1 and "end of input: 0 of 4 answered" in done.stderr
    assert report["counts"]["unlabeled"] == 4 and report["counts"]["human_labeled"] == 0
    assert report["reviewers"]["backend"] == "terminal"
