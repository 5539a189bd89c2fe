"""Local mode at size: `labelflow run --local` over N rows, seconds per state and peak RSS, with the machine's load.

The rows are the demo dataset's, repeated under new ids (`r0000000`, ...) until there are N; the truth file gives
each new id its demo row's label, so the simulated reviewers answer as in the demo (README: `--truth`). Each size
is one fresh `labelflow run --local ... --json` process; the table takes the stage seconds from its report (the
execution history), and the peak RSS is the largest of that process and its children (the processing venv).

    python bench/scale_local.py [--size 100k --size 1M ...] [--baseline] [--workdir DIR] [--py-spy PY_SPY]

With `--baseline`, each size first runs with Ground Truth's files written through the app's S3 client (as before
they went straight into moto's store), then as labelflow runs. With `--py-spy`, each run is recorded by that
py-spy (raw collapsed stacks, beside the run's workdir).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LABELFLOW = Path(sys.executable).parent / "labelflow"
DEMO = ROOT / "demo"
DEMO_ROWS = DEMO / "data" / "reviews.csv"
DEMO_TRUTH = DEMO / "data" / "reviews.labels.csv"
SPEC = DEMO / "datasets" / "reviews.json"
MODEL = DEMO / "model" / "sentiment.joblib"
ID_COLUMN = "review_id"
# The baseline: the same CLI with every Ground Truth file written through the app's S3 client, one PutObject each,
# as before the local Ground Truth wrote them straight into moto's store.
CLIENT_WRITES = (
    "import sys; from labelflow_local import review; review.ground_truth_writer = lambda s3, *_: s3; "
    "from labelflow_local.cli import main; sys.exit(main())"
)
STATES = ("Process", "RouteByConfidence", "HumanLabeling", "MergeLabels", "IngestFeatures")


def parse_size(text: str) -> int:
    """`100000`, `100k` or `1M`."""
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    return int(float(text.rstrip("kKmM")) * scale)


def generate(workdir: Path, count: int) -> tuple[Path, Path]:
    """The data file and its truth file for `count` rows (made once per size, reused after)."""
    data, truth = workdir / f"reviews-{count}.csv", workdir / f"reviews-{count}.labels.csv"
    if data.exists() and truth.exists():
        return data, truth
    with DEMO_TRUTH.open(newline="") as labels_file:
        labels = {row["record_id"]: row["label"] for row in csv.DictReader(labels_file)}
    with DEMO_ROWS.open(newline="") as rows_file:
        reader = csv.DictReader(rows_file)
        columns, rows = list(reader.fieldnames or []), list(reader)
    with data.open("w", newline="") as data_out, truth.open("w", newline="") as truth_out:
        rows_writer = csv.DictWriter(data_out, columns)
        rows_writer.writeheader()
        truth_writer = csv.writer(truth_out)
        truth_writer.writerow(["record_id", "label"])
        for number in range(count):
            row = rows[number % len(rows)]
            record_id = f"r{number:07d}"
            rows_writer.writerow({**row, ID_COLUMN: record_id})
            if (label := labels.get(row[ID_COLUMN])) is not None:
                truth_writer.writerow([record_id, label])
    return data, truth


def run(workdir: Path, count: int, py_spy: str | None, baseline: bool = False) -> dict[str, Any]:
    """One `labelflow run --local` over `count` rows: its report, wall seconds, peak RSS and the load around it."""
    data, truth = generate(workdir, count)
    run_dir = workdir / f"run-{count}-{'client-writes-' if baseline else ''}{int(time.time())}"
    cli = [sys.executable, "-c", CLIENT_WRITES] if baseline else [str(LABELFLOW)]
    command = [
        *cli,
        "run",
        "--local",
        str(data),
        "--spec",
        str(SPEC),
        "--model",
        str(MODEL),
        "--truth",
        str(truth),
        "--workdir",
        str(run_dir),
        "--json",
    ]
    if py_spy:
        profile = f"{run_dir}.pyspy.txt"
        command = [
            py_spy,
            "record",
            "--nonblocking",
            "--format",
            "raw",
            "--subprocesses",
            "-o",
            profile,
            "--",
            *command,
        ]
    before = os.getloadavg()
    start = time.perf_counter()
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    after = os.getloadavg()
    Path(f"{run_dir}.stdout").write_text(out.stdout)
    Path(f"{run_dir}.stderr").write_text(out.stderr)
    if out.returncode not in (0, 1):
        raise SystemExit(f"labelflow run failed ({out.returncode}): see {run_dir}.stderr")
    # py-spy says what it did on stdout too, before and after the report.
    report: dict[str, Any] = json.JSONDecoder().raw_decode(out.stdout[out.stdout.index("{") :])[0]
    # Children's peak is the largest single process waited for so far; sizes run from small to large.
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "rows": count,
        "writes": "client (baseline)" if baseline else "store",
        "wall": seconds,
        "report": report,
        "peak_mib": peak_mib,
        "load": (before, after),
    }


def table(results: list[dict[str, Any]]) -> str:
    head = (
        "| rows | Ground Truth writes | status | total s | "
        + " | ".join(STATES)
        + " | reviewed | peak RSS MiB | load before → after |"
    )
    lines = [head, "|---:|---|" + "---:|" * (len(STATES) + 5)]
    for result in results:
        report = result["report"]
        stages = report["stage_seconds"]
        before, after = (", ".join(f"{value:.1f}" for value in loads) for loads in result["load"])
        cells = [
            f"{result['rows']:,}",
            result["writes"],
            report["status"],
            f"{report['seconds']:.0f}",
            *(f"{stages.get(state, 0.0):.1f}" for state in STATES),
            f"{report['counts']['sent_to_review']:,}",
            f"{result['peak_mib']:.0f}",
            f"{before} → {after}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", action="append", type=parse_size, help="rows (100k, 1M); repeatable")
    parser.add_argument("--workdir", type=Path, help="where rows and runs are kept (default: a temporary folder)")
    parser.add_argument("--py-spy", help="record each run with this py-spy executable")
    parser.add_argument("--baseline", action="store_true", help="before each size, a run with client writes")
    args = parser.parse_args()
    sizes = sorted(args.size or [100_000])
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="labelflow-scale-local-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for count in sizes:
        for baseline in (True, False) if args.baseline else (False,):
            results.append(run(workdir, count, args.py_spy, baseline))
            print(table(results[-1:]), flush=True)
    print(f"\n`labelflow run --local`, demo rows repeated, simulated reviewers (--truth); workdir {workdir}\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
