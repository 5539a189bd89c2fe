"""Benchmark the Spark engine (pyspark in local mode) against the single-machine processing job.

    python bench/spark.py [--rows 100000 --rows 1000000 ...] [--repeat 1]

One generated CSV per size (bench/processing.py's table and spec: 12 numeric and 6 categorical features, ~5%
empty cells, no model), fitted then written by each engine in a fresh process whose wall time and peak RSS
(its own and its children's: the JVM and Spark's Python workers) come from rusage. Spark runs as spark-submit
would: one driver JVM in local mode with every core (`local[*]`), its Python workers on the same venv.

Both engines run on a venv with pyspark and the processing image's pins (`spark_python`), so the only
difference is the engine. `--baseline DIR` adds a run of the Spark job of another copy of processing/ (an
earlier version, say), in the same sizes and order, for a before/after on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from venvs import cached_venv

ROOT = Path(__file__).resolve().parents[1]

PYSPARK_VERSION = "3.5.7"
# pyspark 3.5 imports distutils to check the pandas version; Python 3.12 has none, setuptools provides it.
SETUPTOOLS_VERSION = "75.8.0"
_MARKER = ".labelflow-spark-pins.json"


def spark_python() -> str:
    """The python of a venv with pyspark and the processing image's packages, built once under ~/.cache/labelflow."""
    sys.path.insert(0, str(ROOT / "local"))
    from labelflow_local.processing_env import ensure_processing_env, image_pins

    python: str = cached_venv("pyspark", PYSPARK_VERSION, str(ensure_processing_env(quiet=True)))
    wanted = json.dumps([*image_pins().requirements, f"setuptools=={SETUPTOOLS_VERSION}"])
    marker = Path(python).parents[1] / _MARKER
    if not marker.exists() or marker.read_text() != wanted:
        install = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--only-binary=:all:"]
        subprocess.run([*install, *json.loads(wanted)], check=True)
        marker.write_text(wanted)
    return python


def spark_env(python: str, processing: Path = ROOT / "processing") -> dict[str, str]:
    """The environment a local Spark job runs in: its Python workers on the same venv, `processing` importable."""
    return {**os.environ, "PYSPARK_PYTHON": python, "PYTHONPATH": str(processing)}


# --- children: each runs in its own interpreter ------------------------------------------------------------


def _job_argv(source: Path, out_dir: Path) -> tuple[Path, list[str]]:
    """The input folder (holding only `source`) and the reading arguments planning resolves for it."""
    data_dir = out_dir.parent / "data"
    data_dir.mkdir(exist_ok=True)
    if not (data_dir / source.name).exists():
        (data_dir / source.name).symlink_to(source)
    return data_dir, ["--format", "csv", "--delimiter", ","]


def single(source: Path, out_dir: Path) -> None:
    """processing/preprocess.py, as the processing job runs it."""
    sys.path.insert(0, str(ROOT / "processing"))
    import preprocess

    data_dir, reading = _job_argv(source, out_dir)
    argv = ["--input-dir", str(data_dir), "--spec", str(out_dir.parent / "spec.json"), "--output-dir", str(out_dir)]
    sys.exit(preprocess.main([*argv, *reading, "--message-file", str(out_dir.parent / "message")]))


def spark(source: Path, out_dir: Path) -> None:
    """spark_job.py (of the processing/ on PYTHONPATH) on pyspark in local mode, every core."""
    import spark_job

    data_dir, reading = _job_argv(source, out_dir)
    spec = (out_dir.parent / "spec.json").as_uri()
    sys.exit(spark_job.main(["--input", data_dir.as_uri(), "--output", out_dir.as_uri(), "--spec", spec, *reading]))


CHILDREN = {"single": single, "spark": spark, "spark-baseline": spark}


# --- the parent ----------------------------------------------------------------------------------------------


def _tree(root: int) -> dict[int, tuple[int, float]]:
    """Each process of a tree (the JVM and Spark's Python workers included): resident bytes and CPU seconds."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, fields in stats.items() if int(fields[1]) == parent and pid not in tree]
        tree.update(children)
        frontier += children
    ticks = os.sysconf("SC_CLK_TCK")
    return {
        pid: (int(stats[pid][21]) * resource.getpagesize(), (int(stats[pid][11]) + int(stats[pid][12])) / ticks)
        for pid in tree
        if pid in stats
    }


def measure(python: str, mode: str, source: Path, out_dir: Path, processing: Path) -> dict[str, float]:
    """Run one child; wall time, and its process tree's peak RSS (summed) and CPU time, sampled every 0.25 s."""
    start = time.perf_counter()
    child = subprocess.Popen(
        [python, __file__, mode, str(source), str(out_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=spark_env(python, processing),
    )
    peak, cpu = 0, dict[int, float]()
    while child.poll() is None:
        tree = _tree(child.pid)
        peak = max(peak, sum(rss for rss, _ in tree.values()))
        cpu.update({pid: seconds for pid, (_, seconds) in tree.items()})
        time.sleep(0.25)
    wall = time.perf_counter() - start
    if child.returncode:
        raise RuntimeError(f"{mode} failed with status {child.returncode}")
    return {"wall": wall, "cpu": sum(cpu.values()), "rss_mb": peak / 2**20}


def bench_size(rows: int, python: str, scratch: Path, baseline: Path | None) -> dict[str, dict[str, float]]:
    import processing as processing_bench
    from labelflow.models.spec import DatasetSpec

    source = scratch / f"bench-{rows}.csv"
    subprocess.run([python, str(ROOT / "bench" / "processing.py"), "generate", str(rows), str(source)], check=True)
    spec = DatasetSpec.model_validate(processing_bench.spec()).model_dump_json()
    (scratch / "spec.json").write_text(spec, encoding="utf-8")
    modes = {"single": ROOT / "processing", "spark": ROOT / "processing"}
    if baseline:
        modes = {"single": ROOT / "processing", "spark-baseline": baseline, "spark": ROOT / "processing"}
    results = {name: measure(python, name, source, scratch / name, processing) for name, processing in modes.items()}
    for name in modes:
        processing_bench.check_same(scratch / "single" / "records.jsonl", scratch / name / "records.jsonl", name)
    return results


def report(rows: int, results: dict[str, dict[str, float]]) -> None:
    print(f"\n{rows:,} rows x 20 columns (fit + write, no model):\n")
    print("| engine | rows/s | wall s | CPU s | peak RSS MB (process tree) | wall × single |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, m in results.items():
        ratio = m["wall"] / results["single"]["wall"]
        print(
            f"| {name} | {rows / m['wall']:,.0f} | {m['wall']:.1f} | {m['cpu']:.1f} | {m['rss_mb']:.0f} | {ratio:.2f} |"
        )


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in CHILDREN:
        mode, source, out_dir = sys.argv[1:]
        CHILDREN[mode](Path(source), Path(out_dir))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, action="append", help="rows per run (repeatable; default 100k and 1M)")
    parser.add_argument("--scratch", default="/dev/shm" if Path("/dev/shm").is_dir() else None)
    parser.add_argument("--baseline", type=Path, help="another processing/ folder whose Spark job also runs")
    args = parser.parse_args()
    python = spark_python()
    for rows in args.rows or [100_000, 1_000_000]:
        with tempfile.TemporaryDirectory(prefix="labelflow-spark-bench-", dir=args.scratch) as scratch:
            report(rows, bench_size(rows, python, Path(scratch), args.baseline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
