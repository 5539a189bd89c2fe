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
from labelflow.review.labelstudio import WEBHOOK_SECRET_HEADER
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


def label_studio_events(merge: dict[str, Any]) -> dict[str, Any]:
    """The Label Studio functions' events, for the sample run's review job (the demo reviews in Ground Truth).

    The start payload is what ReviewInLabelStudio sends for the HumanLabeling Map's first item; the poller's is
    EventBridge's scheduled event (EventBridge user guide, "Creating a rule that runs on a schedule"); the webhook's
    a Function URL request, payload format 2.0 (Lambda developer guide, "Invoking Lambda function URLs"), as
    Label Studio posts it with the project's id and the shared-secret header labelflow registered.
    """
    region, account = "us-east-1", "123456789012"
    project_id = 1
    start = {
        "task_token": "AQCEAAAAKgAAAAMAAAAA-a-task-token-Step-Functions-makes",
        "bucket": merge["bucket"],
        "dataset": merge["dataset"],
        "run_id": merge["run_id"],
        "spec_uri": merge["plan"]["spec_uri"],
        "job": merge["routing"]["labeling_jobs"][0],
    }
    schedule = {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": merge["received_at"],
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account}:rule/labelflow-LabelStudioPoll"],
        "detail": {},
    }
    body = {"action": "ANNOTATION_CREATED", "project": {"id": project_id}, "annotation": {"id": 1, "task": 1}}
    webhook = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            WEBHOOK_SECRET_HEADER.lower(): "the webhook_secret of the Label Studio secret",
        },
        "requestContext": {
            "accountId": "anonymous",
            "domainName": "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws",
            "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7"},
            "requestId": "c1c6a8d4-7f3f-4f4c-9d0e-3b2f0e1d8a11",
            "routeKey": "$default",
            "stage": "$default",
        },
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }
    return {
        "start_label_studio_review": start,
        "poll_label_studio_reviews": schedule,
        "label_studio_webhook": webhook,
    }


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
    recorded |= label_studio_events(recorded["merge_labels"])
    for name, event in sorted(recorded.items()):
        (EVENTS / f"{name}.json").write_text(json.dumps(event, indent=2) + "\n")
        print(f"events/{name}.json")


if __name__ == "__main__":
    main()
