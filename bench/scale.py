"""Stages at scale. `routing`: 100k, 1M and 10M processed records through labelflow's streaming routing against a
plain streaming loop doing the same work (read lines, json.loads, compare to the threshold, write the auto-labeled
lines, the review manifest and its per-job manifests), side by side: records/s and peak RSS.

Records are generated once into a local file, shaped as processing writes them (36% below the threshold).
Each run is a fresh process reading that file: ours through botocore's StreamingBody (as from S3) and the layer's
multipart writers, over a client that stores objects as local files, so the figures are routing's own, not moto's.
The two alternate, `--repeat` times per size; the table shows medians.

    python bench/scale.py routing [--size 100000 --size 1000000 ...] [--repeat 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

THRESHOLD = 0.8
LABELS = ["negative", "positive"]
PER_JOB = 1000  # the spec's default objects_per_job
RUN_ID = "afbcf3d3f25e2c3dba66"


# ------------------------------------------------------------------ input
def generate(path: Path, count: int, seed: int = 10) -> None:
    """`count` processed records: features, a text display column, a prediction (36% below the threshold)."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for number in range(count):
            confidence = round(0.5 + rng.random() ** 0.5 / 2, 6)
            record = {
                "record_id": f"rec-{number:09d}",
                "event_time": "2026-01-01T00:00:00Z",
                "features": {"price": round(rng.random() * 100, 4), "rating": rng.randint(1, 5), "color=red": 1},
                "display": {"review_text": f"review {number}: " + "lorem ipsum dolor sit amet " * 3},
                "prediction": {"label": LABELS[number % 2], "confidence": confidence},
            }
            out.write(json.dumps(record) + "\n")


def records_file(workdir: Path, count: int) -> Path:
    path = workdir / f"records-{count}.jsonl"
    if not path.exists():
        partial = path.with_suffix(".partial")
        generate(partial, count)
        partial.rename(path)
    return path


# ------------------------------------------------------------------ the two contenders (run in a child process)
class LocalFiles:
    """The S3 calls routing's writers make, storing objects (and multipart uploads) as files under a folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def put_object(self, Key: str, Body: bytes, **_: Any) -> dict[str, Any]:  # noqa: N803 (boto3's names)
        self._path(Key).write_bytes(Body)
        return {}

    def create_multipart_upload(self, Key: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        self._path(Key + ".upload").write_bytes(b"")
        return {"UploadId": Key + ".upload"}

    def upload_part(self, UploadId: str, Body: bytes, PartNumber: int, **_: Any) -> dict[str, Any]:  # noqa: N803
        with (self.root / UploadId).open("ab") as out:
            out.write(Body)
        return {"ETag": f'"{PartNumber}"'}

    def complete_multipart_upload(self, Key: str, UploadId: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        (self.root / UploadId).rename(self._path(Key))
        return {}

    def abort_multipart_upload(self, UploadId: str, **_: Any) -> dict[str, Any]:  # noqa: N803
        (self.root / UploadId).unlink(missing_ok=True)
        return {}


def run_routing(source: Path, out: Path) -> int:
    from botocore.response import StreamingBody

    from labelflow.layout import RunLayout
    from labelflow.routing import ReviewManifests, route_lines
    from labelflow.s3 import READ_CHUNK, StreamedObject

    s3: Any = LocalFiles(out)
    layout = RunLayout("bench", RUN_ID)
    auto = StreamedObject(s3, "bench", layout.auto_labeled_key)
    review = ReviewManifests(s3, "bench", layout, PER_JOB)
    with source.open("rb") as raw:
        lines = StreamingBody(raw, source.stat().st_size).iter_lines(READ_CHUNK)
        counts = route_lines(lines, str(source), LABELS, THRESHOLD, lambda _: False, auto, review)
    auto.close()
    review.close()
    return counts.auto_labeled + counts.to_review


def run_plain(source: Path, out: Path) -> int:
    """The plain loop: the same outputs, built from dicts with json.dumps."""
    folder = out / "plain"
    folder.mkdir(parents=True)
    routed = 0
    part: TextIO | None = None
    reviewed = 0
    with (
        source.open("rb") as lines,
        (folder / "auto.jsonl").open("w") as auto,
        (folder / "review.manifest").open("w") as review,
    ):
        for line in lines:
            record = json.loads(line)
            prediction = record["prediction"]
            routed += 1
            if prediction is not None and prediction["confidence"] >= THRESHOLD:
                auto.write(
                    json.dumps(
                        {
                            "record_id": record["record_id"],
                            "label": prediction["label"],
                            "confidence": prediction["confidence"],
                        }
                    )
                    + "\n"
                )
                continue
            display = record["display"]
            item = json.dumps(
                {
                    "source": "\n".join(display.values()),
                    "record_id": record["record_id"],
                    "display": display,
                    "labels": LABELS,
                    "model_label": prediction["label"] if prediction else None,
                    "model_confidence": prediction["confidence"] if prediction else None,
                    "audit": False,
                }
            )
            if part is None or reviewed % PER_JOB == 0:
                if part is not None:
                    part.close()
                part = (folder / f"review-{reviewed // PER_JOB + 1}.manifest").open("w")
            reviewed += 1
            review.write(item + "\n")
            part.write(item + "\n")
    if part is not None:
        part.close()
    return routed


def child(which: str, source: Path) -> None:
    """Run one contender and print its figures as JSON (peak RSS of this whole process, imports included)."""
    contender = run_routing if which == "routing" else run_plain
    if which == "routing":
        import labelflow.routing  # noqa: F401  (imported before the clock starts)
    imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory(prefix="labelflow-scale-", dir=source.parent) as out:
        start = time.perf_counter()
        records = contender(source, Path(out))
        seconds = time.perf_counter() - start
    # ru_maxrss is in KiB on Linux.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"records": records, "seconds": seconds, "peak_kib": peak, "imported_kib": imported}))


# ------------------------------------------------------------------ the table
def measure(which: str, source: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "_child", which, str(source)], capture_output=True, text=True, check=True
    )
    figures: dict[str, Any] = json.loads(out.stdout)
    return figures


def routing_section(sizes: list[int], repeat: int, workdir: Path) -> list[str]:
    lines = [
        "| records | contender | records/s | peak RSS (MiB) | RSS after imports (MiB) | vs plain loop |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for size in sizes:
        source = records_file(workdir, size)
        runs: dict[str, list[dict[str, Any]]] = {"plain": [], "routing": []}
        for _ in range(repeat):
            for which in runs:
                runs[which].append(measure(which, source))
        rates = {which: statistics.median(run["records"] / run["seconds"] for run in runs[which]) for which in runs}
        for which, figures in runs.items():
            assert all(run["records"] == size for run in figures), f"{which} lost records"
            peak = max(run["peak_kib"] for run in figures) / 1024
            imported = max(run["imported_kib"] for run in figures) / 1024
            ratio = f"{rates[which] / rates['plain']:.2f}x"
            lines.append(f"| {size:,} | {which} | {rates[which]:,.0f} | {peak:.0f} | {imported:.0f} | {ratio} |")
    return lines


def main() -> int:
    if sys.argv[1:2] == ["_child"]:
        child(sys.argv[2], Path(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=["routing"])
    parser.add_argument("--size", type=int, action="append", help="records (repeatable)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "labelflow-scale")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    sizes = args.size or [100_000, 1_000_000, 10_000_000]
    print(f"routing at threshold {THRESHOLD}, {PER_JOB} records per labeling job, median of {args.repeat}\n")
    print("\n".join(routing_section(sizes, args.repeat, args.workdir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
