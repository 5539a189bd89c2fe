"""An image dataset end to end in local mode: S3 image URIs are reviewed as images (crowd-image-classifier)."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from labelflow.layout import RunLayout
from labelflow.models.reviewers import reviewers_uri
from labelflow.models.spec import DatasetSpec
from labelflow.s3 import S3Location, get_json, iter_jsonl
from labelflow_local.cloud import local_cloud
from labelflow_local.demo import land, run_id_of
from labelflow_local.review import AnswersFile, SimulatedWorkers, WorkerAnswers

pytestmark = pytest.mark.e2e

BUCKET = "labelflow-demo"
COLOURS = {"p1": (200, 30, 30), "p2": (30, 30, 200), "p3": (210, 40, 20), "p4": (20, 40, 220)}
TRUTH = {"p1": "red", "p2": "blue", "p3": "red", "p4": "blue"}


def png(rgb: tuple[int, int, int], size: int = 4) -> bytes:
    """A small solid-colour PNG (signature, IHDR, IDAT, IEND)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def run_images(tmp_path: Path, reviewers: WorkerAnswers, missing: str | None = None) -> dict[str, Any]:
    """Upload the PNGs, land a CSV of their URIs with a spec whose display column is the URI; the run's results."""
    spec_body = json.dumps(
        {
            "dataset": "swatches",
            "record_id_column": "swatch_id",
            "display_columns": ["image"],
            "labels": ["red", "blue"],
        }
    ).encode()
    spec = DatasetSpec.model_validate_json(spec_body)
    data = tmp_path / "swatches.csv"
    data.write_text("swatch_id,image\n" + "".join(f"{rid},s3://{BUCKET}/images/{rid}.png\n" for rid in COLOURS))
    with local_cloud(reviewers, tmp_path / "fs") as cloud:
        for record_id, rgb in COLOURS.items():
            if record_id != missing:
                cloud.s3.put_object(Bucket=cloud.bucket, Key=f"images/{record_id}.png", Body=png(rgb))
        execution_arn = land(cloud, data, spec, spec_body, None)
        status = cloud.wait(execution_arn)["status"]
        layout = RunLayout(spec.dataset, run_id_of(execution_arn, spec.dataset))
        manifest = get_json(cloud.s3, cloud.bucket, layout.run_manifest_key)
        review_lines = list(iter_jsonl(cloud.s3, cloud.bucket, layout.review_manifest_key))
        output = f"s3://{cloud.bucket}/{layout.review_output_prefix}"
        who = S3Location.parse(reviewers_uri(output, manifest["labeling_job"]))
        task = cloud.invoke(
            "gt_pre_annotation", {"version": "2018-10-16", "labelingJobArn": "arn", "dataObject": review_lines[0]}
        )
        return {
            "status": status,
            "manifest": manifest,
            "review_lines": review_lines,
            "task": task["taskInput"],
            "reviewers": get_json(cloud.s3, who.bucket, who.key),
            "features": cloud.feature_store.online_records(cloud.feature_group_name(spec.dataset)),
        }


def test_an_image_dataset_is_reviewed_as_images_and_lands_labeled(tmp_path: Path) -> None:
    # Given four PNG swatches in the bucket, no model (so every record goes to review) and an answers file
    answers = tmp_path / "answers.csv"
    answers.write_text("record_id,label\n" + "".join(f"{rid},{label}\n" for rid, label in TRUTH.items()))
    # When the dataset's CSV of image URIs lands
    result = run_images(tmp_path, AnswersFile(answers, ["red", "blue"]))
    # Then every record was sent to review, the reviewer's task is the image, and the run succeeded
    assert result["status"] == "SUCCEEDED" and result["manifest"]["status"] == "SUCCEEDED"
    assert {line["record_id"] for line in result["review_lines"]} == set(COLOURS)
    first = result["review_lines"][0]
    assert result["task"]["image"] == f"s3://{BUCKET}/images/{first['record_id']}.png"
    # And each record is in the feature store with the reviewer's label, as a human label
    assert {rid: values["label"] for rid, values in result["features"].items()} == TRUTH
    assert {values["label_source"] for values in result["features"].values()} == {"human"}
    # And the job says who reviewed: one answers file
    assert result["reviewers"] == {
        "backend": "answers-file",
        "workers_per_record": 1,
        "workers": 1,
        "seed": None,
        "simulated_accuracy": None,
    }


def test_an_image_ground_truth_cannot_read_gets_no_label(tmp_path: Path) -> None:
    # Given simulated workers who know the truth, and one swatch missing from the bucket
    crowd = SimulatedWorkers(TRUTH, accuracy=1.0, seed=5, workers_per_task=3)
    # When the dataset lands
    result = run_images(tmp_path, crowd, missing="p3")
    # Then the three readable images are labeled by the crowd, the missing one is not, and the run is PARTIAL
    assert result["manifest"]["status"] == "PARTIAL" and result["manifest"]["counts"]["unlabeled"] == 1
    assert set(result["features"]) == {"p1", "p2", "p4"}
    assert result["reviewers"]["backend"] == "simulated" and result["reviewers"]["simulated_accuracy"] == 1.0
    assert result["reviewers"]["workers_per_record"] == 3 and result["reviewers"]["seed"] == 5
