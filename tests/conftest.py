"""Fixtures shared by every tier: fake credentials and region, moto, a data bucket, a Lambda context."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.loaders import create_loader
from moto import mock_aws

from labelflow import aws
from labelflow_local.functions import LocalContext

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
REGION = "us-east-1"
BUCKET = "labelflow-demo"


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test can reach real AWS: fake credentials, a fixed region, no profile or endpoint."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_SERVICE_NAME": "labelflow",
        "POWERTOOLS_METRICS_NAMESPACE": "Labelflow",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


# mock_aws resets boto3's default session, and a fresh session reloads botocore's JSON service models
# (~65 ms per test). Every test still gets a fresh, mocked session; they just share one model loader.
_SHARED_LOADER = create_loader()


@pytest.fixture
def moto() -> Iterator[None]:
    with mock_aws():
        session = botocore.session.Session()
        session.register_component("data_loader", _SHARED_LOADER)
        boto3.setup_default_session(botocore_session=session)
        aws.reset_clients()
        yield
    aws.reset_clients()


@pytest.fixture
def s3(moto: None) -> Any:
    return boto3.client("s3", region_name=REGION)


@pytest.fixture
def bucket(s3: Any) -> str:
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return BUCKET


@pytest.fixture
def lambda_context() -> LocalContext:
    return LocalContext(
        function_name="test", invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:test"
    )


def load_event(name: str) -> Any:
    return json.loads((EVENTS / name).read_text())
