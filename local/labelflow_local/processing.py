"""Local SageMaker Processing: the real script in a subprocess, on an /opt/ml-shaped temp tree."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labelflow.s3 import S3Location
from labelflow_local import store as stores
from labelflow_local.processing_env import ensure_processing_env
from labelflow_local.store import ClientStore, MotoStore, ObjectStore

_CONTAINER_ROOT = "/opt/ml/"
# Instances run at once on this machine; the others wait their turn.
INSTANCES_AT_ONCE = 2


def download_prefix(
    s3: Any, s3_uri: str, destination: Path, skip: str | None = None, shard: tuple[int, int] = (0, 1)
) -> int:
    """Copy every object under an S3 prefix into `destination`, keeping paths below the prefix's folder.

    `s3` is a client or an ObjectStore (labelflow_local.store). `shard` (index, count) keeps one instance's share
    of ShardedByS3Key: SageMaker does not document which objects go to which instance, so here the objects are
    dealt out in key order, round-robin.
    """
    store = _as_store(s3)
    location = S3Location.parse(s3_uri)
    folder = location.key.rsplit("/", 1)[0] + "/" if "/" in location.key else ""
    index, count = shard
    keys = store.keys(location.bucket, location.key)
    keys = [key for key in keys if not key.endswith("/") and not (skip and skip in key)][index::count]
    for key in keys:
        target = destination / key[len(folder) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        store.download(location.bucket, key, target)
    return len(keys)


def upload_tree(s3: Any, source: Path, s3_uri: str) -> int:
    """Upload every file under `source` below the S3 prefix, in path order; `s3` is a client or an ObjectStore."""
    store = _as_store(s3)
    location = S3Location.parse(s3_uri)
    prefix = location.key if location.key.endswith("/") else location.key + "/"
    files = sorted(path for path in source.rglob("*") if path.is_file() and not path.is_symlink())
    for path in files:
        store.upload(path, location.bucket, prefix + path.relative_to(source).as_posix())
    return len(files)


def _as_store(s3: Any) -> ObjectStore:
    return s3 if isinstance(s3, ClientStore | MotoStore) else ClientStore(s3)


def unsupported_input(item: dict[str, Any]) -> str | None:
    """Why a ProcessingInput cannot be emulated locally, None when it can.

    Local mode copies S3 prefixes in File mode (ProcessingS3Input's S3DataType S3Prefix, S3InputMode File);
    LocalPath must begin with /opt/ml/processing/ (botocore's sagemaker service model, ProcessingS3Input).
    """
    name = item.get("InputName", "?")
    if item.get("AppManaged"):
        return None
    s3_input = item.get("S3Input")
    if s3_input is None:
        return f"input {name}: only S3Input inputs are emulated locally (not DatasetDefinition)"
    if s3_input.get("S3DataType", "S3Prefix") != "S3Prefix" or s3_input.get("S3InputMode", "File") != "File":
        return f"input {name}: only S3Prefix inputs in File mode are emulated locally"
    if not str(s3_input.get("LocalPath", "")).startswith("/opt/ml/processing/"):
        return f"input {name}: LocalPath must begin with /opt/ml/processing/"
    return None


@dataclass
class Instance:
    """One instance of a job: its host name, its /opt/ml tree, and how its container ended."""

    host: str
    root: Path
    exit_code: int = 0
    stderr: str = ""
    message: str = ""

    def local(self, path: str) -> str:
        """A container path mapped into the instance's tree; any other argument as it is."""
        return str(self.root / path[1:]) if path.startswith(_CONTAINER_ROOT) else path


class LocalProcessing:
    """Runs CreateProcessingJob requests to completion and answers with DescribeProcessingJob's shape.

    Each of ClusterConfig.InstanceCount instances gets its own tree and resourceconfig.json, FullyReplicated inputs
    whole and ShardedByS3Key inputs dealt out by key; every instance's outputs then go to the same S3Uri, as
    EndOfJob uploads do, in host order.
    """

    def __init__(self, s3: Any, region: str, account: str, python: str | None = None) -> None:
        self._s3 = s3
        self._region = region
        self._account = account
        self._python = python

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["ProcessingJobName"]
        started = datetime.now(UTC)
        describe: dict[str, Any] = {
            **request,
            "ProcessingJobArn": f"arn:aws:sagemaker:{self._region}:{self._account}:processing-job/{name.lower()}",
            "CreationTime": started.isoformat(),
            "ProcessingStartTime": started.isoformat(),
        }
        inputs = request.get("ProcessingInputs", [])
        if reasons := [reason for reason in map(unsupported_input, inputs) if reason]:
            describe.update(ProcessingJobStatus="Failed", FailureReason="; ".join(reasons)[:1024], ExitMessage="")
            describe["ProcessingEndTime"] = datetime.now(UTC).isoformat()
            return describe
        count = request.get("ProcessingResources", {}).get("ClusterConfig", {}).get("InstanceCount", 1)
        hosts = [f"algo-{number}" for number in range(1, count + 1)]
        with tempfile.TemporaryDirectory(prefix=f"labelflow-{name}-") as tmp:
            instances = [Instance(host, Path(tmp) / host) for host in hosts]
            with ThreadPoolExecutor(max_workers=min(count, INSTANCES_AT_ONCE)) as pool:
                list(pool.map(lambda instance: self._run_instance(request, instance, hosts), instances))
            failed = next((instance for instance in instances if instance.exit_code != 0), None)
            message = next((instance.message for instance in instances if instance.message), "")
            if failed is None:
                for instance in instances:
                    for output in request.get("ProcessingOutputConfig", {}).get("Outputs", []):
                        s3_output = output["S3Output"]
                        uri = s3_output["S3Uri"]
                        upload_tree(self._store(uri), Path(instance.local(s3_output["LocalPath"])), uri)
                describe.update(ProcessingJobStatus="Completed", ExitMessage=message)
            else:
                lines = failed.stderr.strip().splitlines() or [f"exit code {failed.exit_code}"]
                reason = failed.message or lines[-1]
                describe.update(ProcessingJobStatus="Failed", FailureReason=reason[:1024], ExitMessage=failed.message)
        describe["ProcessingEndTime"] = datetime.now(UTC).isoformat()
        return describe

    def _store(self, s3_uri: str) -> ObjectStore:
        """The container's copies go straight to moto's store when this process holds the bucket (see store.py)."""
        return stores.object_store(self._s3, S3Location.parse(s3_uri).bucket, self._region, self._account)

    def _run_instance(self, request: dict[str, Any], instance: Instance, hosts: list[str]) -> None:
        """Download the instance's inputs, run the container's command on its tree, keep how it ended."""
        shard = (hosts.index(instance.host), len(hosts))
        # Every input the same way (data, spec, code, model, state...): its objects under its LocalPath.
        for item in request.get("ProcessingInputs", []):
            if not item.get("AppManaged"):
                s3_input = item["S3Input"]
                sharded = s3_input.get("S3DataDistributionType") == "ShardedByS3Key"
                destination = Path(instance.local(s3_input["LocalPath"]))
                if sharded:
                    # An instance may be dealt no object: its input folder is there, empty.
                    destination.mkdir(parents=True, exist_ok=True)
                uri = s3_input["S3Uri"]
                download_prefix(self._store(uri), uri, destination, shard=shard if sharded else (0, 1))
        config = instance.root / "opt/ml/config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "processingjobconfig.json").write_text(json.dumps(request, default=str))
        # The file's documented fields (SageMaker developer guide, "How Amazon SageMaker Processing Configures
        # Your Processing Container").
        (config / "resourceconfig.json").write_text(json.dumps({"current_host": instance.host, "hosts": hosts}))
        for output in request.get("ProcessingOutputConfig", {}).get("Outputs", []):
            Path(instance.local(output["S3Output"]["LocalPath"])).mkdir(parents=True, exist_ok=True)

        app = request["AppSpecification"]
        command = [
            str(instance.local(part)) for part in app.get("ContainerEntrypoint", []) + app.get("ContainerArguments", [])
        ]
        if command and command[0] in ("python", "python3"):
            # The image's interpreter: a venv with its Python version and packages (processing/image.json).
            command[0] = self._python or str(ensure_processing_env())
        environment = {"PATH": os.environ.get("PATH", ""), **request.get("Environment", {})}
        timeout = request.get("StoppingCondition", {}).get("MaxRuntimeInSeconds", 3600)
        try:
            finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout)
            instance.exit_code, instance.stderr = finished.returncode, finished.stderr
        except subprocess.TimeoutExpired:
            instance.exit_code, instance.stderr = -1, f"stopped after MaxRuntimeInSeconds={timeout}"
        message_file = instance.root / "opt/ml/output/message"
        instance.message = message_file.read_text()[:1024].strip() if message_file.exists() else ""
