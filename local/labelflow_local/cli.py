"""`labelflow`: onboard a dataset, run the workflow locally, invoke one function without Docker, or drive a
deployed stack.

Exit codes: 0 done (for a run: it SUCCEEDED); 1 problems found, or a run that ended PARTIAL or FAILED;
2 an unusable command line or input. Errors are one line; --debug adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, redirect_stdout
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from labelflow.models.spec import DatasetSpec, InputSpec
from labelflow_local.sampling import SAMPLE_ROWS
from labelflow_local.template import PROJECT_ROOT

DEFAULT_WORKDIR = Path(".labelflow")
# Unusable input: exit 2 with the message. Anything else is unexpected: exit 1.
INPUT_ERRORS = (ValueError, KeyError, OSError)


class InputError(ValueError):
    """An unusable command line or input, said in one line."""


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _load_spec(path: Path) -> DatasetSpec:
    """The spec at `path`, or InputError naming its first problem."""
    from labelflow_local.spec_reference import error_lines

    if not path.is_file():
        raise InputError(f"{path}: no such spec file")
    try:
        return DatasetSpec.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        lines = error_lines(exc)
        more = f" (and {len(lines) - 1} more: labelflow validate {path})" if len(lines) > 1 else ""
        raise InputError(f"{path}: {lines[0]}{more}") from exc


def _init(args: argparse.Namespace) -> int:
    from labelflow_local import onboarding, sampling

    dataset = onboarding.check_dataset_name(args.dataset)
    labels = onboarding.parse_labels(args.labels)
    out: Path = args.out or Path(f"{dataset}.json")
    if out.exists() and not args.force:
        raise InputError(f"{out} exists: pass --force to overwrite it, or --out to write another file")
    sample = sampling.read_sample(args.file, InputSpec(encoding=args.encoding) if args.encoding else None)
    model = onboarding.inspect_model(args.model) if args.model else None
    inferred = onboarding.infer_spec(sample, dataset, labels, args.id_column, model, args.model_uri)
    out.write_text(onboarding.spec_json(inferred.spec))
    print(onboarding.report(inferred, out))
    run = f"labelflow run --local {args.file} --spec {out}" + (f" --model {args.model}" if args.model else "")
    run += " --reviewer terminal (or --truth LABELS_FILE for simulated reviewers)"
    print(f"next: check it (labelflow validate {out} {args.file}), edit what you disagree with, then: {run}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from labelflow_local import onboarding, sampling
    from labelflow_local.spec_reference import error_lines

    if not args.spec.is_file():
        raise InputError(f"{args.spec}: no such spec file")
    try:
        spec = DatasetSpec.model_validate_json(args.spec.read_bytes())
    except ValidationError as exc:
        lines = error_lines(exc)
        print("\n".join(f"{args.spec}: {line}" for line in lines))
        print(f"{args.spec}: not a valid dataset spec: {_plural(len(lines), 'problem')} (see docs/spec-reference.md)")
        return 1
    if spec.model is None:
        model = ", no model"
    else:
        columns = spec.model.columns
        model = f", a model reading {', '.join(columns) if len(columns) <= 3 else _plural(len(columns), 'column')}"
    print(
        f"{args.spec}: a valid spec for dataset {spec.dataset} "
        f"({_plural(len(spec.features), 'feature')}, {_plural(len(spec.labels), 'label')}{model})"
    )
    if args.data is None:
        return 0
    sample = sampling.read_sample(args.data, spec.input)
    findings = onboarding.check_data(spec, sample)
    for finding in findings:
        print(f"{args.data}: {'problem' if finding.problem else 'note'}: {finding.text}")
    problems = sum(finding.problem for finding in findings)
    verdict = f"{_plural(problems, 'problem')} found" if problems else f"fits {args.spec}"
    print(f"{args.data}: {verdict} (checked {sample.describe()})")
    return 1 if problems else 0


def _demo(args: argparse.Namespace) -> int:
    """`run --local` on the bundled dataset, its spec and model, with its labels kept aside as the truth."""
    from labelflow_local import demo

    args.file, args.spec, args.model, args.truth = demo.DEMO_DATA, demo.DEMO_SPEC, demo.DEMO_MODEL, demo.DEMO_TRUTH
    args.local = True
    return _run(args)


def _parameters(given: list[str]) -> dict[str, str]:
    """--parameter NAME=VALUE pairs, each refused as a deploy would refuse it (the template's constraints)."""
    from labelflow_local.template import load_template, parameter_problem

    template = load_template()
    parameters: dict[str, str] = {}
    for pair in given:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise InputError(f"--parameter {pair}: expected NAME=VALUE, e.g. ProcessingInstanceCount=3")
        if problem := parameter_problem(template, name, value):
            raise InputError(f"--parameter {pair}: {problem}")
        parameters[name] = value
    return parameters


def _check_run_inputs(args: argparse.Namespace) -> None:
    """Refuse, before anything starts, a run that cannot work."""
    if not args.local:
        raise InputError("labelflow run works in local mode only (--local); to run on AWS, upload to raw/<dataset>/")
    if not (PROJECT_ROOT / "template.yaml").is_file():
        raise InputError(
            f"local mode runs this checkout's template.yaml, functions/ and processing/, not found under "
            f"{PROJECT_ROOT}: install labelflow from a checkout with `pip install -e .`"
        )
    for option, path in (("FILE", args.file), ("--model", args.model), ("--truth", args.truth)):
        if path is not None and not path.is_file():
            raise InputError(f"{option} {path}: no such file")
    args.parameters = _parameters(args.parameter)
    if args.labelstudio_url is not None and args.reviewer != "labelstudio":
        raise InputError("--labelstudio-url is for --reviewer labelstudio")
    if args.reviewer == "labelstudio" and args.labelstudio_url is not None and not args.labelstudio_token:
        raise InputError(
            "--labelstudio-url needs --labelstudio-token (or LABELFLOW_LABELSTUDIO_TOKEN): a personal access token "
            "from Account & Settings, or a legacy token"
        )
    if args.reviewer == "simulated" and args.answers is None and args.truth is None:
        raise InputError(
            "simulated reviewers answer from known labels: pass --truth FILE (CSV record_id,label), or review "
            "yourself with --reviewer terminal, or give the answers with --answers FILE"
        )
    spec = _load_spec(args.spec)
    if spec.model is not None and args.model is None:
        raise InputError(f"{args.spec} names a model ({spec.model.s3_uri}): pass its file with --model")


def _run(args: argparse.Namespace) -> int:
    _check_run_inputs(args)
    if args.reviewer == "labelstudio":
        return _run_with_label_studio(args)
    return _run_locally(args)


def _run_with_label_studio(args: argparse.Namespace) -> int:
    """The run with Label Studio as the deployment's review backend: the one at --labelstudio-url, else one started
    on 127.0.0.1 with its data under the workdir. The workflow waits on the review's task token until every record
    has its answers."""
    from contextlib import ExitStack

    from labelflow_local.labelstudio import LabelStudioReviews, LocalLabelStudio
    from labelflow_local.template import parameter_overrides

    say = _say_on_stderr if args.json else print
    with ExitStack() as stack:
        url, token = args.labelstudio_url, args.labelstudio_token
        if url is None:
            say(f"labelflow: starting Label Studio with its data in {args.workdir / 'labelstudio'}")
            started = stack.enter_context(LocalLabelStudio(args.workdir / "labelstudio"))
            url, token = started.url, started.personal_token
            say(f"labelflow: Label Studio at {url}: log in as {started.admin_email} / {started.admin_password}")
        stack.enter_context(parameter_overrides(ReviewBackend="labelstudio"))
        reviews = stack.enter_context(LabelStudioReviews(url, token, say=say))
        if threading.current_thread() is threading.main_thread():
            stack.enter_context(_polling_stops_first_on_ctrl_c(reviews))
        try:
            return _run_locally(args)
        except KeyboardInterrupt:
            where = ", ".join(reviews.projects.values()) or "no project yet"
            say(
                "\nlabelflow: interrupted: a local run's workflow lives in memory, so this run is lost (run the "
                f"command again for a new one); the answers given stay in Label Studio ({where})"
            )
            raise


@contextmanager
def _polling_stops_first_on_ctrl_c(reviews: Any) -> Iterator[None]:
    """Ctrl-C stops the poller before the local cloud goes away, so no poll outlives the mocked AWS."""
    previous = signal.getsignal(signal.SIGINT)

    def interrupted(signum: int, frame: Any) -> None:
        reviews.stop()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_locally(args: argparse.Namespace) -> int:
    from labelflow_local import demo
    from labelflow_local.emr import spark_deployment
    from labelflow_local.template import parameter_overrides

    if not args.debug:
        # moto's ASL interpreter logs every failure it evaluates, whole states included; the run's outcome is
        # reported below in one line, and --debug keeps those logs.
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)

    spec = _load_spec(args.spec)
    reviewers, prompt = _reviewers(args, spec)

    def run() -> demo.RunReport:
        return demo.run_local(
            args.file,
            args.spec,
            args.model,
            args.workdir,
            truth=args.truth,
            worker_accuracy=args.worker_accuracy,
            seed=args.seed,
            workers_per_task=args.workers,
            reviewers=reviewers,
            log_level=args.log_level,
        )

    # With --json, stdout is the report alone: whatever the run itself prints goes to stderr.
    # A spec asking for Spark runs on a local stack deployed with it (pyspark in local mode).
    with (
        redirect_stdout(sys.stderr) if args.json else nullcontext(),
        parameter_overrides(**args.parameters),
        spark_deployment() if spec.engine == "spark" else nullcontext(),
    ):
        report = prompt.run(run) if prompt is not None else run()
    print(demo.report_json(report) if args.json else demo.summary(report))
    if report.manifest.status == "SUCCEEDED":
        return 0
    print(f"labelflow: {demo.outcome(report)}", file=sys.stderr)
    if args.debug and report.manifest.error is not None:
        print(report.manifest.error.cause, file=sys.stderr)
    return 1


