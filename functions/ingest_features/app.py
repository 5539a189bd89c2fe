"""Write one batch of the run's labeled records to its Feature Store feature group, or re-send a run's failed ones."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import TypeAdapter

from labelflow import aws
from labelflow.ingestion import ingest, ingest_client
from labelflow.models.settings import IngestSettings, load_settings
from labelflow.models.state import IngestBatchInput, ReingestState
from labelflow.observability import logger, metrics

settings = load_settings(IngestSettings)
_EVENT: TypeAdapter[IngestBatchInput | ReingestState] = TypeAdapter(IngestBatchInput | ReingestState)


@logger.inject_lambda_context(correlation_id_path="run_id || reingest.run_id")
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = _EVENT.validate_python(event)
    # A client per invocation, its pool sized to the threads (created in ~0.1 s, against a batch's ~minute).
    featurestore = ingest_client(settings.max_workers)
    result = ingest(request, aws.s3(), aws.sagemaker(), featurestore, settings.max_workers)
    logger.info("features ingested", extra={"ingested": result.ingested, "failed": result.failed})
    metrics.add_metric(name="RecordsIngested", unit=MetricUnit.Count, value=result.ingested)
    metrics.add_metric(name="RecordsIngestFailed", unit=MetricUnit.Count, value=result.failed)
    return result.model_dump(mode="json")
