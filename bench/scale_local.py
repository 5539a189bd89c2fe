"""Local mode at size: `labelflow run --local` over N rows, seconds per state and peak RSS, with the machine's load.

The rows are the demo dataset's, repeated under new ids (`r0000000`, ...) until there are N; the truth file gives
each new id its demo row's label, so the simulated reviewers answer as in the demo (README: `--truth`). Each size
is one fresh `labelflow run --local ... --json` process; the table takes the stage seconds from its report (the
execution history), and the peak RSS is the largest single process of its tree (and the tree's whole, beside it).

    python bench/scale_local.py [--size 100k --size 1M ...] [--baseline] [--workdir DIR] [--py-spy PY_SPY]

With `--baseline`, each size first runs with the services' own S3 traffic (Ground Truth's files, the processing
container's inputs and outputs, the run's export to disk) sent through the app's S3 client, one request per object
and per page of keys, as before it went straight into moto's store (labelflow_local.store); then as labelflow runs.
With `--py-spy`, each run is recorded by that py-spy (raw collapsed stacks, beside the run's workdir). The RSS of
the run's processes is sampled every half second into `<run>.rss.tsv`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
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
# The baseline: the same CLI with the services' S3 traffic through the app's client (no direct store).
CLIENT_WRITES = (
    "import sys; from labelflow_local import store; store.direct_store = lambda *_: None; "
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


def tree_rss_kib(pid: int) -> list[int]:
    """The resident set (KiB) of `pid` and of each of its descendants still running."""
    sizes, pending = [], [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        sizes += [int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")]
        pending += [int(child) for child in children]
    return sizes


class RssSampler(threading.Thread):
    """Every half second until stopped: the largest single process of the tree, its whole size, kept as lines."""

    def __init__(self, pid: int, out: Path) -> None:
        super().__init__(daemon=True)
        self._pid, self._out, self._stopping = pid, out, threading.Event()
        self.peak_process_kib = self.peak_tree_kib = 0

    def run(self) -> None:
        start = time.perf_counter()
        with self._out.open("w") as out:
            out.write("seconds\tlargest_kib\ttree_kib\n")
            while not self._stopping.wait(0.5):
                sizes = tree_rss_kib(self._pid) or [0]
                self.peak_process_kib = max(self.peak_process_kib, max(sizes))
                self.peak_tree_kib = max(self.peak_tree_kib, sum(sizes))
                out.write(f"{time.perf_counter() - start:.1f}\t{max(sizes)}\t{sum(sizes)}\n")

    def stop(self) -> None:
        self._stopping.set()
        self.join()


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
    with (
        Path(f"{run_dir}.stdout").open("w+") as stdout_file,
        Path(f"{run_dir}.stderr").open("w") as stderr_file,
    ):
        process = subprocess.Popen(command, cwd=ROOT, stdout=stdout_file, stderr=stderr_file)
        # Sampled from /proc: RUSAGE_CHILDREN would see only py-spy when it wraps the run.
        sampler = RssSampler(process.pid, Path(f"{run_dir}.rss.tsv"))
        sampler.start()
        returncode = process.wait()
        sampler.stop()
        stdout_file.seek(0)
        stdout = stdout_file.read()
    seconds = time.perf_counter() - start
    after = os.getloadavg()
    if returncode not in (0, 1):
        raise SystemExit(f"labelflow run failed ({returncode}): see {run_dir}.stderr")
    # py-spy says what it did on stdout too, before and after the report.
    report: dict[str, Any] = json.JSONDecoder().raw_decode(stdout[stdout.index("{") :])[0]
    return {
        "rows": count,
        "writes": "client (baseline)" if baseline else "store",
        "wall": seconds,
        "report": report,
        "peak_mib": sampler.peak_process_kib / 1024,
        "peak_tree_mib": sampler.peak_tree_kib / 1024,
        "load": (before, after),
    }


def table(results: list[dict[str, Any]]) -> str:
    head = (
        "| rows | services' S3 traffic | status | total s | "
        + " | ".join(STATES)
        + " | reviewed | peak RSS MiB (process, tree) | load before → after |"
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
            f"{result['peak_mib']:.0f}, {result['peak_tree_mib']:.0f}",
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
