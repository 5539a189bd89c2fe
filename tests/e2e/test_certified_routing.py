"""Target-accuracy routing end to end in local mode: audit items reach review, run.json says how the threshold
was chosen and what the audit measured."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from labelflow_local.cli import main
from labelflow_local.demo import DEMO_DATA, DEMO_MODEL, DEMO_SPEC, DEMO_TRUTH

pytestmark = pytest.mark.e2e


def _run(spec_path: Path, workdir: Path) -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
    """One local run of the demo data with simulated reviewers: exit code, run.json, review manifest."""
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(
            ["run", "--local", str(DEMO_DATA), "--spec", str(spec_path), "--model", str(DEMO_MODEL),
             "--truth", str(DEMO_TRUTH), "--json", "--workdir", str(workdir)]
        )  # fmt: skip
    run_id = json.loads(out.getvalue())["run"]["run_id"]
    run_dir = workdir / "s3" / "labelflow-demo" / "runs" / "reviews" / run_id
    manifest = json.loads((run_dir / "run.json").read_text())
    review = [json.loads(line) for line in (run_dir / "labeling/review.manifest").read_text().splitlines()]
    return code, manifest, review


def test_a_target_accuracy_run_audits_confident_records_and_the_next_run_is_certified(tmp_path: Path) -> None:
    # Given the demo spec asking for 95% accuracy instead of a threshold, with a large audit
    spec = json.loads(DEMO_SPEC.read_text()) | {"target_accuracy": 0.95, "audit_rate": 0.5}
    spec_path = tmp_path / "reviews.json"
    spec_path.write_text(json.dumps(spec))

    # When the demo data runs locally with simulated reviewers
    code, manifest, review = _run(spec_path, tmp_path)

    # Then confident audit items reached review, and every record is accounted for
    assert code == 0 and manifest["status"] == "SUCCEEDED"
    assert any(item["audit"] and item["model_confidence"] >= 0.8 for item in review)
    # Then with no audit labels yet the fixed threshold was used, and run.json says why
    threshold = manifest["threshold"]
    assert (threshold["method"], threshold["threshold"], threshold["audit_labels_total"]) == ("fixed", 0.8, 0)
    assert "not certified" in threshold["reason"]
    # Then the audit came back: this run's auto-labels measured on it, its labels kept for later runs
    audit = manifest["audit"]
    assert audit["sampled"] > 0 and audit["confident"] > 0 and audit["answered"] > 0
    assert audit["auto_labeled_answered"] > 0 and 0.9 <= audit["auto_label_accuracy"] <= 1.0
    sha = spec["model"]["sha256"]
    assert audit["labels_uri"] == f"s3://labelflow-demo/artifacts/audit/reviews/{sha}/{manifest['run_id']}.jsonl"

    # When the next file of the dataset runs in the same working directory
    code, second, _ = _run(spec_path, tmp_path)

    # Then its threshold is certified from the first run's audit labels, and its fitted state was reused
    assert code == 0 and second["run_id"] != manifest["run_id"]
    certified = second["threshold"]
    assert certified["method"] == "certified" and certified["audit_labels_total"] == audit["answered"]
    assert certified["certified_lower_bound"] >= 0.95 and certified["audit_labels"] > 0
    assert second["transform_state"]["applied"] and not second["transform_state"]["published"]
