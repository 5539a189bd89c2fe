"""The processing image: what template.yaml deploys, what processing/image.json says it ships, what local mode runs."""

from __future__ import annotations

import ast

from labelflow_local.processing_env import ensure_processing_env, image_pins, installed_versions, python_version
from labelflow_local.template import PROJECT_ROOT, load_template


def test_the_template_deploys_the_image_the_pin_file_describes() -> None:
    # Given the template's default processing image and the pinned description of the image
    default = load_template()["Parameters"]["ProcessingImageUri"]["Default"]
    pins = image_pins()
    # Then they name the same repository and tag
    repository_and_tag = default.split("/", 1)[1]
    assert repository_and_tag == f"{pins.repository}:{pins.tag}"
    # And the tag is the image's Python 3.12 variant (py3 alone is the 1.4-2 image on Python 3.10)
    assert pins.python == "3.12" and "py312" in pins.tag


def test_local_processing_runs_the_images_python_and_packages() -> None:
    # Given the environment local mode runs the processing step in
    python = ensure_processing_env()
    pins = image_pins()
    # Then its interpreter is the image's Python minor version and its packages are the image's versions
    assert python_version(python) == pins.python
    assert installed_versions(python, list(pins.packages)) == pins.packages


def test_processing_code_parses_under_the_images_python() -> None:
    # Given every processing module / Then it is valid syntax for the image's Python (feature_version check)
    major, minor = (int(part) for part in image_pins().python.split("."))
    for path in sorted((PROJECT_ROOT / "processing").rglob("*.py")):
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(major, minor))
