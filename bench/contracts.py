"""Local mode's request contract per call: the generic shape walk (the baseline, contracts.py as of BASELINE, read
from git) beside the compiled validator, and CallLog.record with its lock beside the lock-free one, in one run.

    .venv/bin/python bench/contracts.py [--calls 20000] [--repeats 5] [--threads 8]

µs/call is the best of `--repeats` rounds (baseline and current alternate), each `--calls` calls in one thread for
violations(); for CallLog.record, the process CPU time of `--threads` threads recording `--calls` PutRecords in all,
divided by the calls (the writer thread's CPU included), and one thread alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from labelflow_local import contracts

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "4e7ecca82ae59e9eb82026b88e83a51abf6878c7"
ROLE = "arn:aws:iam::123456789012:role/labelflow-SageMakerExecutionRole"
# The demo's 13 features (a recorded local run) and two more, as the ingest engineer measured.
FEATURES = {
    "record_id": "r00001",
    "event_time": "2026-01-05T02:20:21Z",
    "product_category__books": "0",
    "product_category__electronics": "0",
    "product_category__home": "0",
    "product_category__toys": "1",
    "helpful_votes": "-0.250423",
    "price": "0.208934",
    "verified_purchase": "1",
    "label": "negative",
    "label_source": "model",
    "label_confidence": "0.996402",
    "run_id": "e2191d9459c6db230533",
    "review_length": "0.118",
    "review_year": "2026",
}
PUT_RECORD = {
    "FeatureGroupName": "labelflow-reviews",
    "Record": [{"FeatureName": name, "ValueAsString": value} for name, value in FEATURES.items()],
}


def _s3_input(name: str) -> dict[str, Any]:
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri": f"s3://labelflow-demo/runs/reviews/e2191d9459c6db230533/input/{name}/",
            "LocalPath": f"/opt/ml/processing/input/{name}",
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated",
            "S3CompressionType": "None",
        },
    }


# As the demo's local run sent it (requests.jsonl), with a tag.
CREATE_PROCESSING_JOB = {
    "ProcessingJobName": "lf-reviews-e2191d9459c6db230533-00e4f218",
    "RoleArn": ROLE,
    "AppSpecification": {
        "ImageUri": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-py312-cpu-py3",
        "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/preprocess.py"],
        "ContainerArguments": ["--input-dir", "/opt/ml/processing/input/data", "--format", "csv"],
    },
    "ProcessingResources": {
        "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 30}
    },
    "ProcessingInputs": [_s3_input(name) for name in ("data", "spec", "code", "model")],
    "ProcessingOutputConfig": {
        "Outputs": [
            {
                "OutputName": "processed",
                "S3Output": {
                    "S3Uri": "s3://labelflow-demo/runs/reviews/e2191d9459c6db230533/processed/00e4f2180617adce/",
                    "LocalPath": "/opt/ml/processing/output",
                    "S3UploadMode": "EndOfJob",
                },
            }
        ]
    },
    "Environment": {"LABELFLOW_DATASET": "reviews", "LABELFLOW_RUN_ID": "e2191d9459c6db230533"},
    "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    "Tags": [{"Key": "dataset", "Value": "reviews"}],
}
REQUESTS = (
    ("sagemaker-featurestore-runtime", "PutRecord", PUT_RECORD),
    ("sagemaker", "CreateProcessingJob", CREATE_PROCESSING_JOB),
)


def baseline_module() -> ModuleType:
    """contracts.py as of BASELINE, loaded under another name (git is only read)."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BASELINE}:local/labelflow_local/contracts.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_contracts.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_contracts", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def per_call_us(violations: Callable[[Any, Any], object], model: Any, request: Any, calls: int) -> float:
    """Single-thread µs per violations() call."""
    start = time.perf_counter_ns()
    for _ in range(calls):
        violations(model, request)
    return (time.perf_counter_ns() - start) / calls / 1000


def log_us(log_type: Any, threads: int, calls: int) -> float:
    """Process CPU µs per CallLog.record of `threads` threads sharing `calls` PutRecords, close included."""
    with tempfile.TemporaryDirectory() as directory:
        log = log_type(Path(directory))
        share = calls // threads

        def put() -> None:
            for _ in range(share):
                log.record("sagemaker-featurestore-runtime", "PutRecord", PUT_RECORD)

        workers = [threading.Thread(target=put) for _ in range(threads)]
        start = time.process_time_ns()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        log.close()
        return (time.process_time_ns() - start) / (share * threads) / 1000


def best(rounds: list[tuple[float, float]]) -> tuple[float, float]:
    return min(before for before, _ in rounds), min(after for _, after in rounds)


def row(name: str, before: float, after: float) -> str:
    return f"| {name} | {before:.1f} | {after:.1f} | {before / after:.1f}x |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    baseline = baseline_module()
    print(f"| per call (µs) | baseline {BASELINE[:7]} | current | speed-up |")
    print("|---|---|---|---|")
    for service, operation, request in REQUESTS:
        model = contracts.operation_model(service, operation)
        assert baseline.violations(model, request) == [] and contracts.violations(model, request) == []
        rounds = [
            (
                per_call_us(baseline.violations, model, request, args.calls),
                per_call_us(contracts.violations, model, request, args.calls),
            )
            for _ in range(args.repeats)
        ]
        print(row(f"violations {operation}", *best(rounds)))
    for threads in (1, args.threads):
        rounds = [
            (log_us(baseline.CallLog, threads, args.calls), log_us(contracts.CallLog, threads, args.calls))
            for _ in range(args.repeats)
        ]
        print(row(f"CallLog.record PutRecord, {threads} thread{'s' if threads > 1 else ''} (CPU)", *best(rounds)))


if __name__ == "__main__":
    main()
