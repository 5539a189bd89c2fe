"""Auto-label confident predictions and write the human-review manifest for the rest."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from labelflow import aws
from labelflow.models.settings import RouteSettings, load_settings
from labelflow.models.state import WorkflowState
from labelflow.observability import RUN_ID_PATH, logger, metrics
from labelflow.routing import route_by_confidence

settings = load_settings(RouteSettings)


@logger.inject_lambda_context(correlation_id_path=RUN_ID_PATH)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    routing = route_by_confidence(WorkflowState.model_validate(event), aws.s3(), settings.confidence_threshold)
    logger.info("records routed", extra={"auto_labeled": routing.auto_labeled, "to_review": routing.to_review})
    metrics.add_metric(name="RecordsAutoLabeled", unit=MetricUnit.Count, value=routing.auto_labeled)
    metrics.add_metric(name="RecordsSentToReview", unit=MetricUnit.Count, value=routing.to_review)
    return routing.model_dump(mode="json")
