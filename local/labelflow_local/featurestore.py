"""Local SageMaker Feature Store: feature groups and PutRecord/GetRecord answered in-process, stored on disk.

Control plane: CreateFeatureGroup and DescribeFeatureGroup are answered here, because moto 5.2.5 raises a bare
KeyError for a group that does not exist (no ResourceNotFound), never reports a group as Creating, and leaves out
OnlineStoreConfig and Description. Every request is first checked against botocore's service model.
Online store: the latest record per id (by event time), as Feature Store keeps it. Offline store: every accepted
write as Parquet under Feature Store's offline layout, partitioned by event time hour.
Calls are intercepted at botocore's `before-call` event, so the real handlers' clients are unchanged (IngestFeatures'
PutRecord, sent by labelflow.putrecord, emits the same events); each request is kept in the run's call log when one
is given.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.model import OperationModel

from labelflow_local import contracts

SERVICE = "sagemaker-featurestore-runtime"
CONTROL_PLANE = "sagemaker"
CONTROL_OPERATIONS = ("CreateFeatureGroup", "DescribeFeatureGroup")
RESERVED = ("api_invocation_time", "write_time", "is_deleted")


@dataclass(frozen=True)
class FeatureGroup:
    name: str
    record_id: str
    event_time: str
    features: dict[str, str]  # name → Integral | Fractional | String
    created_epoch: int

    @classmethod
    def described(cls, description: dict[str, Any], created_epoch: int) -> FeatureGroup:
        """The group a CreateFeatureGroup request (or the DescribeFeatureGroup answer saved from one) defines."""
        return cls(
            name=description["FeatureGroupName"],
            record_id=description["RecordIdentifierFeatureName"],
            event_time=description["EventTimeFeatureName"],
            features={d["FeatureName"]: d["FeatureType"] for d in description["FeatureDefinitions"]},
            created_epoch=created_epoch,
        )


class ServiceError(Exception):
    """An error the service would answer with; `code` is the error code botocore raises."""

    code = "ValidationError"


class ValidationError(ServiceError):
    """Feature Store runtime's invalid-request error."""


class ValidationException(ServiceError):
    """SageMaker's invalid-request error."""

    code = "ValidationException"


class ResourceNotFound(ServiceError):
    code = "ResourceNotFound"


class ResourceInUse(ServiceError):
    code = "ResourceInUse"


def check_request(operation: OperationModel, params: dict[str, Any], error: type[ServiceError]) -> None:
    """Refuse a request the real service would refuse for breaking its model's contract."""
    if found := contracts.violations(operation, params):
        raise error(contracts.validation_message(found))


# Feature Store's limits (SageMaker developer guide, "Quotas, naming rules and data types"): a record at most
# 350 KB, a record identifier at most 2 KB, a feature value at most 350 KB; Integral values are 64-bit signed
# integers; event times are ISO-8601 UTC strings yyyy-MM-dd'T'HH:mm:ssZ or yyyy-MM-dd'T'HH:mm:ss.SSSSSSSSSZ
# (a String feature) or Unix epoch seconds (a Fractional one), within [0000-01-01T00:00:00Z,
# 9999-12-31T23:59:59.999999999Z]. botocore's featurestore-runtime model caps ValueAsString and
# RecordIdentifierValueAsString at 358,400 characters (350 KB), which contracts.violations checks.
MAX_RECORD_BYTES = 350 * 1024
MAX_VALUE_BYTES = 350 * 1024
MAX_RECORD_ID_BYTES = 2 * 1024
INTEGRAL_RANGE = (-(2**63), 2**63 - 1)
_EVENT_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
# Python's datetime starts at year 1; year 0 is in Feature Store's range, so epoch seconds are compared as numbers.
_EPOCH_MIN = -62_167_219_200.0  # 0000-01-01T00:00:00Z
_EPOCH_MAX = 253_402_300_800.0  # 10000-01-01T00:00:00Z (exclusive)


def _event_time(value: str, kind: str = "String", feature: str = "event time") -> datetime:
    try:
        if kind == "Fractional":
            seconds = float(value)
            if not _EPOCH_MIN <= seconds < _EPOCH_MAX:
                raise ValidationError(
                    f"{feature}={value!r} is outside Feature Store's event time range (years 0000 to 9999)"
                )
            return datetime.fromtimestamp(max(seconds, datetime.min.replace(tzinfo=UTC).timestamp()), UTC)
        if _EVENT_TIME.match(value):
            # fromisoformat, not strptime: strptime took a third of a local ingest's time (bench/scale.py).
            return datetime.fromisoformat(value[:19]).replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    raise ValidationError(f"{feature}={value!r} is not yyyy-MM-ddTHH:mm:ss[.SSSSSSSSS]Z or epoch seconds")


