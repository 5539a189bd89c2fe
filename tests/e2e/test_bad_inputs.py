"""The bad-input corpus (tests/corpus/make_corpus.py) through local mode, every kind landed in one local cloud.

Each file ends processed, rejected per row, or failed with a reason (quarantined when refused before processing);
the counts add up to the records read, each rejected row has its reason line, and the raw object is untouched.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labelflow.layout import RunLayout
from labelflow.models.spec import DatasetSpec
from labelflow.s3 import S3Location, get_json
from labelflow_local.cloud import LocalCloud, local_cloud
from labelflow_local.demo import DEMO_MODEL, DEMO_TRUTH, land, run_id_of
from labelflow_local.review import SimulatedWorkers, read_labels
from tests.corpus.make_corpus import Kind, kinds, write

pytestmark = pytest.mark.e2e

# Kinds that fail today, with the gap that makes them fail; flip each when its fix lands (strict: an unexpected
# pass fails the suite, so the list cannot go stale).
# Kinds that fail today for a known gap, named with it (strict: a fixed gap turns the suite red until removed).
GAPS: dict[str, str] = {}


class EveryRecord(Mapping[str, str]):
    """The demo's true labels, and a label for any other record id, so reviewers answer every record."""

    def __init__(self, truth: dict[str, str]) -> None:
        self._truth = truth

    def __getitem__(self, record_id: str) -> str:
        return self._truth.get(record_id, "positive")

    def __iter__(self) -> Iterator[str]:
        return iter(self._truth)

    def __len__(self) -> int:
        return len(self._truth)


@dataclass(frozen=True)
class Outcome:
    """What one kind's run left behind."""

    kind: Kind
    execution_status: str
    manifest: dict[str, Any]
    rejected_lines: list[dict[str, Any]]
    raw: bytes
    raw_versions: int
    quarantined: dict[str, bytes]
    stored: int

    def today(self) -> str:
        """One line: the run's status, counts and reason."""
        counts = self.manifest["counts"]
        error = self.manifest["error"]
        line = f"{self.manifest['status']} in={counts['records_in']} rejected={counts['rejected']}"
        line += f" ingested={counts['ingested']}"
        if error:
            line += f": {error['cause'].strip().splitlines()[0][:100]}"
        return line


def _outcome(cloud: LocalCloud, kind: Kind, execution_arn: str) -> Outcome:
    described = cloud.wait(execution_arn)
    manifest = get_json(
        cloud.s3, cloud.bucket, RunLayout(kind.name, run_id_of(execution_arn, kind.name)).run_manifest_key
    )
    rejected_lines: list[dict[str, Any]] = []
    processed = manifest["artifacts"]["processed_uri"]
    if processed and manifest["counts"]["rejected"] is not None:
        location = S3Location.parse(processed + "rejected.jsonl")
        body = cloud.s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
        rejected_lines = [json.loads(line) for line in body.decode("utf-8").splitlines()]
    key = f"raw/{kind.name}/{kind.filename}"
    versions = cloud.s3.list_object_versions(Bucket=cloud.bucket, Prefix=key)["Versions"]
    quarantined = {
        item["Key"]: cloud.s3.get_object(Bucket=cloud.bucket, Key=item["Key"])["Body"].read()
        for item in cloud.s3.list_objects_v2(Bucket=cloud.bucket, Prefix=f"quarantine/{kind.name}/").get("Contents", [])
    }
    return Outcome(
        kind=kind,
        execution_status=described["status"],
        manifest=manifest,
        rejected_lines=rejected_lines,
        raw=cloud.s3.get_object(Bucket=cloud.bucket, Key=key)["Body"].read(),
        raw_versions=sum(1 for version in versions if version["Key"] == key),
        quarantined=quarantined,
        stored=len(cloud.feature_store.online_records(cloud.feature_group_name(kind.name))),
    )


def run_corpus(root: Path) -> dict[str, Outcome]:
    """Land every kind at once in one local cloud, each as its own dataset (its own first run); their outcomes."""
    corpus = kinds()
    files = write(root / "corpus")
    workers = SimulatedWorkers(EveryRecord(read_labels(DEMO_TRUTH)))
    with local_cloud(workers, root / "feature-store") as cloud:
        arns = {}
        for kind, path in zip(corpus, files, strict=True):
            spec_body = kind.spec()
            arns[kind.name] = land(cloud, path, DatasetSpec.model_validate_json(spec_body), spec_body, DEMO_MODEL)
        return {kind.name: _outcome(cloud, kind, arns[kind.name]) for kind in corpus}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    # Given the whole corpus landed at once, and every run executed
    return run_corpus(tmp_path_factory.mktemp("bad-inputs"))


def _cases() -> list[Any]:
    return [
        pytest.param(kind.name, marks=pytest.mark.xfail(reason=GAPS[kind.name], strict=True))
        if kind.name in GAPS
        else kind.name
        for kind in kinds()
    ]


@pytest.mark.parametrize("name", _cases())
def test_each_kind_ends_processed_rejected_per_row_or_failed_with_a_reason(outcomes, name: str) -> None:
    outcome = outcomes[name]
    expect, manifest = outcome.kind.expect, outcome.manifest
    counts = manifest["counts"]
    # Then the raw object is exactly what landed, in its only version
    assert outcome.raw == outcome.kind.body and outcome.raw_versions == 1
    if expect.outcome == "failed":
        # And a failed file says why, stores nothing, and is copied to quarantine/ when refused before processing
        assert manifest["status"] == "FAILED" and outcome.execution_status == "FAILED", outcome.today()
        assert expect.reason in manifest["error"]["cause"], outcome.today()
        assert outcome.stored == 0
        if expect.quarantined:
            prefix = f"quarantine/{name}/{manifest['run_id']}/"
            assert outcome.quarantined[prefix + outcome.kind.filename] == outcome.kind.body
            assert expect.reason in json.loads(outcome.quarantined[prefix + "error.json"])["cause"]
        return
    # And every record read is processed or rejected with a reason, the counts adding up
    assert manifest["error"] is None, outcome.today()
    assert (counts["records_in"], counts["rejected"]) == (expect.records, expect.rejected), outcome.today()
    not_ingested = counts["ingest_failed"] + counts["unlabeled"]
    assert counts["records_in"] == counts["ingested"] + counts["rejected"] + not_ingested
    assert len(outcome.rejected_lines) == counts["rejected"]
    assert all(line["reason"] and line["line"] > 1 for line in outcome.rejected_lines)
    assert outcome.stored == counts["ingested"] == expect.records - expect.rejected
    if expect.outcome == "processed":
        assert manifest["status"] == "SUCCEEDED" and outcome.execution_status == "SUCCEEDED", outcome.today()