def _reingest(args: argparse.Namespace) -> int:
    from labelflow_local.reingest import reingest_local

    if not args.debug:
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
    report = reingest_local(args.workdir, args.run_id, args.dataset)
    manifest, counts = report.manifest, report.manifest.counts
    last = manifest.reingests[-1]
    print(
        f"run {manifest.run_id}: {manifest.status} (reingest execution {report.execution_status})\n"
        f"  re-sent         {last.resent} ({last.ingested} ingested, {last.failed} failed again)\n"
        f"  ingested        {counts.ingested} in all, {counts.ingest_failed} not\n"
        f"  run.json        {report.run_json}"
    )
    if manifest.status == "SUCCEEDED":
        return 0
    print(f"labelflow: run {manifest.run_id}: {manifest.status}: {manifest.reason}", file=sys.stderr)
    return 1


def _say_on_stderr(text: str) -> None:
    print(text, file=sys.stderr)


def _ask_on_stderr(prompt: str) -> str:
    print(prompt, end="", file=sys.stderr, flush=True)
    return input()


def _reviewers(args: argparse.Namespace, spec: DatasetSpec) -> tuple[Any, Any]:
    """The review backend (None: simulated workers who know --truth), and for the terminal the main-thread prompt.

    A person's answers are kept under the workdir per dataset, so a later run over the same records resumes.
    """
    from labelflow_local.review import AnswersFile, MainThreadPrompt, TerminalReviewer

    if args.answers is not None:
        return AnswersFile(args.answers, spec.labels), None
    if args.reviewer != "terminal":
        return None, None
    # With --json, stdout is the report alone: the conversation goes to stderr.
    prompt = MainThreadPrompt(_ask_on_stderr if args.json else input)
    say = _say_on_stderr if args.json else print
    saved = args.workdir / "review" / f"{spec.dataset}.terminal.jsonl"
    return TerminalReviewer(ask=prompt.ask, say=say, saved=saved), prompt


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


