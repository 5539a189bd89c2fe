"""Benchmark processing over 1, 2 and 3 instances: wall seconds and peak RSS per instance.

One generated JSON Lines file per size (an id, an event time, 6 numeric columns with ~5% missing values, 3
categorical ones, ids repeated 0.1% of the time), cut into parts at line ends as planning does
(labelflow.planning.record_spans), dealt to the instances round-robin in key order as local mode deals
ShardedByS3Key objects, and run as the jobs would run: one instance reads the file whole in one pass; several
run the scan, stats and Process passes, each instance a fresh processing/preprocess.py in the image's venv, at
most `--at-once` of them at a time (the machine's cores). Peak RSS is each instance's own (wait4 rusage).

    python bench/scale_processing.py [--rows 100000 --rows 1000000] [--instances 1,2,3] [--at-once 2]

On a machine with two cores, three instances cannot run at once: the wall time measures the work, the passes
included, more than the speed-up a cluster of separate machines would give. Every run's records are checked
against one instance's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from labelflow.models.spec import DatasetSpec
from labelflow.planning import record_spans
from labelflow_local.processing_env import ensure_processing_env

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = ROOT / "processing" / "preprocess.py"
READ_AS = ["--format", "jsonl", "--encoding", "utf-8-sig"]
CATEGORIES = [["a", "b", "c"], [f"k{j}" for j in range(8)], [f"v{j}" for j in range(20)]]


def spec() -> dict[str, Any]:
    """The dataset spec, dumped as planning hands it to the job (defaults filled in by the layer's model)."""
    numeric = [
        {"name": f"n{i}", "type": "numeric", "impute": impute, "scaling": scaling}
        for i, (impute, scaling) in enumerate([("mean", "standard"), ("median", "minmax"), ("mean", None)] * 2)
    ]
    categorical = [
        {"name": f"c{i}", "type": "categorical", "impute": "most_frequent", "encoding": "onehot", "categories": cats}
        for i, cats in enumerate(CATEGORIES)
    ]
    fields = {
        "dataset": "bench",
        "record_id_column": "id",
        "event_time_column": "ts",
        "display_columns": ["text"],
        "features": numeric + categorical,
        "labels": ["negative", "positive"],
    }
    return DatasetSpec.model_validate(fields).model_dump(mode="json")


def generate(path: Path, rows: int) -> None:
    rng = random.Random(rows)
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            row: dict[str, Any] = {
                "id": f"r{rng.randrange(rows) if rng.random() < 0.001 else i}",
                "ts": "2026-01-01T00:00:00Z",
            }
            row["text"] = f"review {i}"
            for j in range(6):
                row[f"n{j}"] = None if rng.random() < 0.05 else round(rng.gauss(50, 20), 3)
            for j, values in enumerate(CATEGORIES):
                row[f"c{j}"] = None if rng.random() < 0.05 else rng.choice(values)
            out.write(json.dumps(row) + "\n")


def run_instance(python: str, argv: list[str]) -> float:
    """Run one instance to its end; its peak RSS in MiB (wait4's rusage is the child's own)."""
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen([python, str(SCRIPT), *argv], stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            errors.seek(0)
            sys.exit(f"instance failed: {errors.read().decode()}")
    return usage.ru_maxrss / 1024


def job(
    python: str, root: Path, shards: dict[str, dict[str, Path]], label: str, extra: list[str], at_once: int
) -> tuple[float, list[float]]:
    """One job: every instance on its own parts, outputs into one folder; wall seconds and each peak RSS."""
    shared = root / "out"
    spec_file = root / "spec.json"

    def instance(host: str) -> float:
        base = root / host
        input_dir = base / "input"
        for name, path in shards[host].items():
            (input_dir / name).parent.mkdir(parents=True, exist_ok=True)
            if not (input_dir / name).exists():
                os.link(path, input_dir / name)
        input_dir.mkdir(parents=True, exist_ok=True)
        config = base / "resourceconfig.json"
        config.write_text(json.dumps({"current_host": host, "hosts": list(shards)}))
        shutil.rmtree(base / "output", ignore_errors=True)
        argv = ["--input-dir", str(input_dir), "--spec", str(spec_file), "--output-dir", str(base / "output")]
        argv += ["--message-file", str(base / "message"), "--resource-config", str(config), *READ_AS, *extra]
        return run_instance(python, argv)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=at_once) as pool:
        peaks = list(pool.map(instance, shards))
    wall = time.perf_counter() - started
    shared.mkdir(exist_ok=True)
    for host in shards:
        shutil.copytree(root / host / "output", shared / label, dirs_exist_ok=True)
    return wall, peaks


def measure(python: str, data: Path, instances: int, at_once: int, scratch: Path) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(dir=scratch, prefix=f"scale-{instances}-"))
    (root / "spec.json").write_text(json.dumps(spec()))
    body = data.read_bytes()
    hosts = [f"algo-{i + 1}" for i in range(instances)]
    if instances == 1:
        shards = {"algo-1": {data.name: data}}
        wall, peaks = job(python, root, shards, "process", [], at_once)
        return {
            "instances": 1,
            "wall": {"process": wall},
            "peak_rss_mib": peaks,
            "records": root / "out/process/records.jsonl",
        }
    spans = record_spans(lambda start, end: body[start:end], len(body), instances)
    parts = {}
    for index, (start, end) in enumerate(spans):
        path = root / f"part-{index:03d}.jsonl"
        path.write_bytes(body[start:end])
        parts[f"{index:03d}/{data.name}"] = path
    names = sorted(parts)
    shards = {host: {name: parts[name] for name in names[i :: len(hosts)]} for i, host in enumerate(hosts)}
    scan_dir, stats_dir = root / "out/scan", root / "out/stats"
    walls, peaks = {}, []
    for label, extra in [
        ("scan", ["--shard-pass", "scan"]),
        ("stats", ["--shard-pass", "stats", "--scan-dir", str(scan_dir)]),
        ("process", ["--scan-dir", str(scan_dir), "--stats-dir", str(stats_dir)]),
    ]:
        walls[label], job_peaks = job(python, root, shards, label, extra, at_once)
        peaks = [max(a, b) for a, b in zip(peaks, job_peaks, strict=True)] if peaks else job_peaks
    return {
        "instances": instances,
        "wall": walls,
        "peak_rss_mib": peaks,
        "records": sorted((root / "out/process/parts").rglob("records.jsonl")),
    }


