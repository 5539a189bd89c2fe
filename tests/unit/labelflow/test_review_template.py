"""review/template.liquid.html: what reviewers see; every value from the data must be HTML-escaped."""

from __future__ import annotations

import re
from importlib import resources

from labelflow.review.tasks import CLASSIFIER_NAME

TEMPLATE = resources.files("labelflow.review").joinpath("template.liquid.html").read_text()


def test_every_liquid_output_is_escaped() -> None:
    # Given the reviewer UI template
    outputs = re.findall(r"{{(.*?)}}", TEMPLATE, flags=re.S)
    # Then every value it prints ends in the escape filter (record text is untrusted input)
    assert outputs, "the template prints nothing"
    unescaped = [o.strip() for o in outputs if not re.search(r"\|\s*escape\s*$", o.strip())]
    assert not unescaped, f"unescaped outputs: {unescaped}"
    assert "skip_autoescape" not in TEMPLATE


def test_the_classifier_name_is_the_one_consolidation_reads() -> None:
    # Given the crowd-classifier in the template and the name consolidation looks answers up by
    # Then they agree, or every worker answer would be dropped as invalid
    assert f'name="{CLASSIFIER_NAME}"' in TEMPLATE
    assert "<crowd-form>" in TEMPLATE and "crowd-html-elements.js" in TEMPLATE


def test_the_template_prints_every_row_and_the_suggestion() -> None:
    # Given the reviewer UI template / Then it loops over the task's rows and shows the model's suggestion
    assert "{% for row in task.input.rows %}" in TEMPLATE
    assert "row.column | escape" in TEMPLATE and "row.value | escape" in TEMPLATE
    assert "task.input.suggestion.label | escape" in TEMPLATE


def test_image_tasks_use_the_image_classifier_on_a_presigned_source_ref() -> None:
    # Given the reviewer UI template / Then an image task shows crowd-image-classifier under the same name, its
    # source-ref made readable by grant_read_access (the S3 URI itself is not loadable by a browser)
    assert "{% if task.input.image %}" in TEMPLATE and "<crowd-image-classifier" in TEMPLATE
    image_block = TEMPLATE.split("<crowd-image-classifier", 1)[1].split("</crowd-image-classifier>", 1)[0]
    assert f'name="{CLASSIFIER_NAME}"' in image_block
    assert "task.input.image | grant_read_access | escape" in image_block
    assert "task.input.labels | to_json | escape" in image_block
