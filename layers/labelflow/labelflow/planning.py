"""PlanProcessing: freeze the run's inputs and decide whether the processing job must run."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import ClientError
from pydantic import ValidationError

from labelflow.aws import raise_if_retryable
from labelflow.datasets import load_dataset_spec, probe_input
from labelflow.errors import ConfigError, ManifestError
from labelflow.feature_groups import FeatureStoreConfig, ensure_feature_group
from labelflow.formats import ResolvedInput
from labelflow.layout import PROCESSED_STATS, PROCESSING_CODE_POINTER, RunLayout, feature_group_name, job_name
from labelflow.models.artifacts import ProcessingCode
from labelflow.models.run import ModelLineage
from labelflow.models.settings import PlanSettings
from labelflow.models.spec import DatasetSpec
from labelflow.models.state import PlanOutput, WorkflowState
from labelflow.s3 import S3Location, copy_version, exists, get_json, put_json, sha256_of, uri
from labelflow.transform_state import PublishedState, published_state

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient

CONTAINER_ROOT = "/opt/ml/processing"


def load_processing_code(s3: S3Client, bucket: str) -> ProcessingCode:
    try:
        return ProcessingCode.model_validate(get_json(s3, bucket, PROCESSING_CODE_POINTER))
    except ManifestError as exc:
        raise ConfigError(
            f"processing code is not published at s3://{bucket}/{PROCESSING_CODE_POINTER}: run `labelflow publish`"
        ) from exc
    except ValidationError as exc:
        raise ConfigError(f"s3://{bucket}/{PROCESSING_CODE_POINTER} is malformed: {exc.error_count()} errors") from exc


class FrozenObject(NamedTuple):
    """One exact version of an object the run reads."""

    bucket: str
    key: str
    version_id: str | None
    etag: str


def model_artifact(s3: S3Client, spec: DatasetSpec) -> FrozenObject | None:
    """The model's current version, so a new model invalidates the cache; ConfigError when it is missing."""
    if spec.model is None:
        return None
    location = S3Location.parse(spec.model.s3_uri)
    try:
        head = s3.head_object(Bucket=location.bucket, Key=location.key)
    except ClientError as exc:
        raise_if_retryable(exc, f"head {spec.model.s3_uri}")
        raise ConfigError(f"model artifact {spec.model.s3_uri} is not readable") from exc
    return FrozenObject(location.bucket, location.key, head.get("VersionId"), head["ETag"].strip('"'))


def model_lineage(s3: S3Client, spec: DatasetSpec, model: FrozenObject) -> ModelLineage:
    """Hash the exact model version the run will load; a spec that pins another file stops the run here."""
    assert spec.model is not None
    sha256 = sha256_of(s3, model.bucket, model.key, model.version_id)
    if spec.model.sha256 and sha256 != spec.model.sha256:
        raise ConfigError(
            f"model {spec.model.s3_uri} has sha256 {sha256} but the spec pins {spec.model.sha256}: "
            "restore the pinned file or update model.sha256"
        )
    return ModelLineage(
        s3_uri=spec.model.s3_uri, version_id=model.version_id, sha256=sha256, classes=list(spec.model.classes)
    )


