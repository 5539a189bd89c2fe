"""`labelflow reingest RUN_ID`: re-send a local run's failed records through the state machine's reingest path.

The execution input is the one a deployed stack takes by hand:
`{"reingest": {"bucket": B, "dataset": D, "run_id": R}}` (state_machines/labeling.asl.json, ReingestOrRun).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from labelflow.layout import RunLayout, bounded_name
from labelflow.models.run import RunManifest
from labelflow.models.state import ReingestInput
from labelflow.s3 import get_json
from labelflow_local.cloud import LocalCloud, local_cloud
from labelflow_local.review import NoReviewers


@dataclass
class ReingestReport:
    manifest: RunManifest
    execution_status: str
    run_json: Path


def reingest_input(bucket: str, dataset: str, run_id: str) -> dict[str, dict[str, str]]:
    """The manual execution input of a reingest."""
    return {"reingest": ReingestInput(bucket=bucket, dataset=dataset, run_id=run_id).model_dump()}


def start_reingest(cloud: LocalCloud, dataset: str, run_id: str) -> str:
    """Start the reingest execution of a run whose files are in the cloud's bucket; returns its ARN."""
    layout = RunLayout(dataset, run_id)
    manifest = RunManifest.model_validate(get_json(cloud.s3, cloud.bucket, layout.run_manifest_key))
    name = bounded_name(dataset, f"{run_id}-reingest-{len(manifest.reingests) + 1}", 80)
    started = cloud.sfn.start_execution(
        stateMachineArn=cloud.state_machine_arn,
        name=name,
        input=json.dumps(reingest_input(cloud.bucket, dataset, run_id)),
    )
    return str(started["executionArn"])


def find_run(workdir: Path, bucket: str, run_id: str, dataset: str | None) -> Path:
    """The exported folder of a local run: `<workdir>/s3/<bucket>/runs/<dataset>/<run_id>/`."""
    runs = workdir / "s3" / bucket / "runs"
    found = sorted(runs.glob(f"{dataset or '*'}/{run_id}/run.json"))
    if not found:
        raise ValueError(f"no local run {run_id} under {runs}: run it with `labelflow run --local` first")
    if len(found) > 1:
        raise ValueError(f"run {run_id} is in several datasets ({', '.join(p.parent.parent.name for p in found)})")
    return found[0].parent


def reingest_local(workdir: Path, run_id: str, dataset: str | None = None) -> ReingestReport:
    """Load the local feature store and the run's files, run the reingest path, save both back."""
    with local_cloud(NoReviewers(), workdir / "feature-store") as cloud:
        folder = find_run(workdir, cloud.bucket, run_id, dataset)
        dataset = folder.parent.name
        cloud.feature_store.load()
        layout = RunLayout(dataset, run_id)
        cloud.restore(workdir / "s3", layout.prefix)
        execution_arn = start_reingest(cloud, dataset, run_id)
        described = cloud.wait(execution_arn)
        manifest = RunManifest.model_validate(get_json(cloud.s3, cloud.bucket, layout.run_manifest_key))
        exported = cloud.export(layout.prefix, workdir / "s3")
        cloud.feature_store.flush()
    return ReingestReport(manifest=manifest, execution_status=str(described["status"]), run_json=exported / "run.json")
