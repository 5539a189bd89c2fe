"""Regenerate events/*.json and events/fixtures/ from a real local run on a small sample.

Each event is the first payload the real handler received during the run, so the files have exactly
the shape Step Functions, Ground Truth and EventBridge send. The run's S3 objects are mirrored under
events/fixtures/<bucket>/ so that any single step can be replayed (`labelflow invoke`, the tests).

    python events/generate.py
"""

from __future__ import annotations

import copy
import csv
import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from labelflow.models.spec import DatasetSpec
from labelflow_local.cloud import local_cloud
from labelflow_local.demo import DEMO_DATA, DEMO_MODEL, DEMO_SPEC, DEMO_TRUTH, land
from labelflow_local.review import SimulatedWorkers, read_labels

EVENTS = Path(__file__).resolve().parent
FIXTURES = EVENTS / "fixtures"
SAMPLE_ROWS = 40
SAMPLE_NAME = "sample.csv"


def sample_csv(rows: int = SAMPLE_ROWS) -> bytes:
    with DEMO_DATA.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for number, row in enumerate(reader):
            if number > rows:
                break
            writer.writerow(row)
    return out.getvalue().encode()


def main() -> None:
    spec_body = DEMO_SPEC.read_bytes()
    spec = DatasetSpec.model_validate_json(spec_body)
    recorded: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / SAMPLE_NAME
        data.write_bytes(sample_csv())
        truth = read_labels(DEMO_TRUTH)
        with local_cloud(SimulatedWorkers(truth), Path(tmp) / "fs") as cloud:
            cloud.functions.intercept(lambda function, event: recorded.setdefault(function.name, copy.deepcopy(event)))
            described = cloud.wait(land(cloud, data, spec, spec_body, DEMO_MODEL))
            if described["status"] != "SUCCEEDED":
                raise SystemExit(f"sample run ended {described['status']}")
            shutil.rmtree(FIXTURES, ignore_errors=True)
            for prefix in ("raw/", "runs/", "artifacts/code/processing.json"):
                cloud.export(prefix, FIXTURES)
            shutil.rmtree(FIXTURES / cloud.bucket / "artifacts", ignore_errors=True)

    # Replays land in a fresh bucket, where the sample has another version id: plan by key alone.
    recorded["plan_processing"]["version_id"] = None
    for name, event in sorted(recorded.items()):
        (EVENTS / f"{name}.json").write_text(json.dumps(event, indent=2) + "\n")
        print(f"events/{name}.json")


if __name__ == "__main__":
    main()
