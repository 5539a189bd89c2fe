"""Time `labelflow demo` end to end, as a user runs it, and break the run down by state.

Each sample is a fresh `labelflow demo --json` process (interpreter start, moto, the real state
machine over the 3000-row demo dataset, the processing subprocess, simulated review, ingestion).

    python bench/demo.py [--samples 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LABELFLOW = Path(sys.executable).parent / "labelflow"


def sample() -> tuple[float, dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="labelflow-bench-") as workdir:
        start = time.perf_counter()
        out = subprocess.run(
            [str(LABELFLOW), "demo", "--json", "--workdir", workdir],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        seconds = time.perf_counter() - start
    report: dict[str, Any] = json.loads(out.stdout)
    return seconds, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=3)
    args = parser.parse_args()
    walls, runs, stages = [], [], {}
    for _ in range(args.samples):
        wall, report = sample()
        walls.append(wall)
        runs.append(report["seconds"])
        for state, seconds in report["stage_seconds"].items():
            stages.setdefault(state, []).append(seconds)
    counts = report["run"]["counts"]
    print(f"`labelflow demo`, {args.samples} samples, {counts['records_in']} records:")
    print(f"- wall time, median: {statistics.median(walls):.2f} s (min {min(walls):.2f} s, max {max(walls):.2f} s)")
    print(f"- of which the run (land → run.json → feature store flushed): {statistics.median(runs):.2f} s")
    print("\n| state | median seconds |\n|---|---:|")
    for state, values in stages.items():
        print(f"| {state} | {statistics.median(values):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
