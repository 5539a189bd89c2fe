"""Publishing the processing code: the files under their hash, and the zip the Spark job imports from."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import boto3

from labelflow.layout import code_prefix
from labelflow.spark_planning import SPARK_PY_FILES
from labelflow_local.publish import bundle, publish_processing_code, spark_py_files


def test_the_spark_zip_holds_the_package_and_the_scorer_the_same_each_time(moto: None) -> None:
    # Given a bucket
    s3: Any = boto3.client("s3")
    s3.create_bucket(Bucket="code")
    # When the processing code is published
    pointer = publish_processing_code(s3, "code")
    # Then the zip beside the files holds labelflow_processing/ and scoring.py, not the entry points
    body = s3.get_object(Bucket="code", Key=code_prefix(pointer.sha256) + SPARK_PY_FILES)["Body"].read()
    names = zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert "scoring.py" in names and "labelflow_processing/transforms.py" in names
    assert "preprocess.py" not in names and "spark_job.py" not in names
    # And it is byte for byte what the same files give again
    assert body == spark_py_files(bundle()[1])
