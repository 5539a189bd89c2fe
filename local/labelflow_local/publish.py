"""Publish the processing code content-addressed under artifacts/code/<sha256>/ and point to it."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

from labelflow.layout import PROCESSING_CODE_POINTER, code_prefix
from labelflow.models.artifacts import ProcessingCode
from labelflow.s3 import exists, put_bytes, put_json
from labelflow.spark_planning import SPARK_PY_FILES
from labelflow_local.template import PROJECT_ROOT

PROCESSING_DIR = PROJECT_ROOT / "processing"
ENTRYPOINT = "preprocess.py"


def bundle(source: Path = PROCESSING_DIR) -> tuple[str, dict[str, bytes]]:
    """The code files and their combined sha256 (paths and contents, in a stable order)."""
    files = {
        path.relative_to(source).as_posix(): path.read_bytes()
        for path in sorted(source.rglob("*.py"))
        if "__pycache__" not in path.parts
    }
    digest = hashlib.sha256()
    for name, body in files.items():
        digest.update(name.encode() + b"\0" + hashlib.sha256(body).digest())
    return digest.hexdigest(), files


def spark_py_files(files: dict[str, bytes]) -> bytes:
    """The zip spark-submit's --py-files takes: the processing package and the scorer, the same bytes each time."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in files.items():
            if name.startswith("labelflow_processing/") or name == "scoring.py":
                archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), body)
    return out.getvalue()


def publish_processing_code(s3: Any, bucket: str, source: Path = PROCESSING_DIR) -> ProcessingCode:
    sha, files = bundle(source)
    prefix = code_prefix(sha)
    for name, body in files.items():
        if not exists(s3, bucket, prefix + name):
            put_bytes(s3, bucket, prefix + name, body, "text/x-python")
    # Derived from the files the hash covers, so it needs no part in it.
    if not exists(s3, bucket, prefix + SPARK_PY_FILES):
        put_bytes(s3, bucket, prefix + SPARK_PY_FILES, spark_py_files(files), "application/zip")
    pointer = ProcessingCode(
        sha256=sha, s3_prefix=f"s3://{bucket}/{prefix}", entrypoint=ENTRYPOINT, files=sorted(files)
    )
    put_json(s3, bucket, PROCESSING_CODE_POINTER, pointer)
    return pointer
