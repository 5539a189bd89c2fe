"""Validate the landed object, freeze the run's inputs and plan its processing job."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from labelflow import aws
from labelflow.models.settings import PlanSettings, load_settings
from labelflow.models.state import WorkflowState
from labelflow.observability import RUN_ID_PATH, logger, metrics
from labelflow.planning import plan_processing

settings = load_settings(PlanSettings)


@logger.inject_lambda_context(correlation_id_path=RUN_ID_PATH)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    plan = plan_processing(WorkflowState.model_validate(event), aws.s3(), aws.sagemaker(), settings)
    logger.info(
        "processing planned",
        extra={
            "cache_hit": plan.cache_hit,
            "engine": plan.engine,
            "job": plan.processing_job["ProcessingJobName"],
            "feature_group": plan.feature_group.name,
            "feature_group_created": plan.feature_group.created,
            "state_applied": plan.transform_state.applied,
        },
    )
    metrics.add_metric(name="ProcessingCacheHits", unit=MetricUnit.Count, value=int(plan.cache_hit))
    return plan.model_dump(mode="json")
