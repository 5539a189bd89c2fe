"""A sharded input (processing/labelflow_processing/passes.py): three instances, each with some parts, give the
records, rejections and state one instance gives the whole file."""

from __future__ import annotations

import csv
import io
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

    def __init__(self, python: str, root: Path, spec: dict[str, Any], reading: list[str] | None = None) -> None:
        self.python, self.root = python, root
        self.spec_file = root / "spec.json"
        self.spec_file.write_text(json.dumps(spec), encoding="utf-8")
        self.reading = reading or read_as("data.jsonl")
        self.failures: list[str] = []

    def run(self, name: str, inputs: dict[str, dict[str, bytes]], *extra: str, state: bytes | None = None) -> Path:
        """Each host's files (part name -> bytes) in its own input folder; every host's outputs in one folder. A
        host that fails leaves its message in `failures`."""
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
            argv += ["--default-event-time", "2026-01-01T00:00:00Z", *extra, *self.reading]
            if state is not None:
                (base / "state").mkdir(exist_ok=True)
                (base / "state" / "state.json").write_bytes(state)
                argv += ["--state-dir", str(base / "state")]
            done = subprocess.run(
                [self.python, str(PROCESSING / "preprocess.py"), *argv], capture_output=True, text=True
            )
            if done.returncode:
                self.failures.append((base / "message").read_text(encoding="utf-8").strip())
                continue
            # EndOfJob: every instance's outputs go to the same prefix.
            shutil.copytree(base / "output", shared, dirs_exist_ok=True)
        return shared


def cut(data: bytes, parts: int, name: str = "data.jsonl", header: bytes = b"") -> dict[str, bytes]:
    """The parts planning freezes: cut at line ends, every part after the first led by `header` (CSV's)."""
    spans = record_spans(lambda start, end: data[start:end], len(data), parts)
    return {
        f"{index:03d}/{name}": (header if index else b"") + data[start:end] for index, (start, end) in enumerate(spans)
    }


def dealt(parts: dict[str, bytes], hosts: list[str]) -> dict[str, dict[str, bytes]]:
    """Round-robin in key order, as local mode deals ShardedByS3Key objects."""
    names = sorted(parts)
    return {host: {name: parts[name] for name in names[index :: len(hosts)]} for index, host in enumerate(hosts)}


def sharded(
    instances: Instances, data: bytes, state: bytes | None = None, parts: dict[str, bytes] | None = None
) -> Path:
    shards = dealt(parts or cut(data, 3), HOSTS)
    scan = instances.run("scan", shards, "--shard-pass", "scan")
    stats = instances.run("stats", shards, "--shard-pass", "stats", "--scan-dir", str(scan), state=state)
    return instances.run("out", shards, "--scan-dir", str(scan), "--stats-dir", str(stats), state=state)


def single(instances: Instances, data: bytes, state: bytes | None = None, name: str = "data.jsonl") -> Path:
    return instances.run("single", {"algo-1": {name: data}}, state=state)


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


def csv_data(count: int) -> bytes:
    """rows() as CSV, text holding commas and quotes, with a row of too many fields, one of too few and blank
    lines (which the reader does not number) spread over what become different parts."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["id", "ts", "text", "num", "cat"])
    for i, row in enumerate(rows(count)):
        values = [row["id"], row["ts"], f'{row["text"]}, said "{i}"', row["num"], row["cat"]]
        writer.writerow(["" if value is None else value for value in values])
        if i % 700 == 350:
            out.write("\r\n" if i % 1400 == 350 else f"extra{i},x,y,z,w,v\r\nshort{i},x\r\n")
    return out.getvalue().encode()


def csv_parts(data: bytes) -> dict[str, bytes]:
    header = data[: data.index(b"\n") + 1]
    return cut(data, 3, "data.csv", header)


@pytest.fixture
def csv_instances(image_python: str, tmp_path: Path) -> Instances:
    return Instances(image_python, tmp_path, spec(), [*read_as("data.csv"), "--no-newlines-in-values"])


def test_three_instances_read_csv_parts_as_one_reads_the_file(csv_instances: Instances) -> None:
    # Given a CSV file with reader rejections, blank lines and repeated ids, cut into parts that each repeat the header
    data = csv_data(3000)
    parts = csv_parts(data)
    assert len(parts) == 3
    # When one instance processes the file, and three process its parts in the three passes
    one = single(csv_instances, data, name="data.csv")
    three = sharded(csv_instances, data, parts=parts)
    # Then the records are the same records in the same order
    assert csv_instances.failures == []
    assert part_lines(three, "records.jsonl") == lines(one / "records.jsonl")
    # And the same rows are rejected for the same reasons at the same lines, past every part's header and blank line
    rejected = sorted(part_lines(three, "rejected.jsonl"), key=by_line)
    assert rejected == sorted(lines(one / "rejected.jsonl"), key=by_line)
    assert {row["record_id"] for row in rejected if "fields" in row["reason"]} >= {"extra2450", "short2450"}
    assert any(row["reason"].startswith("duplicate") for row in rejected)
    assert close(json.loads((three / "state.json").read_text()), json.loads((one / "state.json").read_text()))


def test_a_quoted_line_break_the_spec_rules_out_fails_at_its_line_of_the_whole_file(csv_instances: Instances) -> None:
    # Given a CSV file whose spec says values hold no line breaks, one of which does, in what becomes the third part
    data = csv_data(3000)
    at = data.index(b"r2500,")
    data = data[:at] + data[at:].replace(b'said ""2500""', b'said ""2500""\nand more', 1)
    line = data[:at].count(b"\n") + 1 - data[:at].count(b"\r\n\r\n")
    expected = (
        "the spec says CSV values hold no line breaks (input.newlines_in_values: false) but line "
        f"{line} has one inside quotes; remove the setting"
    )
    # When one instance processes it, then three process its parts
    single(csv_instances, data, name="data.csv")
    one = csv_instances.failures
    csv_instances.failures = []
    sharded(csv_instances, data, parts=csv_parts(data))
    # Then each fails with the same reason, naming the record's line of the whole file
    assert one == [expected]
    assert set(csv_instances.failures) == {expected}


def test_a_quoted_line_break_at_a_cut_fails_at_the_same_line(csv_instances: Instances) -> None:
    # Given a CSV file with a quoted line break, cut into two parts right after it (a cut lands on any line end)
    data = csv_data(600)
    data = data.replace(b'said ""400""', b'said ""400""\nand more', 1)
    cut_at = data.index(b"\nand more") + 1
    header = data[: data.index(b"\n") + 1]
    parts = {"000/data.csv": data[:cut_at], "001/data.csv": header + data[cut_at:]}
    # When one instance reads the file and two read the parts
    single(csv_instances, data, name="data.csv")
    one = csv_instances.failures
    csv_instances.failures = []
    sharded(csv_instances, data, parts=parts)
    # Then both fail naming the same line: the first part's open quote is the break, the second part is not read
    at = data.index(b"r400,")
    line = data[:at].count(b"\n") + 1 - data[:at].count(b"\r\n\r\n")
    assert len(one) == 1 and f"line {line} has one inside quotes" in one[0]
    assert set(csv_instances.failures) == set(one)
