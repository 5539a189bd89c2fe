"""Local SageMaker Processing: S3 prefix download/upload and running a script on an /opt/ml-shaped tree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labelflow.formats import ResolvedInput
from labelflow.models.spec import DatasetSpec
from labelflow_local import store
from labelflow_local.processing import LocalProcessing, download_prefix, upload_tree
from labelflow_local.processing_env import ensure_processing_env

REGION = "us-east-1"
ACCOUNT = "123456789012"

# A stand-in for the processing script: every path arrives as an argument, as the real one's do.
SCRIPT = """\
import argparse, json, os, sys, time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--input-dir", type=Path)
parser.add_argument("--output-dir", type=Path)
parser.add_argument("--config", type=Path)
parser.add_argument("--resources", type=Path)
parser.add_argument("--message-file", type=Path)
parser.add_argument("--mode", default="ok")
args = parser.parse_args()

# Written before any failure, to show that a failed job uploads nothing.
args.output_dir.mkdir(parents=True, exist_ok=True)
(args.output_dir / "partial.txt").write_text("half done")
if args.mode == "message":
    args.message_file.parent.mkdir(parents=True, exist_ok=True)
    args.message_file.write_text("  spec.json: column 'text' is missing  \\n")
    sys.exit(2)
if args.mode == "crash":
    print("warming up", file=sys.stderr)
    print("ValueError: bad row 7", file=sys.stderr)
    sys.exit(1)
if args.mode == "slow":
    time.sleep(5)

inputs = sorted(p.relative_to(args.input_dir).as_posix() for p in args.input_dir.rglob("*") if p.is_file())
total = sum(int(line) for p in args.input_dir.rglob("*.txt") for line in p.read_text().split())
result = {
    "inputs": inputs,
    "total": total,
    "greeting": os.environ.get("GREETING"),
    "executable": sys.executable,
    "argv": sys.argv,
    "job_name": json.loads(args.config.read_text())["ProcessingJobName"],
    "host": json.loads(args.resources.read_text())["current_host"],
}
(args.output_dir / "result.json").write_text(json.dumps(result))
(args.output_dir / "config").mkdir()
for config in (args.config, args.resources):
    (args.output_dir / "config" / config.name).write_bytes(config.read_bytes())
