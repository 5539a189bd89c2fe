"""models/settings.py: environment settings, validated once, naming what is wrong."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from labelflow.errors import ConfigError
from labelflow.models.settings import IngestSettings, PlanSettings, RouteSettings, TriggerSettings, load_settings

VARIABLES = [
    "DATA_BUCKET",
    "STATE_MACHINE_ARN",
    "PROCESSING_IMAGE_URI",
    "PROCESSING_INSTANCE_TYPE",
    "PROCESSING_INSTANCE_COUNT",
    "PROCESSING_VOLUME_SIZE_GB",
    "PROCESSING_MAX_RUNTIME_SECONDS",
    "CONFIDENCE_THRESHOLD",
    "INGEST_MAX_WORKERS",
    "FEATURE_GROUP_PREFIX",
    "FEATURE_STORE_ROLE_ARN",
    "OFFLINE_STORE_S3_URI",
]
ROLE = "arn:aws:iam::123456789012:role/labelflow-FeatureStoreRole-AbC123"


def plan_environment(monkeypatch: pytest.MonkeyPatch, **overrides: str) -> None:
    """A complete PlanProcessing environment with string values, as Lambda passes them."""
    values = {
        "DATA_BUCKET": "labelflow-demo",
        "PROCESSING_IMAGE_URI": "123.dkr.ecr.us-east-1.amazonaws.com/sklearn:1",
        "PROCESSING_INSTANCE_TYPE": "ml.m5.xlarge",
        "FEATURE_GROUP_PREFIX": "labelflow",
        "FEATURE_STORE_ROLE_ARN": ROLE,
        "OFFLINE_STORE_S3_URI": "s3://labelflow-demo/feature-store",
        **overrides,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No setting leaks in from the shell or from another test's cached load."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    load_settings.cache_clear()
    yield
    load_settings.cache_clear()


def test_missing_variable_is_named() -> None:
    # Given no DATA_BUCKET in the environment
    # When the ingest settings are loaded / Then the error names the settings and the variable
    with pytest.raises(ConfigError, match=r"invalid IngestSettings environment: DATA_BUCKET: Field required"):
        load_settings(IngestSettings)


def test_every_missing_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given only the bucket for a function that also needs the processing image and instance type
    monkeypatch.setenv("DATA_BUCKET", "labelflow-demo")

    # When the plan settings are loaded
    with pytest.raises(ConfigError) as caught:
        load_settings(PlanSettings)

    # Then both missing variables are named
    assert "PROCESSING_IMAGE_URI" in str(caught.value)
    assert "PROCESSING_INSTANCE_TYPE" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [("STATE_MACHINE_ARN", "arn:aws:lambda:us-east-1:1:function:x"), ("DATA_BUCKET", "ab")],
)
def test_invalid_value_is_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    # Given a variable with a value of the wrong shape
    monkeypatch.setenv("DATA_BUCKET", "labelflow-demo")
    monkeypatch.setenv("STATE_MACHINE_ARN", "arn:aws:states:us-east-1:123456789012:stateMachine:labelflow")
    monkeypatch.setenv(name, value)

    # When the trigger settings are loaded / Then the error names that variable
    with pytest.raises(ConfigError, match=f"TriggerSettings environment: {name}: "):
        load_settings(TriggerSettings)


@pytest.mark.parametrize(("value", "problem"), [("1.5", "less than or equal"), ("high", "valid number")])
def test_out_of_range_threshold_is_rejected(monkeypatch: pytest.MonkeyPatch, value: str, problem: str) -> None:
    # Given a threshold outside [0, 1] or not a number
    monkeypatch.setenv("DATA_BUCKET", "labelflow-demo")
    monkeypatch.setenv("CONFIDENCE_THRESHOLD", value)

    # When the route settings are loaded / Then the variable and the problem are named
    with pytest.raises(ConfigError, match=f"CONFIDENCE_THRESHOLD: .*{problem}"):
        load_settings(RouteSettings)


def test_valid_values_are_read_and_converted(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a complete plan environment with string values, as Lambda passes them
    plan_environment(monkeypatch, PROCESSING_INSTANCE_COUNT="1", PROCESSING_VOLUME_SIZE_GB="50")

    # When the plan settings are loaded
    settings = load_settings(PlanSettings)

    # Then values are typed and unset ones take their defaults
    assert settings.data_bucket == "labelflow-demo"
    assert settings.processing_image_uri == "123.dkr.ecr.us-east-1.amazonaws.com/sklearn:1"
    assert settings.processing_instance_type == "ml.m5.xlarge"
    assert settings.processing_instance_count == 1
    assert settings.processing_volume_size_gb == 50
    assert settings.processing_max_runtime_seconds == 3600
    assert settings.feature_group_prefix == "labelflow"
    assert settings.feature_store_role_arn == ROLE
    assert settings.offline_store_s3_uri == "s3://labelflow-demo/feature-store"


def test_defaults_for_route_and_ingest(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given only the bucket
    monkeypatch.setenv("DATA_BUCKET", "labelflow-demo")

    # When route and ingest settings are loaded / Then their defaults apply
    assert load_settings(RouteSettings).confidence_threshold == 0.8
    assert load_settings(IngestSettings).max_workers == 8


def test_settings_are_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given settings already loaded in this container
    monkeypatch.setenv("DATA_BUCKET", "labelflow-demo")
    monkeypatch.setenv("INGEST_MAX_WORKERS", "4")
    first = load_settings(IngestSettings)

    # When the environment changes and they are loaded again
    monkeypatch.setenv("INGEST_MAX_WORKERS", "16")

    # Then the cached settings come back until the cache is cleared
    assert load_settings(IngestSettings) is first
    load_settings.cache_clear()
    assert load_settings(IngestSettings).max_workers == 16


def test_more_processing_instances_than_the_api_allows_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a deployment asking for 101 processing instances (CreateProcessingJob allows 1 to 100)
    plan_environment(monkeypatch, PROCESSING_INSTANCE_COUNT="101")
    # When the settings load / Then the variable is named in the error
    with pytest.raises(ConfigError, match="PROCESSING_INSTANCE_COUNT"):
        load_settings(PlanSettings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FEATURE_GROUP_PREFIX", "p" * 54),
        ("FEATURE_GROUP_PREFIX", "1stack"),
        ("FEATURE_GROUP_PREFIX", "my_stack"),
        ("FEATURE_STORE_ROLE_ARN", "arn:aws:iam::123456789012:user/someone"),
        ("OFFLINE_STORE_S3_URI", "https://labelflow-demo/feature-store"),
    ],
)
def test_a_feature_store_setting_that_cannot_name_or_create_a_group_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    # Given a stack name too long or not a stack name, a role ARN that is not a role's, or an offline store not in S3
    plan_environment(monkeypatch, **{name: value})
    # When the plan settings load / Then the variable is named, at cold start rather than at the first new dataset
    with pytest.raises(ConfigError, match=f"PlanSettings environment: {name}: "):
        load_settings(PlanSettings)


@pytest.mark.parametrize("instance_type", ["ml.m7i-flex.large", "ml.c7i-flex.16xlarge", "ml.g4dn.xlarge"])
def test_every_processing_instance_family_spelling_is_accepted(
    monkeypatch: pytest.MonkeyPatch, instance_type: str
) -> None:
    # Given an instance type from the template's list, hyphenated family included
    plan_environment(monkeypatch, PROCESSING_INSTANCE_TYPE=instance_type)

    # When the plan settings are loaded / Then it is kept, and a run carries 10 million records by default
    settings = load_settings(PlanSettings)
    assert settings.processing_instance_type == instance_type
    assert settings.max_records_per_run == 10_000_000
