"""A local cloud seeded with the sample run that events/*.json refer to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labelflow_local.cloud import LocalCloud, local_cloud
from labelflow_local.invoke import seed
from labelflow_local.review import NoReviewers


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    with local_cloud(NoReviewers(), tmp_path / "feature-store") as local:
        seed(local)
        yield local
