"""docs/screenshots.py against a live Label Studio: the labeling page of the first demo record sent to review."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from docs import screenshots
from labelflow.models.spec import DatasetSpec
from labelflow_local.labelstudio import Started

pytestmark = pytest.mark.labelstudio

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk, which follows the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_labeling_page_screenshot(label_studio: Started, tmp_path: Path) -> None:
    # Given the demo spec and the first demo record routing sends to review
    spec = DatasetSpec.model_validate_json(screenshots.SPEC.read_text())
    line = screenshots.review_line(spec)

    # When it is imported and its labeling page captured in headless Chromium
    page, texts = screenshots.labeling_page(label_studio, spec, line)
    out = tmp_path / "labeling.png"
    screenshots.screenshot(label_studio, spec, page, texts, out)

    # Then the page showed the record's columns and values and the model's suggestion (the capture waits for each)
    assert line["model_confidence"] < spec.confidence_threshold
    assert texts[:2] == spec.display_columns
    assert texts[-1].startswith(f"The model suggests {line['model_label']}")
    # And the PNG is the viewport's size
    assert png_size(out) == (screenshots.WIDTH, screenshots.HEIGHT)
