"""The live Label Studio tier: one local server for the session, in a data directory of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labelflow_local.labelstudio import LocalLabelStudio, Started


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "labelstudio: starts a real Label Studio on 127.0.0.1 (installs it once)")


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    data_dir: Path = tmp_path_factory.mktemp("label-studio")
    with LocalLabelStudio(data_dir) as started:
        yield started