(args.output_dir / "nested" / "deeper").mkdir(parents=True)
(args.output_dir / "nested" / "deeper" / "done.txt").write_text("done")
"""


def put(s3: Any, bucket: str, key: str, body: str = "") -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode())


def keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    return sorted(item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))


def read(s3: Any, bucket: str, key: str) -> bytes:
    body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def request(bucket: str, mode: str = "ok", max_runtime: int = 60) -> dict[str, Any]:
    return {
        "ProcessingJobName": "Labelflow-Job-1",
        "ProcessingInputs": [
            {
                "InputName": "code",
                "S3Input": {"S3Uri": f"s3://{bucket}/code/", "LocalPath": "/opt/ml/processing/input/code"},
            },
            {
                "InputName": "data",
                "S3Input": {"S3Uri": f"s3://{bucket}/runs/r1/input/", "LocalPath": "/opt/ml/processing/input/data"},
            },
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "result",
                    "S3Output": {"S3Uri": f"s3://{bucket}/runs/r1/output", "LocalPath": "/opt/ml/processing/output"},
                }
            ]
        },
        "AppSpecification": {
            "ImageUri": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-py312-cpu-py3",
            "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/script.py"],
            "ContainerArguments": [
                "--input-dir",
                "/opt/ml/processing/input/data",
                "--output-dir",
                "/opt/ml/processing/output",
                "--config",
                "/opt/ml/config/processingjobconfig.json",
                "--resources",
                "/opt/ml/config/resourceconfig.json",
                "--message-file",
                "/opt/ml/output/message",
                "--mode",
                mode,
            ],
        },
        "Environment": {"GREETING": "hello from the request"},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime},
        "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/labelflow-SageMakerExecutionRole",
    }


@pytest.fixture
def staged(s3: Any, bucket: str) -> str:
    """The script under code/ and two input files under runs/r1/input/."""
    put(s3, bucket, "code/script.py", SCRIPT)
    put(s3, bucket, "runs/r1/input/a.txt", "1\n2\n")
    put(s3, bucket, "runs/r1/input/more/b.txt", "3\n")
    return bucket


# ------------------------------------------------------------------------------ download_prefix / upload_tree
def test_download_prefix_keeps_paths_below_the_prefix_folder(s3: Any, bucket: str, tmp_path: Path) -> None:
    # Given objects under runs/r1/, a folder marker, a worker-response file and an object outside the prefix
    put(s3, bucket, "runs/r1/input/data.csv", "a,b")
    put(s3, bucket, "runs/r1/input/nested/deep/x.json", "{}")
    put(s3, bucket, "runs/r1/input/empty/")
    put(s3, bucket, "runs/r1/review/worker-response/1.json", "{}")
    put(s3, bucket, "runs/r2/input/data.csv", "other")
    # When the prefix runs/r1/in (not a whole folder) is downloaded, skipping worker responses
    count = download_prefix(s3, f"s3://{bucket}/runs/r1/in", tmp_path, skip="/worker-response/")
    # Then paths are kept below the prefix's folder (runs/r1/), without the marker or skipped objects
    files = sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*") if path.is_file())
    assert files == ["input/data.csv", "input/nested/deep/x.json"]
    assert count == 2
    assert (tmp_path / "input/data.csv").read_text() == "a,b"
    assert not (tmp_path / "input/empty").exists()


def test_download_prefix_of_a_folder_or_a_single_key(s3: Any, bucket: str, tmp_path: Path) -> None:
    # Given two objects in a folder
    put(s3, bucket, "runs/r1/input/data.csv", "a,b")
    put(s3, bucket, "runs/r1/input/sub/more.csv", "c,d")
    # When the folder, then one key, then everything except "sub", are downloaded
    assert download_prefix(s3, f"s3://{bucket}/runs/r1/input/", tmp_path / "folder") == 2
    assert download_prefix(s3, f"s3://{bucket}/runs/r1/input/data.csv", tmp_path / "key") == 1
    assert download_prefix(s3, f"s3://{bucket}/runs/", tmp_path / "skip", skip="sub") == 1
    # Then a folder's contents land directly in the destination, as does a single key
    assert (tmp_path / "folder/data.csv").read_text() == "a,b"
    assert (tmp_path / "folder/sub/more.csv").read_text() == "c,d"
    assert [path.name for path in (tmp_path / "key").iterdir()] == ["data.csv"]
    assert [path.relative_to(tmp_path / "skip").as_posix() for path in (tmp_path / "skip").rglob("*.csv")] == [
        "r1/input/data.csv"
    ]


def test_upload_tree_uploads_nested_files_with_relative_keys(s3: Any, bucket: str, tmp_path: Path) -> None:
    # Given a tree of files, with an empty folder
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    (tmp_path / "top.txt").write_text("top")
    (tmp_path / "a" / "b" / "leaf.json").write_text('{"ok": true}')
    # When it is uploaded under a prefix without a trailing slash
    count = upload_tree(s3, tmp_path, f"s3://{bucket}/runs/r1/output")
    # Then every file is an object under prefix/ with its relative path as key; folders are not objects
    assert count == 2
    assert keys(s3, bucket, "runs/") == ["runs/r1/output/a/b/leaf.json", "runs/r1/output/top.txt"]
    body = s3.get_object(Bucket=bucket, Key="runs/r1/output/a/b/leaf.json")["Body"].read()
    assert json.loads(body) == {"ok": True}


# ------------------------------------------------------------------------------------------ run()
def test_a_successful_job_runs_on_the_remapped_tree_and_uploads_its_outputs(s3: Any, staged: str) -> None:
    # Given the script and its inputs in S3
    processing = LocalProcessing(s3, REGION, ACCOUNT)
    # When the job runs
    describe = processing.run(request(staged))
    # Then it completed, with DescribeProcessingJob's fields
    assert describe["ProcessingJobStatus"] == "Completed"
    assert describe["ProcessingJobArn"] == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:processing-job/labelflow-job-1"
    assert describe["ExitMessage"] == "" and "FailureReason" not in describe
    assert {"CreationTime", "ProcessingStartTime", "ProcessingEndTime"} <= set(describe)
    # And the outputs, nested ones included, were uploaded under S3Output.S3Uri
    assert keys(s3, staged, "runs/r1/output/") == [
        "runs/r1/output/config/processingjobconfig.json",
        "runs/r1/output/config/resourceconfig.json",
        "runs/r1/output/nested/deeper/done.txt",
        "runs/r1/output/partial.txt",
        "runs/r1/output/result.json",
    ]
    result = json.loads(read(s3, staged, "runs/r1/output/result.json"))
    # And the script saw its inputs, the request's environment, and SageMaker's two config files
    assert result["inputs"] == ["a.txt", "more/b.txt"]
    assert result["total"] == 6
    assert result["greeting"] == "hello from the request"
    assert result["job_name"] == "Labelflow-Job-1"
    assert result["host"] == "algo-1"
    config = json.loads(read(s3, staged, "runs/r1/output/config/processingjobconfig.json"))
    assert config == json.loads(json.dumps(request(staged)))
    resources = json.loads(read(s3, staged, "runs/r1/output/config/resourceconfig.json"))
    assert resources == {"current_host": "algo-1", "hosts": ["algo-1"]}
    # And "python3" became the processing image's interpreter (its local venv), /opt/ml paths the temp tree
    assert result["executable"] == str(ensure_processing_env())
    script, *arguments = result["argv"]
    assert script.endswith("/opt/ml/processing/input/code/script.py") and not script.startswith("/opt/ml/")
    paths = [arg for arg in arguments if arg.startswith("/")]
    assert len(paths) == 5 and not any(path.startswith("/opt/ml/") for path in paths)
    assert {path.split("/opt/ml/")[0] for path in paths + [script]} == {script.split("/opt/ml/")[0]}
    assert arguments[-2:] == ["--mode", "ok"]


def _outputs(s3: Any, bucket: str) -> dict[str, tuple[bytes, str, int]]:
    """The job's output objects: body (result.json without its run's temporary paths), content type, length."""
    seen = {}
    for key in keys(s3, bucket, "runs/r1/output/"):
        head = s3.head_object(Bucket=bucket, Key=key)
        body = read(s3, bucket, key)
        if key.endswith("result.json"):
            body = json.dumps({**json.loads(body), "argv": None}).encode()
        seen[key] = (body, head["ContentType"], head["ContentLength"])
    return seen


def test_the_containers_copies_are_the_same_straight_in_the_store_as_through_the_client(
    s3: Any, staged: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the job run once with its inputs and outputs copied through the app's S3 client
    with monkeypatch.context() as through_client:
        through_client.setattr(store, "direct_store", lambda *_: None)
        before = LocalProcessing(s3, REGION, ACCOUNT).run(request(staged))
    through_client_outputs = _outputs(s3, staged)
    # When it runs again with its copies straight into and out of moto's store
    after = LocalProcessing(s3, REGION, ACCOUNT).run(request(staged))
    # Then it saw the same inputs and wrote the same objects: keys, bodies, content types and lengths
    assert after["ProcessingJobStatus"] == before["ProcessingJobStatus"] == "Completed"
    assert _outputs(s3, staged) == through_client_outputs
    assert json.loads(through_client_outputs["runs/r1/output/result.json"][0])["total"] == 6


def test_a_job_that_writes_a_message_and_exits_2_fails_with_that_message(s3: Any, staged: str) -> None:
    # Given a script that writes /opt/ml/output/message, then exits 2
    # When the job runs
    describe = LocalProcessing(s3, REGION, ACCOUNT).run(request(staged, mode="message"))
    # Then it failed with the message as FailureReason and ExitMessage
    assert describe["ProcessingJobStatus"] == "Failed"
    assert describe["FailureReason"] == "spec.json: column 'text' is missing"
    assert describe["ExitMessage"] == "spec.json: column 'text' is missing"
    # And nothing was uploaded, not even the file it wrote before failing
    assert keys(s3, staged, "runs/r1/output") == []


def test_a_job_that_exits_1_without_a_message_fails_with_its_last_stderr_line(s3: Any, staged: str) -> None:
    # Given a script that prints two stderr lines, then exits 1 without a message file
    # When the job runs
    describe = LocalProcessing(s3, REGION, ACCOUNT).run(request(staged, mode="crash"))
    # Then FailureReason is the last stderr line, and nothing was uploaded
    assert describe["ProcessingJobStatus"] == "Failed"
    assert describe["FailureReason"] == "ValueError: bad row 7"
    assert describe["ExitMessage"] == ""
    assert keys(s3, staged, "runs/r1/output") == []
    # And when a script exits 3 with neither a message nor stderr, FailureReason gives the exit code
    put(s3, staged, "code/script.py", "import sys\nsys.exit(3)\n")
    silent = LocalProcessing(s3, REGION, ACCOUNT).run(request(staged))
    assert (silent["ProcessingJobStatus"], silent["FailureReason"]) == ("Failed", "exit code 3")


def test_a_job_over_max_runtime_is_stopped_and_fails(s3: Any, staged: str) -> None:
    # Given a script that sleeps 5 s, and MaxRuntimeInSeconds=1
    # When the job runs
    describe = LocalProcessing(s3, REGION, ACCOUNT).run(request(staged, mode="slow", max_runtime=1))
    # Then it is stopped and failed, saying why, with nothing uploaded
    assert describe["ProcessingJobStatus"] == "Failed"
    assert "MaxRuntimeInSeconds" in describe["FailureReason"]
    assert keys(s3, staged, "runs/r1/output") == []


# ------------------------------------------------------------------------------------------ inputs
PROCESSING = Path(__file__).resolve().parents[3] / "processing"


def engine_request(bucket: str, extra_inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """The real processing script's job: code, data and spec inputs (as planning makes them), plus `extra_inputs`."""

    def s3_input(name: str, prefix: str) -> dict[str, Any]:
        local_path = f"/opt/ml/processing/input/{name}"
        return {
            "InputName": name,
            "S3Input": {
                "S3Uri": f"s3://{bucket}/{prefix}",
                "LocalPath": local_path,
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
            },
        }

    base = request(bucket)
    base["ProcessingInputs"] = [
        s3_input("code", "code/"),
        s3_input("data", "runs/r1/input/"),
        s3_input("spec", "runs/r1/spec/"),
    ]
    base["ProcessingInputs"] += extra_inputs
    base["AppSpecification"]["ContainerEntrypoint"] = ["python3", "/opt/ml/processing/input/code/preprocess.py"]
    base["AppSpecification"]["ContainerArguments"] = [
        "--input-dir", "/opt/ml/processing/input/data",
        "--spec", "/opt/ml/processing/input/spec/spec.json",
        "--output-dir", "/opt/ml/processing/output",
        "--message-file", "/opt/ml/output/message",
        "--state-dir", "/opt/ml/processing/input/state",
        *ResolvedInput(format="csv", delimiter=",").container_arguments(),
    ]  # fmt: skip
    return base


