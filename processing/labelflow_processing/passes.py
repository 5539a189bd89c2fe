"""The three passes over a sharded input (shards.py says what each leaves for the next); every instance runs them
on its own parts, and they give the records one instance would give the whole input."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from labelflow_processing.config import FatalInputError, Spec
from labelflow_processing.pipeline import check_rejected_share, part_stats, run_files, run_stats, scan_ids
from labelflow_processing.readers import InputFile, QuotedLineBreak, ReadAs
from labelflow_processing.shards import (
    Host,
    PartScan,
    duplicate_count,
    merged_stats,
    part_dir,
    part_lines,
    read_scans,
    shard_of,
    write_scan,
    write_stats,
)
from labelflow_processing.state import STATE_FILE, drift, fit_state, parse_state, sha256


@dataclass(frozen=True)
class Pass:
    """One pass's inputs: this instance's parts and where the earlier passes' files are."""

    files: list[InputFile]
    read_as: ReadAs
    spec: Spec
    default_event_time: str | None
    output_dir: Path
    scan_dir: Path | None = None
    stats_dir: Path | None = None


def scan_pass(job: Pass) -> None:
    """Per part: rows read and rejected, the lines it numbers, and the accepted rows' id hash pairs. A quoted line
    break the spec rules out is only noted: its line in the whole input needs the parts before it, so the next
    pass fails with it (shards.read_scans)."""
    for file in job.files:
        try:
            ids = scan_ids([file], job.spec, job.default_event_time, job.output_dir.parent)
        except QuotedLineBreak as found:
            write_scan(job.output_dir, PartScan(file.name, 0, 0, 0, np.empty((0, 2), np.uint64), found.line))
            continue
        lines = part_lines(file, ids.records_in)
        write_scan(job.output_dir, PartScan(file.name, ids.records_in, ids.rejected, lines, ids.ids))


def stats_pass(job: Pass, fitting: bool) -> None:
    """Per part: the statistics of its accepted rows that are not duplicates in the whole input."""
    scans = read_scans(_required(job.scan_dir, "--scan-dir"))
    for file in job.files:
        keep = functools.partial(write_stats, part_dir(job.output_dir, file.name))
        shard = shard_of(scans, file.name)
        part_stats([file], job.spec, job.default_event_time, fitting, job.output_dir.parent, shard, keep)


def process_pass(job: Pass, state: bytes | None, host: Host, load_model: Callable[[], Any]) -> list[dict[str, Any]]:
    """Write every part's records with the one state all instances derive; returns each part's stats."""
    scans = read_scans(_required(job.scan_dir, "--scan-dir"))
    _check_whole(job, scans)
    fitting = state is None
    with ExitStack() as spills:

        def spill() -> IO[bytes]:
            return spills.enter_context(tempfile.TemporaryFile(dir=job.output_dir.parent))

        stats = merged_stats(
            _required(job.stats_dir, "--stats-dir"), job.spec, fitting, run_stats(job.spec, fitting, spill)
        )
        state_bytes = fit_state(job.spec, stats) if state is None else state
        whole_drift = drift(job.spec, parse_state(state_bytes, job.spec), stats)
    if host.first:
        # Every instance derives the same state; one writes it, as the outputs of all go to one S3 prefix.
        (job.output_dir / STATE_FILE).write_bytes(state_bytes)
    reports = []
    for file in job.files:
        folder = part_dir(job.output_dir, file.name)
        folder.mkdir(parents=True, exist_ok=True)
        shard = shard_of(scans, file.name)
        result = run_files([file], job.spec, job.default_event_time, state_bytes, folder, load_model, shard)
        model = result.model
        reports.append(
            {
                "records_in": result.records_in,
                "records_out": result.records_out,
                "rejected": result.rejected,
                "state": {"sha256": sha256(state_bytes), "fitted": fitting},
                "drift": whole_drift,
                "predicted_labels": result.predicted,
                "model": {"file": model.file_name, "sha256": model.sha256, "classes": list(model.config.classes)}
                if model
                else None,
                "input_files": [file.name],
            }
        )
    return reports


def _check_whole(job: Pass, scans: list[PartScan]) -> None:
    """The whole input's checks, which every instance makes alike: rows at all, and the share rejected."""
    records_in = sum(scan.records_in for scan in scans)
    if records_in == 0:
        raise FatalInputError("input has no data rows")
    rejected = sum(scan.rejected for scan in scans)
    # The input's own name, as one instance reading it whole would give it.
    names = sorted({scan.name.rsplit("/", 1)[-1] for scan in scans})
    whole = [InputFile(Path(name), name, job.read_as) for name in names]
    check_rejected_share(whole, job.spec, records_in, rejected)
    check_rejected_share(whole, job.spec, records_in, rejected + duplicate_count(scans))


def _required(path: Path | None, argument: str) -> Path:
    if path is None:
        raise FatalInputError(f"a sharded pass needs {argument}")
    return path
