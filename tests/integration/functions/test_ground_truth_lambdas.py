import json

from labelflow.s3 import S3Location
from tests.conftest import load_event


def test_pre_annotation_builds_the_task_input_from_the_manifest_line(cloud) -> None:
    # Given Ground Truth's pre-annotation event for one manifest line
    event = load_event("gt_pre_annotation.json")
    # When the Lambda runs
    response = cloud.invoke("gt_pre_annotation", event)
    # Then the task shows the text and the choices, and hides the model's guess
    line = event["dataObject"]
    assert response["taskInput"]["text"] == line["source"]
    assert response["taskInput"]["labels"] == line["labels"]
    assert "model_label" not in response["taskInput"]


def test_post_annotation_returns_one_consolidated_label_per_object(cloud) -> None:
    # Given Ground Truth's consolidation event and the workers' answers it points to
    event = load_event("gt_post_annotation.json")
    location = S3Location.parse(event["payload"]["s3Uri"])
    batch = json.loads(cloud.s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read())
    # When the Lambda runs
    response = cloud.invoke("gt_post_annotation", event)
    # Then each object gets a label from the categories, with a confidence, in Ground Truth's shape
    assert [r["datasetObjectId"] for r in response] == [item["datasetObjectId"] for item in batch]
    for entry in response:
        metadata = entry["consolidatedAnnotation"]["content"]["label-metadata"]
        assert metadata["class-name"] in event["labelCategories"]
        assert 0.0 < metadata["confidence"] <= 1.0 and metadata["human-annotated"] == "yes"
        assert entry["consolidatedAnnotation"]["content"]["label"]["label"] == metadata["class-name"]
