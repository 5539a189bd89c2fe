"""transform_state.py: finding the published state at planning, publishing a fitted one once after processing."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from labelflow.errors import ManifestError
from labelflow.layout import transform_state_key
from labelflow.models.spec import DatasetSpec, transform_fingerprint
from labelflow.transform_state import published_state, settle_state
from tests.conftest import ROOT

PROCESSED = "runs/reviews/r1/processed/0123456789abcdef/"


def demo_spec() -> DatasetSpec:
    return DatasetSpec.model_validate_json((ROOT / "demo/datasets/reviews.json").read_text())


def processed(s3: Any, bucket: str, state: bytes, report: dict[str, Any] | None) -> str:
    """A finished processing output: its state.json, and stats.json (written last) with `report` as its state."""
    s3.put_object(Bucket=bucket, Key=PROCESSED + "state.json", Body=state)
    stats: dict[str, Any] = {"records_in": 1, "records_out": 1, "rejected": 0}
    if report is not None:
        stats["state"] = report
    s3.put_object(Bucket=bucket, Key=PROCESSED + "stats.json", Body=json.dumps(stats).encode())
    return f"s3://{bucket}/{PROCESSED}"


def fitted(state: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(state).hexdigest(), "fitted": True}


# ------------------------------------------------------------------------ published_state
def test_before_any_run_published_a_state_the_plan_fits_one(s3: Any, bucket: str) -> None:
    # Given a dataset with no published state for its spec
    spec = demo_spec()
    # When planning looks for it
    lineage, found = published_state(s3, bucket, spec)
    # Then there is none to apply, and the lineage says where a fit will be published
    key = transform_state_key("reviews", transform_fingerprint(spec))
    assert found is None
    assert lineage.uri == f"s3://{bucket}/{key}" and lineage.fingerprint == transform_fingerprint(spec)
    assert lineage.applied is False


def test_a_published_state_is_applied_at_its_exact_version(s3: Any, bucket: str) -> None:
    # Given a state published for the spec's fingerprint
    spec = demo_spec()
    key = transform_state_key("reviews", transform_fingerprint(spec))
    put = s3.put_object(Bucket=bucket, Key=key, Body=b'{"format": "labelflow.transform-state"}')
    # When planning looks for it / Then it is applied, at the version and etag found
    lineage, found = published_state(s3, bucket, spec)
    assert found is not None and found.location.key == key
    assert found.version_id == put["VersionId"] == lineage.version_id and found.etag == put["ETag"].strip('"')
    assert lineage.applied is True


def test_a_new_fit_version_looks_elsewhere(s3: Any, bucket: str) -> None:
    # Given a published state, then a spec that asks for a refit
    spec = demo_spec()
    s3.put_object(Bucket=bucket, Key=transform_state_key("reviews", transform_fingerprint(spec)), Body=b"{}")
    refit = spec.model_copy(update={"fit_version": 2})
    # When planning looks for the refit spec's state / Then there is none: the next run fits anew
    assert published_state(s3, bucket, refit)[1] is None


# ------------------------------------------------------------------------ settle_state
def test_a_fitted_state_is_published_for_later_runs(s3: Any, bucket: str) -> None:
    # Given a run that fitted its state, the first for this fingerprint
    planned, _ = published_state(s3, bucket, demo_spec())
    uri = processed(s3, bucket, b'{"fit": 1}', fitted(b'{"fit": 1}'))
    # When routing settles it
    settled = settle_state(s3, planned, uri)
    # Then the state is published where planning looks, and the run says it fitted and published it
    key = planned.uri.removeprefix(f"s3://{bucket}/")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b'{"fit": 1}'
    assert settled.applied is False and settled.published is True
    assert settled.sha256 == hashlib.sha256(b'{"fit": 1}').hexdigest()


def test_the_first_run_to_publish_wins_and_a_later_fit_says_it_lost(s3: Any, bucket: str) -> None:
    # Given another run's fit published while this run was fitting its own
    planned, _ = published_state(s3, bucket, demo_spec())
    key = planned.uri.removeprefix(f"s3://{bucket}/")
    s3.put_object(Bucket=bucket, Key=key, Body=b'{"fit": "first"}')
    uri = processed(s3, bucket, b'{"fit": "second"}', fitted(b'{"fit": "second"}'))
    # When routing settles this run's state
    settled = settle_state(s3, planned, uri)
    # Then the published state is untouched, and this run records that its fit was not published
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b'{"fit": "first"}'
    assert settled.published is False and settled.applied is False


def test_a_retried_routing_step_finds_its_own_state_published(s3: Any, bucket: str) -> None:
    # Given a routing step that published its state, then failed and is retried
    planned, _ = published_state(s3, bucket, demo_spec())
    uri = processed(s3, bucket, b'{"fit": 1}', fitted(b'{"fit": 1}'))
    settle_state(s3, planned, uri)
    # When it settles the same state again / Then the published state is still its own
    assert settle_state(s3, planned, uri).published is True


def test_an_applied_state_is_recorded_and_not_published_again(s3: Any, bucket: str) -> None:
    # Given a run that applied the published state
    spec = demo_spec()
    s3.put_object(Bucket=bucket, Key=transform_state_key("reviews", transform_fingerprint(spec)), Body=b"{}")
    planned, _ = published_state(s3, bucket, spec)
    uri = processed(s3, bucket, b"{}", {"sha256": hashlib.sha256(b"{}").hexdigest(), "fitted": False})
    # When routing settles it / Then the lineage names the applied state's sha256, and nothing was published
    settled = settle_state(s3, planned, uri)
    assert settled.applied is True and settled.published is None
    assert settled.sha256 == hashlib.sha256(b"{}").hexdigest() and settled.version_id == planned.version_id


def test_processing_that_reports_no_state_leaves_the_plan_as_it_was(s3: Any, bucket: str) -> None:
    # Given a processing output whose stats.json has no state section
    planned, _ = published_state(s3, bucket, demo_spec())
    # When routing settles it / Then the planned lineage stands, and nothing is published
    assert settle_state(s3, planned, processed(s3, bucket, b"{}", None)) == planned
    assert s3.list_objects_v2(Bucket=bucket, Prefix="artifacts/state/")["KeyCount"] == 0


@pytest.mark.parametrize(
    ("report", "message"),
    [
        ({"sha256": "0" * 64, "fitted": True}, "does not have the sha256"),
        ({"sha256": "not a hash", "fitted": True}, "malformed state"),
    ],
)
def test_a_state_that_does_not_match_its_report_is_never_published(
    s3: Any, bucket: str, report: dict[str, Any], message: str
) -> None:
    # Given a stats.json whose state section does not describe the state.json beside it
    planned, _ = published_state(s3, bucket, demo_spec())
    uri = processed(s3, bucket, b'{"fit": 1}', report)
    # When routing settles it / Then it stops with a ManifestError, and nothing is published
    with pytest.raises(ManifestError, match=message):
        settle_state(s3, planned, uri)
    assert s3.list_objects_v2(Bucket=bucket, Prefix="artifacts/state/")["KeyCount"] == 0