@pytest.fixture
def engine(s3: Any, bucket: str) -> str:
    """The processing code under code/, a two-row CSV under runs/r1/input/ and its spec under runs/r1/spec/."""
    for path in sorted(PROCESSING.rglob("*.py")):
        put(s3, bucket, f"code/{path.relative_to(PROCESSING).as_posix()}", path.read_text(encoding="utf-8"))
    put(s3, bucket, "runs/r1/input/landed", "id,ts,text,num\na,1767225600,t,1\nb,1767225600,t,3\n")
    # As planning freezes it: validated, every default filled in.
    spec = DatasetSpec.model_validate(
        {
            "dataset": "r",
            "record_id_column": "id",
            "event_time_column": "ts",
            "display_columns": ["text"],
            "features": [{"name": "num", "type": "numeric", "impute": "mean", "scaling": "standard"}],
            "labels": ["a", "b"],
        }
    )
    put(s3, bucket, "runs/r1/spec/spec.json", spec.model_dump_json())
    return bucket


def test_a_state_input_reaches_the_script_like_any_other(s3: Any, engine: str) -> None:
    # Given a transform state published under state/ (fitted on other data: mean 10, std 2)
    state = {
        "format": "labelflow.transform-state",
        "version": 1,
        "features": {
            "num": {
                "transform": {"type": "numeric", "impute": "mean", "fill_value": None, "scaling": "standard"},
                "fit": {"count": 4, "missing": 0, "mean": 10.0, "std": 2.0, "min": 7.0, "max": 13.0},
                "impute_value": 10.0,
                "scaler": {"mean": 10.0, "std": 2.0, "min": 7.0, "max": 13.0},
            }
        },
    }
    body = json.dumps(state, indent=2)
    put(s3, engine, "state/test/state.json", body)
    state_input = {
        "InputName": "state",
        "S3Input": {
            "S3Uri": f"s3://{engine}/state/test/",
            "LocalPath": "/opt/ml/processing/input/state",
            "S3DataType": "S3Prefix",
        },
    }

    # When the real processing script runs with it as the "state" input
    describe = LocalProcessing(s3, REGION, ACCOUNT).run(engine_request(engine, [state_input]))

    # Then the script applied that state (not a refit) and wrote it back unchanged
    assert describe["ProcessingJobStatus"] == "Completed", describe.get("FailureReason")
    assert read(s3, engine, "runs/r1/output/state.json").decode() == body
    records = [json.loads(line) for line in read(s3, engine, "runs/r1/output/records.jsonl").splitlines()]
    assert [r["features"]["num"] for r in records] == [-4.5, -3.5]
    assert json.loads(read(s3, engine, "runs/r1/output/stats.json"))["state"]["fitted"] is False


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (
            {"InputName": "db", "DatasetDefinition": {}},
            "input db: only S3Input inputs are emulated locally (not DatasetDefinition)",
        ),
        (
            {
                "InputName": "m",
                "S3Input": {"S3Uri": "s3://b/m", "LocalPath": "/opt/ml/processing/m", "S3DataType": "ManifestFile"},
            },
            "input m: only S3Prefix inputs in File mode are emulated locally",
        ),
        (
            {
                "InputName": "p",
                "S3Input": {
                    "S3Uri": "s3://b/p",
                    "LocalPath": "/opt/ml/processing/p",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "Pipe",
                },
            },
            "input p: only S3Prefix inputs in File mode are emulated locally",
        ),
        (
            {"InputName": "x", "S3Input": {"S3Uri": "s3://b/x", "LocalPath": "/tmp/x", "S3DataType": "S3Prefix"}},
            "input x: LocalPath must begin with /opt/ml/processing/",
        ),
    ],
)
def test_inputs_local_mode_cannot_emulate_fail_the_job_saying_so(
    s3: Any, staged: str, item: dict[str, Any], reason: str
) -> None:
    # Given a job with an input kind local mode does not copy
    job = request(staged)
    job["ProcessingInputs"].append(item)
    # When it runs / Then it fails before running anything, naming the input
    describe = LocalProcessing(s3, REGION, ACCOUNT).run(job)
    assert (describe["ProcessingJobStatus"], describe["FailureReason"]) == ("Failed", reason)
    assert keys(s3, staged, "runs/r1/output") == []