def cache_key(
    run: WorkflowState,
    code_sha256: str,
    spec: DatasetSpec,
    model_etag: str | None,
    state: PublishedState | None,
    resolved: ResolvedInput,
) -> str:
    """Input version × code hash × parameters × applied state: equal keys mean byte-identical processing outputs."""
    material = {
        "input": [run.bucket, run.key, run.version_id, run.etag],
        # How the job is told to read it: the layer's format rules may change while input, spec and code do not.
        "read_as": resolved.container_arguments(),
        "code": code_sha256,
        "spec": spec.model_dump(mode="json"),
        "model": model_etag,
        "state": [state.location.key, state.version_id, state.etag] if state else None,
        "default_event_time": run.received_at,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def container_arguments(
    run: WorkflowState, spec: DatasetSpec, state: PublishedState | None, resolved: ResolvedInput
) -> list[str]:
    """Every path spelled out, and how to read the input as planning resolved it: the script detects nothing.

    At most 100 arguments of at most 256 characters each (ContainerArguments in botocore's sagemaker model).
    """
    arguments = [
        "--input-dir", f"{CONTAINER_ROOT}/input/data",
        "--spec", f"{CONTAINER_ROOT}/input/spec/spec.json",
        "--output-dir", f"{CONTAINER_ROOT}/output",
        "--message-file", "/opt/ml/output/message",
        "--default-event-time", run.received_at,
    ]  # fmt: skip
    if spec.model is not None:
        arguments += ["--model-dir", f"{CONTAINER_ROOT}/input/model"]
    if state is not None:
        arguments += ["--state-dir", f"{CONTAINER_ROOT}/input/state"]
    return arguments + resolved.container_arguments()


def processing_job_request(
    run: WorkflowState,
    layout: RunLayout,
    code: ProcessingCode,
    spec: DatasetSpec,
    processed_uri: str,
    key: str,
    settings: PlanSettings,
    state: PublishedState | None,
    resolved: ResolvedInput,
) -> dict[str, Any]:
    """CreateProcessingJob fields (less RoleArn, which the state machine adds)."""

    def s3_input(name: str, s3_uri: str) -> dict[str, Any]:
        return {
            "InputName": name,
            "S3Input": {
                "S3Uri": s3_uri,
                "LocalPath": f"{CONTAINER_ROOT}/input/{name}",
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
                "S3DataDistributionType": "FullyReplicated",
                "S3CompressionType": "None",
            },
        }

    inputs = [
        s3_input("data", uri(run.bucket, layout.input_key(""))),
        s3_input("spec", uri(run.bucket, layout.spec_key.rsplit("/", 1)[0] + "/")),
        s3_input("code", code.s3_prefix),
    ]
    if spec.model is not None:
        inputs.append(s3_input("model", uri(run.bucket, layout.model_key(""))))
    if state is not None:
        # Published states are written once (a conditional create), so the folder holds exactly this object.
        inputs.append(s3_input("state", uri(state.location.bucket, state.location.key.rsplit("/", 1)[0] + "/")))
    return {
        "ProcessingJobName": job_name("lf", run.dataset, run.run_id, key[:8]),
        "AppSpecification": {
            "ImageUri": settings.processing_image_uri,
            "ContainerEntrypoint": ["python3", f"{CONTAINER_ROOT}/input/code/{code.entrypoint}"],
            "ContainerArguments": container_arguments(run, spec, state, resolved),
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": settings.processing_instance_count,
                "InstanceType": settings.processing_instance_type,
                "VolumeSizeInGB": settings.processing_volume_size_gb,
            }
        },
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "processed",
                    "S3Output": {
                        "S3Uri": processed_uri,
                        "LocalPath": f"{CONTAINER_ROOT}/output",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        "Environment": {"LABELFLOW_DATASET": run.dataset, "LABELFLOW_RUN_ID": run.run_id},
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.processing_max_runtime_seconds},
    }


def plan_processing(run: WorkflowState, s3: S3Client, sagemaker: SageMakerClient, settings: PlanSettings) -> PlanOutput:
    """Validate the landed object against its spec, ready its feature group, freeze inputs, and plan the job."""
    layout = RunLayout(run.dataset, run.run_id)
    spec, _ = load_dataset_spec(s3, run.bucket, run.dataset)
    resolved = probe_input(s3, run.bucket, run.key, run.version_id, spec, settings.max_records_per_run)
    code = load_processing_code(s3, run.bucket)
    model = model_artifact(s3, spec)
    lineage = model_lineage(s3, spec, model) if model is not None else None
    group = ensure_feature_group(
        sagemaker,
        feature_group_name(settings.feature_group_prefix, run.dataset),
        spec,
        FeatureStoreConfig(settings.feature_store_role_arn, settings.offline_store_s3_uri),
    )
    state_lineage, state = published_state(s3, run.bucket, spec)
    key = cache_key(run, code.sha256, spec, model.etag if model else None, state, resolved)
    processed_prefix = layout.processed_prefix(key)
    cache_hit = exists(s3, run.bucket, processed_prefix + PROCESSED_STATS)

    filename = run.key.rsplit("/", 1)[-1]
    if not cache_hit:
        # Jobs read copies of exactly these versions under the run prefix, never the mutable keys.
        copy_version(
            s3, S3Location(run.bucket, run.key), run.version_id, S3Location(run.bucket, layout.input_key(filename))
        )
        if model is not None:
            frozen_model = S3Location(run.bucket, layout.model_key(model.key.rsplit("/", 1)[-1]))
            copy_version(s3, S3Location(model.bucket, model.key), model.version_id, frozen_model)
    spec_uri = put_json(s3, run.bucket, layout.spec_key, spec)
    processed_uri = uri(run.bucket, processed_prefix)
    return PlanOutput(
        dataset=run.dataset,
        run_id=run.run_id,
        run_prefix=uri(run.bucket, layout.prefix),
        spec_uri=spec_uri,
        input_uri=uri(run.bucket, layout.input_key(filename)),
        code_sha256=code.sha256,
        cache_key=key,
        cache_hit=cache_hit,
        processed_uri=processed_uri,
        model=lineage,
        feature_group=group,
        transform_state=state_lineage,
        processing_job=processing_job_request(run, layout, code, spec, processed_uri, key, settings, state, resolved),
    )
