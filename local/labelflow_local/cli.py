"""`labelflow`: run the workflow locally, invoke one function without Docker, or drive a deployed stack."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from labelflow_local.template import PROJECT_ROOT

DEFAULT_WORKDIR = Path(".labelflow")


def _demo(args: argparse.Namespace) -> int:
    """`run --local` on the bundled dataset, its spec and model, with its labels kept aside as the truth."""
    from labelflow_local import demo

    args.file, args.spec, args.model, args.truth = demo.DEMO_DATA, demo.DEMO_SPEC, demo.DEMO_MODEL, demo.DEMO_TRUTH
    args.local = True
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    from labelflow_local import demo

    if not args.local:
        print(
            "labelflow run works in local mode only (--local); to run on AWS, upload to raw/<dataset>/", file=sys.stderr
        )
        return 2
    report = demo.run_local(
        args.file,
        args.spec,
        args.model,
        args.workdir,
        truth=args.truth,
        worker_accuracy=args.worker_accuracy,
        seed=args.seed,
        workers_per_task=args.workers,
        reviewers=_reviewers(args),
        log_level=args.log_level,
    )
    print(demo.report_json(report) if args.json else demo.summary(report))
    return 0 if report.execution_status == "SUCCEEDED" else 1


def _reviewers(args: argparse.Namespace) -> Any:
    from labelflow_local.review import AnswersFile, TerminalReviewer

    if args.answers is not None:
        return AnswersFile(args.answers)
    if args.reviewer == "terminal":
        return TerminalReviewer()
    return None  # simulated workers


def _invoke(args: argparse.Namespace) -> int:
    from labelflow_local.invoke import invoke

    event = json.loads(Path(args.event).read_text())
    response = invoke(args.function, event)
    print(json.dumps(response, indent=2, default=str))
    return 0


def _start(args: argparse.Namespace) -> int:
    from labelflow_local.remote import start

    print(json.dumps(start(args.uri, args.state_machine_arn, args.stack), indent=2))
    return 0


def _status(args: argparse.Namespace) -> int:
    from labelflow_local.remote import status

    print(json.dumps(status(args.execution_arn), indent=2, default=str))
    return 0


def _publish(args: argparse.Namespace) -> int:
    import boto3

    from labelflow_local.publish import publish_processing_code

    pointer = publish_processing_code(boto3.client("s3"), args.bucket)
    print(pointer.model_dump_json(indent=2))
    return 0


def _features(args: argparse.Namespace) -> int:
    path = args.workdir / "feature-store" / "online" / f"{args.group}.json"
    if not path.exists():
        print(f"no local feature store at {path}: run `labelflow demo` first", file=sys.stderr)
        return 1
    records: dict[str, Any] = json.loads(path.read_text())
    if args.record_id:
        if args.record_id not in records:
            print(f"no record {args.record_id} in {args.group}", file=sys.stderr)
            return 1
        print(json.dumps(records[args.record_id], indent=2))
    else:
        sources: dict[str, int] = {}
        for values in records.values():
            sources[values["label_source"]] = sources.get(values["label_source"], 0) + 1
        print(json.dumps({"feature_group": args.group, "records": len(records), "by_label_source": sources}, indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="labelflow", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    def local_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="where local results are kept")
        command.add_argument("--worker-accuracy", type=float, default=0.9, help="simulated workers' accuracy")
        command.add_argument("--seed", type=int, default=7, help="seed for the simulated workers")
        command.add_argument("--workers", type=int, help="simulated workers per record (default: the spec's)")
        command.add_argument("--reviewer", choices=("simulated", "terminal"), default="simulated", help="who reviews")
        command.add_argument("--answers", type=Path, help="answers file as reviewer (CSV record_id,label or JSON)")
        command.add_argument("--json", action="store_true", help="print the report as JSON")
        command.add_argument(
            "--log-level",
            default="WARNING",
            choices=("DEBUG", "INFO", "WARNING", "ERROR"),
            help="function logs (stderr)",
        )

    demo = commands.add_parser("demo", help="run the whole workflow locally on the bundled reviews dataset")
    local_options(demo)
    demo.set_defaults(handler=_demo)

    run = commands.add_parser("run", help="run the whole workflow locally on your own file")
    run.add_argument("file", type=Path)
    run.add_argument("--local", action="store_true", help="run on the local stand-ins (required)")
    run.add_argument("--spec", type=Path, required=True, help="the dataset spec (JSON)")
    run.add_argument("--model", type=Path, help="the model file the spec's model.s3_uri names")
    run.add_argument("--truth", type=Path, help="known labels (CSV record_id,label or JSON): workers and accuracy")
    local_options(run)
    run.set_defaults(handler=_run)

    invoke = commands.add_parser("invoke", help="run one function's handler in-process (sam local invoke, no Docker)")
    invoke.add_argument("function", help="folder name under functions/ or template logical id")
    invoke.add_argument("-e", "--event", required=True, help="event file, e.g. events/plan_processing.json")
    invoke.set_defaults(handler=_invoke)

    start = commands.add_parser("start", help="start a run on the deployed stack for an object under raw/")
    start.add_argument("uri", help="s3://bucket/raw/<dataset>/<file>")
    start.add_argument("--state-machine-arn")
    start.add_argument("--stack", default="labelflow", help="stack to read the state machine ARN from")
    start.set_defaults(handler=_start)

    status = commands.add_parser("status", help="show a deployed execution's status and run.json")
    status.add_argument("execution_arn")
    status.set_defaults(handler=_status)

    publish = commands.add_parser("publish", help="upload the processing code to a deployed data bucket")
    publish.add_argument("--bucket", required=True)
    publish.set_defaults(handler=_publish)

    features = commands.add_parser("features", help="query the local feature store of the last local run")
    features.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    features.add_argument("--group", default="labelflow-reviews")
    features.add_argument("--record-id")
    features.set_defaults(handler=_features)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"labelflow: {exc}", file=sys.stderr)
        return 2
    return code


__all__ = ["PROJECT_ROOT", "main"]