def _doctor(args: argparse.Namespace) -> int:
    from labelflow_local.doctor import default_clients, diagnose, report

    checks = diagnose(args.stack, default_clients(args.region))
    print(report(checks))
    problems = sum(not check.ok for check in checks)
    if problems:
        print(f"labelflow: stack {args.stack}: {_plural(problems, 'problem')} found", file=sys.stderr)
        return 1
    return 0


def _feature_group(args: argparse.Namespace, online: Path) -> str:
    """--group, else the group of --dataset, else the local store's only group."""
    from labelflow.layout import feature_group_name
    from labelflow_local.template import LOCAL_STACK

    if args.group:
        return str(args.group)
    if args.dataset:
        return feature_group_name(LOCAL_STACK, args.dataset)
    groups = sorted(path.stem for path in online.glob("*.json"))
    if len(groups) == 1:
        return groups[0]
    if not groups:
        raise InputError(f"no local feature store under {online.parent}: run `labelflow run --local` first")
    raise InputError(f"the local store has groups {', '.join(groups)}: pass --dataset NAME")


def _features(args: argparse.Namespace) -> int:
    online = args.workdir / "feature-store" / "online"
    group = _feature_group(args, online)
    path = online / f"{group}.json"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in online.glob("*.json"))) or "none"
        print(f"labelflow: no feature group {group} in the local store (groups: {known})", file=sys.stderr)
        return 1
    records: dict[str, Any] = json.loads(path.read_text())
    if args.record_id:
        if args.record_id not in records:
            print(f"labelflow: no record {args.record_id} in {group}", file=sys.stderr)
            return 1
        print(json.dumps(records[args.record_id], indent=2))
    else:
        sources: dict[str, int] = {}
        for values in records.values():
            sources[values["label_source"]] = sources.get(values["label_source"], 0) + 1
        print(json.dumps({"feature_group": group, "records": len(records), "by_label_source": sources}, indent=2))
    return 0


