"""A sharded input (processing/labelflow_processing/passes.py): three instances, each with some parts, give the
records, rejections and state one instance gives the whole file."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from labelflow.planning import record_spans  # conftest puts the layer on sys.path if needed
from tests.unit.processing.conftest import PROCESSING, make_spec, read_as

HOSTS = ["algo-1", "algo-2", "algo-3"]


def rows(count: int) -> list[dict[str, Any]]:
    """Rows with missing values, bad values and ids repeated far apart (so across parts), in a fixed order."""
    out: list[dict[str, Any]] = []
    for i in range(count):
        row: dict[str, Any] = {"id": f"r{i % (count - 7)}", "ts": "2026-01-01T00:00:00Z", "text": f"t{i}"}
        row["num"] = None if i % 11 == 0 else ("abc" if i % 97 == 5 else i * 1.5 % 37)
        row["cat"] = None if i % 13 == 0 else ["a", "b", "c"][i % 3]
        out.append(row)
    return out


def spec() -> dict[str, Any]:
    return make_spec(
        [
            {"name": "num", "type": "numeric", "impute": "median", "scaling": "standard"},
            {"name": "cat", "type": "categorical", "impute": "most_frequent"},
        ]
    )


class Instances:
    """Runs preprocess.py as the instances of a job would: their own input folders, one shared output folder."""

    def __init__(self, python: str, root: Path, spec: dict[str, Any]) -> None:
        self.python, self.root = python, root
        self.spec_file = root / "spec.json"
        self.spec_file.write_text(json.dumps(spec), encoding="utf-8")

    def run(self, name: str, inputs: dict[str, dict[str, bytes]], *extra: str, state: bytes | None = None) -> Path:
        """Each host's files (part name -> bytes) in its own input folder; every host's outputs in one folder."""
        shared = self.root / name
        for host, files in inputs.items():
            base = self.root / f"{name}-{host}"
            for part, body in files.items():
                (base / "input" / part).parent.mkdir(parents=True, exist_ok=True)
                (base / "input" / part).write_bytes(body)
            (base / "input").mkdir(parents=True, exist_ok=True)
            config = base / "resourceconfig.json"
            config.write_text(json.dumps({"current_host": host, "hosts": list(inputs)}))
            argv = ["--input-dir", str(base / "input"), "--spec", str(self.spec_file), "--output-dir"]
            argv += [str(base / "output"), "--message-file", str(base / "message"), "--resource-config", str(config)]
            argv += ["--default-event-time", "2026-01-01T00:00:00Z", *extra, *read_as("data.jsonl")]
            if state is not None:
                (base / "state").mkdir(exist_ok=True)
                (base / "state" / "state.json").write_bytes(state)
                argv += ["--state-dir", str(base / "state")]
            done = subprocess.run(
                [self.python, str(PROCESSING / "preprocess.py"), *argv], capture_output=True, text=True
            )
            assert done.returncode == 0, done.stderr
            # EndOfJob: every instance's outputs go to the same prefix.
            shutil.copytree(base / "output", shared, dirs_exist_ok=True)
        return shared


def cut(data: bytes, parts: int) -> dict[str, bytes]:
    spans = record_spans(lambda start, end: data[start:end], len(data), parts)
    return {f"{index:03d}/data.jsonl": data[start:end] for index, (start, end) in enumerate(spans)}


def dealt(parts: dict[str, bytes], hosts: list[str]) -> dict[str, dict[str, bytes]]:
    """Round-robin in key order, as local mode deals ShardedByS3Key objects."""
    names = sorted(parts)
    return {host: {name: parts[name] for name in names[index :: len(hosts)]} for index, host in enumerate(hosts)}


def sharded(instances: Instances, data: bytes, state: bytes | None = None) -> Path:
    shards = dealt(cut(data, 3), HOSTS)
    scan = instances.run("scan", shards, "--shard-pass", "scan")
    stats = instances.run("stats", shards, "--shard-pass", "stats", "--scan-dir", str(scan), state=state)
    return instances.run("out", shards, "--scan-dir", str(scan), "--stats-dir", str(stats), state=state)


def single(instances: Instances, data: bytes, state: bytes | None = None) -> Path:
    return instances.run("single", {"algo-1": {"data.jsonl": data}}, state=state)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def part_lines(out: Path, name: str) -> list[dict[str, Any]]:
    return [row for path in sorted((out / "parts").rglob(name)) for row in lines(path)]


def by_line(row: dict[str, Any]) -> tuple[int, str]:
    return row["line"], row["reason"]


def close(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-12 relative: merging shards groups the same sums differently."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12)
    return bool(a == b)


@pytest.fixture
def instances(image_python: str, tmp_path: Path) -> Instances:
    return Instances(image_python, tmp_path, spec())


def test_three_instances_fit_and_write_what_one_does(instances: Instances) -> None:
    # Given JSON Lines rows with rejections and ids repeated across what become different parts
    data = b"".join(json.dumps(row).encode() + b"\n" for row in rows(3000))
    # When one instance processes the file, and three process its three parts in the three passes
    one = single(instances, data)
    three = sharded(instances, data)
    # Then the records, in part order, are the same records in the same order
    assert part_lines(three, "records.jsonl") == lines(one / "records.jsonl")
    # And the same rows are rejected for the same reasons, at the same lines of the whole file
    rejected = sorted(part_lines(three, "rejected.jsonl"), key=by_line)
    assert rejected == sorted(lines(one / "rejected.jsonl"), key=by_line)
    assert any(row["reason"].startswith("duplicate") for row in rejected)
    # And the fitted state is the same, to rounding of the merged moments
    assert close(json.loads((three / "state.json").read_text()), json.loads((one / "state.json").read_text()))
    # And the parts' counts add up to the file's
    reports = [json.loads(path.read_text()) for path in sorted((three / "parts").rglob("stats.json"))]
    whole = json.loads((one / "stats.json").read_text())
    for field in ("records_in", "records_out", "rejected"):
        assert sum(report[field] for report in reports) == whole[field]
    assert all(close(report["drift"], whole["drift"]) for report in reports)


def test_three_instances_apply_a_given_state_as_one_does(instances: Instances) -> None:
    # Given a state fitted on other data, and a file with a repeated id
    state = (single(instances, b"".join(json.dumps(r).encode() + b"\n" for r in rows(500))) / "state.json").read_bytes()
    data = b"".join(json.dumps(row).encode() + b"\n" for row in rows(1200)[300:])
    # When one instance, then three, apply it
    one = single(instances, data, state)
    three = sharded(instances, data, state)
    # Then the records are the same and the state is the given one, untouched
    assert part_lines(three, "records.jsonl") == lines(one / "records.jsonl")
    assert (three / "state.json").read_bytes() == state
    reports = [json.loads(path.read_text()) for path in sorted((three / "parts").rglob("stats.json"))]
    assert {report["state"]["fitted"] for report in reports} == {False}


def test_an_instance_dealt_no_part_writes_nothing_but_the_others_finish(instances: Instances) -> None:
    # Given a file small enough to be one part, and three instances
    data = b"".join(json.dumps(row).encode() + b"\n" for row in rows(100))
    shards = dealt({"000/data.jsonl": data}, HOSTS)
    # When the passes run
    scan = instances.run("scan", shards, "--shard-pass", "scan")
    stats = instances.run("stats", shards, "--shard-pass", "stats", "--scan-dir", str(scan))
    out = instances.run("out", shards, "--scan-dir", str(scan), "--stats-dir", str(stats))
    # Then the one part's records are the whole file's
    assert part_lines(out, "records.jsonl") == lines(single(instances, data) / "records.jsonl")
