"""spark_planning.py: which engine processes a run, and the StartJobRun fields of a Spark run."""

from __future__ import annotations

from typing import Any

import pytest

from labelflow import spark_planning
from labelflow.errors import ConfigError
from labelflow.formats import ResolvedInput
from labelflow.models.run import FeatureGroupLineage, ModelLineage, TransformStateLineage
from labelflow.models.settings import PlanSettings, load_settings
from labelflow.models.spec import DatasetSpec
from labelflow.models.state import PlanOutput, WorkflowState
from labelflow.spark_planning import SparkSettings, choose_engine, spark_job_request, with_engine
from labelflow_local.contracts import operation_model, violations

GIB = 1024**3
RUN_PREFIX = "s3://labelflow-demo/runs/reviews/r1/"
CSV = ResolvedInput(format="csv", delimiter=";", encoding="utf-8-sig")


def spec(engine: str = "auto", model: bool = False) -> DatasetSpec:
    raw: dict[str, Any] = {
        "dataset": "reviews",
        "record_id_column": "id",
        "event_time_column": "ts",
        "display_columns": ["text"],
        "features": [{"name": "stars", "type": "numeric"}],
        "labels": ["pos", "neg"],
        "engine": engine,
    }
    if model:
        raw["model"] = {"s3_uri": "s3://models/reviews/model.joblib", "classes": ["pos", "neg"]}
    return DatasetSpec.model_validate(raw)


def spark(application: str = "00fabc123", above: int = 10 * GIB) -> SparkSettings:
    return SparkSettings.model_validate({"EMR_APPLICATION_ID": application, "SPARK_ABOVE_BYTES": str(above)})


def plan_settings() -> PlanSettings:
    return PlanSettings.model_validate(
        {
            "DATA_BUCKET": "labelflow-demo",
            "PROCESSING_IMAGE_URI": "123.dkr.ecr.us-east-1.amazonaws.com/sklearn:1",
            "PROCESSING_INSTANCE_TYPE": "ml.m5.xlarge",
            "PROCESSING_MAX_RUNTIME_SECONDS": "3601",
            "FEATURE_GROUP_PREFIX": "labelflow",
            "FEATURE_STORE_ROLE_ARN": "arn:aws:iam::123456789012:role/labelflow-FeatureStoreRole",
            "OFFLINE_STORE_S3_URI": "s3://labelflow-demo/feature-store",
        }
    )


def run(size: int = 1000) -> WorkflowState:
    return WorkflowState(
        bucket="labelflow-demo",
        key="raw/reviews/2026/big.csv",
        version_id="v1",
        etag="e",
        size=size,
        dataset="reviews",
        run_id="r1",
        received_at="2026-12-02T09:00:00Z",
    )


def plan(model: bool = False, state_applied: bool = False) -> PlanOutput:
    return PlanOutput(
        dataset="reviews",
        run_id="r1",
        run_prefix=RUN_PREFIX,
        spec_uri=RUN_PREFIX + "input/spec/spec.json",
        input_uri=RUN_PREFIX + "input/data/big.csv",
        code_sha256="c" * 64,
        cache_key="k" * 64,
        cache_hit=False,
        processed_uri=RUN_PREFIX + "processed/kkkkkkkkkkkkkkkk/",
        model=ModelLineage(
            s3_uri="s3://models/reviews/model.joblib", version_id="1", sha256="m" * 64, classes=["pos", "neg"]
        )
        if model
        else None,
        feature_group=FeatureGroupLineage(name="labelflow-reviews", created=False),
        transform_state=TransformStateLineage(
            uri="s3://labelflow-demo/artifacts/states/reviews/f/state.json", fingerprint="f", applied=state_applied
        ),
        processing_job={"ProcessingJobName": "lf-reviews-r1"},
    )


@pytest.mark.parametrize(
    ("engine", "size", "chosen"),
    [
        ("auto", 10 * GIB - 1, "single"),
        ("auto", 10 * GIB, "spark"),
        ("single", 100 * GIB, "single"),
        ("spark", 1, "spark"),
    ],
)
def test_the_spec_chooses_the_engine_and_auto_is_spark_from_spark_above_bytes(
    engine: str, size: int, chosen: str
) -> None:
    # Given a deployment with a Spark application and SparkAboveBytes 10 GiB
    # When a run of `size` bytes is planned with the spec's `engine`
    # Then the engine is the spec's, or for auto Spark from 10 GiB on
    assert choose_engine(spec(engine), size, spark()) == chosen


def test_auto_never_picks_spark_without_an_application_or_with_a_zero_threshold() -> None:
    # Given deployments without a Spark application, or with SparkAboveBytes 0
    # When a huge input is planned with engine auto
    # Then it stays on the Processing job
    assert choose_engine(spec("auto"), 100 * GIB, spark(application="")) == "single"
    assert choose_engine(spec("auto"), 100 * GIB, spark(above=0)) == "single"


def test_a_spec_asking_for_spark_where_none_is_deployed_stops_the_run_saying_so() -> None:
    # Given a deployment without a Spark application
    # When a spec with engine spark is planned
    # Then planning fails with a configuration error that says what to do
    with pytest.raises(ConfigError, match="deploy with SparkImageUri"):
        choose_engine(spec("spark"), 1, spark(application=""))