def check_limits(group: FeatureGroup, values: dict[str, str]) -> None:
    """Refuse a record over one of Feature Store's size or range limits, naming the feature."""
    record_id = values[group.record_id]
    if len(record_id.encode()) > MAX_RECORD_ID_BYTES:
        raise ValidationError(f"record identifier {record_id[:40]!r}... is over {MAX_RECORD_ID_BYTES} bytes")
    size = 0
    for name, value in values.items():
        value_bytes = len(value.encode())
        if value_bytes > MAX_VALUE_BYTES:
            raise ValidationError(f"{name} is {value_bytes} bytes, over the {MAX_VALUE_BYTES}-byte value limit")
        size += len(name.encode()) + value_bytes
        if group.features[name] == "Integral" and not INTEGRAL_RANGE[0] <= int(value) <= INTEGRAL_RANGE[1]:
            raise ValidationError(f"{name}={value} is outside the 64-bit signed Integral range")
    if size > MAX_RECORD_BYTES:
        raise ValidationError(f"record {record_id[:40]!r} is {size} bytes, over the {MAX_RECORD_BYTES}-byte limit")


class LocalFeatureStore:
    """Feature groups and their records. `describes_while_creating`: how many DescribeFeatureGroup calls a new
    group answers Creating before it is Created (0: usable at once; AWS takes about a minute)."""

    def __init__(
        self,
        root: Path,
        region: str,
        account: str,
        describes_while_creating: int = 0,
        calls: contracts.CallLog | None = None,
    ) -> None:
        self.root = root
        self.calls = calls
        self._region = region
        self._account = account
        self.describes_while_creating = describes_while_creating
        self._groups: dict[str, FeatureGroup] = {}
        self._described: dict[str, dict[str, Any]] = {}
        self._creating: dict[str, int] = {}
        self._online: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
        # Each accepted write as (its values, the time it was written): the values dict is the online store's own.
        self._offline: dict[str, list[tuple[dict[str, str], datetime]]] = defaultdict(list)
        self._lock = threading.Lock()

    def add_group(self, group: FeatureGroup) -> None:
        self._groups[group.name] = group

    # control plane ------------------------------------------------------------------------------

    def create_group(self, request: dict[str, Any]) -> str:
        """CreateFeatureGroup: the group is Creating for the next `describes_while_creating` describes."""
        name = request["FeatureGroupName"]
        created = int(time.time())
        arn = f"arn:aws:sagemaker:{self._region}:{self._account}:feature-group/{name.lower()}"
        described = {
            **request,
            "FeatureGroupArn": arn,
            "CreationTime": datetime.fromtimestamp(created, UTC),
            "OfflineStoreConfig": self._resolved_offline_config(request.get("OfflineStoreConfig"), name, created),
        }
        group = FeatureGroup.described(request, created)
        with self._lock:
            if name in self._groups:
                raise ResourceInUse(
                    f"Resource Already Exists: FeatureGroup with name {name} already exists. Choose a different name."
                )
            self._groups[name] = group
            self._described[name] = {key: value for key, value in described.items() if value is not None}
            self._creating[name] = self.describes_while_creating
        return arn

    def _resolved_offline_config(self, config: dict[str, Any] | None, name: str, created: int) -> dict[str, Any] | None:
        """What Feature Store adds to an offline store config: the resolved data prefix and the Glue table."""
        if config is None:
            return None
        storage = config["S3StorageConfig"]
        resolved = f"{storage['S3Uri'].rstrip('/')}/{self._account}/sagemaker/{self._region}/offline-store/"
        return {
            **config,
            "S3StorageConfig": {**storage, "ResolvedOutputS3Uri": f"{resolved}{name}-{created}/data"},
            "DataCatalogConfig": {
                "TableName": f"{name.replace('-', '_')}_{created}",
                "Catalog": "AwsDataCatalog",
                "Database": "sagemaker_featurestore",
            },
        }

    def describe_group(self, name: str) -> dict[str, Any]:
        """DescribeFeatureGroup, by name or ARN."""
        name = name.rsplit("/", 1)[-1]
        with self._lock:
            if name not in self._described:
                raise ResourceNotFound(
                    f"Resource Not Found: Amazon SageMaker can't find a FeatureGroup with name {name}"
                )
            creating = self._creating[name] > 0
            if creating:
                self._creating[name] -= 1
            return {**self._described[name], "FeatureGroupStatus": "Creating" if creating else "Created"}

    # records ------------------------------------------------------------------------------------

    def _usable(self, group_name: str) -> FeatureGroup:
        group = self._groups.get(group_name)
        if group is None:
            # What Feature Store answers (aws/sagemaker-python-sdk#2606): a ValidationError, not ResourceNotFound.
            raise ValidationError(
                f"Resource Not Found: Amazon SageMaker can't find a FeatureGroup with name [{group_name}]."
            )
        if self._creating.get(group_name, 0) > 0:
            raise ValidationError(f"feature group {group_name} is still Creating: it cannot take records yet")
        return group

    def put_record(self, group_name: str, record: list[dict[str, str]]) -> None:
        group = self._usable(group_name)
        values = {item["FeatureName"]: item["ValueAsString"] for item in record}
        unknown = sorted(set(values) - set(group.features))
        if unknown:
            raise ValidationError(f"features not in {group_name}: {', '.join(unknown)}")
        for name in (group.record_id, group.event_time):
            if not values.get(name):
                raise ValidationError(f"record is missing {name}")
        for name, value in values.items():
            kind = group.features[name]
            try:
                if kind == "Integral":
                    int(value)
                elif kind == "Fractional":
                    float(value)
            except ValueError as exc:
                raise ValidationError(f"{name}={value!r} is not {kind}") from exc
        check_limits(group, values)
        kind = group.features[group.event_time]
        event_time = _event_time(values[group.event_time], kind, group.event_time)
        now = datetime.now(UTC)
        with self._lock:
            current = self._online[group_name].get(values[group.record_id])
            # An older event time goes to the offline store only, as in Feature Store.
            if current is None or _event_time(current[group.event_time], kind) <= event_time:
                self._online[group_name][values[group.record_id]] = values
            self._offline[group_name].append((values, now))

    def get_record(self, group_name: str, record_id: str) -> list[dict[str, str]] | None:
        if group_name not in self._groups:
            # GetRecord's model lists ResourceNotFound (PutRecord's does not).
            raise ResourceNotFound(
                f"Resource Not Found: Amazon SageMaker can't find a FeatureGroup with name [{group_name}]."
            )
        with self._lock:
            values = self._online[group_name].get(record_id)
        return [{"FeatureName": k, "ValueAsString": v} for k, v in values.items()] if values else None

    def online_records(self, group_name: str) -> dict[str, dict[str, str]]:
        with self._lock:
            return dict(self._online[group_name])

    def offline_records(self, group_name: str) -> list[dict[str, Any]]:
        """The offline rows written since the last flush: every accepted PutRecord, duplicates included."""
        with self._lock:
            return [_offline_row(values, written) for values, written in self._offline[group_name]]

    def flush(self) -> list[Path]:
        """Write the online store as JSON and the pending offline rows as Parquet; returns the files."""
        import pyarrow as pa
        import pyarrow.dataset as ds

        written: list[Path] = []
        with self._lock:
            for name, group in self._groups.items():
                online = self.root / "online" / f"{name}.json"
                online.parent.mkdir(parents=True, exist_ok=True)
                # No indent: json.dumps with one runs Python's own encoder, not the C one (most of a 1M-row flush).
                online.write_text(json.dumps(self._online[name], sort_keys=True))
                written.append(online)
                described = self.root / "groups" / f"{name}.json"
                described.parent.mkdir(parents=True, exist_ok=True)
                described.write_text(json.dumps(self._described.get(name, {}), indent=1, default=str))
                rows, self._offline[name] = self._offline[name], []
                if not rows:
                    continue
                table = pa.table({**_typed_columns(group, rows), **_hour_partitions(group, rows)})
                data = (
                    self.root
                    / f"{self._account}/sagemaker/{self._region}/offline-store/{name}-{group.created_epoch}/data"
                )
                # One pass in Arrow's writer: a file per hour partition, as the offline store lays them out.
                # Every flush names its files with a fresh prefix, so earlier flushes are never overwritten.
                batch = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}_{secrets.token_hex(8)}"
                ds.write_dataset(
                    table,
                    data,
                    format="parquet",
                    partitioning=["year", "month", "day", "hour"],
                    partitioning_flavor="hive",
                    basename_template=f"{batch}-{{i}}.parquet",
                    existing_data_behavior="overwrite_or_ignore",
                    max_partitions=100_000,
                )
                written += sorted(data.rglob(f"{batch}-*.parquet"))
        return written

    def load(self) -> list[str]:
        """Take back the groups and online records an earlier local run flushed under `root` (for a reingest).

        The offline store's files stay where they are: later flushes add files beside them.
        """
        loaded = []
        for path in sorted((self.root / "groups").glob("*.json")):
            described = json.loads(path.read_text())
            if not described:
                continue
            name = described["FeatureGroupName"]
            created = int(datetime.fromisoformat(described["CreationTime"]).timestamp())
            group = FeatureGroup.described(described, created)
            online = self.root / "online" / f"{name}.json"
            with self._lock:
                self._groups[name] = group
                self._described[name] = {**described, "CreationTime": datetime.fromtimestamp(created, UTC)}
                self._creating[name] = 0
                self._online[name] = json.loads(online.read_text()) if online.is_file() else {}
            loaded.append(name)
        return loaded

    # botocore hooks -----------------------------------------------------------------------------

    def register(self, events: Any) -> None:
        events.register(f"before-parameter-build.{SERVICE}", self._remember_params)
        events.register(f"before-call.{SERVICE}", self._answer)
        for operation in CONTROL_OPERATIONS:
            events.register(f"before-parameter-build.{CONTROL_PLANE}.{operation}", self._remember_params)
            events.register(f"before-call.{CONTROL_PLANE}.{operation}", self._answer_control)

    @staticmethod
    def _remember_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["labelflow_params"] = dict(params)

    def _received(self, model: OperationModel, context: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = context.get("labelflow_params", {})
        if self.calls is not None:
            self.calls.record(model.service_model.service_name, model.name, params)
        return params

    def _answer(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        params = self._received(model, context)
        try:
            check_request(model, params, ValidationError)
            if model.name == "PutRecord":
                self.put_record(params["FeatureGroupName"], params["Record"])
                return _response(200, {})
            if model.name == "GetRecord":
                record = self.get_record(params["FeatureGroupName"], params["RecordIdentifierValueAsString"])
                return _response(200, {"Record": record} if record else {})
        except ServiceError as exc:
            return _error(exc)
        return _error(ValidationError(f"{model.name} is not emulated locally"))

    def _answer_control(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        params = self._received(model, context)
        try:
            check_request(model, params, ValidationException)
            if model.name == "CreateFeatureGroup":
                return _response(200, {"FeatureGroupArn": self.create_group(params)})
            return _response(200, self.describe_group(params["FeatureGroupName"]))
        except ServiceError as exc:
            return _error(exc)


def _offline_row(values: dict[str, str], written: datetime) -> dict[str, Any]:
    """A write as the offline store keeps it: its values and Feature Store's reserved columns."""
    return {**values, "api_invocation_time": written, "write_time": written, "is_deleted": False}


def _typed_columns(group: FeatureGroup, rows: list[tuple[dict[str, str], datetime]]) -> dict[str, list[Any]]:
    """The offline rows column by column, each feature's values in its type (None where a record has none)."""
    convert: dict[str, Any] = {"Integral": int, "Fractional": float}
    columns: dict[str, list[Any]] = {}
    for name, kind in group.features.items():
        to_type = convert.get(kind, str)
        values = [row.get(name) for row, _ in rows]
        columns[name] = [None if value is None else to_type(value) for value in values]
    written = [at for _, at in rows]
    return {**columns, "api_invocation_time": written, "write_time": written, "is_deleted": [False] * len(rows)}


def _hour_partitions(group: FeatureGroup, rows: list[tuple[dict[str, str], datetime]]) -> dict[str, list[str]]:
    """The year/month/day/hour partition of each row's event time (each distinct event time parsed once)."""
    kind = group.features[group.event_time]
    parts: dict[str, tuple[str, str, str, str]] = {}
    for values, _ in rows:
        stamp = values[group.event_time]
        if stamp not in parts:
            hour = _event_time(stamp, kind)
            parts[stamp] = (hour.strftime("%Y"), hour.strftime("%m"), hour.strftime("%d"), hour.strftime("%H"))
    keyed = [parts[values[group.event_time]] for values, _ in rows]
    return {part: [row[index] for row in keyed] for index, part in enumerate(("year", "month", "day", "hour"))}


def _error(exc: ServiceError) -> tuple[AWSResponse, dict[str, Any]]:
    return _response(400, {"Error": {"Code": exc.code, "Message": str(exc)}})


# Request ids from a counter: secrets.token_hex reads the OS's random source, a system call per PutRecord.
_REQUEST_IDS = itertools.count(1)
# One empty header set for every answer, never written to: an HTTPHeaders (an email Message) costs ~4 us to build.
_NO_HEADERS = HTTPHeaders()


def _response(status: int, parsed: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
    parsed.setdefault("ResponseMetadata", {"HTTPStatusCode": status, "RequestId": f"{next(_REQUEST_IDS):016x}"})
    return AWSResponse("https://featurestore-runtime.local", status, _NO_HEADERS, None), parsed
