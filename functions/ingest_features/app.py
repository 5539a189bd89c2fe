"""Write the run's labeled records to its Feature Store feature group."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from labelflow import aws
from labelflow.ingestion import ingest_features
from labelflow.models.settings import IngestSettings, load_settings
from labelflow.models.state import WorkflowState
from labelflow.observability import RUN_ID_PATH, logger, metrics

settings = load_settings(IngestSettings)


@logger.inject_lambda_context(correlation_id_path=RUN_ID_PATH)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = ingest_features(
        WorkflowState.model_validate(event), aws.s3(), aws.sagemaker(), aws.featurestore(), settings.max_workers
    )
    logger.info("features ingested", extra={"ingested": result.ingested, "failed": result.failed})
    metrics.add_metric(name="RecordsIngested", unit=MetricUnit.Count, value=result.ingested)
    metrics.add_metric(name="RecordsIngestFailed", unit=MetricUnit.Count, value=result.failed)
    return result.model_dump(mode="json")
