"""Local SageMaker Processing: the real script in a subprocess, on an /opt/ml-shaped temp tree."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labelflow.s3 import S3Location
from labelflow_local.processing_env import ensure_processing_env

_CONTAINER_ROOT = "/opt/ml/"


def download_prefix(s3: Any, s3_uri: str, destination: Path, skip: str | None = None) -> int:
    """Copy every object under an S3 prefix into `destination`, keeping paths below the prefix's folder."""
    location = S3Location.parse(s3_uri)
    folder = location.key.rsplit("/", 1)[0] + "/" if "/" in location.key else ""
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=location.key):
        for item in page.get("Contents", []):
            if item["Key"].endswith("/") or (skip and skip in item["Key"]):
                continue
            target = destination / item["Key"][len(folder) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            # Plain GETs: managed transfers start a thread pool per call, costly for many small files.
            target.write_bytes(s3.get_object(Bucket=location.bucket, Key=item["Key"])["Body"].read())
            count += 1
    return count


def upload_tree(s3: Any, source: Path, s3_uri: str) -> int:
    location = S3Location.parse(s3_uri)
    prefix = location.key if location.key.endswith("/") else location.key + "/"
    files = sorted(path for path in source.rglob("*") if path.is_file() and not path.is_symlink())
    for path in files:
        s3.put_object(Bucket=location.bucket, Key=prefix + path.relative_to(source).as_posix(), Body=path.read_bytes())
    return len(files)


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


class LocalProcessing:
    """Runs CreateProcessingJob requests to completion and answers with DescribeProcessingJob's shape."""

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
        with tempfile.TemporaryDirectory(prefix=f"labelflow-{name}-") as tmp:
            root = Path(tmp)

            def local(path: str) -> str:
                return str(root / path[1:]) if path.startswith(_CONTAINER_ROOT) else path

            # Every input the same way (data, spec, code, model, state...): its objects under its LocalPath.
            for item in inputs:
                if not item.get("AppManaged"):
                    s3_input = item["S3Input"]
                    download_prefix(self._s3, s3_input["S3Uri"], Path(local(s3_input["LocalPath"])))
            config = root / "opt/ml/config"
            config.mkdir(parents=True, exist_ok=True)
            (config / "processingjobconfig.json").write_text(json.dumps(request, default=str))
            (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
            outputs = request.get("ProcessingOutputConfig", {}).get("Outputs", [])
            for output in outputs:
                Path(local(output["S3Output"]["LocalPath"])).mkdir(parents=True, exist_ok=True)

            app = request["AppSpecification"]
            command = [local(part) for part in app.get("ContainerEntrypoint", []) + app.get("ContainerArguments", [])]
            if command and command[0] in ("python", "python3"):
                # The image's interpreter: a venv with its Python version and packages (processing/image.json).
                command[0] = self._python or str(ensure_processing_env())
            environment = {"PATH": os.environ.get("PATH", ""), **request.get("Environment", {})}
            timeout = request.get("StoppingCondition", {}).get("MaxRuntimeInSeconds", 3600)
            try:
                finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout)
                exit_code, stderr = finished.returncode, finished.stderr
            except subprocess.TimeoutExpired:
                exit_code, stderr = -1, f"stopped after MaxRuntimeInSeconds={timeout}"

            message_file = root / "opt/ml/output/message"
            message = message_file.read_text()[:1024].strip() if message_file.exists() else ""
            if exit_code == 0:
                for output in outputs:
                    upload_tree(self._s3, Path(local(output["S3Output"]["LocalPath"])), output["S3Output"]["S3Uri"])
                describe.update(ProcessingJobStatus="Completed", ExitMessage=message)
            else:
                reason = message or (stderr.strip().splitlines() or [f"exit code {exit_code}"])[-1]
                describe.update(ProcessingJobStatus="Failed", FailureReason=reason[:1024], ExitMessage=message)
        describe["ProcessingEndTime"] = datetime.now(UTC).isoformat()
        return describe
