"""AWS clients: created once per container, with standard retries; region and endpoint from the environment."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from labelflow.errors import RetryableAwsError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sagemaker_featurestore_runtime import SageMakerFeatureStoreRuntimeClient
    from mypy_boto3_stepfunctions import SFNClient

# Adaptive mode adds client-side rate limiting on top of exponential backoff with jitter,
# which is what a burst of PutRecord calls against a provisioned feature group needs.
_CONFIG = Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=5, read_timeout=60)

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalError",
    }
)


@cache
def _client(service: str) -> Any:
    # boto3 reads AWS_REGION and AWS_ENDPOINT_URL(_<SERVICE>) from the environment itself.
    return boto3.client(service, config=_CONFIG)  # type: ignore[call-overload]


def s3() -> S3Client:
    client: S3Client = _client("s3")
    return client


def stepfunctions() -> SFNClient:
    client: SFNClient = _client("stepfunctions")
    return client


def sagemaker() -> SageMakerClient:
    client: SageMakerClient = _client("sagemaker")
    return client


def featurestore() -> SageMakerFeatureStoreRuntimeClient:
    client: SageMakerFeatureStoreRuntimeClient = _client("sagemaker-featurestore-runtime")
    return client


def events() -> Any:
    return _client("events")


def secretsmanager() -> Any:
    return _client("secretsmanager")


def cloudformation() -> Any:
    return _client("cloudformation")


def reset_clients() -> None:
    """Forget cached clients (tests and the local runtime call this after switching backends)."""
    _client.cache_clear()


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def raise_if_retryable(exc: ClientError, what: str) -> None:
    """Turn a throttle or 5xx that outlived botocore's retries into RetryableAwsError for the ASL Retry."""
    if error_code(exc) in THROTTLING_CODES:
        raise RetryableAwsError(f"{what}: {error_code(exc)} after retries") from exc