def _local_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="where local results are kept")
    command.add_argument("--worker-accuracy", type=float, default=0.9, help="simulated workers' accuracy")
    command.add_argument("--seed", type=int, default=7, help="seed for the simulated workers")
    command.add_argument("--workers", type=int, help="simulated workers per record (default: the spec's)")
    command.add_argument(
        "--reviewer",
        choices=("simulated", "terminal", "labelstudio"),
        default="simulated",
        help="who reviews (labelstudio: people in Label Studio's browser UI, or its API)",
    )
    command.add_argument(
        "--labelstudio-url", metavar="URL", help="a running Label Studio (default: start one on 127.0.0.1)"
    )
    command.add_argument(
        "--labelstudio-token",
        metavar="TOKEN",
        default=os.environ.get("LABELFLOW_LABELSTUDIO_TOKEN"),
        help="its access token (default: $LABELFLOW_LABELSTUDIO_TOKEN)",
    )
    command.add_argument("--answers", type=Path, help="answers file as reviewer (CSV record_id,label or JSON)")
    command.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a template parameter other than its default, as sam deploy --parameter-overrides sets it (e.g. "
        "ProcessingInstanceCount=3); repeatable",
    )
    command.add_argument("--json", action="store_true", help="print the run report as JSON, alone on stdout")
    command.add_argument(
        "--log-level",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="function logs (stderr)",
    )


def _onboarding_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    init = commands.add_parser(
        "init",
        parents=[common],
        help="infer a dataset spec from a data file and say why",
        description=f"Read the first {SAMPLE_ROWS:,} rows of DATA_FILE (CSV, JSON Lines or Parquet, maybe "
        "gzipped), infer a dataset spec and write it, printing one line per column: what it became and why.",
    )
    init.add_argument("file", type=Path, metavar="DATA_FILE")
    init.add_argument("--dataset", required=True, help="dataset name: lowercase letters, digits, single hyphens")
    init.add_argument("--labels", required=True, metavar="L1,L2[,...]", help="the label categories")
    init.add_argument("--id-column", metavar="COL", help="the record id column (default: inferred)")
    init.add_argument(
        "--model",
        type=Path,
        metavar="MODEL_FILE",
        help="your scikit-learn model (joblib file or model.tar.gz): its classes and input columns go into the "
        "spec. Loading it runs code from the file (it is a pickle): pass only a model you trust",
    )
    init.add_argument("--model-uri", metavar="S3_URI", help="where the model will live (default: local mode's bucket)")
    init.add_argument("--out", type=Path, metavar="SPEC_FILE", help="where to write the spec (default: NAME.json)")
    init.add_argument("--force", action="store_true", help="overwrite SPEC_FILE")
    init.add_argument(
        "--encoding",
        metavar="ENC",
        help="the file's text encoding, e.g. latin-1 (default: utf-8, else cp1252 if it fits)",
    )
    init.set_defaults(handler=_init)

    validate = commands.add_parser(
        "validate",
        parents=[common],
        help="check a dataset spec, and a data file against it",
        description="Check SPEC (one line per problem: field, value, what is allowed); with DATA_FILE, check its "
        f"first {SAMPLE_ROWS:,} rows against the spec. Exit 0: ok; 1: problems found; 2: unusable input.",
    )
    validate.add_argument("spec", type=Path, metavar="SPEC")
    validate.add_argument("data", type=Path, nargs="?", metavar="DATA_FILE")
    validate.set_defaults(handler=_validate)


