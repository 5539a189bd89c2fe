"""The processing engine of a run, and the EMR Serverless StartJobRun fields when it is the Spark one."""

from __future__ import annotations

import hashlib
import math
from typing import Any

from pydantic import Field

from labelflow.errors import ConfigError
from labelflow.formats import ResolvedInput
from labelflow.layout import code_prefix, job_name
from labelflow.models.settings import PlanSettings, _Settings
from labelflow.models.spec import DatasetSpec
from labelflow.models.state import Engine, PlanOutput, WorkflowState
from labelflow.s3 import S3Location, uri

SPARK_ENTRYPOINT = "spark_job.py"
# labelflow_processing/ and scoring.py zipped, published beside the code files (`--py-files`).
SPARK_PY_FILES = "spark-py-files.zip"
# The custom image's interpreter (processing/labelflow_processing/spark/Dockerfile): the release's own python3
# is 3.9 and the job needs 3.12.
SPARK_PYTHON = "/usr/bin/python3.12"
SPARK_LOGS = "spark-logs/"


class SparkSettings(_Settings):
    """The deployment's Spark engine: present when the stack was deployed with a Spark image."""

    # ApplicationId in botocore's emr-serverless model: [0-9a-z]+, 1 to 64; empty: no Spark engine deployed.
    emr_application_id: str = Field(default="", alias="EMR_APPLICATION_ID", pattern=r"^[0-9a-z]{0,64}$")
    # The input size (bytes) from which `engine: auto` picks Spark; 0: never.
    spark_above_bytes: int = Field(default=0, alias="SPARK_ABOVE_BYTES", ge=0)


def choose_engine(spec: DatasetSpec, size: int, settings: SparkSettings) -> Engine:
    """The spec's engine; `auto` is Spark from SparkAboveBytes on, when the deployment has an application."""
    deployed = bool(settings.emr_application_id)
    if spec.engine == "spark" and not deployed:
        raise ConfigError(
            f"dataset {spec.dataset} asks for the Spark engine but this deployment has none: "
            "deploy with SparkImageUri set, or set engine to single or auto"
        )
    if spec.engine == "auto":
        above = deployed and settings.spark_above_bytes > 0 and size >= settings.spark_above_bytes
        return "spark" if above else "single"
    return spec.engine


def spark_arguments(plan: PlanOutput, run: WorkflowState, resolved: ResolvedInput) -> list[str]:
    """spark_job.py's arguments: the processing job's, with the run's S3 URIs in place of container folders."""
    arguments = [
        "--input", plan.input_uri.rsplit("/", 1)[0] + "/",
        "--output", plan.processed_uri,
        "--spec", plan.spec_uri,
        "--default-event-time", run.received_at,
    ]  # fmt: skip
    if plan.model is not None:
        frozen = plan.run_prefix + "input/model/" + plan.model.s3_uri.rsplit("/", 1)[-1]
        arguments += ["--model", frozen]
    if plan.transform_state.applied:
        arguments += ["--state", plan.transform_state.uri]
    return arguments + resolved.container_arguments()


def submit_parameters(code: str) -> str:
    """spark-submit options: the code zip, and the image's Python 3.12 for the driver and the executors.

    Environment variables as the EMR Serverless user guide's "Using different Python versions" sets them:
    spark.emr-serverless.driverEnv.* for the driver, spark.executorEnv.* for the executors.
    """
    return " ".join(
        [
            f"--conf spark.submit.pyFiles={code}{SPARK_PY_FILES}",
            f"--conf spark.emr-serverless.driverEnv.PYSPARK_PYTHON={SPARK_PYTHON}",
            f"--conf spark.executorEnv.PYSPARK_PYTHON={SPARK_PYTHON}",
        ]
    )


def spark_job_request(
    plan: PlanOutput, run: WorkflowState, resolved: ResolvedInput, settings: PlanSettings
) -> dict[str, Any]:
    """StartJobRun fields as Step Functions' emr-serverless:startJobRun takes them (PascalCase members)."""
    bucket = S3Location.parse(plan.processed_uri).bucket
    code = uri(bucket, code_prefix(plan.code_sha256))
    # ClientToken: 1-64 of [A-Za-z0-9._-] (botocore); one per run and cache key, so a retried state starts no
    # second job run.
    token = hashlib.sha256(f"{plan.run_id}/{plan.cache_key}".encode()).hexdigest()[:64]
    return {
        # Name: String256 in botocore's model; the SageMaker job's name keeps the two easy to match.
        "Name": job_name("lf", run.dataset, run.run_id, plan.cache_key[:8]),
        "ClientToken": token,
        "JobDriver": {
            "SparkSubmit": {
                "EntryPoint": code + SPARK_ENTRYPOINT,
                "EntryPointArguments": spark_arguments(plan, run, resolved),
                "SparkSubmitParameters": submit_parameters(code),
            }
        },
        "ConfigurationOverrides": {
            "MonitoringConfiguration": {"S3MonitoringConfiguration": {"LogUri": plan.run_prefix + SPARK_LOGS}}
        },
        # executionTimeoutMinutes (Duration: 0 to 1,000,000): the processing job's limit, rounded up.
        "ExecutionTimeoutMinutes": math.ceil(settings.processing_max_runtime_seconds / 60),
    }


def with_engine(
    plan: PlanOutput, engine: Engine, run: WorkflowState, resolved: ResolvedInput, settings: PlanSettings
) -> PlanOutput:
    """The plan with its engine; a Spark run's plan carries the job run to start."""
    if engine == "single":
        return plan
    return plan.model_copy(update={"engine": engine, "spark_job": spark_job_request(plan, run, resolved, settings)})
