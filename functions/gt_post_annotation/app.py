"""Ground Truth annotation consolidation: one label with a confidence per object from its workers' answers."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from labelflow import aws
from labelflow.models.groundtruth import PostAnnotationEvent
from labelflow.observability import logger, metrics
from labelflow.review.consolidation import consolidation_response, load_consolidation_request


@logger.inject_lambda_context(correlation_id_path="labelingJobArn")
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> list[dict[str, Any]]:
    request = PostAnnotationEvent.model_validate(event)
    items = load_consolidation_request(aws.s3(), request.payload.s3_uri)
    response = consolidation_response(
        items, request.label_categories or [], request.label_attribute_name, request.labeling_job_arn
    )
    logger.info("annotations consolidated", extra={"objects": len(items), "consolidated": len(response)})
    metrics.add_metric(name="ObjectsConsolidated", unit=MetricUnit.Count, value=len(response))
    return response