def _local_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    demo = commands.add_parser(
        "demo", parents=[common], help="run the whole workflow locally on the bundled reviews dataset"
    )
    _local_options(demo)
    demo.set_defaults(handler=_demo)

    run = commands.add_parser(
        "run",
        parents=[common],
        help="run the whole workflow locally on your own file",
        description="Exit 0 only when the run SUCCEEDED; PARTIAL or FAILED exit 1 with one line on stderr.",
    )
    run.add_argument("file", type=Path, metavar="FILE")
    run.add_argument("--local", action="store_true", help="run on the local stand-ins (required)")
    run.add_argument("--spec", type=Path, required=True, help="the dataset spec (JSON)")
    run.add_argument("--model", type=Path, help="the model file the spec's model.s3_uri names")
    run.add_argument("--truth", type=Path, help="known labels (CSV record_id,label or JSON): workers and accuracy")
    _local_options(run)
    run.set_defaults(handler=_run)

    reingest = commands.add_parser(
        "reingest",
        parents=[common],
        help="re-send the records a local run failed to ingest",
        description="Re-send, exactly once, the records in a local run's ingest-failures file (the state machine's "
        'reingest path; on AWS start an execution with {"reingest": {"bucket": B, "dataset": D, "run_id": R}}), '
        "and update its run.json. Exit 0 when the run is then SUCCEEDED, 1 otherwise.",
    )
    reingest.add_argument("run_id", metavar="RUN_ID")
    reingest.add_argument("--dataset", help="the run's dataset (when the run id is ambiguous)")
    reingest.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="where local results are kept")
    reingest.set_defaults(handler=_reingest)

    features = commands.add_parser(
        "features", parents=[common], help="query the local feature store of the last local run"
    )
    features.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    features.add_argument("--dataset", help="the dataset whose feature group to query")
    features.add_argument("--group", help="a feature group name (overrides --dataset)")
    features.add_argument("--record-id")
    features.set_defaults(handler=_features)


def _aws_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    invoke = commands.add_parser(
        "invoke", parents=[common], help="run one function's handler in-process (sam local invoke, no Docker)"
    )
    invoke.add_argument("function", help="folder name under functions/ or template logical id")
    invoke.add_argument("-e", "--event", required=True, help="event file, e.g. events/plan_processing.json")
    invoke.set_defaults(handler=_invoke)

    start = commands.add_parser(
        "start", parents=[common], help="start a run on the deployed stack for an object under raw/"
    )
    start.add_argument("uri", help="s3://bucket/raw/<dataset>/<file>")
    start.add_argument("--state-machine-arn")
    start.add_argument("--stack", default="labelflow", help="stack to read the state machine ARN from")
    start.set_defaults(handler=_start)

    status = commands.add_parser("status", parents=[common], help="show a deployed execution's status and run.json")
    status.add_argument("execution_arn")
    status.set_defaults(handler=_status)

    publish = commands.add_parser(
        "publish", parents=[common], help="upload the processing code to a deployed data bucket"
    )
    publish.add_argument("--bucket", required=True)
    publish.set_defaults(handler=_publish)

    doctor = commands.add_parser(
        "doctor",
        parents=[common],
        help="check a deployed stack before its first upload",
        description="One line per check (stack, work team, published code, image, feature groups, bucket versioning "
        "and notifications): ok, or the problem and what to do. Exit 0: all ok; 1: problems found.",
    )
    doctor.add_argument("--stack", default="labelflow", help="the deployed stack's name")
    doctor.add_argument("--region", help="the stack's Region (default: the configured one)")
    doctor.set_defaults(handler=_doctor)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="labelflow", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="on an error, print the traceback")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _onboarding_commands(commands, common)
    _local_commands(commands, common)
    _aws_commands(commands, common)
    return root


def _one_line(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    first = str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__
    return first if len(first) <= 400 else first[:397] + "..."


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        expected = isinstance(exc, INPUT_ERRORS)
        if args.debug:
            traceback.print_exc()
        hint = "" if expected or args.debug else " (--debug for the traceback)"
        kind = "" if expected else f"{type(exc).__name__}: "
        print(f"labelflow: {kind}{_one_line(exc)}{hint}", file=sys.stderr)
        return 2 if expected else 1
    return code


__all__ = ["PROJECT_ROOT", "main"]
