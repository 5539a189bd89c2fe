"""Merge model and human labels into the run's labeled dataset, split into ingest batches."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from labelflow import aws
from labelflow.merging import merge_labels
from labelflow.models.settings import MergeSettings, load_settings
from labelflow.models.state import WorkflowState
from labelflow.observability import RUN_ID_PATH, logger, metrics

settings = load_settings(MergeSettings)


@logger.inject_lambda_context(correlation_id_path=RUN_ID_PATH)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    run = WorkflowState.model_validate(event)
    merged = merge_labels(run, aws.s3(), concurrency=settings.ingest_concurrency)
    logger.info("labels merged", extra={"model": merged.model, "human": merged.human, "unlabeled": merged.unlabeled})
    metrics.add_metric(name="RecordsLabeled", unit=MetricUnit.Count, value=merged.labeled)
    metrics.add_metric(name="RecordsUnlabeled", unit=MetricUnit.Count, value=merged.unlabeled)
    return merged.model_dump(mode="json")