def same_records(one: Path, parts: list[Path]) -> bool:
    with one.open("rb") as single:
        for part in parts:
            with part.open("rb") as handle:
                for line in handle:
                    if single.readline() != line:
                        return False
        return single.readline() == b""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, action="append")
    parser.add_argument("--instances", default="1,2,3")
    parser.add_argument("--at-once", type=int, default=2)
    parser.add_argument("--scratch", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None)
    args = parser.parse_args()
    python = str(ensure_processing_env())
    counts = [int(n) for n in args.instances.split(",")]
    header = f"{'rows':>9} {'instances':>9} {'scan s':>7} {'stats s':>7} {'process s':>9} {'total s':>8}"
    print(f"{header}  peak RSS MiB per instance  same")
    for rows in args.rows or [100_000, 1_000_000]:
        with tempfile.TemporaryDirectory(dir=args.scratch, prefix="scale-processing-") as folder:
            data = Path(folder) / "data.jsonl"
            generate(data, rows)
            baseline: Path | None = None
            for instances in counts:
                result = measure(python, data, instances, args.at_once, Path(folder))
                records = result["records"]
                if instances == 1:
                    baseline, same = records, True
                else:
                    same = baseline is not None and same_records(baseline, records)
                wall = result["wall"]
                peaks = " ".join(f"{peak:.0f}" for peak in result["peak_rss_mib"])
                print(
                    f"{rows:>9,} {instances:>9} {wall.get('scan', 0):>7.1f} {wall.get('stats', 0):>7.1f} "
                    f"{wall['process']:>9.1f} {sum(wall.values()):>8.1f}  {peaks:<26} {same}",
                    flush=True,
                )
    print(f"(children's CPU seconds: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime:.0f} user)")


if __name__ == "__main__":
    main()
