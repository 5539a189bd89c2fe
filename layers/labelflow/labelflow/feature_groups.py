"""A dataset's feature group: definitions derived from its spec, created on its first run, checked on later ones."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, NamedTuple

from botocore.exceptions import ClientError

from labelflow.aws import error_code, raise_if_retryable
from labelflow.errors import ConfigError, FeatureGroupNotReady, RetryableAwsError
from labelflow.models.run import FeatureGroupLineage
from labelflow.models.spec import LABEL_FEATURES, DatasetSpec, FeatureType, output_features

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

RECORD_ID: Final = "record_id"
EVENT_TIME: Final = "event_time"
LABEL_FEATURE_TYPES: Final[dict[str, FeatureType]] = {
    "label": "String",
    "label_source": "String",
    "label_confidence": "Fractional",
    "run_id": "String",
}
# Error codes and FeatureGroupStatus values of botocore's sagemaker service model (DescribeFeatureGroup,
# CreateFeatureGroup): a missing group is ResourceNotFound, a name taken (by a concurrent creator) ResourceInUse.
NOT_FOUND: Final = "ResourceNotFound"
IN_USE: Final = "ResourceInUse"
CREATING: Final = "Creating"
UNUSABLE: Final = frozenset({"CreateFailed", "Deleting", "DeleteFailed"})


class FeatureStoreConfig(NamedTuple):
    """Where new groups keep their offline store, and the role Feature Store assumes to write it."""

    role_arn: str
    offline_store_s3_uri: str


def feature_definitions(spec: DatasetSpec) -> list[tuple[str, FeatureType]]:
    """Every feature ingestion writes, in order: ids, the processed features, then labelflow's label columns."""
    return [
        (RECORD_ID, "String"),
        (EVENT_TIME, "String"),
        *output_features(spec),
        *((name, LABEL_FEATURE_TYPES[name]) for name in LABEL_FEATURES),
    ]


def create_request(name: str, spec: DatasetSpec, config: FeatureStoreConfig) -> dict[str, Any]:
    """CreateFeatureGroup fields: online store on, offline store in the data bucket with a Glue table."""
    return {
        "FeatureGroupName": name,
        "RecordIdentifierFeatureName": RECORD_ID,
        "EventTimeFeatureName": EVENT_TIME,
        "FeatureDefinitions": [{"FeatureName": n, "FeatureType": t} for n, t in feature_definitions(spec)],
        "OnlineStoreConfig": {"EnableOnlineStore": True},
        "OfflineStoreConfig": {"S3StorageConfig": {"S3Uri": config.offline_store_s3_uri}, "TableFormat": "Glue"},
        "RoleArn": config.role_arn,
        "Description": f"labelflow dataset {spec.dataset}: processed features with model and human labels",
    }


def _names(names: list[str]) -> str:
    return ", ".join(names)


def differences(described: dict[str, Any], spec: DatasetSpec) -> str | None:
    """Every way a described group differs from what the spec writes, in one clause; None when it matches."""
    wanted = dict(feature_definitions(spec))
    # 2,500 definitions per DescribeFeatureGroup page is CreateFeatureGroup's maximum: one page is the whole group.
    actual = {d["FeatureName"]: d["FeatureType"] for d in described.get("FeatureDefinitions", [])}
    problems = []
    keys = (described.get("RecordIdentifierFeatureName"), described.get("EventTimeFeatureName"))
    if keys != (RECORD_ID, EVENT_TIME):
        problems.append(f"record id and event time are {keys[0]} and {keys[1]}, not {RECORD_ID} and {EVENT_TIME}")
    missing = [f"{name} ({kind})" for name, kind in wanted.items() if name not in actual]
    if missing:
        problems.append(f"the group lacks {_names(missing)}")
    extra = [name for name in actual if name not in wanted]
    if extra:
        problems.append(f"the spec lacks {_names(extra)}")
    problems += [
        f"{n} is {actual[n]} in the group, {kind} in the spec"
        for n, kind in wanted.items()
        if actual.get(n, kind) != kind
    ]
    return "; ".join(problems) or None


def describe(sagemaker: SageMakerClient, name: str) -> dict[str, Any] | None:
    """DescribeFeatureGroup, or None when there is no such group."""
    try:
        return dict(sagemaker.describe_feature_group(FeatureGroupName=name))
    except ClientError as exc:
        if error_code(exc) == NOT_FOUND:
            return None
        raise_if_retryable(exc, f"describe feature group {name}")
        raise


def _create(sagemaker: SageMakerClient, request: dict[str, Any]) -> bool:
    """CreateFeatureGroup; False when a concurrent run created the group first."""
    name = request["FeatureGroupName"]
    try:
        sagemaker.create_feature_group(**request)
    except ClientError as exc:
        if error_code(exc) == IN_USE:
            return False
        raise_if_retryable(exc, f"create feature group {name}")
        raise ConfigError(f"cannot create feature group {name}: {error_code(exc)}: {exc}") from exc
    return True


def _check_status(described: dict[str, Any]) -> None:
    status = described.get("FeatureGroupStatus")
    if status in UNUSABLE:
        reason = described.get("FailureReason") or "no reason given"
        raise ConfigError(f"feature group {described['FeatureGroupName']} is {status}: {reason}")


def ensure_feature_group(
    sagemaker: SageMakerClient, name: str, spec: DatasetSpec, config: FeatureStoreConfig
) -> FeatureGroupLineage:
    """Create the dataset's group from its spec, or check the existing one against it; never waits for creation."""
    described = describe(sagemaker, name)
    if described is None and _create(sagemaker, create_request(name, spec, config)):
        return FeatureGroupLineage(name=name, created=True)
    described = described or describe(sagemaker, name)
    if described is None:
        raise RetryableAwsError(f"feature group {name} was created by another run and is not visible yet")
    _check_status(described)
    problems = differences(described, spec)
    if problems:
        raise ConfigError(
            f"feature group {name} does not match the spec of dataset {spec.dataset}: {problems} "
            "(restore the spec, or delete the group so that the next run creates it from this spec)"
        )
    return FeatureGroupLineage(name=name, created=False)


def require_usable(sagemaker: SageMakerClient, name: str) -> None:
    """Ingestion's gate: FeatureGroupNotReady while the group is being created (the state machine retries)."""
    described = describe(sagemaker, name)
    if described is None:
        raise ConfigError(f"feature group {name} does not exist (deleted since this run was planned?)")
    if described.get("FeatureGroupStatus") == CREATING:
        raise FeatureGroupNotReady(f"feature group {name} is still being created")
    _check_status(described)
