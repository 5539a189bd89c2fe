"""Turn a dataset's raw input into labelflow feature records: the SageMaker Processing job's entrypoint.

It runs on the scikit-learn processing image (processing/image.json) and uses only what that image ships
(numpy, pyarrow, pandas and scikit-learn for the dataset's model). The dataset spec arrives as JSON
(`DatasetSpec.model_dump(mode="json")`), already validated by labelflow, so its shape is trusted here.

Inputs are every file in --input-dir, read as --format, --gzip, --encoding and --delimiter say: planning resolved
them from the landed object and the spec's `input` section (labelflow.formats), so nothing is detected here
(labelflow_processing/readers.py). With --state-dir holding a state.json, that transform state is applied as it
is; without one, a state is fitted on the accepted rows. Outputs, in --output-dir: `records.jsonl` (one record
per accepted row), `rejected.jsonl` (one line per rejected row: {"line", "record_id", "reason"}; `line` as
readers.py defines it: a CSV row's record number counting the header as 1, a JSON Lines row's physical line, a
Parquet row's number; duplicates are listed after the other rejections), `state.json` (the state used) and
`stats.json`, written last, so its presence means the run finished. A problem with the input as a whole stops the
job with exit code 2 and a one-line message in the SageMaker message file; so does a share of rejected rows above
the spec's max_rejected_share (or no accepted row at all), rejected.jsonl then kept to say why.

An input planning cut into parts for several instances is read in three jobs (labelflow_processing/shards.py):
`--shard-pass scan`, `--shard-pass stats --scan-dir`, then the Process job with `--scan-dir` and `--stats-dir`,
which writes each part's outputs under `parts/<part>/` (routing joins them) and, on the first host, state.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

from labelflow_processing.config import FatalInputError, Spec, TooManyRejectedError, load_spec
from labelflow_processing.passes import Pass, process_pass, scan_pass, stats_pass
from labelflow_processing.pipeline import run_files
from labelflow_processing.readers import ReadAs, add_read_arguments, find_inputs, read_as_from
from labelflow_processing.shards import RESOURCE_CONFIG, part_dir, this_host
from labelflow_processing.state import STATE_FILE, read_state, sha256
from labelflow_processing.values import parse_event_time
from scoring import ModelError, Scorer, load_model

EXIT_FATAL = 2
# SageMaker keeps at most 1024 characters of the message file as the job's failure reason.
MAX_MESSAGE_CHARS = 1000
OUTPUT_FILES = ("records.jsonl", "rejected.jsonl", STATE_FILE, "stats.json")


def _model_loader(spec: Spec, model_dir: Path) -> Any:
    def load() -> Scorer | None:
        if spec.model is None:
            return None
        try:
            return load_model(model_dir, spec.model)
        except ModelError as exc:
            raise FatalInputError(str(exc)) from exc

    return load


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Process the input described by the arguments; returns the stats it wrote."""
    spec = load_spec(args.spec)
    default_event_time: str | None = None
    if args.default_event_time is not None:
        try:
            default_event_time = parse_event_time(args.default_event_time)
        except ValueError:
            raise FatalInputError(f"invalid --default-event-time: {args.default_event_time!r}") from None
    elif not spec.event_time_column:
        raise FatalInputError("the spec has no event_time_column and no --default-event-time was given")
    read_as: ReadAs = args.read_as
    state = read_state(args.state_dir) if args.state_dir else None
    output_dir: Path = args.output_dir
    if args.shard_pass or args.scan_dir:
        return run_sharded(args, spec, default_event_time, state)
    files = find_inputs(args.input_dir, read_as)
    output_dir.mkdir(parents=True, exist_ok=True)
    # The model is loaded once the input is known to be usable: a model can be large.
    result = run_files(files, spec, default_event_time, state, output_dir, _model_loader(spec, args.model_dir))
    if result.records_in != result.records_out + result.rejected:
        raise RuntimeError(f"rows unaccounted for: {result}")
    (output_dir / STATE_FILE).write_bytes(result.state)
    model = result.model
    stats = {
        "records_in": result.records_in,
        "records_out": result.records_out,
        "rejected": result.rejected,
        "state": {"sha256": sha256(result.state), "fitted": result.fitted},
        "drift": result.drift,
        "predicted_labels": result.predicted,
        "model": {"file": model.file_name, "sha256": model.sha256, "classes": list(model.config.classes)}
        if model
        else None,
        "input_files": [file.name for file in files],
    }
    (output_dir / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return stats


def run_sharded(
    args: argparse.Namespace, spec: Spec, default_event_time: str | None, state: bytes | None
) -> dict[str, Any]:
    """One pass over this instance's parts of a sharded input; returns a summary of what it wrote."""
    output_dir: Path = args.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    # ShardedByS3Key may deal an instance no part: its input folder is then empty, or absent.
    files = find_inputs(args.input_dir, args.read_as) if any(args.input_dir.rglob("*")) else []
    job = Pass(files, args.read_as, spec, default_event_time, output_dir, args.scan_dir, args.stats_dir)
    if args.shard_pass == "scan":
        scan_pass(job)
        return {"pass": "scan", "input_files": [file.name for file in files]}
    if args.shard_pass == "stats":
        stats_pass(job, fitting=state is None)
        return {"pass": "stats", "input_files": [file.name for file in files]}
    host = this_host(args.resource_config)
    reports = process_pass(job, state, host, functools.cache(_model_loader(spec, args.model_dir)))
    for file, report in zip(files, reports, strict=True):
        # Written last in each part's folder: its presence means that part finished.
        text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
        (part_dir(output_dir, file.name) / "stats.json").write_text(text, encoding="utf-8")
    return {"pass": "process", "input_files": [file.name for file in files]}


def refuse(output_dir: Path, exc: TooManyRejectedError) -> None:
    """The job completes with rejected.jsonl and stats.json saying why the file is refused, and no records; the
    workflow then fails the run. Completing, because EndOfJob outputs are documented as uploaded "after the job
    completes" (ProcessingS3Output) and the rejection reasons are what the user needs."""
    for name in ("records.jsonl", STATE_FILE):
        (output_dir / name).unlink(missing_ok=True)
    stats = {"records_in": exc.read, "records_out": 0, "rejected": exc.rejected, "refused": str(exc)}
    (output_dir / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def report_failure(message_file: Path, message: str) -> None:
    """Tell SageMaker (message file) and the logs (stderr) why the job failed."""
    message = " ".join(message.split())[:MAX_MESSAGE_CHARS]
    print(message, file=sys.stderr)
    try:
        message_file.parent.mkdir(parents=True, exist_ok=True)
        message_file.write_text(message + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"cannot write the message file {message_file}: {exc}", file=sys.stderr)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_read_arguments(parser)
    parser.add_argument("--input-dir", type=Path, default=Path("/opt/ml/processing/input/data"))
    parser.add_argument("--spec", type=Path, default=Path("/opt/ml/processing/input/spec/spec.json"))
    parser.add_argument("--model-dir", type=Path, default=Path("/opt/ml/processing/input/model"))
    parser.add_argument(
        "--state-dir", type=Path, help="a folder whose state.json is applied instead of fitting a new state"
    )
    parser.add_argument("--output-dir", type=Path, default=Path("/opt/ml/processing/output"))
    parser.add_argument("--message-file", type=Path, default=Path("/opt/ml/output/message"))
    parser.add_argument(
        "--default-event-time", help="ISO-8601 UTC time for every record; required when the spec has no event time"
    )
    parser.add_argument(
        "--shard-pass", choices=("scan", "stats"), help="a first pass over this instance's parts of a sharded input"
    )
    parser.add_argument("--scan-dir", type=Path, help="the scan pass's outputs, for every part: the input is sharded")
    parser.add_argument("--stats-dir", type=Path, help="the stats pass's outputs, for every part")
    parser.add_argument("--resource-config", type=Path, default=RESOURCE_CONFIG, help="which instance this is")
    args = parser.parse_args(argv)
    args.read_as = read_as_from(parser, args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        stats = run(args)
    except TooManyRejectedError as exc:
        refuse(args.output_dir, exc)
        print(str(exc), file=sys.stderr)
        return 0
    except FatalInputError as exc:
        for name in OUTPUT_FILES:
            (args.output_dir / name).unlink(missing_ok=True)
        report_failure(args.message_file, str(exc))
        return EXIT_FATAL
    except Exception as exc:
        report_failure(args.message_file, f"internal error: {type(exc).__name__}: {exc}")
        raise
    if "pass" in stats:
        print(f"{stats['pass']} pass over {len(stats['input_files'])} part(s)")
        return 0
    print(
        f"processed {stats['records_in']} rows from {len(stats['input_files'])} file(s): "
        f"{stats['records_out']} records, {stats['rejected']} rejected"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
