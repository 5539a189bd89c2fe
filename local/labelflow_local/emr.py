"""Local EMR Serverless: a StartJobRun's Spark job run by processing/spark_job.py on pyspark in local mode.

The job's S3 arguments are downloaded to a temp tree and passed as file: URIs, its --output folder is uploaded to
the S3 URI it named once the job succeeds, and the published code folder of its entry point stands in for
`spark.submit.pyFiles` on PYTHONPATH. The answer is GetJobRun's jobRun as Step Functions' startJobRun.sync
returns it (PascalCase members; the developer guide, "Create and manage Amazon EMR Serverless applications with
Step Functions"). Not emulated: the application's image, capacity and auto start/stop, the job's timeout, and the
S3 monitoring logs.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labelflow.s3 import S3Location, exists
from labelflow_local.processing import download_prefix, upload_tree
from labelflow_local.store import ObjectStore, object_store
from labelflow_local.template import PROJECT_ROOT, parameter_overrides

# JobRunState members a run ends in (botocore's emr-serverless model).
SUCCESS, FAILED = "SUCCESS", "FAILED"
# The Spark application's id in local mode (an ApplicationId: [0-9a-z]+, botocore's emr-serverless model).
LOCAL_APPLICATION_ID = "00labelflowlocal"
# What a local stack deployed with the Spark engine names as its image (SparkImageUri's pattern); never pulled.
LOCAL_IMAGE_URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/labelflow-spark:local"
_OUTPUT = "--output"


@contextmanager
def spark_deployment() -> Iterator[None]:
    """While inside, the local stack is deployed with the Spark engine; its application's Ref is the local id."""
    with parameter_overrides(SparkImageUri=LOCAL_IMAGE_URI, SparkApplication=LOCAL_APPLICATION_ID):
        yield


def pyspark_python() -> str:
    """The cached venv with pyspark and the processing image's packages (bench/spark.py builds it once)."""
    sys.path.insert(0, str(PROJECT_ROOT / "bench"))
    from spark import spark_python  # type: ignore[import-not-found]

    python: str = spark_python()
    return python


class LocalEmrServerless:
    """Runs StartJobRun requests (Step Functions-cased) to their end; a repeated ClientToken gets the same run."""

    def __init__(self, s3: Any, region: str, account: str, python: Callable[[], str] = pyspark_python) -> None:
        self._s3 = s3
        self._region = region
        self._account = account
        self._python = python
        self._runs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if (token := request["ClientToken"]) in self._runs:
                return self._runs[token]
            job_run = self._job_run(request)
            state, details = self._submit(request["JobDriver"]["SparkSubmit"])
            job_run.update(State=state, StateDetails=details, UpdatedAt=datetime.now(UTC).isoformat())
            self._runs[token] = job_run
            return job_run

    def _job_run(self, request: dict[str, Any]) -> dict[str, Any]:
        application = request["ApplicationId"]
        run_id = "00" + hashlib.sha256(request["ClientToken"].encode()).hexdigest()[:14]
        now = datetime.now(UTC).isoformat()
        return {
            "ApplicationId": application,
            "JobRunId": run_id,
            "Name": request.get("Name"),
            "Arn": f"arn:aws:emr-serverless:{self._region}:{self._account}:/applications/{application}"
            f"/jobruns/{run_id}",
            "CreatedBy": f"arn:aws:sts::{self._account}:assumed-role/labelflow-local",
            "CreatedAt": now,
            "ExecutionRole": request["ExecutionRoleArn"],
            "ReleaseLabel": "local",
            "JobDriver": request["JobDriver"],
            "ConfigurationOverrides": request.get("ConfigurationOverrides", {}),
        }

    def _submit(self, submit: dict[str, Any]) -> tuple[str, str]:
        """Run spark-submit's entry point on its arguments; (JobRunState, stateDetails)."""
        with tempfile.TemporaryDirectory(prefix="labelflow-spark-") as tmp:
            root = Path(tmp)
            entry = S3Location.parse(submit["EntryPoint"])
            code = root / "code"
            # The service's own copies go straight through moto's store when this process holds the bucket.
            store = object_store(self._s3, entry.bucket, self._region, self._account)
            download_prefix(store, f"s3://{entry.bucket}/{entry.key.rsplit('/', 1)[0]}/", code)
            arguments, outputs = self._local_arguments(submit.get("EntryPointArguments", []), root, store)
            python = self._python()
            done = subprocess.run(
                [python, str(code / entry.key.rsplit("/", 1)[-1]), *arguments],
                capture_output=True,
                text=True,
                env={**os.environ, "PYSPARK_PYTHON": python, "PYTHONPATH": str(code)},
            )
            if done.returncode != 0:
                last = [line for line in done.stderr.splitlines() if line.strip()][-1:] or ["no output"]
                return FAILED, f"Job failed, exit code {done.returncode}: {last[0]}"[:1024]
            for local, target in outputs:
                # Hadoop's local file system writes a .<name>.crc beside each file; S3 has none.
                for checksum in local.rglob(".*.crc"):
                    checksum.unlink()
                upload_tree(store, local, target)
        return SUCCESS, ""

    def _local_arguments(
        self, arguments: list[str], root: Path, store: ObjectStore
    ) -> tuple[list[str], list[tuple[Path, str]]]:
        """The arguments with each s3: URI as a file: URI of its download; (folder, S3 URI) of the outputs."""
        local_arguments: list[str] = []
        outputs: list[tuple[Path, str]] = []
        for index, argument in enumerate(arguments):
            if not argument.startswith("s3://"):
                local_arguments.append(argument)
                continue
            location = S3Location.parse(argument)
            path = root / "s3" / location.bucket / location.key
            if index and arguments[index - 1] == _OUTPUT:
                path.mkdir(parents=True)
                outputs.append((path, argument))
            elif argument.endswith("/"):
                download_prefix(store, argument, path)
            elif exists(self._s3, location.bucket, location.key):
                path.parent.mkdir(parents=True, exist_ok=True)
                store.download(location.bucket, location.key, path)
            local_arguments.append(path.as_uri() + ("/" if argument.endswith("/") else ""))
        return local_arguments, outputs
