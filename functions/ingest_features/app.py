"""Write the run's labeled records to its Feature Store feature group, or re-send a finished run's failed ones."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import TypeAdapter

from labelflow import aws
from labelflow.ingestion import ingest
from labelflow.models.settings import IngestSettings, load_settings
from labelflow.models.state import ReingestState, WorkflowState
from labelflow.observability import logger, metrics

settings = load_settings(IngestSettings)
_EVENT: TypeAdapter[WorkflowState | ReingestState] = TypeAdapter(WorkflowState | ReingestState)


@logger.inject_lambda_context(correlation_id_path="run_id || reingest.run_id")
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    state = _EVENT.validate_python(event)
    result = ingest(state, aws.s3(), aws.sagemaker(), aws.featurestore(), settings.max_workers)
    logger.info("features ingested", extra={"ingested": result.ingested, "failed": result.failed})
    metrics.add_metric(name="RecordsIngested", unit=MetricUnit.Count, value=result.ingested)
    metrics.add_metric(name="RecordsIngestFailed", unit=MetricUnit.Count, value=result.failed)
    return result.model_dump(mode="json")
