"""Function settings: environment variables validated once per cold start, failing loudly on a bad deploy."""

from __future__ import annotations

import os
from functools import cache

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labelflow.errors import ConfigError


class _Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class BucketSettings(_Settings):
    data_bucket: str = Field(alias="DATA_BUCKET", min_length=3, max_length=63)


class TriggerSettings(BucketSettings):
    state_machine_arn: str = Field(alias="STATE_MACHINE_ARN", pattern=r"^arn:aws[a-z-]*:states:")


class PlanSettings(BucketSettings):
    processing_image_uri: str = Field(alias="PROCESSING_IMAGE_URI", min_length=1)
    # ml.<family>.<size>, families with hyphens too (ml.m7i-flex.large); the exact list is the template's
    # AllowedValues and CreateProcessingJob's enum.
    processing_instance_type: str = Field(alias="PROCESSING_INSTANCE_TYPE", pattern=r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")
    # Above 1, an input large enough is cut into as many parts (planning.part_count); at most 100
    # (ProcessingClusterConfig.InstanceCount in botocore's sagemaker model).
    processing_instance_count: int = Field(default=1, alias="PROCESSING_INSTANCE_COUNT", ge=1, le=100)
    # A smaller input stays one part. UploadPartCopy copies a range only of a source above 5 MB (botocore's s3
    # model, CopySourceRange), hence the lower bound.
    processing_shard_min_bytes: int = Field(default=256 * 1024**2, alias="PROCESSING_SHARD_MIN_BYTES", ge=8 * 1024**2)
    processing_volume_size_gb: int = Field(default=30, alias="PROCESSING_VOLUME_SIZE_GB", ge=1, le=16_384)
    processing_max_runtime_seconds: int = Field(default=3600, alias="PROCESSING_MAX_RUNTIME_SECONDS", ge=1, le=777_600)
    # The stack name: feature groups are `<prefix>-<dataset>` (layout.feature_group_name), and IAM grants
    # `<prefix>-*`. CloudFormation stack names are [a-zA-Z][-a-zA-Z0-9]*; 53 leaves room for a hashed dataset name.
    feature_group_prefix: str = Field(
        alias="FEATURE_GROUP_PREFIX", min_length=1, max_length=53, pattern=r"^[a-zA-Z][-a-zA-Z0-9]*$"
    )
    # CreateFeatureGroup's RoleArn pattern (botocore's sagemaker service model).
    feature_store_role_arn: str = Field(
        alias="FEATURE_STORE_ROLE_ARN", pattern=r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$"
    )
    offline_store_s3_uri: str = Field(alias="OFFLINE_STORE_S3_URI", pattern=r"^s3://[^/]+(/.*)?$", max_length=1024)
    # What one run's routing and merge Lambdas stream well inside their timeout (labelflow.datasets.RUN_BOUND).
    max_records_per_run: int = Field(default=10_000_000, alias="MAX_RECORDS_PER_RUN", ge=1)


class RouteSettings(BucketSettings):
    confidence_threshold: float = Field(default=0.8, alias="CONFIDENCE_THRESHOLD", ge=0.0, le=1.0)


class MergeSettings(BucketSettings):
    # How many IngestFeatures Map iterations run at once (the template's IngestMaxConcurrency); an inline Map runs
    # at most 40 at once (Step Functions developer guide, "Using Map state in Inline mode").
    ingest_concurrency: int | None = Field(default=None, alias="INGEST_MAX_CONCURRENCY", ge=1, le=40)


class IngestSettings(BucketSettings):
    max_workers: int = Field(default=8, alias="INGEST_MAX_WORKERS", ge=1, le=64)


class LabelStudioSettings(BucketSettings):
    """The Label Studio review functions: the secret naming the server, and the webhook endpoint if enabled."""

    # A secret name: letters, digits and /_+=.@- up to 512 (Secrets Manager API reference, CreateSecret Name).
    secret_name: str = Field(alias="LABELSTUDIO_SECRET_NAME", min_length=1, max_length=512, pattern=r"^[\w/+=.@-]+$")
    webhook_url: str = Field(default="", alias="LABELSTUDIO_WEBHOOK_URL", pattern=r"^(https?://\S+)?$")
    # How long a warm function reuses the secret before reading it again (a rotated token is seen within this).
    secret_max_age_seconds: int = Field(default=300, alias="LABELSTUDIO_SECRET_MAX_AGE_SECONDS", ge=0, le=3600)


@cache
def load_settings[S: _Settings](model: type[S]) -> S:
    """Read and validate `model` from the environment once; a missing variable names itself in the error."""
    try:
        return model.model_validate(dict(os.environ))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid {model.__name__} environment: {problems}") from exc