def test_the_engine_defaults_to_auto_and_refuses_other_names() -> None:
    # Given a spec without an engine, and one with an unknown engine
    # Then the first is auto, the second is refused
    assert DatasetSpec.model_validate({**spec().model_dump(), "engine": "auto"}).engine == "auto"
    raw = spec().model_dump()
    raw.pop("engine")
    assert DatasetSpec.model_validate(raw).engine == "auto"
    with pytest.raises(ValueError, match="engine"):
        DatasetSpec.model_validate({**raw, "engine": "dask"})


def test_the_spark_job_gets_the_processing_jobs_arguments_with_s3_uris() -> None:
    # Given a plan with a model and an applied published state, read as ;-separated CSV
    request = spark_job_request(plan(model=True, state_applied=True), run(), CSV, plan_settings())
    arguments = request["JobDriver"]["SparkSubmit"]["EntryPointArguments"]
    options = dict(zip(arguments[::2], arguments[1::2], strict=False))
    # Then it reads the frozen input folder, spec and model of the run, applies the state, writes the processed prefix
    assert options["--input"] == RUN_PREFIX + "input/data/"
    assert options["--spec"] == RUN_PREFIX + "input/spec/spec.json"
    assert options["--model"] == RUN_PREFIX + "input/model/model.joblib"
    assert options["--state"] == "s3://labelflow-demo/artifacts/states/reviews/f/state.json"
    assert options["--output"] == RUN_PREFIX + "processed/kkkkkkkkkkkkkkkk/"
    assert options["--default-event-time"] == "2026-12-02T09:00:00Z"
    # And it reads the input as planning resolved it, as the processing job does
    assert arguments[-len(CSV.container_arguments()) :] == CSV.container_arguments()


def test_a_run_that_fits_its_own_state_passes_no_state_and_no_model() -> None:
    # Given a plan without a model whose state is fitted by the run
    arguments = spark_job_request(plan(), run(), CSV, plan_settings())["JobDriver"]["SparkSubmit"]
    # Then neither --state nor --model is passed
    assert "--state" not in arguments["EntryPointArguments"] and "--model" not in arguments["EntryPointArguments"]


def test_the_spark_job_runs_the_published_code_on_the_images_python_and_logs_under_the_run() -> None:
    # Given a Spark run's request
    request = spark_job_request(plan(), run(), CSV, plan_settings())
    code = "s3://labelflow-demo/artifacts/code/" + "c" * 64 + "/"
    submit = request["JobDriver"]["SparkSubmit"]
    # Then its entry point and py-files are the published code of the plan's hash
    assert submit["EntryPoint"] == code + "spark_job.py"
    assert f"--conf spark.submit.pyFiles={code}{spark_planning.SPARK_PY_FILES}" in submit["SparkSubmitParameters"]
    # And driver and executors run Python 3.12
    assert "spark.emr-serverless.driverEnv.PYSPARK_PYTHON=/usr/bin/python3.12" in submit["SparkSubmitParameters"]
    assert "spark.executorEnv.PYSPARK_PYTHON=/usr/bin/python3.12" in submit["SparkSubmitParameters"]
    # And its logs go under the run prefix, and its time limit is the processing job's, in whole minutes
    logs = request["ConfigurationOverrides"]["MonitoringConfiguration"]["S3MonitoringConfiguration"]["LogUri"]
    assert logs == RUN_PREFIX + "spark-logs/"
    assert request["ExecutionTimeoutMinutes"] == 61


def test_the_request_is_a_valid_start_job_run_and_its_token_is_stable_per_run() -> None:
    # Given the request as the state machine completes it (application and role from the template)
    request = spark_job_request(plan(model=True, state_applied=True), run(), CSV, plan_settings())

    def api(value: Any) -> Any:
        """Step Functions' PascalCase members as the API spells them."""
        if isinstance(value, dict):
            return {key[0].lower() + key[1:]: api(item) for key, item in value.items()}
        return value

    params = {
        **api(request),
        "applicationId": "00fabc123",
        "executionRoleArn": "arn:aws:iam::123456789012:role/labelflow-SparkJobRole",
    }
    # Then botocore's emr-serverless model accepts it
    assert violations(operation_model("emr-serverless", "StartJobRun"), params) == []
    # And planning the same run again gives the same client token (a retried state starts no second job run)
    again = spark_job_request(plan(model=True, state_applied=True), run(), CSV, plan_settings())
    assert again["ClientToken"] == request["ClientToken"]


def test_a_spark_plan_adds_the_engine_and_the_job_and_a_single_plan_is_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a deployment with a Spark application from 1 GiB on
    monkeypatch.setenv("EMR_APPLICATION_ID", "00fabc123")
    monkeypatch.setenv("SPARK_ABOVE_BYTES", str(GIB))
    load_settings.cache_clear()
    try:
        # When a small and a large run are planned
        settings = load_settings(SparkSettings)
        small = with_engine(plan(), choose_engine(spec(), GIB - 1, settings), run(size=GIB - 1), CSV, plan_settings())
        large = with_engine(plan(), choose_engine(spec(), GIB, settings), run(size=GIB), CSV, plan_settings())
    finally:
        load_settings.cache_clear()
    # Then the small plan is the processing job's, and the large one carries the engine and the job run
    assert small == plan() and small.engine == "single" and small.spark_job is None
    assert large.engine == "spark" and large.spark_job is not None
    assert large.spark_job == spark_job_request(plan(), run(size=GIB), CSV, plan_settings())
    dumped = large.model_dump(mode="json")
    assert dumped["engine"] == "spark" and dumped["processing_job"] == plan().processing_job
