"""The Spark engine end to end in local mode: a dataset with `engine: spark` runs its processing as an EMR Serverless
job run (pyspark in local mode) and reaches the feature store with the single-machine engine's features."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labelflow.models.spec import DatasetSpec
from labelflow_local.cloud import STATE_MACHINE_NAME, local_cloud
from labelflow_local.demo import DEMO_DATA, DEMO_MODEL, DEMO_SPEC, DEMO_TRUTH, land
from labelflow_local.emr import LOCAL_APPLICATION_ID, LOCAL_IMAGE_URI, spark_deployment
from labelflow_local.iam import (
    SPARK_ROLE,
    STATE_MACHINE,
    CallRecorder,
    Intrinsics,
    Local,
    allowed,
    recording,
    role_statements,
    state_machine_calls,
    translate,
    unused_grants,
)
from labelflow_local.review import SimulatedWorkers, read_labels
from tests.e2e.test_least_privilege import local_names

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.spark,
]

# A deployment with the Spark engine: its image parameter set. Local mode has no application to create, so the
# application's Ref is given its local id the same way.
SPARK_DEPLOYMENT = {"SparkImageUri": LOCAL_IMAGE_URI, "SparkApplication": LOCAL_APPLICATION_ID}
NOT_FEATURES = {"record_id", "event_time", "label", "label_source", "label_confidence", "run_id"}
SPARK_SIDS = {"RunSparkJobs", "WatchSparkJobs", "PassSparkJobRole", "EmrServerlessSyncRule"}
# Grants a local run cannot use: CancelJobRun is called only when an execution is stopped or times out, and a
# multipart upload is aborted only when it fails; no local run is stopped and no local upload fails.
NOT_EXERCISED = {"emr-serverless:CancelJobRun", "s3:AbortMultipartUpload"}


@dataclass
class Run:
    status: str
    history: list[dict[str, Any]]
    features: dict[str, dict[str, str]]


def spec_body(engine: str) -> bytes:
    return json.dumps(json.loads(DEMO_SPEC.read_bytes()) | {"engine": engine}).encode()


def run_demo(workdir: Path, engine: str, recorder: CallRecorder | None = None) -> tuple[Run, Local, Any]:
    """The demo file through the whole workflow with the spec's engine set; (run, local names, policies)."""
    body = spec_body(engine)
    workers = SimulatedWorkers(read_labels(DEMO_TRUTH), seed=7)
    with spark_deployment(), local_cloud(workers, workdir / "feature-store") as cloud:
        execution_arn = land(cloud, DEMO_DATA, DatasetSpec.model_validate_json(body), body, DEMO_MODEL)
        described = cloud.wait(execution_arn, timeout=math.inf)
        history = cloud.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        local = local_names(cloud)
        if recorder is not None:
            state_machine_calls(recorder, local, cloud.s3, history)
        translated = translate(cloud.template, cloud.region, cloud.account)
        policies = role_statements(translated, Intrinsics(translated, local, STATE_MACHINE_NAME, SPARK_DEPLOYMENT))
        cloud.feature_store.flush()
        features = cloud.feature_store.online_records(cloud.feature_group_name("reviews"))
        return Run(described["status"], history, features), local, policies


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Run, Run, CallRecorder, Any]]:
    # Given the demo dataset run once with engine single and once with engine spark, on a Spark deployment
    recorder = CallRecorder("us-east-1", "123456789012")
    single, _, _ = run_demo(tmp_path_factory.mktemp("single"), "single")
    with recording(recorder):
        spark, _, policies = run_demo(tmp_path_factory.mktemp("spark"), "spark", recorder)
    yield single, spark, recorder, policies


def entered(run: Run) -> list[str]:
    return [event["stateEnteredEventDetails"]["name"] for event in run.history if "stateEnteredEventDetails" in event]


def test_a_spark_dataset_is_processed_by_the_spark_job_and_reaches_the_feature_store(runs) -> None:
    single, spark, _, _ = runs
    # Then both runs succeed, the Spark one through RunSparkJob and never the Processing job, the other the reverse
    assert (single.status, spark.status) == ("SUCCEEDED", "SUCCEEDED")
    assert "RunSparkJob" in entered(spark) and "Process" not in entered(spark)
    assert "Process" in entered(single) and "RunSparkJob" not in entered(single)
    # And every record of the demo is in the feature store
    assert len(spark.features) == len(single.features) == 3000


def test_the_spark_engine_stores_the_single_machine_engines_features(runs) -> None:
    single, spark, _, _ = runs
    # When the stored feature values of each record are compared
    assert set(spark.features) == set(single.features)
    differing = []
    for record_id, values in single.features.items():
        theirs = spark.features[record_id]
        names = set(values) - NOT_FEATURES
        assert names and names == set(theirs) - NOT_FEATURES
        for name in names:
            if not math.isclose(float(values[name]), float(theirs[name]), rel_tol=1e-12, abs_tol=1e-12):
                differing.append((record_id, name, values[name], theirs[name]))
    # Then they are equal, feature by feature
    assert differing == []


def test_the_spark_runs_calls_are_the_ones_the_template_grants_and_use_every_spark_grant(runs) -> None:
    _, _, recorder, policies = runs
    # Given the calls derived from the Spark run's history: the state machine's and the job runtime role's
    machine = [call for call in recorder.for_principal(STATE_MACHINE) if "emr-serverless" in call.origin]
    job = recorder.for_principal(SPARK_ROLE)
    assert machine and job
    # Then the template allows each of them
    denied = [call for call in machine if not allowed(policies[STATE_MACHINE], call)]
    denied += [call for call in job if not allowed(policies[SPARK_ROLE], call)]
    assert denied == []
    # And every Spark grant is used, but for those no local run can use
    spark_statements = [s for s in policies[STATE_MACHINE] if s.sid in SPARK_SIDS]
    assert {s.sid for s in spark_statements} == SPARK_SIDS
    unused = [grant for grant in unused_grants(spark_statements, machine) if grant[1] not in NOT_EXERCISED]
    assert unused == []
    assert [grant for grant in unused_grants(policies[SPARK_ROLE], job) if grant[1] not in NOT_EXERCISED] == []
