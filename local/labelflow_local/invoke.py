"""`labelflow invoke`: one real handler, in-process, against a local cloud seeded with the sample run.

Like `sam local invoke`, but without Docker: the function gets the environment template.yaml gives
it, and the objects the events/ files refer to exist (events/fixtures/ mirrors them bucket by bucket).
"""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from labelflow.models.spec import DatasetSpec
from labelflow.s3 import S3Location
from labelflow_local.cloud import LocalCloud, local_cloud
from labelflow_local.review import NoReviewers
from labelflow_local.template import PROJECT_ROOT

FIXTURES = PROJECT_ROOT / "events" / "fixtures"
DEMO = PROJECT_ROOT / "demo"


def seed(cloud: LocalCloud, fixtures: Path = FIXTURES) -> int:
    """Upload the demo spec and model and every fixture object; returns how many objects were written."""
    spec = (DEMO / "datasets/reviews.json").read_bytes()
    cloud.s3.put_object(Bucket=cloud.bucket, Key="config/datasets/reviews.json", Body=spec)
    model = DatasetSpec.model_validate_json(spec).model
    assert model is not None, "the demo spec names its model"
    cloud.s3.put_object(
        Bucket=cloud.bucket, Key=S3Location.parse(model.s3_uri).key, Body=(DEMO / "model/sentiment.joblib").read_bytes()
    )
    count = 2
    bucket_dir = fixtures / cloud.bucket
    for path in sorted(bucket_dir.rglob("*")):
        if path.is_file():
            cloud.s3.put_object(
                Bucket=cloud.bucket, Key=path.relative_to(bucket_dir).as_posix(), Body=path.read_bytes()
            )
            count += 1
    return count


def invoke(function: str, event: Any, log_level: str = "INFO") -> Any:
    """The handler's response; its logs go to stderr, as `sam local invoke` shows them."""
    workers = NoReviewers()
    with (
        TemporaryDirectory(prefix="labelflow-invoke-") as tmp,
        local_cloud(workers, Path(tmp), log_level=log_level) as cloud,
    ):
        seed(cloud)
        # Planning creates a dataset's feature group on its first run; a step replayed alone finds it ready.
        cloud.ensure_feature_group(DatasetSpec.model_validate_json((DEMO / "datasets/reviews.json").read_bytes()))
        return cloud.invoke(function, event)
